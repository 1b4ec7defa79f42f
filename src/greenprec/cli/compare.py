"""``greenprec compare``: the experiment protocol, and its progress on the terminal.

The command's argument and options are declared once, in
:data:`greenprec.cli.settings.COMPARE_OPTIONS`: its signature is built from that table (typer
reads ``__signature__``), and so are the config overrides and the flag a message names.
"""

from __future__ import annotations

import inspect
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperOption

from greenprec.cli._common import Command, fail, folder_problem, make_console, os_error_line
from greenprec.cli.settings import (
    COMPARE_OPTIONS,
    config_overrides,
    flag_of,
    option_parameters,
    with_flags,
)
from greenprec.errors import ConfigError, GreenprecError, Terminated

if TYPE_CHECKING:
    from greenprec.cli.tables import Row
    from greenprec.experiment.config import ExperimentConfig, Preset
    from greenprec.experiment.progress import Reporter
    from greenprec.results import ResultsStore, RunRecord

__all__ = [
    "RunRequest",
    "cancel_jobs_decision",
    "check_folder",
    "compare_command",
    "fail_to_write",
    "register",
    "reporter_for",
    "resume_advice",
    "run_request",
    "stopped",
    "terminate_like_ctrl_c",
]

_SignalHandler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None
"""What :func:`signal.signal` returns: the handler it replaced."""


@dataclass(frozen=True)
class RunRequest:
    """compare's own options: where the results go, resuming, and how progress is shown.
    (The experiment's settings become config overrides; see :func:`_overrides`.)"""

    out: Path
    resume: bool
    retry_failed: bool
    config: Path | None
    quiet: bool
    jsonl: bool
    cancel_on_interrupt: bool
    command: str = "compare"
    """The command that goes on from where an interrupted one stopped (its messages)."""

    @classmethod
    def of(cls, given: Mapping[str, object], command: str = "compare") -> RunRequest:
        out = _path(given, "out")
        if out is None:
            out = Path("greenprec-results") / datetime.now().strftime("%Y%m%d-%H%M%S")
        return cls(
            out=out,
            resume=given.get("resume") is True,
            retry_failed=given.get("retry_failed") is True,
            config=_path(given, "config"),
            quiet=given.get("quiet") is True,
            jsonl=given.get("jsonl") is True,
            cancel_on_interrupt=given.get("cancel_on_interrupt") is True,
            command=command,
        )


def _path(given: Mapping[str, object], name: str) -> Path | None:
    value = given.get(name)
    return value if isinstance(value, Path) else None


def compare_command(**given: object) -> None:
    """Run the experiment protocol: seeded schedule, warm-up, cool-downs, every run measured."""
    _check_combinations(given)
    overrides = _overrides(given)
    request = RunRequest.of(given)
    check_folder(request)
    config, slurm_changes = _settings(request, overrides)
    store, records = run_request(request, config, slurm_changes)
    _finish(request, store, records)


# typer reads a command's options from its signature: here, the table's.
compare_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    option_parameters(COMPARE_OPTIONS), return_annotation=None
)


def _check_combinations(given: Mapping[str, object]) -> None:
    """Flags that contradict each other, or need another: one line naming the fix, before
    anything is loaded."""
    from greenprec.experiment.config import PRESETS

    resume, protocol = given.get("resume") is True, given.get("protocol")
    if given.get("retry_failed") and not resume:
        fail(
            "--retry-failed runs the failed runs of an existing experiment again; write "
            "--resume --retry-failed --out DIR"
        )
    if given.get("quick") and protocol is not None and protocol != "quick":
        if protocol not in PRESETS:
            fail(f"--protocol: unknown protocol {protocol!r}; choose one of {', '.join(PRESETS)}")
        fail(
            f"--quick and --protocol {protocol} are alternatives (--quick is --protocol quick); "
            "give one"
        )
    if given.get("max_runs") is not None and not given.get("adaptive"):
        fail("--max-runs is the most runs per policy of an adaptive experiment; add --adaptive")
    if given.get("max_runs") is not None and given.get("runs") is not None:
        fail("--runs and --max-runs are alternatives with --adaptive; give --max-runs")
    if resume and given.get("out") is None:
        fail("--resume needs --out DIR, the folder of the experiment to continue")
    if not resume and not given.get("policies") and given.get("config") is None:
        fail("no policies given; write e.g. greenprec compare fp32 mixed")


def _overrides(given: Mapping[str, object]) -> dict[str, object]:
    """The settings the flags give, for ``load_config``. --quick and --max-runs are other
    spellings of --protocol quick and --runs (with --adaptive): folded in first."""
    values = dict(given)
    if values.get("quick"):
        values["protocol"] = "quick"
    if values.get("max_runs") is not None:
        values["runs"] = values["max_runs"]
    return config_overrides(COMPARE_OPTIONS, values)


