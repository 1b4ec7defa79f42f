"""Meter options as pydantic models: one per meter, validated the same way whatever the source.

Options arrive as Python values (``RaplMeter(root=...)``, ``meter_options={...}``) or as strings
(``-o KEY=VALUE``, a TOML ``meter_options`` table). Each meter's :class:`MeterOptions` model
turns them into typed values, or into one :class:`~greenprec.errors.ConfigError` line that
names the meter, the option and what it takes; never pydantic's multi-line report.

This module imports pydantic, so it is imported only when options are validated: meters point
at their model by name (``Options = "greenprec.meters.options:RaplOptions"``) because loading
the plugin manager, which every first ``measure()`` does, must not import pydantic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
)
from pydantic.fields import FieldInfo

from greenprec import host
from greenprec.errors import ConfigError

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_REPR_LIMIT = 60

OptionsT = TypeVar("OptionsT", bound="MeterOptions")


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
        cls: type[OptionsT], options: Mapping[str, Any], meter: str | None = None
    ) -> OptionsT:
        """Validate ``options``; any problem is one :class:`ConfigError` line."""
        name = meter or meter_name(cls)
        try:
            return cls.model_validate(dict(options), context={"meter": name})
        except ValidationError as error:
            raise ConfigError(one_line(cls, error, name)) from None


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
    return any(isinstance(item, PythonOnly) for item in field.metadata)


def command_line_options(model: type[BaseModel]) -> list[str]:
    """The options a user can give as ``-o KEY=VALUE``, in declaration order."""
    return [name for name, field in model.model_fields.items() if not is_python_only(field)]


# -- one line per validation error -------------------------------------------------------
def one_line(model: type[BaseModel], error: ValidationError, meter: str) -> str:
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


def _meter(info: ValidationInfo) -> str:
    """The meter being validated: named by :meth:`MeterOptions.parse`, else the model's title
    (a model validated directly, ``RaplOptions(prefer_psys="maybe")``)."""
    context = info.context if isinstance(info.context, dict) else {}
    return str(context.get("meter") or (info.config or {}).get("title") or "meter")


def _who(info: ValidationInfo) -> str:
    """``rapl option prefer_psys``: how a message names the option being validated."""
    return f"{_meter(info)} option {info.field_name}"


# -- reusable field types ------------------------------------------------------------------
def _flag(value: object, info: ValidationInfo) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
    raise ValueError(f"{_who(info)} must be true or false (or 1/0, yes/no), got {value!r}")


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _positive_check(unit: str, allow_zero: bool) -> Callable[[object, ValidationInfo], float]:
    def check(value: object, info: ValidationInfo) -> float:
        number = _number(value)
        in_range = number >= 0 if allow_zero else number > 0
        if not (math.isfinite(number) and in_range):
            bound = "zero or positive" if allow_zero else "positive"
            of_unit = f" of {unit}" if unit else ""
            raise ValueError(f"{_who(info)} must be a {bound} number{of_unit}, got {value!r}")
        return number

    return check


def positive_number(unit: str = "", *, allow_zero: bool = False) -> BeforeValidator:
    """A finite number > 0 (``allow_zero``: >= 0); ``unit`` names it in the message."""
    return BeforeValidator(_positive_check(unit, allow_zero))


def zero_or_positive_number(unit: str = "") -> BeforeValidator:
    """A finite number >= 0; ``unit`` names it in the message."""
    return positive_number(unit, allow_zero=True)


def whole_number(unit: str = "") -> BeforeValidator:
    """A whole number >= 1 (``"200"`` and ``200.0`` included)."""

    def check(value: object, info: ValidationInfo) -> int:
        number = _number(value)
        if not math.isfinite(number) or number < 1 or number != int(number):
            of_unit = f" of {unit}" if unit else ""
            raise ValueError(f"{_who(info)} must be a whole number{of_unit} >= 1, got {value!r}")
        return int(number)

    return BeforeValidator(check)


def path(what: str = "a path") -> BeforeValidator:
    """A non-empty path (``str`` or ``os.PathLike``), kept as ``str``; ``what`` says which."""

    def check(value: object, info: ValidationInfo) -> str:
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
        if not isinstance(text, str) or not text:
            raise ValueError(f"{_who(info)} must be {what}, got {value!r}")
        return text

    return BeforeValidator(check)


def callable_for_tests(what: str) -> BeforeValidator:
    """A callable that tests inject; ``what`` describes it (``a callable (path -> text)``)."""

    def check(value: object, info: ValidationInfo) -> object:
        if not callable(value):
            raise ValueError(
                f"{_who(info)} must be {what}, got {value!r}; "
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


# -- the built-in meters' options ----------------------------------------------------------
class RaplOptions(MeterOptions):
    """Options of the ``rapl`` meter (:class:`~greenprec.meters.rapl.RaplMeter`): Intel/AMD
    RAPL counters read from powercap sysfs. ``reader`` and ``clock`` are for tests only."""

    model_config = ConfigDict(title="rapl")

    root: Annotated[str, path("a directory path such as /sys/class/powercap")] = Field(
        "/sys/class/powercap",
        description="where the powercap zones are (a mounted host sysfs, a test tree)",
    )
    prefer_psys: Flag = Field(False, description="count psys alone instead of packages + DRAM")
    reader: Annotated[
        Callable[[str], str] | None, callable_for_tests("a callable (path -> text)"), PYTHON_ONLY
    ] = Field(None, description="reads one sysfs file (tests use it to simulate failures)")
    clock: Annotated[
        Callable[[], float] | None, callable_for_tests("a callable returning seconds"), PYTHON_ONLY
    ] = Field(None, description="monotonic seconds stamped on each counter read (tests)")


def _devices(value: object, info: ValidationInfo) -> list[int] | None:
    """NVML indices from ``"0,2"``, ``3`` or ``[1, 0]``; duplicates dropped, order kept."""
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
                f"{_who(info)} must be comma-separated GPU indices as NVML (nvidia-smi) "
                f"numbers them, e.g. devices=0,1; got {value!r}"
            )
        if int(str(item)) not in parsed:
            parsed.append(int(str(item)))
    if not parsed:
        raise ValueError(f"{_who(info)} is empty; name at least one GPU index")
    return parsed


class NvmlOptions(MeterOptions):
    """Options of the ``nvml`` meter (:class:`~greenprec.meters.nvml.NvmlMeter`): NVIDIA GPUs
    through NVML."""

    model_config = ConfigDict(title="nvml")

    devices: Annotated[list[int] | None, BeforeValidator(_devices)] = Field(
        None,
        description="NVML indices, comma-separated (0,2); default: CUDA_VISIBLE_DEVICES, else all",
    )


def _counter_range(value: object) -> float | dict[str, float] | None:
    # The CSV reader owns the syntax (it is also `greenprec import --counter-range-j`); its
    # ConfigError is a ValueError, so pydantic reports its message as the validator's own.
    from greenprec.formats.energibridge_csv import check_counter_range

    return check_counter_range(value)  # type: ignore[arg-type]


class EnergiBridgeOptions(MeterOptions):
    """Options of the ``energibridge`` meter
    (:class:`~greenprec.meters.energibridge.EnergiBridgeMeter`): EnergiBridge run as a
    subprocess for the block, its CSV read when the block ends."""

    model_config = ConfigDict(title="energibridge")

    executable: Annotated[str, path("a path or a command name")] | None = Field(
        None,
        description="the EnergiBridge binary; default: $GREENPREC_ENERGIBRIDGE, else PATH",
    )
    gpu: Flag = Field(False, description="pass -g: add NVIDIA GPU power (counted)")
    keep_csv: Annotated[str, path("a file path")] | None = Field(
        None, description="copy EnergiBridge's raw CSV there when the block ends"
    )
    interval_ms: Annotated[int, whole_number("milliseconds")] = Field(
        200, description="EnergiBridge's sampling interval (its own default)"
    )
    counter_range_j: Annotated[float | dict[str, float] | None, BeforeValidator(_counter_range)] = (
        Field(
            None,
            description="counter wrap range in joules: a number, or COLUMN=J,COLUMN=J",
        )
    )
    stop_timeout_s: Annotated[float, positive_number("seconds")] = Field(
        5.0, description="how long to wait for EnergiBridge to exit after SIGINT"
    )
    start_timeout_s: Annotated[float, positive_number("seconds")] = Field(
        15.0, description="how long to wait for its first row"
    )


def _idle_fraction(value: object, info: ValidationInfo) -> float:
    number = _positive_check("", True)(value, info)
    if number > 1:
        raise ValueError(f"idle_fraction must be between 0 and 1, got {value!r}")
    return number


def _pid(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        raise ValueError(f"estimate: no process with pid {value!r}") from None


def _cpuinfo(value: object, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        raise ValueError(
            f"{_who(info)} must be a readable cpuinfo file such as {host.CPUINFO}, got {value!r}"
        )
    return os.fspath(value)


class EstimateOptions(MeterOptions):
    """Options of the ``estimate`` meter (:class:`~greenprec.meters.estimate.EstimateMeter`):
    a TDP model over the CPU time of a process tree, estimated, never counted."""

    model_config = ConfigDict(title="estimate")

    tdp_w: Annotated[float, positive_number("watts")] | None = Field(
        None,
        description="TDP of this machine's logical CPUs together, in watts; default: the table",
    )
    idle_fraction: Annotated[float, BeforeValidator(_idle_fraction)] = Field(
        0.1, description="idle share of TDP, 0..1, charged for the block's wall time"
    )
    pid: Annotated[int | None, BeforeValidator(_pid)] = Field(
        None, description="root of the process tree to follow; default: this process"
    )
    cpuinfo: Annotated[str | None, BeforeValidator(_cpuinfo)] = Field(
        None, description="the cpuinfo file for the CPU model and logical CPU count"
    )


def _power(value: object, info: ValidationInfo) -> float | Callable[[float], float]:
    if callable(value):
        return value
    who = f"{_meter(info)} {info.field_name}"  # "mock power_w", as this meter always said
    try:
        watts = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{who} must be a number of watts, got {value!r}") from None
    if not watts >= 0 or math.isinf(watts):
        raise ValueError(f"{who} must be finite and >= 0, got {value!r}")
    return watts


class MockOptions(MeterOptions):
    """Options of the ``mock`` meter (:class:`~greenprec.meters.mock.MockMeter`): made-up
    power for tests and examples."""

    model_config = ConfigDict(title="mock")

    power_w: Annotated[float | Callable[[float], float], BeforeValidator(_power)] = Field(
        100.0, description="constant watts, or (from Python) a callable power(t_s) -> watts"
    )
    domain: str = Field("mock/cpu", description="the domain name reported")
