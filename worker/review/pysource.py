"""What a test file's source says about its tests (pure, `ast` only, never imports it).

Test ids name functions ("path::Class::test_x[param]"); these helpers find the same
functions in the source: where they are (decorators included), what their code is
(for matching a moved test) and which modules and names they use (for excusing a
test deleted together with the code it tested).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class FunctionSource:
    key: str  # "test_x" or "TestK::test_x", as in a test id without path and params
    first: int  # first line, decorators included
    last: int
    code: str  # its body as an AST dump: equal whatever the formatting, self or not
    names: frozenset[str]  # every name and attribute it mentions


def split_id(test_id: str) -> tuple[str, str]:
    """Split an id into its path and the rest: `tests/a.py::K::test_x[1]` ->
    (`tests/a.py`, `K::test_x[1]`)."""
    path, _, key = test_id.partition("::")
    return path, key


def without_params(key: str) -> str:
    """`K::test_x[1-a]` -> `K::test_x` (names never contain "[", params may hold "::")."""
    return key.split("[", 1)[0]


def leaf(key: str) -> str:
    """`K::test_x[1]` -> `test_x[1]`: the function's own name and params."""
    name = without_params(key).rsplit("::", 1)[-1]
    return name + key[len(without_params(key)) :]


def functions(source: str) -> dict[str, FunctionSource]:
    """Module-level functions and methods (in nested classes too), by key; {} when the
    source does not parse. Functions nested in functions belong to their parent."""
    tree = _parse(source)
    if tree is None:
        return {}
    found: dict[str, FunctionSource] = {}
    for prefix, node in _walk_definitions(tree.body, ""):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            code = ast.dump(ast.Module(body=node.body, type_ignores=[]))
            names = frozenset(_names(node))
            found[prefix + node.name] = FunctionSource(
                prefix + node.name, _first_line(node), node.end_lineno or node.lineno, code, names
            )
    return found


def scope_of(source: str, line: int) -> str | None:
    """What a line applies to: "TestK::test_x" (inside a function), "TestK::" (inside
    a class, outside its methods), "" (module level), None (the source does not parse)."""
    tree = _parse(source)
    if tree is None:
        return None
    scope = ""
    for prefix, node in _walk_definitions(tree.body, ""):
        if _first_line(node) <= line <= (node.end_lineno or node.lineno):
            if isinstance(node, ast.ClassDef):
                scope = f"{prefix}{node.name}::"
            else:
                return prefix + node.name
    return scope


def imported_modules(source: str, path: str) -> frozenset[str]:
    """Dotted names of every module `source` imports (relative imports resolved against
    `path`); `from pkg import mod` yields both "pkg" and "pkg.mod"."""
    tree = _parse(source)
    if tree is None:
        return frozenset()
    package = list(PurePosixPath(path).parent.parts)
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                modules.add(base)
            modules.update(f"{base}.{a.name}" if base else a.name for a in node.names)
    return frozenset(modules)


def is_module_file(path: str, module: str) -> bool:
    """Whether `path` may be the file of `module` ("src/pkg/mod.py" is "pkg.mod")."""
    stem = module.replace(".", "/")
    return any(path == c or path.endswith("/" + c) for c in (f"{stem}.py", f"{stem}/__init__.py"))


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _walk_definitions(
    body: list[ast.stmt], prefix: str
) -> Iterator[tuple[str, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]]:
    for node in body:
        if isinstance(node, ast.ClassDef):
            yield prefix, node
            yield from _walk_definitions(node.body, f"{prefix}{node.name}::")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix, node


def _first_line(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _names(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            yield child.id
        elif isinstance(child, ast.Attribute):
            yield child.attr