def check_folder(request: RunRequest) -> None:
    """Checked before the settings (which may probe meters and data) and long before the first
    file is written: a folder that cannot be written should not cost a warm-up."""
    out = request.out
    problem = folder_problem(out, create=not request.resume)
    if problem is None:
        return
    if not request.resume:
        fix = "choose another --out"
    elif out.is_dir():
        fix = f"make it writable (chmod -R u+w {out}), or copy it (cp -r) and resume the copy"
    else:
        fix = "give the folder of the experiment to continue"
    fail(f"--out: {problem}; {fix}")


def _settings(
    request: RunRequest, overrides: Mapping[str, object]
) -> tuple[ExperimentConfig | None, dict[str, object] | None]:
    """A new experiment's config; or, resuming, the [slurm] settings given to change (the
    rest must match the folder's own, which the runner loads)."""
    from greenprec.experiment.config import load_config
    from greenprec.results import ResultsStore

    try:
        if not request.resume:
            return load_config(overrides, request.config), None
        if not overrides and request.config is None:
            return None, None
        return None, _check_same_settings(ResultsStore(request.out), overrides, request.config)
    except ConfigError as error:
        # The config names its settings; the user wrote flags: each line names its flag too.
        message = with_flags(str(error), overrides, COMPARE_OPTIONS)
        raise ConfigError(message, param=error.param) from None


def _check_same_settings(
    store: ResultsStore, overrides: Mapping[str, object], config: Path | None
) -> dict[str, object] | None:
    """--resume with more than --out (the original command, --resume appended): go on when
    everything given matches the folder's settings; otherwise name each difference. The
    [slurm] settings (how jobs are submitted, not what is measured) may change: they are
    returned, to be applied to the jobs submitted from now on."""
    from greenprec.experiment.config import differences, given_table
    from greenprec.experiment.runner import resumable_config

    if not store.exists():
        return None  # the runner says there is nothing to resume
    found = [
        item
        for item in differences(resumable_config(store), overrides, config)
        if not item.setting.startswith("slurm.")
    ]
    if found:
        listed = "; ".join(f"{item} ({flag_of(item.setting, COMPARE_OPTIONS)})" for item in found)
        fail(
            f"--resume continues {store.path} with its own settings, and these differ: "
            f"{listed}. Drop those flags (matching ones may stay), or start a new experiment "
            "with another --out"
        )
    return given_table("slurm", overrides, config) or None


def run_request(
    request: RunRequest, config: ExperimentConfig | None, slurm_changes: dict[str, object] | None
) -> tuple[ResultsStore, list[RunRecord]]:
    """Run (or continue) the experiment; each way it can stop early is one line and the
    command that goes on from there."""
    from greenprec.experiment.runner import ExperimentFailed, run_experiment
    from greenprec.results import ExperimentExists

    previous = terminate_like_ctrl_c()
    try:
        return run_experiment(
            config,
            request.out,
            resume=request.resume,
            retry_failed=request.retry_failed,
            reporter=reporter_for(quiet=request.quiet, jsonl=request.jsonl),
            on_interrupt=cancel_jobs_decision(request.cancel_on_interrupt),
            slurm=slurm_changes,
        )
    except ExperimentExists as error:
        fail(f"{error}; continue it with --resume --out {error.path}, or choose another --out")
    except ExperimentFailed as error:
        fail(
            f"{error}; fix it, then continue with --resume --retry-failed --out {error.folder}",
            code=1,
        )
    except OSError as error:
        fail_to_write(error, request.out, request.command)
    except (KeyboardInterrupt, Terminated) as stop:
        stopped(stop, request.out, request.command)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def fail_to_write(error: OSError, out: Path, command: str = "compare") -> NoReturn:
    """A file that cannot be written (a read-only or full disk, a folder where a file
    belongs): every write is atomic, so what was recorded is whole."""
    from greenprec.results import ResultsStore

    if ResultsStore(out).exists():
        fix = f"fix that, then continue with greenprec {command} --resume --out {out}"
    else:
        fix = "choose another --out"
    fail(os_error_line(error, fix))


def stopped(stop: KeyboardInterrupt | Terminated, out: Path, command: str = "compare") -> NoReturn:
    by = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
    # The executor says what it stopped (a run, a cool-down, the jobs); without a word from it
    # the stop came outside its runs (opening the folder, writing the report).
    detail = getattr(stop, "detail", None) or "no run was running, and what was recorded is kept"
    typer.echo(
        f"greenprec: interrupted ({by}); {detail}. "
        f"Continue with: greenprec {command} --resume --out {out}",
        err=True,
    )
    # 128 + the signal's number, as a shell reports a process killed by it.
    raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None


