"""Meter options as pydantic models: one per meter, validated the same way whatever the source.

Options arrive as Python values (``RaplMeter(root=...)``, ``meter_options={...}``) or as strings
(``-o KEY=VALUE``, a TOML ``meter_options`` table). Each meter's :class:`MeterOptions` model
turns them into typed values, or into one :class:`~greenprec.errors.ConfigError` line that
names the meter, the option and what it takes; never pydantic's multi-line report.

This module holds what every meter's model shares: the base class, the field types and the
validators' wording. Each built-in meter keeps its own model beside it, in its package
(``greenprec.meters.rapl.options.RaplOptions``). A meter without a model of its own gets one
made from its ``__init__`` keywords (:func:`options_from_init`), so listing, picking and
checking options is one path for every meter.

This module imports pydantic, so it is imported only when options are validated: meters point
at their model by name (``Options = "greenprec.meters.rapl.options:RaplOptions"``) because
loading the plugin manager, which every first ``measure()`` does, must not import pydantic.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
)
from pydantic.fields import FieldInfo

from greenprec.errors import ConfigError

__all__ = [
    "PYTHON_ONLY",
    "Flag",
    "MeterOptions",
    "PathText",
    "PositiveNumber",
    "PythonOnly",
    "WholeNumber",
    "ZeroOrPositiveNumber",
    "callable_for_tests",
    "command_line_options",
    "device_indices",
    "is_python_only",
    "meter_being_validated",
    "meter_name",
    "option_label",
    "options_from_init",
    "path",
    "positive_number",
    "positive_value",
    "whole_number",
    "zero_or_positive_number",
]

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_REPR_LIMIT = 60

_OptionsT = TypeVar("_OptionsT", bound="MeterOptions")


class MeterOptions(BaseModel):
    """Base of every meter's options model.

    Set the meter's name as the model's title (``model_config = ConfigDict(title="rapl")``):
    the field types below name it in their messages. Options a command line cannot give
    (callables, for tests) carry the :data:`PYTHON_ONLY` marker.
    """

    # Unknown options are refused (a typo must not silently fall back to a default); frozen
    # because a meter's options do not change once it is made; arbitrary types for the
    # Python-only callables (rapl's reader and clock, the mock's power function).
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    @classmethod
    def parse(
        cls: type[_OptionsT], options: Mapping[str, object], meter: str | None = None
    ) -> _OptionsT:
        """Validate ``options``; any problem is one :class:`ConfigError` line."""
        name = meter or meter_name(cls)
        try:
            return cls.model_validate(dict(options), context={"meter": name})
        except ValidationError as error:
            raise ConfigError(_one_line(cls, error, name)) from None


def meter_name(model: type[BaseModel]) -> str:
    """The meter a model belongs to: its title, else the class name."""
    title = model.model_config.get("title")
    return title if isinstance(title, str) and title else model.__name__


@dataclass(frozen=True)
class PythonOnly:
    """Field marker: the option takes a Python object and cannot come from ``-o`` or TOML."""


PYTHON_ONLY = PythonOnly()
"""Put in a field's ``Annotated[...]`` for an option that only Python can give (a callable):
:func:`command_line_options` leaves it out, so ``-o`` and TOML never offer it."""


def is_python_only(field: FieldInfo) -> bool:
    """Whether a field carries the :data:`PYTHON_ONLY` marker."""
    return any(isinstance(item, PythonOnly) for item in field.metadata)


def command_line_options(model: type[BaseModel]) -> list[str]:
    """The options a user can give as ``-o KEY=VALUE``, in declaration order."""
    return [name for name, field in model.model_fields.items() if not is_python_only(field)]


# -- one line per validation error -------------------------------------------------------
def _one_line(model: type[BaseModel], error: ValidationError, meter: str) -> str:
    """The one line a user sees for a failed validation.

    Unknown options come first (a typo explains the rest), then a validator's own message,
    then anything else pydantic found. A union field (``X | None``) reports one error per
    member; the member whose validator wrote a message is the one that explains it.
    """
    problems = error.errors()
    unknown = [str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden" and p["loc"]]
    if unknown:
        takes = command_line_options(model)
        listed = f"it takes: {', '.join(takes)}" if takes else "it takes none"
        names = ", ".join(repr(name) for name in unknown)
        return f"meter {meter!r} takes no option {names} ({listed})"
    for problem in problems:
        cause = (problem.get("ctx") or {}).get("error")
        if problem["type"] == "value_error" and isinstance(cause, Exception):
            return str(cause)
    problem = problems[0]
    option = str(problem["loc"][0]) if problem["loc"] else "options"
    if problem["type"] == "missing":
        return f"meter {meter!r} needs option {option}"
    what = problem["msg"]
    what = (
        "must be " + what[len("Input should be ") :]
        if what.startswith("Input should be ")
        else what
    )
    return f"{meter} option {option} {what}, got {_short(problem.get('input'))}"


def _short(value: object) -> str:
    """A value's repr, cut so that a huge input cannot flood the one line."""
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 1] + "…"


