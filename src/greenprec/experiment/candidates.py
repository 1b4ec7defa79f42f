"""The candidates of a recommendation: which configurations ``greenprec recommend`` compares.

A :class:`Candidate` is a precision policy plus workload parameter overrides (``bf16`` with
``batch_size=256``). The policies default to those this hardware runs natively
(:func:`default_policies`, from :mod:`greenprec.precision.support`); ``--vary KEY=V1,V2``
crosses workload parameters with them (:func:`parse_vary`, :func:`candidates`). Everything here
is checked before anything runs, and every refusal is one line that says how to fix it. Neither
TensorFlow nor PyTorch is imported.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from greenprec.errors import ConfigError
from greenprec.precision.policies import POLICIES, resolve_policy
from greenprec.precision.support import SupportReport, emulation_warnings, support
from greenprec.workloads.params import read_param_value

__all__ = [
    "MAX_CANDIDATES",
    "MAX_LABEL_CHARS",
    "QUICK_BATCH_SIZES",
    "RESERVED_KEYS",
    "Candidate",
    "Grid",
    "LeftOut",
    "Overrides",
    "ParamValue",
    "PolicySelection",
    "QuickPlan",
    "candidates",
    "check_workload_accepts",
    "default_policies",
    "parse_vary",
    "parse_vary_value",
    "quick_plan",
]

ParamValue = bool | int | float | str
"""A varied parameter's value: what ``--param KEY=VALUE`` reads (a number, true/false, a word)."""
Overrides = tuple[tuple[str, ParamValue], ...]
"""One point of the grid: ``(("batch_size", 256), ("learning_rate", 0.001))``, in --vary order."""
Grid = tuple[Overrides, ...]
"""The crossed points of every ``--vary``; ``((),)`` when nothing is varied."""

MAX_CANDIDATES = 64
"""Configurations one recommendation compares at most: each needs several runs, so 64 is
already days of training for a real model; more is almost surely a typo in --vary."""
MAX_LABEL_CHARS = 100
"""A label names a folder and a table row: long enough for three varied parameters."""
_MAX_KEY_CHARS = 40
_MAX_VALUE_CHARS = 40

RESERVED_KEYS: dict[str, str] = {
    "epochs": "every run trains until it reaches the target or --max-epochs; set --max-epochs",
}
"""Parameters ``recommend`` sets itself, with the reason and what to use instead."""

QUICK_BATCH_SIZES = (32, 128)
"""The batch sizes ``--quick`` compares when only one policy runs natively: the quick
preset's digits-cnn default (32) and four times it, the larger batch mixed precision is
usually paired with; on the digits data both fit easily in memory."""

# Filesystem-safe and shell-safe: a label names a folder in the results store.
_LABEL = re.compile(r"[A-Za-z0-9_.=-]+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[A-Za-z0-9_.-]+")
_VARY_EXAMPLE = "--vary batch_size=64,256"


