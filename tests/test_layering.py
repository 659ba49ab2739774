"""The layout is the architecture: imports among worker modules point only down the
layers, never round in a cycle, and the orchestrator's client loads none of the worker.

Every import counts, including those inside functions: a lazy import is still a
dependency, only a later one.

The tests have a layout too: what they share is in helper modules, never imported from
a test module or a conftest (pytest imports those itself; fixtures reach a test by name).
What the benchmarks share with them is in testkit/, which imports nothing of the tests;
the worker imports none of the three.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "worker"
TESTS = ROOT / "tests"

# Bottom to top. A module may import from its own layer or any layer below.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset(
        {
            "settings",
            "names",
            "errors",
            "job",
            "smoke",
            "contracts",
            "verdict",
            "evidence",
            "scope",
            "state",
            "metrics",
            "client",
            "masking",
        }
    ),
    # Traces and phase timings: every layer above times its steps with them.
    frozenset({"observe"}),
    frozenset({"git", "containment", "insuite", "notify"}),
    frozenset({"suite"}),
    # The sharding protocol: its queue, its deal and the merge into one suite run.
    frozenset({"shards"}),
    frozenset({"review"}),
    frozenset({"report"}),
    frozenset({"pipeline"}),
    frozenset({"celery_adapter"}),
    frozenset({"cli"}),
)

# Imports that the layers alone would not allow, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {
    ("worker", "worker.celery_adapter.app"): (
        "`celery -A worker` looks for `worker.app`; the package loads it lazily, on first "
        "access, so that importing any other module of the package does not"
    ),
    ("worker.containment.launch", "worker.insuite"): (
        "a cold start runs the boot script's file; insuite's facade only names its files"
    ),
    ("worker.containment.view", "worker.insuite"): (
        "the suite's view makes the in-suite files readable; insuite only names its files"
    ),
    ("worker.containment.warm", "worker.insuite"): (
        "the warm interpreter's shadowing check skips the plugins' own directory"
    ),
    ("worker.containment.warm", "worker.insuite.zygote"): (
        "the warm interpreter starts the zygote's file as a script, speaks its protocol and "
        "reads its exit code for 'could not become the suite'"
    ),
}


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the worker modules it imports (submodules resolved where named)."""
    modules = module_files()

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    # Modules and packages; a relative import would escape this and is not used here.
    modules_or_parents = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("worker")}
            elif isinstance(node, ast.ImportFrom) and node.module in modules_or_parents:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else resolve(node.module))
        targets.discard(name)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int | None:
    """The layer of a module, or None for the package root."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for index, members in enumerate(LAYERS):
        if parts[1] in members:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def family(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_worker_modules_import_each_other_in_a_cycle() -> None:
    assert cycles(import_graph()) == []


def test_imports_point_only_down_the_layers() -> None:
    upward = []
    for source, targets in import_graph().items():
        for target in targets:
            if (source, target) in ALLOWED:
                continue
            src, dst = layer_of(source), layer_of(target)
            going_up = src is None or (dst is not None and dst > src)
            # Families of one layer above the vocabulary are siblings, not stacked.
            sideways = src == dst and src != 0 and family(source) != family(target)
            if going_up or sideways:
                upward.append(f"{source} (layer {src}) -> {target} (layer {dst})")
    assert sorted(upward) == []


def test_every_allowed_exception_is_still_needed() -> None:
    graph = import_graph()
    assert [pair for pair in ALLOWED if pair[1] not in graph.get(pair[0], set())] == []


def test_the_in_suite_code_imports_nothing_of_the_worker() -> None:
    graph = import_graph()
    assert {m: sorted(t) for m, t in graph.items() if family(m) == "insuite" and t} == {}


def test_importing_the_client_loads_no_task_runner_or_suite() -> None:
    code = (
        "import json, sys\n"
        "from worker import client\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('worker'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert "worker.client" in loaded
    heavy = ("worker.celery_adapter", "worker.pipeline", "worker.suite")
    assert [m for m in loaded if m.startswith(heavy)] == []


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """What the imports of `module` may name: `from a.b import c` names `a.b` and, as c
    may be a submodule, `a.b.c`; relative imports are resolved from `module`'s package."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            named.add(base)
            named |= {f"{base}.{alias.name}" for alias in node.names if alias.name != "*"}
    return named


def is_test_or_conftest(module: str) -> bool:
    last = module.rpartition(".")[2]
    return last == "conftest" or last.startswith("test_")


def test_no_test_file_imports_from_a_test_module_or_a_conftest() -> None:
    # The check itself sees every form such an import can take.
    forms = (
        "import tests.chaos.conftest\n"
        "from tests.pipeline import test_runner\n"
        "from .conftest import Chaos\n"
        "from ..integration.test_sharding import BRANCH\n"
    )
    named = imported_modules(ast.parse(forms), "tests.chaos.test_faults", is_package=False)
    assert {
        "tests.chaos.conftest",
        "tests.pipeline.test_runner",
        "tests.integration.test_sharding",
    } <= named
    modules = module_files(TESTS)
    offending = []
    for name, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(), str(path))
        targets = imported_modules(tree, name, is_package=path.name == "__init__.py")
        offending += [
            f"{name} imports {target}"
            for target in sorted(targets)
            if target in modules and target != name and is_test_or_conftest(target)
        ]
    assert offending == []


# Top-level package -> the top-level packages it must never import.
FORBIDDEN_TOP_LEVEL: dict[str, frozenset[str]] = {
    "worker": frozenset({"testkit", "tests", "bench"}),
    "testkit": frozenset({"tests", "bench"}),
    "bench": frozenset({"tests"}),
}


def test_the_worker_loads_no_test_support_and_the_benchmarks_no_tests() -> None:
    offending = []
    for package, forbidden in FORBIDDEN_TOP_LEVEL.items():
        for name, path in sorted(module_files(ROOT / package).items()):
            tree = ast.parse(path.read_text(), str(path))
            targets = imported_modules(tree, name, is_package=path.name == "__init__.py")
            offending += [
                f"{name} imports {target}"
                for target in sorted(targets)
                if target.partition(".")[0] in forbidden
            ]
    assert offending == []
