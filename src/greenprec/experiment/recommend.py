"""Planning a recommendation: from what the user asked to the experiment that answers it.

``greenprec recommend`` is ``compare`` with three differences, all settled here before
anything runs: its candidates (the policies this hardware runs natively, crossed with
``--vary``; :mod:`greenprec.experiment.candidates`), its stopping rule (each run stops at
the target; after each block a look drops what is shown worse,
:mod:`greenprec.experiment.selecting`) and its answer (the report's recommendation). The
result is an ordinary :class:`~greenprec.experiment.config.ExperimentConfig`, so the runner,
the executors, ``report`` and ``runs`` need nothing of their own.

Settings come from a config file's ``[recommend]`` table and then the command's own
arguments (:class:`RecommendRequest`); the experiment settings ``compare`` shares (workload,
meters, protocol, targets, margins) come as ``compare``'s config overrides.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from greenprec.errors import ConfigError
from greenprec.experiment.candidates import (
    Candidate,
    Grid,
    candidates,
    check_workload_accepts,
    default_policies,
    parse_vary,
    quick_plan,
)
from greenprec.experiment.config import ExperimentConfig, load_config, load_table

__all__ = [
    "QUICK_MAX_EPOCHS",
    "QUICK_TARGET",
    "RecommendPlan",
    "RecommendRequest",
    "plan_recommendation",
]

_T = TypeVar("_T")

QUICK_TARGET = {"test_accuracy": 0.95}
"""``--quick`` without a target: digits-cnn reaches 95 % test accuracy in 2 to 4 epochs."""
QUICK_MAX_EPOCHS = 10
QUICK_RUNS = (2, 4)
"""``--quick``: a first look after 2 runs per configuration, at most 4 (minutes on 2 cores)."""
DEFAULT_RUNS = (3, 10)
"""Otherwise: the first look after 3 runs per configuration, at most 10."""


class _RecommendTable(BaseModel):
    """A config file's ``[recommend]`` table (the same settings as the command's flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: list[str] | None = None
    vary: dict[str, list[StrictBool | StrictInt | float | str]] = Field(default_factory=dict)
    max_epochs: StrictInt | None = Field(default=None, ge=1)
    max_runs: StrictInt | None = Field(default=None, ge=2)
    min_runs: StrictInt | None = Field(default=None, ge=2)
    indifference: str | None = None
    min_reached_share: float | None = None
    alpha: float | None = None
    grid_intensity: str | None = None


@dataclass(frozen=True)
class RecommendRequest:
    """What the command's own arguments ask (None / empty: not given; the ``[recommend]``
    table, then the defaults, decide)."""

    policies: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()
    """``KEY=V1,V2`` specs, as ``--vary`` takes them."""
    max_epochs: int | None = None
    max_runs: int | None = None
    min_runs: int | None = None
    indifference: str | None = None
    min_reached_share: float | None = None
    alpha: float | None = None
    grid_intensity: str | None = None
    quick: bool = False


@dataclass(frozen=True)
class RecommendPlan:
    """The experiment that answers the request, and what to say before it runs."""

    config: ExperimentConfig
    candidates: tuple[Candidate, ...]
    lines: tuple[str, ...] = field(default_factory=tuple)
    """Warnings and notes: policies left out and why, emulated ones named anyway, what
    ``--quick`` compares, a workload whose parameters could not be checked."""


