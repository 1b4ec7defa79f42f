"""The shape of src/greenprec: every exception class in errors.py's drawn tree, no import circle.

Both read the source with ``ast``: nothing of greenprec is imported, so what is checked is the
tree under src/, whichever greenprec is installed.
"""

from __future__ import annotations

import ast
import builtins
import functools
import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "greenprec"

# A line of a drawn tree: "│   " or "    " per level above, then "├── " or "└── ", then the name.
_TREE_LINE = re.compile(r"(?P<levels>(?:│   |    )*)(?P<branch>├── |└── )?(?P<name>[A-Za-z_]\w*)")
_BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


# Parsed once per test process: the four tests read the same 120-odd files, and parsing them is
# most of their time. Nothing here changes src/ while the suite runs.
@functools.cache
def _modules() -> dict[str, tuple[Path, ast.Module]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8")))
    return modules


def exception_classes() -> dict[str, tuple[str, list[str]]]:
    """Every exception class defined in src/greenprec: name -> (module, names of its bases)."""
    classes: dict[str, list[tuple[str, list[str]]]] = {}
    for module, (_, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base).rpartition(".")[2] for base in node.bases]
                classes.setdefault(node.name, []).append((module, bases))
    found: dict[str, tuple[str, list[str]]] = {}
    grew = True
    while grew:
        grew = False
        for name, definitions in classes.items():
            for module, bases in definitions:
                known = _BUILTIN_EXCEPTIONS | set(found)
                if name not in found and any(base in known for base in bases):
                    found[name] = (module, bases)
                    grew = True
    return found


def drawn_tree() -> dict[str, str | None]:
    """The trees drawn in errors.py's docstring: each class -> the class drawn above it."""
    parents: dict[str, str | None] = {}
    lines = (ast.get_docstring(_modules()["greenprec.errors"][1]) or "").splitlines()
    in_tree = False
    stack: list[str] = []
    for line in lines:
        if line.rstrip().endswith("::"):
            in_tree, stack = True, []
            continue
        if in_tree and line and not line.startswith("    "):
            in_tree = False
        if not in_tree or not line.strip():
            continue
        match = _TREE_LINE.match(line[4:])
        if match is None or (match["branch"] is None and match["levels"]):
            continue  # a description carried over to the next line
        depth = len(match["levels"]) // 4 + (1 if match["branch"] else 0)
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def test_every_exception_class_is_in_the_tree_under_its_base() -> None:
    classes = exception_classes()
    drawn = drawn_tree()
    assert {"GreenprecError", "ConfigError", "Terminated", "NewColumnsError"} <= set(classes)
    missing = sorted(
        f"{name} ({module})" for name, (module, _) in classes.items() if name not in drawn
    )
    assert not missing, f"draw these in the tree of src/greenprec/errors.py: {missing}"
    wrong = sorted(
        f"{name} is drawn under {drawn[name]}, but derives from {', '.join(bases)}"
        for name, (_, bases) in classes.items()
        if drawn[name] is not None and drawn[name] not in bases
    )
    assert not wrong, wrong
    stale = sorted(set(drawn) - set(classes) - _BUILTIN_EXCEPTIONS)
    assert not stale, f"the tree draws classes src/ no longer defines: {stale}"


def test_only_requests_to_stop_and_private_control_flow_are_outside_greenprec_error() -> None:
    drawn = drawn_tree()

    def root(name: str) -> str:
        while drawn.get(name) is not None:
            name = drawn[name]  # type: ignore[assignment]
        return name

    outside = {name for name in exception_classes() if root(name) != "GreenprecError"}
    assert outside == {"GreenprecWarning", "Terminated", "Interrupted", "_JobEnding", "_Skip"}


def _imports(module: str, is_package: bool, tree: ast.Module, known: set[str]) -> set[str]:
    """The greenprec modules ``module`` imports when it runs (module or function level; not
    under ``if TYPE_CHECKING:``, and not a package's imports of its own submodules)."""
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    package = module if is_package else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names += [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module and not (is_package and name.startswith(module + ".")):
            found.add(name)
    return found


def _circles(graph: dict[str, set[str]]) -> list[str]:
    circles = []
    for start in sorted(graph):
        # Depth-first from each node, looking for a way back to it.
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for target in sorted(graph.get(node, set())):
                if target == start:
                    circles.append(" -> ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    return circles


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        module: _imports(module, path.name == "__init__.py", tree, known)
        for module, (path, tree) in modules.items()
    }


def test_no_import_circle_between_modules() -> None:
    circles = _circles(_import_graph())
    assert not circles, circles


def test_no_import_circle_between_subpackages() -> None:
    """``greenprec.workloads`` and ``greenprec.precision`` as wholes: a circle through a
    package's ``__init__`` (which imports its submodules) is a circle too."""

    def part(module: str) -> str:
        return ".".join(module.split(".")[:2])

    graph: dict[str, set[str]] = {}
    for module, targets in _import_graph().items():
        graph.setdefault(part(module), set()).update(
            part(target) for target in targets if part(target) != part(module)
        )
    circles = _circles(graph)
    assert not circles, circles
