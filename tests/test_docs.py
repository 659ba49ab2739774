"""The docs and comments stay true to the tree: every repository path they name exists,
and nothing cites the steering spec instead of the project's own contract."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from worker.contracts import parse_contracts
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]

# worker/, testkit/ and bench/ paths are named from code comments and docs alike; the other
# top-level folders only from prose (code builds sample repositories with their own tests/
# and docs/ paths).
CODE_PATH = re.compile(r"(?<![\w./-])(?:worker|testkit|bench)/[A-Za-z0-9_./-]*[A-Za-z0-9_/]")
PROSE_PATH = re.compile(
    r"(?<![\w./-])(?:worker|testkit|bench|deploy|scripts)/[A-Za-z0-9_./-]*[A-Za-z0-9_/]"
)
# A benchmark command a reader can copy: `python -m bench` or one of its modules.
BENCH_COMMAND = re.compile(r"python -m (bench(?:\.[a-z_]+)?)\b")


def _tracked(*suffixes: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name.endswith(suffixes)]


def _missing(files: list[Path], pattern: re.Pattern[str]) -> list[str]:
    missing = []
    for file in files:
        for match in pattern.finditer(file.read_text(encoding="utf-8")):
            named = match.group(0)
            if not (ROOT / named).exists():
                missing.append(f"{file.relative_to(ROOT)}: {named}")
    return missing


def test_every_path_the_docs_name_exists() -> None:
    # The archive is a dated record: it names what stood then.
    current = [f for f in _tracked(".md") if f.name != "benchmarks-archive.md"]
    assert _missing(current, PROSE_PATH) == []


def test_every_worker_path_a_source_file_names_exists() -> None:
    assert _missing(_tracked(".py", ".toml", ".yml", ".yaml", ".cfg"), CODE_PATH) == []


def test_every_bench_command_the_docs_and_benches_give_runs_a_bench() -> None:
    # A module without a main block would import and exit silently: no bench ran.
    current = [f for f in _tracked(".md", ".py") if f.name != "benchmarks-archive.md"]
    commands = {
        (file.relative_to(ROOT), match.group(1))
        for file in current
        for match in BENCH_COMMAND.finditer(file.read_text(encoding="utf-8"))
    }
    assert commands, "no bench command found"
    not_runnable = []
    for where, module in sorted(commands):
        path = ROOT / module.replace(".", "/")
        script = path / "__main__.py" if path.is_dir() else path.with_suffix(".py")
        if not script.is_file() or 'if __name__ == "__main__":' not in script.read_text():
            not_runnable.append(f"{where}: python -m {module}")
    assert not_runnable == []


def test_nothing_cites_the_spec_instead_of_the_contract() -> None:
    citing = [
        str(file.relative_to(ROOT))
        for file in _tracked(".py", ".md")
        if "SPEC §" in file.read_text(encoding="utf-8") and file.name != "test_docs.py"
    ]
    assert citing == []


def test_every_contracts_example_in_the_docs_is_one_a_worker_accepts() -> None:
    """A reader copies these: each ```toml block with a [repos.*] table parses as a
    contracts file does (worker.contracts), whatever keys it shows."""
    examples = []
    for file in _tracked(".md"):
        text = file.read_text(encoding="utf-8")
        for block in re.findall(r"```toml\n(.*?)```", text, re.S):
            if "[repos." in block:
                examples.append((file.relative_to(ROOT), block))
    assert examples, "no contract example found"
    settings = Settings(contracts_file="")
    for where, block in examples:
        data = tomllib.loads(block)
        contracts = parse_contracts(data, settings)  # raises with the table and field at fault
        assert all(contracts.for_repo(name) for name in data["repos"]), where
