"""``greenprec recommend``: which configuration reaches the target for the least energy.

The experiment settings it shares with ``compare`` (workload, meters, protocol, margins,
targets, output, cluster) are ``compare``'s entries of
:data:`greenprec.cli.settings.COMPARE_OPTIONS`, taken by name; its own options are
:data:`RECOMMEND_OPTIONS`. The planning is the library's
(:func:`greenprec.experiment.recommend.plan_recommendation`); the runs are an ordinary
experiment; the answer is the report's recommendation, printed as a table and a sentence.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from greenprec.cli._common import fail, make_console
from greenprec.cli.compare import (
    RunRequest,
    check_folder,
    resume_advice,
    run_request,
)
from greenprec.cli.settings import (
    COMPARE_OPTIONS,
    STATISTICS,
    WORKLOAD,
    Setting,
    config_overrides,
    option_parameters,
    with_flags,
)
from greenprec.errors import ConfigError, GreenprecError

if TYPE_CHECKING:
    from greenprec.experiment.config import ExperimentConfig
    from greenprec.experiment.recommend import RecommendRequest
    from greenprec.results import ResultsStore, RunRecord

__all__ = ["RECOMMEND_OPTIONS", "SHARED_WITH_COMPARE", "recommend_command", "register"]

SELECTION = "Selection"

SHARED_WITH_COMPARE = (
    "policies",
    "workload",
    "target",
    "margin",
    "batch_size",
    "data",
    "param",
    "seed",
    "warmup",
    "cooldown",
    "baseline",
    "meter",
    "option",
    "interval",
    "run_timeout",
    "isolation",
    "nproc_per_node",
    "nodes",
    "idle_before_run",
    "wait_for_idle",
    "deterministic",
    "fail_fast",
    "config",
    "quick",
    "protocol",
    "out",
    "resume",
    "retry_failed",
    "executor",
    "partition",
    "account",
    "qos",
    "time_per_run",
    "gres",
    "cpus_per_task",
    "mem_gb",
    "shared",
    "max_in_flight",
    "sbatch",
    "cancel_on_interrupt",
    "quiet",
    "jsonl",
)
"""compare's options that recommend takes as they are (not --runs, --epochs, --adaptive,
--stop-at-target, --no-shuffle, --sesoi: a recommendation sets those itself)."""

RECOMMEND_OPTIONS: tuple[Setting, ...] = (
    Setting(
        "vary",
        "--vary",
        "KEY=V1,V2",
        "Cross a workload parameter's values with the policies, repeatable: "
        "--vary batch_size=64,256.",
        WORKLOAD,
        list[str] | None,
    ),
    Setting(
        "max_epochs",
        "--max-epochs",
        "N",
        "Each run trains until it reaches the target, or N epochs.",
        WORKLOAD,
        int | None,
    ),
    Setting(
        "max_runs",
        "--max-runs",
        "N",
        "The most runs per configuration (default 10; --quick 4).",
        SELECTION,
        int | None,
    ),
    Setting(
        "min_runs",
        "--min-runs",
        "N",
        "Runs per configuration before the first look (default 3; --quick 2).",
        SELECTION,
        int | None,
    ),
    Setting(
        "indifference",
        "--indifference",
        "PCT",
        "Configurations within this of the best in energy to the target count as equally "
        "good (default 3%).",
        SELECTION,
        str | None,
    ),
    Setting(
        "grid_intensity",
        "--grid-intensity",
        "G/KWH",
        "Convert energy to CO2e at this grid intensity, e.g. 350g/kWh (a conversion you "
        "state; nothing is looked up).",
        STATISTICS,
        str | None,
    ),
)


def _shared() -> tuple[Setting, ...]:
    by_name = {setting.name: setting for setting in COMPARE_OPTIONS}
    # recommend's POLICY names are optional: without them, what the hardware runs natively.
    by_name["policies"] = dataclasses.replace(
        by_name["policies"],
        help="Precision policies to compare (fp32, tf32, mixed, bf16). Default: fp32 and every "
        "policy this hardware runs natively; one named runs even if emulated.",
    )
    return tuple(by_name[name] for name in SHARED_WITH_COMPARE)


def recommend_command(**given: object) -> None:
    """Which configuration reaches the target for the least energy, with a guarantee: runs
    stop at the target, and after each block what is shown worse is dropped."""
    shared = _shared()
    _check_combinations(given)
    request = RunRequest.of(given, command="recommend")
    check_folder(request)
    overrides = config_overrides(shared, {**given, "policies": None})
    if given.get("quick"):
        overrides["protocol"] = "quick"
    config = None
    if not request.resume:
        config = _plan(_recommend_request(given), overrides, request.config, shared)
    store, records = run_request(request, config, None)
    _answer(store, records)


recommend_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    option_parameters(_shared()) + option_parameters(RECOMMEND_OPTIONS), return_annotation=None
)


def _check_combinations(given: Mapping[str, object]) -> None:
    if given.get("retry_failed") and not given.get("resume"):
        fail("--retry-failed runs the failed runs again; write --resume --retry-failed --out DIR")
    if given.get("resume") and given.get("out") is None:
        fail("--resume needs --out DIR, the folder of the recommendation to continue")
    if given.get("resume"):
        asked = [
            s.flag
            for s in (*_shared(), *RECOMMEND_OPTIONS)
            if s.name not in ("out", "resume", "retry_failed", "quiet", "jsonl")
            and given.get(s.name) not in (None, False, [])
        ]
        if asked:
            fail(
                f"--resume continues a recommendation with its own settings; drop "
                f"{', '.join(asked)}"
            )
    if given.get("quick") and given.get("protocol") not in (None, "quick"):
        fail("--quick and --protocol are alternatives (--quick is --protocol quick); give one")


def _recommend_request(given: Mapping[str, object]) -> RecommendRequest:
    from greenprec.experiment.recommend import RecommendRequest

    def text(name: str) -> str | None:
        value = given.get(name)
        return value if isinstance(value, str) else None

    def number(name: str) -> int | None:
        value = given.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def strings(name: str) -> tuple[str, ...]:
        value = given.get(name)
        return tuple(str(item) for item in value) if isinstance(value, list) else ()

    return RecommendRequest(
        policies=strings("policies"),
        vary=strings("vary"),
        max_epochs=number("max_epochs"),
        max_runs=number("max_runs"),
        min_runs=number("min_runs"),
        indifference=text("indifference"),
        grid_intensity=text("grid_intensity"),
        quick=given.get("quick") is True,
    )


def _plan(
    request: RecommendRequest,
    overrides: Mapping[str, object],
    config_file: Path | None,
    shared: tuple[Setting, ...],
) -> ExperimentConfig:
    from greenprec.experiment.recommend import plan_recommendation

    try:
        plan = plan_recommendation(request, overrides, config_file)
    except ConfigError as error:
        flags = (*shared, *_AS_FIELDS)
        own = {
            "runs": request.max_runs,
            "min_runs": request.min_runs,
            "grid_intensity": request.grid_intensity,
            "selection": request.indifference,
        }
        given = {**overrides, **{key: value for key, value in own.items() if value is not None}}
        message = with_flags(str(error), given, flags)
        raise ConfigError(message, param=error.param) from None
    for line in plan.lines:
        typer.echo(f"greenprec: {line}", err=True)
    labels = ", ".join(candidate.label for candidate in plan.candidates)
    typer.echo(f"greenprec: comparing {len(plan.candidates)} configurations: {labels}", err=True)
    return plan.config


# How the config's settings that recommend sets are named in a message about them.
_AS_FIELDS = (
    Setting("max_runs", "--max-runs", "N", "", None, int, fields=("runs",)),
    Setting("min_runs", "--min-runs", "N", "", None, int, fields=("min_runs",)),
    Setting("grid_intensity", "--grid-intensity", "G", "", None, str, fields=("grid_intensity",)),
    Setting("indifference", "--indifference", "PCT", "", None, str, fields=("selection",)),
)


def _answer(store: ResultsStore, records: list[RunRecord]) -> None:
    """The report (with the recommendation at its top), then the answer on the terminal."""
    from greenprec.cli.report import report_command

    if not any(record.status == "done" for record in records):
        fail("no run finished, so there is nothing to recommend; see runs.csv and logs/", code=1)
    try:
        report_command(store.path, quiet=True)
    except GreenprecError as error:
        typer.echo(f"greenprec: warning: no report ({error}); the runs are saved", err=True)
    _print_answer(store)
    if any(record.status != "done" for record in records):
        typer.echo(resume_advice(store, records, "recommend"), err=True)
        raise typer.Exit(1)


def _print_answer(store: ResultsStore) -> None:
    from greenprec.cli.recommendation import print_recommendation

    print_recommendation(make_console(), store)


def register(app: typer.Typer) -> None:
    app.command("recommend")(recommend_command)