def meter_being_validated(info: ValidationInfo) -> str:
    """The meter being validated, for a validator's message: named by
    :meth:`MeterOptions.parse`, else the model's title (a model validated directly,
    ``RaplOptions(prefer_psys="maybe")``)."""
    context = info.context if isinstance(info.context, dict) else {}
    return str(context.get("meter") or (info.config or {}).get("title") or "meter")


def option_label(info: ValidationInfo) -> str:
    """``rapl option prefer_psys``: how a validator's message names the option it checks."""
    return f"{meter_being_validated(info)} option {info.field_name}"


# -- reusable field types ------------------------------------------------------------------
def _flag(value: object, info: ValidationInfo) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_WORDS:
            return True
        if text in _FALSE_WORDS:
            return False
    raise ValueError(f"{option_label(info)} must be true or false (or 1/0, yes/no), got {value!r}")


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def positive_value(
    value: object, info: ValidationInfo, unit: str = "", *, allow_zero: bool = False
) -> float:
    """``value`` as a finite number > 0 (``allow_zero``: >= 0), else a ValueError naming the
    option and ``unit``: the check behind :func:`positive_number`, for a validator that adds
    its own bound (the estimate's ``idle_fraction`` <= 1)."""
    number = _number(value)
    in_range = number >= 0 if allow_zero else number > 0
    if not (math.isfinite(number) and in_range):
        bound = "zero or positive" if allow_zero else "positive"
        of_unit = f" of {unit}" if unit else ""
        raise ValueError(f"{option_label(info)} must be a {bound} number{of_unit}, got {value!r}")
    return number


def positive_number(unit: str = "", *, allow_zero: bool = False) -> BeforeValidator:
    """A finite number > 0 (``allow_zero``: >= 0); ``unit`` names it in the message."""

    def check(value: object, info: ValidationInfo) -> float:
        return positive_value(value, info, unit, allow_zero=allow_zero)

    return BeforeValidator(check)


def zero_or_positive_number(unit: str = "") -> BeforeValidator:
    """A finite number >= 0; ``unit`` names it in the message."""
    return positive_number(unit, allow_zero=True)


def whole_number(unit: str = "") -> BeforeValidator:
    """A whole number >= 1 (``"200"`` and ``200.0`` included)."""

    def check(value: object, info: ValidationInfo) -> int:
        number = _number(value)
        if not math.isfinite(number) or number < 1 or number != int(number):
            of_unit = f" of {unit}" if unit else ""
            raise ValueError(
                f"{option_label(info)} must be a whole number{of_unit} >= 1, got {value!r}"
            )
        return int(number)

    return BeforeValidator(check)


def path(what: str = "a path") -> BeforeValidator:
    """A non-empty path (``str`` or ``os.PathLike``), kept as ``str``; ``what`` says which."""

    def check(value: object, info: ValidationInfo) -> str:
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        if not isinstance(text, str) or not text:
            raise ValueError(f"{option_label(info)} must be {what}, got {value!r}")
        return text

    return BeforeValidator(check)


