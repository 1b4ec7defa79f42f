"""Finding workloads: one way to register (the ``greenprec_workloads`` hook), plus paths.

A workload is registered by a plugin implementing ``greenprec_workloads``, loaded from the
``greenprec`` entry-point group like every plugin (the built-ins are registered the same way),
or named by path, ``module.path:function``, for scripts. greenprec 0.1 also read an entry-point
group of its own, ``greenprec.workloads``; it is no longer read, and a package still using it
gets a warning that says how to move (never a workload that silently disappears).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from greenprec.errors import ConfigError, GreenprecWarning

__all__ = [
    "LEGACY_ENTRY_POINT_GROUP",
    "WorkloadInfo",
    "available_workloads",
    "get_workload",
    "workload_errors",
]

LEGACY_ENTRY_POINT_GROUP = "greenprec.workloads"
"""greenprec 0.1's own entry-point group for workloads: warned about, not read."""

workload_errors: dict[str, str] = {}
"""Workload sources that failed to load: source -> error (shown by ``greenprec workloads``)."""
_reported: set[str] = set()


@dataclass(frozen=True)
class WorkloadInfo:
    """A registered workload: its name, a one-line description, and where it came from."""

    name: str
    description: str
    source: str
    function: Callable[..., object]

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "description": self.description, "source": self.source}


def _describe_workload(function: Callable[..., object]) -> str:
    """The ``description`` attribute, else the first line of the docstring."""
    description = getattr(function, "description", None)
    if isinstance(description, str) and description.strip():
        return description.strip().splitlines()[0]
    doc = (getattr(function, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _report(source: str, problem: str) -> None:
    workload_errors.setdefault(source, problem)
    if source not in _reported:
        _reported.add(source)
        warnings.warn(f"workload {source} {problem}; skipped", GreenprecWarning, stacklevel=4)


def available_workloads() -> dict[str, WorkloadInfo]:
    """Every workload by name, sorted: hook implementations first, then entry points.

    The first source to claim a name keeps it; built-ins are registered first.
    """
    from greenprec.plugins import collect, get_plugin_manager

    claims: list[tuple[str, list[tuple[str, Callable[..., object]]]]] = []
    for plugin, contributed in get_plugin_manager(workloads=True).hook.greenprec_workloads():
        if not isinstance(contributed, dict):
            _report(f"plugin {plugin!r}", "returned no dict from greenprec_workloads")
            continue
        valid = []
        for name, function in contributed.items():
            if callable(function):
                valid.append((name, function))
            else:
                _report(f"{name!r} from plugin {plugin!r}", "is not callable")
        claims.append((plugin, valid))
    # Built-ins claim first, so a plugin cannot silently replace a workload the study defined.
    found = {
        name: WorkloadInfo(name, _describe_workload(function), plugin, function)
        for name, (plugin, function) in collect(claims, "workload", on_clash=_report).items()
    }
    for entry_point in entry_points(group=LEGACY_ENTRY_POINT_GROUP):
        _report(
            f"{entry_point.name!r} (entry point {entry_point.value})",
            f"is in the {LEGACY_ENTRY_POINT_GROUP!r} entry-point group, which greenprec no "
            "longer reads; register it with a greenprec_workloads hook in a module of the "
            "'greenprec' group (see docs/workloads.md)",
        )
    return dict(sorted(found.items()))


def _load_path(path: str) -> Callable[..., object]:
    """Import ``module.path:function`` (the function may be ``Class.method``)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"workload {path!r} must look like module.path:function")
    # As `python -m` and pytest do: a script's own module in the current directory imports.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"workload {path!r}: cannot import {module_name!r} ({error})") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"workload {path!r}: module {module_name!r} has no {attribute!r}"
            ) from None
    if not callable(target):
        raise ConfigError(f"workload {path!r} is a {type(target).__name__}, not a callable")
    return target  # type: ignore[no-any-return]


def get_workload(workload: str | Callable[..., object]) -> Callable[..., object]:
    """The callable for a registered name, a ``module:function`` path, or a callable."""
    if callable(workload):
        return workload
    if not isinstance(workload, str):
        raise ConfigError(f"a workload is a name or a callable, got {workload!r}")
    if ":" in workload:
        return _load_path(workload)
    registered = available_workloads()
    try:
        return registered[workload].function
    except KeyError:
        raise ConfigError(
            f"unknown workload {workload!r}; choose one of: {', '.join(registered)} "
            "(or give module.path:function)"
        ) from None