def _listed(parts: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- one candidate ---------------------------------------------------------------------------


def _value_text(value: ParamValue) -> str:
    """A value as a label shows it, in the spelling ``--vary`` reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    # repr(1e20) is "1e+20": "+" is not filesystem-safe, and "1e20" reads back the same.
    return repr(value).replace("e+", "e") if isinstance(value, float) else str(value)


def _check_value(key: str, value: object, shown: str | None = None) -> ParamValue:
    """``value`` if it is a plain, finite number, a bool or a filesystem-safe word; ``shown``
    is how the user wrote it, for the error."""
    shown = repr(value) if shown is None else repr(shown)
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"--vary {key}: {shown} is not a finite number")
        return value
    if isinstance(value, str) and _WORD.fullmatch(value) and len(value) <= _MAX_VALUE_CHARS:
        return value
    raise ConfigError(
        f"--vary {key}: {shown} is not a number, true/false or a word (letters, digits, "
        f"'_', '.', '-'; at most {_MAX_VALUE_CHARS} characters)"
    )


def _check_key(key: str) -> None:
    if not _KEY.fullmatch(key) or len(key) > _MAX_KEY_CHARS:
        raise ConfigError(
            f"--vary: {key!r} is not a parameter name (letters, digits and '_', at most "
            f"{_MAX_KEY_CHARS} characters); e.g. {_VARY_EXAMPLE}"
        )
    if key in RESERVED_KEYS:
        raise ConfigError(f"--vary {key}: not varied by recommend: {RESERVED_KEYS[key]}")


@dataclass(frozen=True)
class Candidate:
    """One configuration a recommendation compares: a policy and its parameter overrides."""

    policy: str
    """The canonical policy name (``fp32``, ``tf32``, ``mixed``, ``bf16``)."""
    overrides: Overrides = ()
    """Workload parameters that differ from the experiment's, in --vary order."""

    def __post_init__(self) -> None:
        # Validated here, not only by the parser: a label names a folder, so no Candidate with
        # text that is not filesystem-safe may exist, however it was built.
        if resolve_policy(self.policy).name != self.policy:
            raise ConfigError(
                f"candidate policy {self.policy!r}: use the canonical name "
                f"{resolve_policy(self.policy).name!r}"
            )
        keys = [key for key, _ in self.overrides]
        for key, value in self.overrides:
            _check_key(key)
            _check_value(key, value)
        if len(set(keys)) != len(keys):
            raise ConfigError(f"candidate {self.policy}: a parameter twice in {keys}")
        label = self.label
        if not _LABEL.fullmatch(label):
            raise ConfigError(f"candidate label {label!r} is not filesystem-safe")
        if len(label) > MAX_LABEL_CHARS:
            raise ConfigError(
                f"candidate label {label[:40]!r}... is longer than {MAX_LABEL_CHARS} "
                "characters; vary fewer parameters at once, or shorter values"
            )

    @property
    def label(self) -> str:
        """Filesystem-safe and unique per configuration: ``bf16-batch_size=256``."""
        parts = [self.policy, *(f"{key}={_value_text(value)}" for key, value in self.overrides)]
        return "-".join(parts)

    @property
    def human(self) -> str:
        """For sentences: ``bf16 with batch size 256 and learning rate 0.001``."""
        parts = [f"{key.replace('_', ' ')} {_value_text(v)}" for key, v in self.overrides]
        return f"{self.policy} with {_listed(parts)}" if parts else self.policy

    @property
    def params(self) -> dict[str, ParamValue]:
        """The overrides as a dict, to lay over the experiment's params."""
        return dict(self.overrides)


# --- --vary ----------------------------------------------------------------------------------


def parse_vary_value(key: str, text: str) -> ParamValue:
    """One ``--vary`` value, read as ``--param`` reads one (JSON where it can be: numbers,
    ``true``/``false``; else the word itself); anything else is a one-line ConfigError."""
    text = text.strip()
    if not text:
        raise ConfigError(f"--vary {key}: an empty value; e.g. {_VARY_EXAMPLE}")
    # The same rule as --param, so 1e-3 and true mean the same in both flags.
    value = read_param_value(text)
    if isinstance(value, str) and value != text:
        # '"64"' would be the word 64, whose label reads back as the number 64.
        raise ConfigError(f"--vary {key}: write {text} without quotes")
    return _check_value(key, value, text)


def _parse_one(spec: str) -> tuple[str, list[ParamValue]]:
    key, sep, values = spec.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"malformed --vary {spec!r}; write KEY=V1,V2,..., e.g. {_VARY_EXAMPLE}")
    _check_key(key)
    parsed: list[ParamValue] = []
    # Numbers compare by value (1 and 1.0 are one run); True == 1 in Python, so type too.
    seen: set[tuple[bool, ParamValue]] = set()
    for text in values.split(","):
        value = parse_vary_value(key, text)
        identity = (isinstance(value, bool), value)
        if identity in seen:
            raise ConfigError(
                f"--vary {key}: {text.strip()!r} repeats a value given before; give each once"
            )
        seen.add(identity)
        parsed.append(value)
    return key, parsed