def device_indices(numbered_by: str) -> BeforeValidator:
    """GPU indices from ``"0,2"``, ``3`` or ``[1, 0]`` (duplicates dropped, order kept), None
    when not given; ``numbered_by`` names the tool whose numbering they are (``NVML
    (nvidia-smi)``, ``amd-smi``)."""

    def check(value: object, info: ValidationInfo) -> list[int] | None:
        if value is None:
            return None
        items: list[object]
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",")]
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [value]
        elif isinstance(value, Sequence):
            items = list(value)
        else:
            items = [value]
        parsed: list[int] = []
        for item in items:
            if isinstance(item, bool) or not str(item).isdigit():
                raise ValueError(
                    f"{option_label(info)} must be comma-separated GPU indices as "
                    f"{numbered_by} numbers them, e.g. devices=0,1; got {value!r}"
                )
            if int(str(item)) not in parsed:
                parsed.append(int(str(item)))
        if not parsed:
            raise ValueError(f"{option_label(info)} is empty; name at least one GPU index")
        return parsed

    return BeforeValidator(check)


def callable_for_tests(what: str) -> BeforeValidator:
    """A callable that tests inject; ``what`` describes it (``a callable (path -> text)``)."""

    def check(value: object, info: ValidationInfo) -> object:
        if not callable(value):
            raise ValueError(
                f"{option_label(info)} must be {what}, got {value!r}; "
                "it exists for tests and cannot be given on the command line"
            )
        return value

    return BeforeValidator(check)


Flag = Annotated[bool, BeforeValidator(_flag)]
"""true/false, also 1/0, yes/no, on/off in any case (how ``-o`` and TOML strings arrive)."""
PositiveNumber = Annotated[float, positive_number()]
"""A finite number > 0 (:func:`positive_number` with no unit)."""
ZeroOrPositiveNumber = Annotated[float, zero_or_positive_number()]
"""A finite number >= 0 (:func:`zero_or_positive_number` with no unit)."""
WholeNumber = Annotated[int, whole_number()]
"""A whole number >= 1 (:func:`whole_number` with no unit)."""
PathText = Annotated[str, path()]
"""A non-empty path, kept as ``str`` (:func:`path`)."""


# -- a model for a meter that declares none ------------------------------------------------
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_MADE: weakref.WeakKeyDictionary[type, type[MeterOptions]] = weakref.WeakKeyDictionary()
"""The models :func:`options_from_init` made, by meter class (weak: a class a test defines can
go). Two threads making one at once make equal models, so no lock."""


def options_from_init(meter: type, init: Callable[..., None] | None) -> type[MeterOptions]:
    """The options model of a meter without ``Options``, made from its ``__init__`` keywords.

    One field per keyword of ``init`` (any value, passed through unchanged, as the meter
    converts its own; its default, or required without one), titled with the meter's name. An
    ``init`` that takes ``**options`` gives a model that accepts any name; None (the meter keeps
    the base :class:`~greenprec.meters.base.Meter`'s ``__init__``) gives one with no option.
    Made once per class: so every meter, with a model or not, is listed (``greenprec meters``),
    picked (``auto``) and checked (one line per problem) alike. A keyword starting with ``_``
    is the meter's own business, not an option.
    """
    made = _MADE.get(meter)
    if made is None:
        made = _MADE[meter] = _model_from_init(meter, init)
    return made


def _model_from_init(meter: type, init: Callable[..., None] | None) -> type[MeterOptions]:
    # ``meter`` is typed ``type``, not ``type[Meter]``: meters.base imports this module.
    name = str(getattr(meter, "name", meter.__name__))
    parameters = [] if init is None else list(inspect.signature(init).parameters.values())[1:]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    # object: a model-less meter declares no types, so each value reaches it as it was given.
    annotations: dict[str, object] = {}
    namespace: dict[str, object] = {
        "__module__": meter.__module__,
        "__doc__": f"Options of the {name!r} meter: the keywords of its __init__.",
        "model_config": ConfigDict(title=name, extra="allow" if takes_any else "forbid"),
    }
    for parameter in parameters:
        if parameter.kind not in _KEYWORD_KINDS or parameter.name.startswith("_"):
            continue
        annotations[parameter.name] = object
        if parameter.default is not parameter.empty:
            namespace[parameter.name] = parameter.default
    namespace["__annotations__"] = annotations
    with warnings.catch_warnings():
        # A keyword named like a BaseModel method (json, copy) makes pydantic warn that the
        # field shadows it; harmless here, as the values go to __init__, never read as fields.
        warnings.filterwarnings("ignore", r"Field name .* shadows an attribute", UserWarning)
        model = type(f"{meter.__name__}Options", (MeterOptions,), namespace)
    return cast("type[MeterOptions]", model)
