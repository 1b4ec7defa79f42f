"""The conventions a newcomer relies on to read src/greenprec (issue 21), checked on the source.

* httpx's way of saying what is public: a module whose name has no ``_`` prefix lists its public
  names in ``__all__`` (each one defined there), and what it keeps to itself starts with ``_``.
* Functions a reader can hold in mind: none over 80 lines.
* ``Any`` only at the edges: fewer than 0.2.0 had (a ratchet; lower the numbers as they fall).

Like tests/test_layers.py these read the source with ``ast``: nothing of greenprec is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "greenprec"
LONGEST_FUNCTION_LINES = 80
# 0.2.0 had 93 `dict[str, Any]` and 386 `Any` outside imports (issue 21's count); what is left
# sits at JSON, TOML and framework-object edges.
ANY_BEFORE = 386
DICT_ANY_BEFORE = 93


def _public_modules() -> list[Path]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if any(part.startswith("_") and part != "__init__" for part in parts):
            continue  # a private module (or one inside a private package), and __main__
        modules.append(path)
    return modules


def _name(path: Path) -> str:
    return str(path.relative_to(SRC))


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (including under if/try, as TYPE_CHECKING does)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _dunder_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = node.value
            assert isinstance(value, (ast.List, ast.Tuple)), "__all__ is a literal list"
            return [ast.literal_eval(element) for element in value.elts]
    return None


@pytest.mark.parametrize("path", _public_modules(), ids=_name)
def test_a_public_module_lists_its_public_names_in_all(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    listed = _dunder_all(tree)
    assert listed is not None, f"{_name(path)} has no __all__: list its public names"
    missing = sorted(set(listed) - _bound_names(tree))
    assert not missing, f"{_name(path)}: __all__ names what the module does not define: {missing}"
    assert len(listed) == len(set(listed)), f"{_name(path)}: a name twice in __all__"


def test_no_function_is_longer_than_a_reader_can_hold() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > LONGEST_FUNCTION_LINES:
                    long.append(f"{_name(path)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split into named steps: " + "; ".join(long)


def _count(pattern: str) -> int:
    total = 0
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith(("import ", "from ")):
                continue
            total += len(re.findall(pattern, line))
    return total


def test_fewer_any_than_0_2_0() -> None:
    any_count = _count(r"\bAny\b")
    dict_any_count = _count(r"dict\[str, Any\]")
    assert dict_any_count < DICT_ANY_BEFORE, f"{dict_any_count} `dict[str, Any]` in src"
    assert any_count < ANY_BEFORE, f"{any_count} `Any` in src"