def parse_vary(specs: Iterable[str]) -> Grid:
    """``["batch_size=64,256", "learning_rate=1e-3,3e-3"]`` → the crossed grid of overrides.

    Values read as ``--param`` reads them. A missing ``=``, an empty value, a key or value
    given twice, a value that is not a number/bool/word, ``epochs`` (see :data:`RESERVED_KEYS`)
    or more than :data:`MAX_CANDIDATES` points are one-line ConfigErrors. No specs: ``((),)``.
    """
    axes: dict[str, list[ParamValue]] = {}
    for spec in specs:
        key, values = _parse_one(spec)
        if key in axes:
            raise ConfigError(
                f"--vary {key} is given twice; put all its values in one: --vary {key}=V1,V2"
            )
        axes[key] = values
    size = math.prod(len(values) for values in axes.values())
    if size > MAX_CANDIDATES:
        raise ConfigError(
            f"--vary gives {size} combinations, more than {MAX_CANDIDATES}; vary fewer "
            "parameters or give fewer values"
        )
    keys = list(axes)
    return tuple(
        tuple(zip(keys, point, strict=True)) for point in itertools.product(*axes.values())
    )


# --- policies --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeftOut:
    """A policy not compared by default, and why."""

    policy: str
    reason: str


@dataclass(frozen=True)
class PolicySelection:
    """The policies a recommendation compares, those left out and the warnings to show."""

    chosen: tuple[str, ...]
    left_out: tuple[LeftOut, ...] = ()
    warnings: tuple[str, ...] = ()
    """One line per named policy that is not native here (it runs, slower)."""
    device: str = "cpu"
    """``cpu`` or ``gpu``: the device the verdicts are for."""

    def lines(self) -> list[str]:
        """What to print before anything runs: the warnings, then one line per left-out."""
        return [*self.warnings, *(f"left out {item.reason}" for item in self.left_out)]


def _left_out_reason(report: SupportReport, policy: str) -> str | None:
    """Why ``policy`` is not a default candidate on ``report``'s device; None if it is one."""
    verdict = report.for_policy(policy)
    if verdict is None or verdict.native:
        return None
    device = report.device.upper()
    if policy == "tf32":
        return f"tf32: it has no effect on this {device} ({verdict.reason}) and runs as fp32"
    how = "not accelerated" if verdict.hardware else "emulated"
    return (
        f"{policy}: {verdict.dtype} is {how} on this {device} ({verdict.reason}); name it "
        "to compare it anyway"
    )


def _refusal(report: SupportReport, policy: str) -> str | None:
    """Why ``policy`` cannot be a candidate here at all: TF32 without TF32 hardware is fp32
    under another name, so it would be compared with itself."""
    verdict = report.for_policy(policy)
    if policy == "tf32" and verdict is not None and not verdict.hardware:
        return (
            f"tf32 cannot run on this {report.device.upper()} ({verdict.reason}): it would "
            "be fp32 under another name; leave it out"
        )
    return None


def default_policies(
    framework: str = "tensorflow",
    *,
    named: Sequence[str] | None = None,
    report: SupportReport | None = None,
) -> PolicySelection:
    """The policies to compare on this hardware for ``framework`` (``tensorflow``/``keras``
    or ``torch``/``pytorch``).

    Without ``named``: fp32 and every policy the device runs natively; the others are left
    out with the reason. ``named`` policies (any alias) are all compared, an emulated one with
    a warning; one the hardware cannot run at all (tf32 without TF32) and one named twice are
    ConfigErrors. ``report`` replaces :func:`~greenprec.precision.support` (tests, what-ifs).
    """
    report = support(framework=framework) if report is None else report
    if not named:
        chosen: list[str] = []
        left_out: list[LeftOut] = []
        for policy in POLICIES:
            reason = _left_out_reason(report, policy)
            if reason is None:
                chosen.append(policy)
            else:
                left_out.append(LeftOut(policy, reason))
        return PolicySelection(tuple(chosen), tuple(left_out), device=report.device)
    names = [resolve_policy(name).name for name in named]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"policy named twice: {', '.join(twice)}; name each once")
    for name in names:
        refusal = _refusal(report, name)
        if refusal is not None:
            raise ConfigError(refusal)
    warnings = emulation_warnings(names, report)
    return PolicySelection(tuple(names), warnings=tuple(warnings), device=report.device)


