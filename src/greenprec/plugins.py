"""The one plugin manager: built-in meters and third-party plugins register the same way."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import TypeVar, cast

import pluggy

from greenprec import hookspecs
from greenprec.errors import GreenprecWarning

__all__ = [
    "BUILTIN_WORKLOAD_PLUGINS",
    "collect",
    "get_plugin_manager",
    "plugin_errors",
    "register",
    "reset",
    "unregister",
]

_ENTRY_POINT_GROUP = "greenprec"

_T = TypeVar("_T")

# Built-in plugins are modules with hookimpls, registered exactly like third-party ones.
_BUILTIN_METER_PLUGINS = (
    "greenprec.meters.rapl",
    "greenprec.meters.nvml",
    "greenprec.meters.amdsmi",
    "greenprec.meters.energibridge",
    "greenprec.meters.apple",
    "greenprec.meters.estimate",
    "greenprec.meters.mock",
    # The test kit's meter with a known power per configuration: only used when named.
    "greenprec.testing.scripted_meter",
)
"""Registered when the plugin manager is made: measuring needs them, and nothing more."""

BUILTIN_WORKLOAD_PLUGINS = (
    "greenprec.workloads.digits",
    "greenprec.workloads.cifar10",
    "greenprec.workloads.digits_torch",
    "greenprec.workloads.cifar10_torch",
)
"""Registered only when workloads are asked for (``get_plugin_manager(workloads=True)``), so
``measure()`` imports no workload module."""

_DEFAULT_PLUGINS = _BUILTIN_METER_PLUGINS + BUILTIN_WORKLOAD_PLUGINS
"""Every built-in plugin; they claim names before any third-party plugin."""

_TRACE_VARIABLE = "GREENPREC_TRACE_PLUGINS"
"""Set to 1 to log every hook call (plugin, arguments, result) on stderr, as datasette does."""

_COLLECTING_HOOKS = frozenset({"greenprec_meters", "greenprec_workloads"})
"""Hooks that contribute named things: through ``pm.hook`` each result comes back as a
``(plugin name, value)`` pair, so :func:`collect` can say which plugin claimed a name."""

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


def _isolated(
    hook_name: str, plugin_name: str, function: Callable[..., object]
) -> Callable[..., object]:
    """``function`` made safe to call among others: one raising is reported once and skipped.

    Results of a :data:`_COLLECTING_HOOKS` hook come back tagged with the plugin's name.
    """
    tag = hook_name in _COLLECTING_HOOKS

    @functools.wraps(function)
    def call(*args: object) -> object:
        try:
            result = function(*args)
        except Exception as error:  # a plugin's bug must not stop the other plugins
            _report(plugin_name, f"raised in {hook_name} ({type(error).__name__}: {error})")
            return None
        if tag and result is not None:
            return (plugin_name, result)
        return result

    return call


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, with every hook implementation isolated when it is registered."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        if registered is None:
            return None
        for caller in self.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    wrapped = _isolated(caller.name, impl.plugin_name, impl.function)
                    object.__setattr__(impl, "function", wrapped)  # HookImpl.function is Final
        return registered


def get_plugin_manager(*, workloads: bool = False) -> pluggy.PluginManager:
    """Return the process-wide plugin manager, loading built-ins and entry points on first use.

    Call hooks through it as ``get_plugin_manager().hook.NAME(...)``: pluggy calls the
    implementations (``tryfirst`` ones first, then the most recently registered first,
    ``trylast`` ones last); one that raises is reported once and skipped. The built-in meter
    plugins are registered at once; the built-in workload plugins only with ``workloads=True``
    (as ``available_workloads()`` asks), so measuring imports no workload module.
    """
    global _manager
    with _lock:
        manager = _manager
        if manager is None:
            manager = _PluginManager("greenprec")
            manager.add_hookspecs(hookspecs)
            if _tracing():
                _trace(manager)
            _register_modules(manager, _BUILTIN_METER_PLUGINS)
            _load_entry_points(manager)
            _manager = manager
        if workloads:
            _register_modules(manager, BUILTIN_WORKLOAD_PLUGINS)
        return manager


def _register_modules(manager: pluggy.PluginManager, names: Sequence[str]) -> None:
    for module_name in names:
        if manager.get_plugin(module_name) is None:
            manager.register(importlib.import_module(module_name), name=module_name)


def collect(
    results: Iterable[tuple[str, Iterable[tuple[str, _T]]]],
    kind: str,
    on_clash: Callable[[str, str], None] | None = None,
) -> dict[str, tuple[str, _T]]:
    """Names claimed by plugins -> ``(plugin name, value)``: the one registry rule.

    ``results`` are ``(plugin name, claims)`` pairs, as ``pm.hook`` returns them for a
    :data:`_COLLECTING_HOOKS` hook (each plugin's claims turned into ``(name, value)`` pairs).
    Built-in plugins claim first, then the others in pluggy's call order; the first claim
    keeps a name, and a later claim of it (by another value: the same value claimed twice is
    no clash) is skipped and reported once, naming both plugins, as
    ``on_clash("'name' from plugin 'p'", "clashes with q")`` (default: a ``GreenprecWarning``
    "<kind> 'name' from plugin 'p' clashes with q; skipped").
    """
    report = on_clash or functools.partial(_warn_clash, kind)
    found: dict[str, tuple[str, _T]] = {}
    ordered = sorted(results, key=lambda item: item[0] not in _DEFAULT_PLUGINS)
    for plugin, claims in ordered:
        for name, value in claims:
            if name not in found:
                found[name] = (plugin, value)
            elif found[name][1] is not value:
                report(f"{name!r} from plugin {plugin!r}", f"clashes with {found[name][0]}")
    return found


_clash_errors: dict[str, str] = {}
"""Names claimed twice, ``"<kind> 'name' from plugin 'p'"`` -> the problem (warned once)."""


def _warn_clash(kind: str, source: str, problem: str) -> None:
    key = f"{kind} {source}"
    if key in _clash_errors:
        return
    _clash_errors[key] = problem
    warnings.warn(f"{key} {problem}; skipped", GreenprecWarning, stacklevel=4)


def _tracing() -> bool:
    return os.environ.get(_TRACE_VARIABLE, "") not in ("", "0")


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
    """Log every hook call once, through pluggy's own monitoring (as datasette does)."""

    def before(
        hook_name: str, hook_impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]
    ) -> None:
        plugins = ", ".join(impl.plugin_name for impl in reversed(hook_impls))
        _trace_line(f"{hook_name} called on [{plugins}]")

    def after(
        outcome: pluggy.Result[object],
        hook_name: str,
        hook_impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, object],
    ) -> None:
        error = outcome.exception
        if error is not None:
            _trace_line(f"{hook_name} raised {type(error).__name__}")
            return
        result = outcome.get_result()
        if hook_name in _COLLECTING_HOOKS:
            # _isolated tagged each result of these hooks with its plugin's name.
            for plugin, value in cast("list[tuple[str, object]]", result):
                _trace_line(f"{hook_name} -> {plugin}: {_summary(value)}")
        else:
            _trace_line(f"{hook_name} returned {_summary(result)}")

    manager.add_hookcall_monitoring(before, after)


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    for entry_point in entry_points(group=_ENTRY_POINT_GROUP):
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


def reset() -> None:
    """Forget the plugin manager (tests use this after installing a plugin)."""
    global _manager
    with _lock:
        _manager = None
        _reported.clear()
        plugin_errors.clear()
        _clash_errors.clear()
