"""Finding meters by name and choosing them for ``meter="auto"``.

Every meter's options go one way: through its model (:meth:`Meter.options_model`, made from the
``__init__`` keywords of a meter that declares none), which says what the meter accepts, what
``greenprec meters`` lists and how a bad option reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from greenprec.errors import ConfigError, MeterError, MeterUnavailable, warn_at_caller
from greenprec.meters.base import Meter, Probe
from greenprec.plugins import collect, get_plugin_manager

__all__ = [
    "OptionDoc",
    "accepted_options",
    "create",
    "get_meter_class",
    "meter_classes",
    "option_docs",
    "options_for",
    "probe",
    "resolve",
]

_FALLBACK_METER = "estimate"


def meter_classes() -> dict[str, type[Meter]]:
    """Every registered meter class by name, built-ins and plugins alike.

    Built-ins keep their names; a plugin's class claiming a taken name is skipped with a
    warning naming both plugins (:func:`greenprec.plugins.collect`).
    """
    results = get_plugin_manager().hook.greenprec_meters()
    claims = [
        (plugin, [(cls.name, cls) for cls in classes if _is_meter_class(cls)])
        for plugin, classes in results
    ]
    return {name: cls for name, (_plugin, cls) in collect(claims, "meter").items()}


def _is_meter_class(cls: object) -> bool:
    return isinstance(cls, type) and issubclass(cls, Meter) and bool(cls.name)


def get_meter_class(name: str) -> type[Meter]:
    classes = meter_classes()
    try:
        return classes[name]
    except KeyError:
        known = ", ".join(sorted(classes))
        raise ConfigError(
            f"unknown meter {name!r}; choose one of: {known} (see `greenprec meters`)"
        ) from None


def probe(cls: type[Meter], options: Mapping[str, object] | None = None) -> Probe:
    """Probe a meter, turning an unexpected exception into an unavailable reason."""
    given = dict(options or {})
    _check_init_keywords(cls, given)  # bad options are the user's to fix: ConfigError propagates
    try:
        return cls.probe(**given)
    except ConfigError:
        raise  # bad options are the user's to fix, not a property of this machine
    except TypeError as error:
        return Probe(False, f"bad option for meter {cls.name!r}: {error}")
    except Exception as error:
        return Probe(False, f"probe failed: {type(error).__name__}: {error}")
    except (SystemExit, GeneratorExit) as error:
        # A plugin's exit() would otherwise end `greenprec measure` with the plugin's code, read
        # as the command's. KeyboardInterrupt is left alone: probe runs on the main thread,
        # where a real Ctrl-C arrives.
        return Probe(False, f"probe raised {type(error).__name__}({error})")


def create(cls: type[Meter], options: Mapping[str, object] | None = None) -> Meter:
    """A meter instance with ``options``; a bad option is one :class:`ConfigError` line."""
    given = dict(options or {})
    _check_init_keywords(cls, given)
    try:
        return cls(**given)
    except TypeError as error:
        raise ConfigError(f"bad option for meter {cls.name!r}: {error}") from None
    except (SystemExit, GeneratorExit) as error:  # as in probe(): never the command's exit
        raise MeterError(
            f"meter {cls.name!r} raised {type(error).__name__}({error}) as it was created"
        ) from None


def _check_init_keywords(cls: type[Meter], options: Mapping[str, object]) -> None:
    """Check a model-less meter's options through the model made from its ``__init__``.

    A meter with ``Options`` validates in :meth:`Meter.__init__` and its default probe; one
    without takes its keywords in its own ``__init__`` and checks nothing, so its model checks
    them here: a misspelt or missing option is then the same line as for every other meter.
    """
    if cls.Options is None:
        cls.parse_options(options)


def options_for(
    cls: type[Meter], options: Mapping[str, object] | None, *, strict: bool = False
) -> dict[str, object]:
    """Pick a meter's options: keys may be plain (``root``) or scoped (``rapl.root``).

    With several meters (``strict=False``), plain keys go to every meter that accepts them,
    so one ``-o`` dict can serve ``auto``; a lone meter gets them all and rejects the unknown.
    Scoped keys always reach their meter, so a misspelt ``rapl.colour`` is refused.
    """
    chosen: dict[str, object] = {}
    accepted = None if strict else accepted_options(cls)
    for key, value in (options or {}).items():
        meter_name, dot, option = key.partition(".")
        if dot and meter_name == cls.name:
            chosen[option] = value
        elif not dot and (accepted is None or key in accepted):
            chosen[key] = value
    return chosen


def accepted_options(cls: type[Meter]) -> frozenset[str] | None:
    """The option names a meter's model takes; None: it takes any (``extra="allow"``, as the
    model of an ``__init__`` taking ``**options`` does)."""
    model = cls.options_model()
    if model.model_config.get("extra") == "allow":
        return None
    return frozenset(model.model_fields)


@dataclass(frozen=True)
class OptionDoc:
    """One option of a meter, for ``greenprec meters``: its name, default and meaning."""

    name: str
    default: str | int | float | bool | None
    """The default as JSON can hold it; any other value as its ``repr``."""
    description: str
    python_only: bool = False
    """A Python object (a callable for tests) that ``-o`` and TOML cannot give."""


def option_docs(cls: type[Meter]) -> list[OptionDoc]:
    """A meter's options from its model, in declaration order (a required one: default None)."""
    from greenprec.meters.options import is_python_only

    return [
        OptionDoc(
            name,
            None if field.is_required() else _plain(field.get_default(call_default_factory=True)),
            field.description or "",
            is_python_only(field),
        )
        for name, field in cls.options_model().model_fields.items()
    ]