# --- candidates ------------------------------------------------------------------------------


def candidates(
    policies: Sequence[str] | PolicySelection, grid: Grid = ((),)
) -> tuple[Candidate, ...]:
    """Every policy crossed with every grid point, policies first (``fp32-batch_size=64``,
    ``fp32-batch_size=256``, ``bf16-batch_size=64``...). A policy or point given twice, none
    at all, or more than :data:`MAX_CANDIDATES` configurations are ConfigErrors."""
    names = policies.chosen if isinstance(policies, PolicySelection) else policies
    if not names:
        raise ConfigError("no precision policy to compare; name at least one, e.g. fp32")
    if not grid:
        raise ConfigError(f"no parameter combination to compare; e.g. {_VARY_EXAMPLE}")
    total = len(names) * len(grid)
    if total > MAX_CANDIDATES:
        raise ConfigError(
            f"{len(names)} policies x {len(grid)} parameter combinations = {total} "
            f"configurations, more than {MAX_CANDIDATES}; compare fewer policies or vary less"
        )
    built = tuple(Candidate(resolve_policy(name).name, point) for name in names for point in grid)
    labels = [candidate.label for candidate in built]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise ConfigError(f"configuration given twice: {', '.join(twice)}; give each once")
    return built


def check_workload_accepts(
    workload: str | Callable[..., object],
    chosen: Sequence[Candidate],
    params: Mapping[str, object] | None = None,
) -> bool:
    """Before anything runs: the workload accepts every candidate's parameters, laid over
    ``params`` (the experiment's). A bad key or value is a ConfigError naming the candidate.

    Only a workload with a ``check_params`` (every built-in) can be asked; for one without,
    nothing is checked and False comes back, so the caller can say so.
    """
    from greenprec.workloads import get_workload

    function = get_workload(workload)
    check = getattr(function, "check_params", None)
    if not callable(check):
        return False
    for candidate in chosen:
        try:
            check({**(params or {}), **candidate.params})
        except ConfigError as error:
            raise ConfigError(f"candidate {candidate.label}: {error}") from None
    return True


# --- --quick ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuickPlan:
    """What ``recommend --quick`` compares, and the sentence that says so."""

    candidates: tuple[Candidate, ...]
    explanation: str


def quick_plan(selection: PolicySelection, grid: Grid = ((),)) -> QuickPlan:
    """At least two configurations for ``--quick``: the selected policies crossed with
    ``grid`` when that makes two or more; otherwise (one native policy, nothing varied, as on
    a CPU with neither AVX-512 FP16 nor BF16) that policy at :data:`QUICK_BATCH_SIZES`."""
    if len(selection.chosen) * len(grid) >= 2:
        chosen = candidates(selection, grid)
        listed = _listed([candidate.human for candidate in chosen])
        return QuickPlan(chosen, f"--quick compares {listed}")
    if any(key == "batch_size" for point in grid for key, _ in point):
        raise ConfigError(
            "--quick compares at least two configurations, and only one is given; give two "
            "batch sizes, e.g. --vary batch_size=32,128"
        )
    policy = selection.chosen[0] if selection.chosen else "fp32"
    point = grid[0] if grid else ()
    sizes = tuple((*point, ("batch_size", size)) for size in QUICK_BATCH_SIZES)
    chosen = candidates((policy,), sizes)
    sizes_text = " and ".join(str(size) for size in QUICK_BATCH_SIZES)
    return QuickPlan(
        chosen,
        f"only {policy} runs natively on this {selection.device.upper()}, so --quick compares "
        f"{policy} at batch sizes {sizes_text}",
    )