def _finish(request: RunRequest, store: ResultsStore, records: list[RunRecord]) -> None:
    """The report (or the runs table), and exit code 1 with what the next resume does when any
    run is not done."""
    from greenprec.results import record_row

    rows = [record_row(record) for record in records]
    if not request.jsonl:
        _summarise(store.path, rows)
    if all(record.status == "done" for record in records):
        return
    typer.echo(resume_advice(store, records, request.command), err=True)
    raise typer.Exit(1)


def resume_advice(store: ResultsStore, records: Sequence[RunRecord], command: str) -> str:
    """One line: how many runs are not done, how many of them the next plain ``--resume``
    runs again (and why each is not done), how many it leaves to a job or process still
    holding them, and how many only ``--resume --retry-failed`` runs (failed on their own)."""
    from greenprec.experiment.runner import resume_outlook

    outlook = resume_outlook(store, records)
    out = store.path
    parts = []
    if outlook.runs_again:
        why = ", ".join(f"{count} {reason}" for reason, count in outlook.again.items())
        parts.append(
            f"the next greenprec {command} --resume --out {out} runs {outlook.runs_again} of "
            f"them again ({why})"
        )
    if outlook.held:
        parts.append(
            f"{outlook.held} still held by a process or Slurm job of an earlier session: "
            "--resume leaves them to it (re-attaching to a job) and runs them again if it ends "
            "without finishing them"
        )
    if outlook.own_failures:
        parts.append(
            f"{outlook.own_failures} failed on their own (the error is in runs.csv and logs/), "
            "and --resume alone does not run failed runs again: fix the cause, then run them "
            f"again with greenprec {command} --resume --retry-failed --out {out}"
        )
    return f"greenprec: {outlook.not_done} run(s) not done (see runs.csv in {out}); " + "; ".join(
        parts
    )


def cancel_jobs_decision(cancel: bool) -> Callable[[Sequence[str]], bool] | None:
    """Asked on Ctrl-C whether to cancel the cluster's jobs: yes with --cancel-on-interrupt;
    a terminal asks; a script (no terminal) leaves them running."""
    if cancel:
        return lambda job_ids: True
    if not sys.stdin.isatty():
        return None

    def ask(job_ids: Sequence[str]) -> bool:
        return bool(
            typer.confirm(
                f"\nCancel the experiment's {len(job_ids)} Slurm job(s) still pending or "
                "running? (no: they keep running, and --resume re-attaches)",
                default=False,
                err=True,
            )
        )

    return ask


class _CompareCommand(Command):
    """compare's help shows each preset's values and the --protocol names, read from PRESETS
    when help is asked for (not at every start: the config module is not light to import)."""

    # click's context and formatter: typer vendors click, under a private module name.
    def format_help(self, ctx: Any, formatter: Any) -> None:
        from greenprec.experiment.config import PRESETS

        names = ", ".join(PRESETS)
        for param in self.params:
            if param.name == "protocol" and isinstance(param, TyperOption):
                param.help = f"A preset: {names} (default: default). Values below."
        self.epilog = "\n\n".join(
            ["Presets (--protocol NAME; --quick is --protocol quick):"]
            + [f"{name}: {_preset_text(values)}" for name, values in PRESETS.items()]
        )
        super().format_help(ctx, formatter)


def _preset_text(values: Preset) -> str:
    params = values.get("params") or {}
    extras = "".join(f", {key} {value}" for key, value in params.items())
    warmup = f"warm-up {values['warmup_s']:g} s" if values["warmup_s"] else "no warm-up"
    return (
        f"{values['runs']} runs per policy, {warmup}, cool-down {values['cooldown_s']:g} s, "
        f"workload {values['workload']}{extras}, seed {values['seed']}"
    )


def terminate_like_ctrl_c() -> _SignalHandler:
    """SIGTERM (what Slurm, systemd and ``timeout`` send) stops the experiment as Ctrl-C does;
    returns the handler it replaced (None where signals cannot be set: not the main thread)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _summarise(folder: Path, rows: Sequence[Row]) -> None:
    """The full report when any run is done; the runs summary otherwise."""
    from greenprec.cli.tables import summary_table

    if any(row["status"] == "done" for row in rows):
        from greenprec.cli.report import report_command

        try:
            report_command(folder)
            return
        except GreenprecError as error:
            typer.echo(f"greenprec: warning: no report ({error}); the runs are saved", err=True)
    make_console().print(summary_table(rows, title=f"greenprec compare: {folder}"))


def reporter_for(*, quiet: bool, jsonl: bool) -> Reporter:
    from greenprec.cli import progress
    from greenprec.experiment.progress import Reporter

    if jsonl:
        return progress.JsonLinesReporter()
    if quiet:
        return Reporter()
    if sys.stderr.isatty():
        return progress.RichReporter()
    return progress.PlainReporter()


def register(app: typer.Typer) -> None:
    app.command("compare", cls=_CompareCommand)(compare_command)
