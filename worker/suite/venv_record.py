"""What a built venv may hold: files an installed distribution's RECORD lists (and
their compiled __pycache__), and what `python -m venv` itself writes. Anything else was
written by a setup step beside the installers (a `.pth`, a `sitecustomize`, a plugin
without a distribution), and would run in every later suite of the venv."""

from __future__ import annotations

import csv
import os
from pathlib import Path

# What `python -m venv` writes outside any distribution, relative to the venv.
_VENV_OWN = frozenset({"pyvenv.cfg", "lib64"})
_VENV_SCRIPTS = ("activate", "activate.csh", "activate.fish", "Activate.ps1", "python")


def unaccounted(venv: Path, own: frozenset[str] = frozenset()) -> list[str]:
    """The venv's files (never following a link) that no RECORD accounts for, as paths
    relative to it; `own`: more names the worker itself wrote at its top."""
    listed = _recorded(venv)
    found: list[str] = []
    for top, dirs, files in os.walk(venv):
        for name in (*files, *(d for d in dirs if Path(top, d).is_symlink())):
            path = Path(top, name)
            rel = path.relative_to(venv).as_posix()
            if rel in _VENV_OWN or rel in own or _venv_script(rel) or path in listed:
                continue
            if path.parent.name == "__pycache__" and _source_of(path) in listed:
                continue
            found.append(rel)
    return sorted(found)


def _venv_script(rel: str) -> bool:
    parent, _, name = rel.rpartition("/")
    return parent == "bin" and name.startswith(_VENV_SCRIPTS)


def _recorded(venv: Path) -> set[Path]:
    """Every path a RECORD of the venv's site dirs lists, normalised, links unresolved."""
    listed: set[Path] = set()
    for site in venv.glob("lib/python*/site-packages"):
        for record in site.glob("*.dist-info/RECORD"):
            try:
                with record.open(newline="", encoding="utf-8") as rows:
                    for row in csv.reader(rows):
                        if row:
                            listed.add(Path(os.path.normpath(site / row[0])))
            except (OSError, UnicodeDecodeError, csv.Error):
                continue
    return listed


def _source_of(compiled: Path) -> Path:
    """`pkg/__pycache__/mod.cpython-311.pyc` -> `pkg/mod.py`."""
    return compiled.parent.parent / f"{compiled.name.split('.', 1)[0]}.py"