def _table(config_file: Path | None) -> _RecommendTable:
    try:
        return _RecommendTable.model_validate(load_table(config_file, "recommend"))
    except ValidationError as error:
        problems = [
            f"recommend.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        ]
        raise ConfigError("\n".join(problems), param="config") from None


def _table_vary(vary: Mapping[str, list[bool | int | float | str]]) -> list[str]:
    """``[recommend] vary = {batch_size = [64, 256]}`` as ``--vary`` specs (one reading rule)."""
    return [
        f"{key}=" + ",".join(v if isinstance(v, str) else json.dumps(v) for v in values)
        for key, values in vary.items()
    ]


def _base(overrides: Mapping[str, object], config_file: Path | None) -> ExperimentConfig:
    """The shared settings alone (workload, params, protocol), to choose the candidates by.
    Its warnings are the final config's too, which is loaded next: said once, there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_config({**overrides, "policies": ["fp32"]}, config_file)


def _choose(
    request: RecommendRequest, table: _RecommendTable, base: ExperimentConfig
) -> tuple[tuple[Candidate, ...], list[str]]:
    from greenprec.experiment.runner import workload_framework

    named = list(request.policies) or list(table.policies or [])
    selection = default_policies(workload_framework(base.workload), named=named or None)
    grid: Grid = parse_vary(list(request.vary) or _table_vary(table.vary))
    lines = selection.lines()
    if request.quick:
        plan = quick_plan(selection, grid)
        return plan.candidates, [*lines, plan.explanation]
    chosen = candidates(selection, grid)
    if len(chosen) < 2:
        raise ConfigError(
            f"recommend compares at least two configurations, and only {chosen[0].human} is "
            "given (the other policies are left out above); name another policy (it runs "
            "emulated) or vary a parameter, e.g. --vary batch_size=64,256"
        )
    return chosen, lines


def plan_recommendation(
    request: RecommendRequest,
    overrides: Mapping[str, object],
    config_file: Path | None = None,
) -> RecommendPlan:
    """The experiment of a recommendation: its candidates, checked by the workload; each run
    stopping at the target; a selection look after each block. ConfigError, one line per
    problem, before anything runs."""
    table = _table(config_file)
    if request.quick:
        overrides = {"protocol": "quick", **overrides}
    base = _base(overrides, config_file)
    if base.adaptive:
        raise ConfigError(
            "adaptive: a recommendation stops by its own looks (it drops configurations shown "
            "worse); leave adaptive off"
        )
    chosen, lines = _choose(request, table, base)
    if not check_workload_accepts(base.workload, chosen, base.params):
        lines.append(
            f"workload {base.workload} has no check_params: its parameters are not checked "
            "before the runs (a bad one fails its runs)"
        )
    targets = base.targets or (QUICK_TARGET if request.quick else {})
    if not targets:
        raise ConfigError(
            "recommend needs a target: the accuracy to reach for the least energy, e.g. "
            "--target test_accuracy=0.97"
        )
    quick_runs = QUICK_RUNS if request.quick else DEFAULT_RUNS
    max_epochs = _first(request.max_epochs, table.max_epochs)
    if max_epochs is None and request.quick:
        max_epochs = QUICK_MAX_EPOCHS
    settings = {
        key: value
        for key, value in {
            "indifference": _first(request.indifference, table.indifference),
            "min_reached_share": _first(request.min_reached_share, table.min_reached_share),
            "alpha": _first(request.alpha, table.alpha),
        }.items()
        if value is not None
    }
    varied = any(candidate.overrides for candidate in chosen)
    values: dict[str, object] = {
        **overrides,
        "policies": list(dict.fromkeys(candidate.policy for candidate in chosen)),
        "configurations": [_configuration(c) for c in chosen] if varied else [],
        "targets": targets,
        "stop_at_target": True,
        "selection": settings,
        "runs": _first(request.max_runs, table.max_runs) or quick_runs[1],
        "min_runs": _first(request.min_runs, table.min_runs) or quick_runs[0],
        "grid_intensity": _first(request.grid_intensity, table.grid_intensity),
    }
    if max_epochs is not None:
        values["params"] = {**_params(overrides), "epochs": max_epochs}
    config = load_config({k: v for k, v in values.items() if v is not None}, config_file)
    return RecommendPlan(config, chosen, tuple(lines))


def _configuration(candidate: Candidate) -> dict[str, object]:
    return {"label": candidate.label, "policy": candidate.policy, "params": candidate.params}


def _params(overrides: Mapping[str, object]) -> dict[str, object]:
    params = overrides.get("params")
    return dict(params) if isinstance(params, Mapping) else {}


def _first(*values: _T | None) -> _T | None:
    return next((value for value in values if value is not None), None)
