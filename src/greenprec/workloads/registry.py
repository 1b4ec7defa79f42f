"""Finding workloads: built-in plugins, third-party plugins, entry points, ``module:function``."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from greenprec.errors import ConfigError, GreenprecWarning

ENTRY_POINT_GROUP = "greenprec.workloads"

workload_errors: dict[str, str] = {}
"""Workload sources that failed to load: source -> error (shown by ``greenprec workloads``)."""
_reported: set[str] = set()


@dataclass(frozen=True)
class WorkloadInfo:
    """A registered workload: its name, a one-line description, and where it came from."""

    name: str
    description: str
    source: str
    function: Callable[..., Any]

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "description": self.description, "source": self.source}


def describe_workload(function: Callable[..., Any]) -> str:
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
    from greenprec.plugins import DEFAULT_PLUGINS, call_each

    found: dict[str, WorkloadInfo] = {}
    # Built-ins first, so a plugin cannot silently replace a workload the study defined.
    results = sorted(
        call_each("greenprec_workloads"), key=lambda item: item[0] not in DEFAULT_PLUGINS
    )
    for plugin, contributed in results:
        if not isinstance(contributed, dict):
            _report(f"plugin {plugin!r}", "returned no dict from greenprec_workloads")
            continue
        for name, function in contributed.items():
            if not callable(function):
                _report(f"{name!r} from plugin {plugin!r}", "is not callable")
            elif name in found:
                _report(f"{name!r} from plugin {plugin!r}", f"clashes with {found[name].source}")
            else:
                found[name] = WorkloadInfo(name, describe_workload(function), plugin, function)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in found:
            source = f"{entry_point.name!r} (entry point {entry_point.value})"
            _report(source, f"clashes with {found[entry_point.name].source}")
            continue
        source = f"entry point {entry_point.value}"
        try:
            function = entry_point.load()
        except Exception as error:  # one broken package must not hide the other workloads
            _report(f"{entry_point.name!r} ({source})", f"failed to load ({error})")
            continue
        if not callable(function):
            _report(f"{entry_point.name!r} ({source})", "is not callable")
            continue
        found[entry_point.name] = WorkloadInfo(
            entry_point.name, describe_workload(function), source, function
        )
    return dict(sorted(found.items()))


def load_path(path: str) -> Callable[..., Any]:
    """Import ``module.path:function`` (the function may be ``Class.method``)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"workload {path!r} must look like module.path:function")
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


def get_workload(workload: str | Callable[..., Any]) -> Callable[..., Any]:
    """The callable for a registered name, a ``module:function`` path, or a callable."""
    if callable(workload):
        return workload
    if not isinstance(workload, str):
        raise ConfigError(f"a workload is a name or a callable, got {workload!r}")
    if ":" in workload:
        return load_path(workload)
    registered = available_workloads()
    try:
        return registered[workload].function
    except KeyError:
        raise ConfigError(
            f"unknown workload {workload!r}; choose one of: {', '.join(registered)} "
            "(or give module.path:function)"
        ) from None
