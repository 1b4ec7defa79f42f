"""The one plugin manager: built-in meters and third-party plugins register the same way."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

import pluggy

from greenprec import hookspecs
from greenprec.errors import GreenprecWarning

ENTRY_POINT_GROUP = "greenprec"

# Built-in plugins are modules with hookimpls, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "greenprec.meters.rapl",
    "greenprec.meters.nvml",
    "greenprec.meters.energibridge",
    "greenprec.meters.estimate",
    "greenprec.meters.mock",
    "greenprec.workloads.digits",
    "greenprec.workloads.cifar10",
    "greenprec.workloads.digits_torch",
    "greenprec.workloads.cifar10_torch",
)

TRACE_VARIABLE = "GREENPREC_TRACE_PLUGINS"
"""Set to 1 to log every hook call (plugin, arguments, result) on stderr, as datasette does."""

_lock = threading.RLock()
_manager: pluggy.PluginManager | None = None
_reported: set[str] = set()
plugin_errors: dict[str, str] = {}
"""Plugins that failed to load or raised in a hook (name -> problem), for ``greenprec meters``."""


def _report(plugin: str, problem: str) -> None:
    """Warn once per plugin; the other plugins keep working."""
    plugin_errors.setdefault(plugin, problem)
    if plugin in _reported:
        return
    _reported.add(plugin)
    warnings.warn(f"plugin {plugin!r} {problem}; it is skipped", GreenprecWarning, stacklevel=3)


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading built-ins and entry points on first use."""
    global _manager
    with _lock:
        if _manager is None:
            manager = pluggy.PluginManager("greenprec")
            manager.add_hookspecs(hookspecs)
            for module_name in DEFAULT_PLUGINS:
                manager.register(importlib.import_module(module_name), name=module_name)
            _load_entry_points(manager)
            if _tracing():
                _trace(manager)
            _manager = manager
        return _manager


def _tracing() -> bool:
    return os.environ.get(TRACE_VARIABLE, "") not in ("", "0")


def _trace_line(text: str) -> None:
    print(f"greenprec: hook {text}", file=sys.stderr, flush=True)


def _summary(result: object) -> str:
    if result is None:
        return "None"
    if isinstance(result, (list, tuple, dict)):
        names = [getattr(item, "name", None) or str(item) for item in result]
        return f"{type(result).__name__} of {len(names)}: {', '.join(map(str, names))[:120]}"
    return type(result).__name__


def _trace(manager: pluggy.PluginManager) -> None:
    """Log hook calls made through pluggy itself (``manager.hook.NAME(...)``) too."""

    def before(hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        plugins = ", ".join(impl.plugin_name for impl in hook_impls)
        _trace_line(f"{hook_name} called on [{plugins}]")

    def after(
        outcome: Any, hook_name: str, hook_impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        error = outcome.exception
        done = f"raised {type(error).__name__}" if error else _summary(outcome.get_result())
        _trace_line(f"{hook_name} returned {done}")

    manager.add_hookcall_monitoring(before, after)


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as error:  # a broken plugin must not break the others
            _report(entry_point.name, f"failed to load ({type(error).__name__}: {error})")


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (a module or instance with hookimpls) at run time."""
    get_plugin_manager().register(plugin, name=name)


def unregister(name: str) -> None:
    """Remove a plugin registered under ``name``."""
    manager = get_plugin_manager()
    plugin = manager.get_plugin(name)
    if plugin is not None:
        manager.unregister(plugin)


def call_each(hook_name: str, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call every implementation of a hook on its own, so one raising does not stop the rest."""
    manager = get_plugin_manager()
    caller: Any = getattr(manager.hook, hook_name)
    results: list[tuple[str, Any]] = []
    trace = _tracing()
    for impl in reversed(caller.get_hookimpls()):
        function: Callable[..., Any] = impl.function
        try:
            result = function(**{arg: kwargs[arg] for arg in impl.argnames})
        except Exception as error:
            if trace:
                _trace_line(f"{hook_name} -> {impl.plugin_name}: raised {type(error).__name__}")
            _report(impl.plugin_name, f"raised in {hook_name} ({type(error).__name__}: {error})")
            continue
        if trace:
            _trace_line(f"{hook_name} -> {impl.plugin_name}: {_summary(result)}")
        if result is not None:
            results.append((impl.plugin_name, result))
    return results


def reset() -> None:
    """Forget the plugin manager (tests use this after installing a plugin)."""
    global _manager
    with _lock:
        _manager = None
        _reported.clear()
        plugin_errors.clear()