def _plain(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def resolve(
    meter: str | Meter | Sequence[str | Meter], options: Mapping[str, object] | None = None
) -> list[Meter]:
    """Turn ``measure()``'s ``meter`` argument into ready meter instances.

    Named meters that cannot run here raise :class:`MeterUnavailable` with the probe's reason.
    """
    if isinstance(meter, Meter):
        return [meter]
    names = [meter] if isinstance(meter, str) else list(meter)
    if not names:
        raise ConfigError("no meter given; pass a meter name such as 'auto' or 'estimate'")
    if names == ["auto"]:
        return _auto_meters(options)
    meters: list[Meter] = []
    for item in names:
        if isinstance(item, Meter):
            meters.append(item)
            continue
        if item == "auto":
            raise ConfigError("'auto' cannot be combined with other meters; name them instead")
        cls = get_meter_class(item)
        meter_options = options_for(cls, options, strict=len(names) == 1)
        result = probe(cls, meter_options)
        if not result.available:
            raise MeterUnavailable(f"meter {item!r} is unavailable: {result.reason}")
        meters.append(create(cls, meter_options))
    return meters


def _auto_meters(options: Mapping[str, object] | None = None) -> list[Meter]:
    """Every available hardware meter that joins ``auto``, else the estimate with a warning."""
    chosen: list[Meter] = []
    covered: set[str] = set()
    missing: list[str] = []
    candidates = sorted(
        (cls for cls in meter_classes().values() if cls.auto), key=lambda c: (c.auto_order, c.name)
    )
    for cls in candidates:
        if cls.covers & covered:
            continue  # the same hardware is already measured: never count a joule twice
        meter_options = options_for(cls, options)
        try:
            result = probe(cls, meter_options)
        except ConfigError as error:
            result = Probe(False, str(error))
        if not result.available:
            missing.append(f"{cls.name}: {result.reason}")
            continue
        chosen.append(create(cls, meter_options))
        covered |= cls.covers
    if chosen:
        return chosen
    fallback = get_meter_class(_FALLBACK_METER)
    # One short line at the user's own line; each meter's reason and fix are in
    # `greenprec meters` (620 characters of reasons in a warning helped no one).
    names = ", ".join(name.split(":", 1)[0] for name in missing) or "none registered"
    warn_at_caller(
        f"no hardware energy meter here ({names}: unavailable); using the CPU-time estimate, "
        "so figures are estimated. `greenprec meters` says why and how to fix it"
    )
    return [create(fallback, options_for(fallback, options))]
