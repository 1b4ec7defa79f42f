"""``greenprec compare``: the experiment protocol, and its progress on the terminal."""

from __future__ import annotations

import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperOption

from greenprec.cli._common import (
    FLAG,
    Command,
    MeterOption,
    OptionOption,
    fail,
    folder_problem,
    make_console,
    os_error_line,
    parse_options,
    parse_params,
)
from greenprec.errors import GreenprecError, Terminated


def compare_command(
    policies: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="POLICY",
            help="Precision policies to compare: fp32, mixed, bf16.",
            show_default=False,
        ),
    ] = None,
    workload: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Workload name or module.path:function.",
            rich_help_panel="Workload",
        ),
    ] = None,
    runs: Annotated[
        int | None, typer.Option(metavar="N", help="Runs per policy.", rich_help_panel="Protocol")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="Experiment seed (schedule and runs).", rich_help_panel="Protocol"
        ),
    ] = None,
    warmup: Annotated[
        str | None,
        typer.Option(
            metavar="S|auto",
            help="CPU warm-up before the first run, seconds; auto: until the measured power "
            "settles (the preset's warm-up, or 300 s, as its cap).",
            rich_help_panel="Protocol",
        ),
    ] = None,
    cooldown: Annotated[
        float | None,
        typer.Option(metavar="S", help="Rest between runs, seconds.", rich_help_panel="Protocol"),
    ] = None,
    baseline: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            help="Measure idle power this long first, seconds.",
            rich_help_panel="Protocol",
        ),
    ] = None,
    meter: MeterOption = None,
    option: OptionOption = None,
    interval: Annotated[
        float | None,
        typer.Option(metavar="S", help="Sampling interval, seconds.", rich_help_panel="Meters"),
    ] = None,
    run_timeout: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            help="Stop a run still going after this many seconds (recorded as failed: timed "
            "out). Default: the workload's own generous limit (digits-cnn 1800 s).",
            rich_help_panel="Protocol",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Results folder (default: greenprec-results/DATE-TIME).",
            rich_help_panel="Output and resuming",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            metavar=FLAG,
            help="Continue the experiment in --out with its own settings (other flags may "
            "stay if they match them).",
            rich_help_panel="Output and resuming",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            metavar=FLAG,
            help="With --resume, also run failed runs again.",
            rich_help_panel="Output and resuming",
        ),
    ] = False,
    no_shuffle: Annotated[
        bool,
        typer.Option(
            "--no-shuffle",
            metavar=FLAG,
            help="Run in policy order, not seeded random order.",
            rich_help_panel="Protocol",
        ),
    ] = False,
    isolation: Annotated[
        str | None,
        typer.Option(
            metavar="process|inline",
            help="process (a fresh Python per run) or inline.",
            rich_help_panel="Protocol",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(metavar="N", help="Workload epochs.", rich_help_panel="Workload")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(metavar="N", help="Workload batch size.", rich_help_panel="Workload"),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            metavar="PATH", help="Workload data path (e.g. CIFAR-10).", rich_help_panel="Workload"
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE", help="Workload parameter (repeatable).", rich_help_panel="Workload"
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="TOML file with the same fields.", rich_help_panel="Protocol"
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            metavar=FLAG,
            help="The quick preset (--protocol quick): see below.",
            rich_help_panel="Protocol",
        ),
    ] = False,
    protocol: Annotated[
        str | None,
        # The names and values come from PRESETS when help is shown (_CompareCommand).
        typer.Option(metavar="NAME", help="A preset: see below.", rich_help_panel="Protocol"),
    ] = None,
    deterministic: Annotated[
        bool | None,
        typer.Option(
            "--deterministic",
            metavar=FLAG,
            help="Enable TensorFlow op determinism.",
            rich_help_panel="Workload",
        ),
    ] = None,
    fail_fast: Annotated[
        bool | None,
        typer.Option(
            "--fail-fast",
            metavar=FLAG,
            help="Stop at the first failed run.",
            rich_help_panel="Protocol",
        ),
    ] = None,
    margin: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METRIC=M",
            help="Equivalence margin: test_accuracy=1pp (within ±1 pp), test_accuracy=-1pp "
            "(not worse than −1 pp), energy_j=+5% (of the reference mean); an accuracy needs "
            "its unit (pp or %, or a fraction below 1); repeatable (docs/stats.md).",
            rich_help_panel="Statistics",
        ),
    ] = None,
    sesoi: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METRIC=SPEC",
            help="Smallest effect of interest, for the runs needed: energy_j=5% (of the "
            "reference mean), test_accuracy=1pp; repeatable. Default: the metric's margin.",
            rich_help_panel="Statistics",
        ),
    ] = None,
    adaptive: Annotated[
        bool | None,
        typer.Option(
            "--adaptive",
            metavar=FLAG,
            help="Stop when every question is settled (group-sequential, alpha spending), "
            "at most --max-runs per policy.",
            rich_help_panel="Statistics",
        ),
    ] = None,
    max_runs: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="With --adaptive: the most runs per policy.",
            rich_help_panel="Statistics",
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            metavar="METRIC=VALUE",
            help="Energy to a target, e.g. test_accuracy=0.45: the energy at which each run "
            "first reached it (evaluates the test set after every epoch); repeatable.",
            rich_help_panel="Statistics",
        ),
    ] = None,
    idle_before_run: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            help="Measure idle power this long before each run.",
            rich_help_panel="Protocol",
        ),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            metavar="local|slurm",
            help="local (runs one after another here, the default) or slurm (one Slurm job "
            "per block of runs, through submitit; see docs/cluster.md).",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    partition: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Slurm partition of the jobs.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Slurm account charged for the jobs.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    qos: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Slurm QOS of the jobs.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    time_per_run: Annotated[
        int | None,
        typer.Option(
            metavar="MIN",
            help="Minutes a run may take on the cluster (a job asks for this per run of its "
            "block). Default: the run's time limit.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    gres: Annotated[
        str | None,
        typer.Option(
            metavar="SPEC",
            help="Slurm --gres of each job (gpu:1).",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Slurm --cpus-per-task of each job.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    mem_gb: Annotated[
        float | None,
        typer.Option(
            metavar="GB",
            help="Memory of each job, GB.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    shared: Annotated[
        bool | None,
        typer.Option(
            "--shared",
            metavar=FLAG,
            help="Let jobs share nodes (not --exclusive). RAPL and NVML count the whole "
            "machine: a run may then measure another job's energy; the report warns.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Slurm jobs (blocks) submitted at once. Default: all.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    sbatch: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KEY=VALUE",
            help="A further sbatch option for each job, e.g. constraint=a100 (repeatable).",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = None,
    cancel_on_interrupt: Annotated[
        bool,
        typer.Option(
            "--cancel-on-interrupt",
            metavar=FLAG,
            help="On Ctrl-C, cancel the experiment's Slurm jobs without asking (for scripts). "
            "Otherwise a terminal asks, and a script leaves them running.",
            rich_help_panel="Cluster (--executor slurm)",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            metavar=FLAG,
            help="Print only the summary.",
            rich_help_panel="Output and resuming",
        ),
    ] = False,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl",
            metavar=FLAG,
            help="Progress as JSON lines on stdout.",
            rich_help_panel="Output and resuming",
        ),
    ] = False,
) -> None:
    """Run the experiment protocol: seeded schedule, warm-up, cool-downs, every run measured."""
    from greenprec.experiment.config import PRESETS, load_config
    from greenprec.experiment.runner import ExperimentFailed, run_experiment
    from greenprec.results import ExperimentExists, ResultsStore

    if retry_failed and not resume:
        fail(
            "--retry-failed runs the failed runs of an existing experiment again; write "
            "--resume --retry-failed --out DIR"
        )
    if quick and protocol is not None and protocol != "quick":
        if protocol not in PRESETS:
            fail(f"--protocol: unknown protocol {protocol!r}; choose one of {', '.join(PRESETS)}")
        fail(
            f"--quick and --protocol {protocol} are alternatives (--quick is --protocol quick); "
            "give one"
        )
    if max_runs is not None and not adaptive:
        fail("--max-runs is the most runs per policy of an adaptive experiment; add --adaptive")
    if max_runs is not None and runs is not None:
        fail("--runs and --max-runs are alternatives with --adaptive; give --max-runs")
    warmup_s, warmup_auto = _warmup(warmup)
    if resume and out is None:
        fail("--resume needs --out DIR, the folder of the experiment to continue")
    if not resume and not policies and config is None:
        fail("no policies given; write e.g. greenprec compare fp32 mixed")
    overrides: dict[str, Any] = {
        "policies": policies or None,
        "protocol": "quick" if quick else protocol,
        "workload": workload,
        "runs": max_runs if max_runs is not None else runs,
        "seed": seed,
        "warmup_s": warmup_s,
        "warmup_auto": warmup_auto,
        "margins": parse_pairs("--margin", margin, "test_accuracy=1pp"),
        "sesoi": parse_pairs("--sesoi", sesoi, "energy_j=5%"),
        "adaptive": adaptive,
        "targets": _targets(target),
        "idle_before_run_s": idle_before_run,
        "cooldown_s": cooldown,
        "baseline_s": baseline,
        "meters": meter or None,
        "meter_options": parse_options(option) or None,
        "interval_s": interval,
        "run_timeout_s": run_timeout,
        "shuffle": False if no_shuffle else None,
        "isolation": isolation,
        "epochs": epochs,
        "batch_size": batch_size,
        "data": data,
        "params": parse_params(param) or None,
        "deterministic": deterministic,
        "fail_fast": fail_fast,
        "executor": executor,
        "slurm": _slurm_table(
            partition=partition,
            account=account,
            qos=qos,
            time_per_run_min=time_per_run,
            gres=gres,
            cpus_per_task=cpus_per_task,
            mem_gb=mem_gb,
            exclusive=False if shared else None,
            max_in_flight=max_in_flight,
            sbatch=parse_sbatch(sbatch),
        ),
    }
    if out is None:
        out = Path("greenprec-results") / datetime.now().strftime("%Y%m%d-%H%M%S")
    # Checked before the settings (which may probe meters and data) and long before the first
    # file is written: a folder that cannot be written should not cost a warm-up.
    problem = folder_problem(out, create=not resume)
    if problem is not None:
        if not resume:
            fix = "choose another --out"
        elif out.is_dir():
            fix = f"make it writable (chmod -R u+w {out}), or copy it (cp -r) and resume the copy"
        else:
            fix = "give the folder of the experiment to continue"
        fail(f"--out: {problem}; {fix}")
    experiment_config = None
    if not resume:
        experiment_config = load_config(overrides, config)
    slurm_changes = None
    if resume and (any(value is not None for value in overrides.values()) or config is not None):
        slurm_changes = _check_same_settings(ResultsStore(out), overrides, config)
    reporter = _reporter(quiet=quiet, jsonl=jsonl)
    previous = terminate_like_ctrl_c()
    try:
        store, records = run_experiment(
            experiment_config,
            out,
            resume=resume,
            retry_failed=retry_failed,
            reporter=reporter,
            on_interrupt=_cancel_jobs_decision(cancel_on_interrupt),
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
        # A file that cannot be written (a read-only or full disk, a folder where a file
        # belongs): every write is atomic, so what was recorded is whole.
        if ResultsStore(out).exists():
            fix = f"fix that, then continue with greenprec compare --resume --out {out}"
        else:
            fix = "choose another --out"
        fail(os_error_line(error, fix))
    except (KeyboardInterrupt, Terminated) as stop:
        by = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        detail = getattr(stop, "detail", None) or ("the current run is marked failed (interrupted)")
        typer.echo(
            f"greenprec: interrupted ({by}); {detail}. "
            f"Continue with: greenprec compare --resume --out {out}",
            err=True,
        )
        # 128 + the signal's number, as a shell reports a process killed by it.
        raise typer.Exit(143 if isinstance(stop, Terminated) else 130) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    from greenprec.results import record_row

    rows = [record_row(record) for record in records]
    if not jsonl:
        _summarise(store.path, rows)
    failed = [row for row in rows if row["status"] != "done"]
    if failed:
        # --resume alone leaves failed runs as they are: say so, or "6 runs failed" after a
        # resume that ran nothing reads as if they had been tried again.
        not_retried = (
            " (--resume alone does not run failed runs again)"
            if resume and not retry_failed
            else ""
        )
        typer.echo(
            f"greenprec: {len(failed)} run(s) failed{not_retried}; see runs.csv and logs/ in "
            f"{store.path}; run them again with --resume --retry-failed --out {store.path}",
            err=True,
        )
        raise typer.Exit(1)


# The flag of each setting, to name a difference the way the user wrote it.
_SETTING_FLAGS = {
    "policies": "POLICY...",
    "protocol": "--protocol/--quick",
    "workload": "--workload",
    "runs": "--runs",
    "seed": "--seed",
    "warmup_s": "--warmup",
    "cooldown_s": "--cooldown",
    "baseline_s": "--baseline",
    "meters": "--meter",
    "interval_s": "--interval",
    "run_timeout_s": "--run-timeout",
    "shuffle": "--no-shuffle",
    "isolation": "--isolation",
    "deterministic": "--deterministic",
    "fail_fast": "--fail-fast",
    "executor": "--executor",
    "warmup_auto": "--warmup auto",
    "adaptive": "--adaptive",
    "idle_before_run_s": "--idle-before-run",
}

# The flag of each key of the [slurm] table.
_SLURM_FLAGS = {
    "time_per_run_min": "--time-per-run",
    "exclusive": "--shared",
    "sbatch": "--sbatch",
}


def _slurm_table(**given: Any) -> dict[str, Any] | None:
    """The [slurm] settings given as flags (None when none was)."""
    table = {key: value for key, value in given.items() if value is not None and value != {}}
    return table or None


def parse_pairs(flag: str, items: list[str] | None, example: str) -> dict[str, str] | None:
    """Repeated KEY=VALUE items as a table; one line naming a malformed item."""
    if not items:
        return None
    table: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"{flag}: expected KEY=VALUE, e.g. {example} (got {item[:60]!r})")
        table[key.strip()] = value.strip()
    return table


def parse_sbatch(items: list[str] | None) -> dict[str, str] | None:
    """--sbatch KEY=VALUE items as a table (a leading -- is dropped)."""
    table = parse_pairs("--sbatch", items, "constraint=a100")
    return {key.removeprefix("--"): value for key, value in table.items()} if table else None


def _targets(items: list[str] | None) -> dict[str, float] | None:
    table = parse_pairs("--target", items, "test_accuracy=0.45")
    if table is None:
        return None
    targets: dict[str, float] = {}
    for metric, value in table.items():
        try:
            targets[metric] = float(value)
        except ValueError:
            fail(f"--target: {metric}={value[:40]!r} is not a number; e.g. test_accuracy=0.45")
    return targets


def _warmup(text: str | None) -> tuple[float | None, bool | None]:
    """--warmup S (seconds) or auto."""
    if text is None:
        return None, None
    if text.strip().lower() == "auto":
        return None, True
    try:
        return float(text), None
    except ValueError:
        fail(f"--warmup: {text[:40]!r} is neither a number of seconds nor auto")


def _cancel_jobs_decision(cancel: bool) -> Any:
    """Asked on Ctrl-C whether to cancel the cluster's jobs: yes with --cancel-on-interrupt;
    a terminal asks; a script (no terminal) leaves them running."""
    if cancel:
        return lambda job_ids: True
    if not sys.stdin.isatty():
        return None

    def ask(job_ids: Any) -> bool:
        return bool(
            typer.confirm(
                f"\nCancel the experiment's {len(job_ids)} Slurm job(s) still pending or "
                "running? (no: they keep running, and --resume re-attaches)",
                default=False,
                err=True,
            )
        )

    return ask


def _check_same_settings(
    store: Any, overrides: dict[str, Any], config: Path | None
) -> dict[str, Any] | None:
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
        listed = "; ".join(f"{item} ({_flag_of(item.setting)})" for item in found)
        fail(
            f"--resume continues {store.path} with its own settings, and these differ: "
            f"{listed}. Drop those flags (matching ones may stay), or start a new experiment "
            "with another --out"
        )
    return given_table("slurm", overrides, config) or None


def _flag_of(setting: str) -> str:
    table, _, key = setting.partition(".")
    if table == "meter_options":
        return "-o"
    if table == "slurm":
        return _SLURM_FLAGS.get(key, f"--{key.replace('_', '-')}")
    if table in ("margins", "targets", "sesoi"):
        return {"margins": "--margin", "targets": "--target", "sesoi": "--sesoi"}[table]
    if table == "params":
        return (
            f"--{key.replace('_', '-')}" if key in {"epochs", "batch_size", "data"} else "--param"
        )
    return _SETTING_FLAGS.get(setting, setting)


class _CompareCommand(Command):
    """compare's help shows each preset's values and the --protocol names, read from PRESETS
    when help is asked for (not at every start: the config module is not light to import)."""

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


def _preset_text(values: dict[str, Any]) -> str:
    params = values.get("params") or {}
    extras = "".join(f", {key} {value}" for key, value in params.items())
    warmup = f"warm-up {values['warmup_s']:g} s" if values["warmup_s"] else "no warm-up"
    return (
        f"{values['runs']} runs per policy, {warmup}, cool-down {values['cooldown_s']:g} s, "
        f"workload {values['workload']}{extras}, seed {values['seed']}"
    )


def terminate_like_ctrl_c() -> Any:
    """SIGTERM (what Slurm, systemd and ``timeout`` send) stops the experiment as Ctrl-C does;
    returns the handler it replaced (None where signals cannot be set: not the main thread)."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _summarise(folder: Path, rows: list[dict[str, Any]]) -> None:
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


def _reporter(*, quiet: bool, jsonl: bool) -> Any:
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
