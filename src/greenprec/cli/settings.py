"""``compare``'s options, declared once: each flag's name, metavar, help, ``--help`` panel and
the config setting it gives. One table feeds the command's typer signature, the overrides
passed to :func:`greenprec.experiment.config.load_config`, and the flag named in a message
about a setting (a resumed experiment's differences, a value the config refuses).

Library code never names a flag (the config knows ``warmup_s``, not ``--warmup``): the table
lives here, keyed by the config's setting names. A later command that shares flags with
``compare`` (``recommend``: the workload, meters, margins) takes those entries by name with
:func:`option_parameters` instead of declaring them again.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from greenprec.cli._common import (
    FLAG,
    MeterOption,
    OptionOption,
    fail,
    parse_options,
    parse_params,
)

__all__ = [
    "CLUSTER",
    "COMPARE_OPTIONS",
    "METERS",
    "OUTPUT",
    "PROTOCOL",
    "STATISTICS",
    "WORKLOAD",
    "Setting",
    "config_overrides",
    "flag_of",
    "option_parameters",
    "with_flags",
]

# The --help panels, in the order compare's help shows them (the order each first appears).
WORKLOAD = "Workload"
PROTOCOL = "Protocol"
METERS = "Meters"
OUTPUT = "Output and resuming"
STATISTICS = "Statistics"
CLUSTER = "Cluster (--executor slurm)"

ConfigValues = Mapping[str, object]
"""Config settings by name; a dotted name is one key of a table (``slurm.partition``)."""


@dataclass(frozen=True)
class Setting:
    """One option (or the argument) of a command, and the config settings its value gives."""

    name: str
    """The parameter typer passes the value as (``batch_size``)."""
    flag: str
    """``--batch-size``; the metavar for the argument."""
    metavar: str
    help: str
    panel: str | None
    annotation: object
    """The type typer converts the value to (``int | None``)."""
    default: object = None
    fields: tuple[str, ...] = ()
    """The config settings the value gives (``slurm.time_per_run_min``); none: the command's
    own option (``--out``), or an alternative spelling folded into another (``--quick``)."""
    convert: Callable[[object], ConfigValues] | None = None
    """The value -> its config settings (a None value: not given). Default: the value itself,
    for the one field."""
    short: str | None = None
    said_as: str | None = None
    """How a message names the setting, where not by its flag (``POLICY...``, ``-o``)."""
    argument: bool = False
    info: typer.models.ParameterInfo | None = None
    """The typer declaration, where the option is shared with other commands (``-m``, ``-o``:
    :data:`greenprec.cli._common.MeterOption`); otherwise built from the fields above."""

    @classmethod
    def from_annotated(
        cls,
        name: str,
        annotated: object,
        fields: tuple[str, ...],
        convert: Callable[[object], ConfigValues] | None = None,
        said_as: str | None = None,
    ) -> Setting:
        """An entry for an option declared as an ``Annotated`` alias in ``cli/_common.py``
        (shared with ``measure`` and ``meters``), read from that one declaration."""
        annotation, info = typing.get_args(annotated)
        if not isinstance(info, typer.models.OptionInfo):
            raise TypeError(f"{name}: expected Annotated[type, typer.Option(...)]")
        # In Annotated, typer takes the first positional name as the default: both are names.
        names = [
            item for item in (info.default, *(info.param_decls or ())) if isinstance(item, str)
        ]
        long_names = [item for item in names if item.startswith("--")]
        return cls(
            name=name,
            flag=long_names[0],
            metavar=str(info.metavar),
            help=str(info.help),
            panel=info.rich_help_panel,
            annotation=annotation,
            fields=fields,
            convert=convert,
            said_as=said_as,
            info=info,
        )

    @property
    def named(self) -> str:
        return self.said_as or self.flag

    def config_values(self, value: object) -> ConfigValues:
        """The config settings ``value`` (as typer passed it) gives; empty when not given."""
        if self.convert is not None:
            return self.convert(value)
        if not self.fields:
            return {}
        return {self.fields[0]: value}

    def parameter(self) -> inspect.Parameter:
        """The parameter of a command's signature that typer reads this option from."""
        info: typer.models.ParameterInfo
        if self.info is not None:
            info = self.info
        elif self.argument:
            info = typer.Argument(metavar=self.metavar, help=self.help, show_default=False)
        else:
            names = (self.flag, self.short) if self.short else (self.flag,)
            info = typer.Option(
                *names,
                metavar=self.metavar,
                help=self.help,
                rich_help_panel=self.panel,
            )
        return inspect.Parameter(
            self.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=self.default,
            annotation=Annotated[self.annotation, info],
        )


def option_parameters(
    settings: Iterable[Setting], names: Sequence[str] | None = None
) -> list[inspect.Parameter]:
    """The signature parameters of ``settings`` (only those called ``names``, in that order,
    when given): a command's ``__signature__``, which typer reads its options from."""
    by_name = {setting.name: setting for setting in settings}
    chosen = [by_name[name] for name in names] if names is not None else by_name.values()
    return [setting.parameter() for setting in chosen]


def config_overrides(settings: Iterable[Setting], given: Mapping[str, object]) -> dict[str, object]:
    """The config settings the options ``given`` (by parameter name) set, for ``load_config``:
    a dotted setting goes into its table (``{"slurm": {"partition": ...}}``); a setting whose
    option was not given is left out."""
    overrides: dict[str, object] = {}
    tables: dict[str, dict[str, object]] = {}
    for setting in settings:
        for key, value in setting.config_values(given.get(setting.name)).items():
            if value is None:
                continue
            table, dot, sub = key.partition(".")
            if dot:
                tables.setdefault(table, {})[sub] = value
            else:
                overrides[key] = value
    return {**overrides, **tables}


def flag_of(setting: str, settings: Iterable[Setting]) -> str:
    """How the user gives ``setting`` (``runs``, ``params.epochs``, ``slurm.exclusive``) on the
    command line; the setting itself when only a config file can (``min_runs``)."""
    by_field = {field: option.named for option in settings for field in option.fields}
    if setting in by_field:
        return by_field[setting]
    table, _, key = setting.partition(".")
    if table == "params" and key in by_field:
        return by_field[key]  # a shortcut (--epochs) rather than --param epochs=...
    return by_field.get(table, setting)


def with_flags(message: str, overrides: Mapping[str, object], settings: Iterable[Setting]) -> str:
    """``message`` (a ConfigError's, one problem a line: ``runs: Input should be ...``) with
    the flag after each line about a setting the flags gave (``... (--runs)``): the config
    names its settings, the user wrote flags. Lines about settings a config file gave, or
    about no setting, stay as they are."""
    settings = tuple(settings)
    given: set[str] = set()
    for name, value in overrides.items():
        given.add(name)
        if isinstance(value, Mapping) and name == "slurm":
            given.update(f"{name}.{key}" for key in value)
    lines = []
    for line in message.split("\n"):
        setting, colon, _ = line.partition(":")
        flag = flag_of(setting, settings)
        named = colon and setting in given and flag != setting
        lines.append(f"{line} ({flag})" if named else line)
    return "\n".join(lines)


# -- the conversions of values that are not the setting itself --------------------------------


def _strings(value: object) -> list[str]:
    """A repeatable option's values (typer passes None when it was not given)."""
    return [str(item) for item in value] if isinstance(value, list) else []


def _parse_pairs(flag: str, items: list[str], example: str) -> dict[str, str] | None:
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


def _pairs(field: str, flag: str, example: str) -> Callable[[object], ConfigValues]:
    return lambda value: {field: _parse_pairs(flag, _strings(value), example)}


def _list(field: str) -> Callable[[object], ConfigValues]:
    return lambda value: {field: _strings(value) or None}


def _off_when_given(field: str) -> Callable[[object], ConfigValues]:
    """A flag that turns a setting off (``--no-shuffle``: ``shuffle = false``)."""
    return lambda value: {field: False if value else None}


def _meter_options(value: object) -> ConfigValues:
    return {"meter_options": parse_options(_strings(value)) or None}


def _params(value: object) -> ConfigValues:
    return {"params": parse_params(_strings(value)) or None}


def _sbatch(value: object) -> ConfigValues:
    """--sbatch KEY=VALUE items (a leading -- is dropped: sbatch's own spelling)."""
    table = _parse_pairs("--sbatch", _strings(value), "constraint=a100")
    options = {key.removeprefix("--"): item for key, item in table.items()} if table else None
    return {"slurm.sbatch": options}


def _targets(value: object) -> ConfigValues:
    table = _parse_pairs("--target", _strings(value), "test_accuracy=0.45")
    if table is None:
        return {}
    targets: dict[str, float] = {}
    for metric, text in table.items():
        try:
            targets[metric] = float(text)
        except ValueError:
            fail(f"--target: {metric}={text[:40]!r} is not a number; e.g. test_accuracy=0.45")
    return {"targets": targets}


def _warmup(value: object) -> ConfigValues:
    """--warmup S (seconds) or auto (until the power settles, the preset's warm-up its cap)."""
    if not isinstance(value, str):
        return {}
    if value.strip().lower() == "auto":
        return {"warmup_auto": True}
    try:
        return {"warmup_s": float(value)}
    except ValueError:
        fail(f"--warmup: {value[:40]!r} is neither a number of seconds nor auto")


_STR = str | None
_INT = int | None
_FLOAT = float | None
_STRINGS = list[str] | None
_PATH = Path | None
_SWITCH = bool | None
"""An on/off flag whose absence leaves the setting to the preset and the config file."""

COMPARE_OPTIONS: tuple[Setting, ...] = (
    Setting(
        "policies",
        "POLICY",
        "POLICY",
        "Precision policies to compare: fp32, mixed, bf16.",
        None,
        _STRINGS,
        fields=("policies",),
        convert=_list("policies"),
        said_as="POLICY...",
        argument=True,
    ),
    Setting(
        "workload",
        "--workload",
        "NAME",
        "Workload name or module.path:function.",
        WORKLOAD,
        _STR,
        fields=("workload",),
    ),
    Setting("runs", "--runs", "N", "Runs per policy.", PROTOCOL, _INT, fields=("runs",)),
    Setting(
        "seed",
        "--seed",
        "N",
        "Experiment seed (schedule and runs).",
        PROTOCOL,
        _INT,
        fields=("seed",),
    ),
    Setting(
        "warmup",
        "--warmup",
        "S|auto",
        "CPU warm-up before the first run, seconds; auto: until the measured power settles "
        "(the preset's warm-up, or 300 s, as its cap).",
        PROTOCOL,
        _STR,
        fields=("warmup_s", "warmup_auto"),
        convert=_warmup,
    ),
    Setting(
        "cooldown",
        "--cooldown",
        "S",
        "Rest between runs, seconds.",
        PROTOCOL,
        _FLOAT,
        fields=("cooldown_s",),
    ),
    Setting(
        "baseline",
        "--baseline",
        "S",
        "Measure idle power this long first, seconds.",
        PROTOCOL,
        _FLOAT,
        fields=("baseline_s",),
    ),
    Setting.from_annotated("meter", MeterOption, ("meters",), _list("meters")),
    Setting.from_annotated(
        "option", OptionOption, ("meter_options",), _meter_options, said_as="-o"
    ),
    Setting(
        "interval",
        "--interval",
        "S",
        "Sampling interval, seconds.",
        METERS,
        _FLOAT,
        fields=("interval_s",),
    ),
    Setting(
        "run_timeout",
        "--run-timeout",
        "S",
        "Stop a run still going after this many seconds (recorded as failed: timed out). "
        "Default: the workload's own generous limit (digits-cnn 1800 s).",
        PROTOCOL,
        _FLOAT,
        fields=("run_timeout_s",),
    ),
    Setting(
        "out",
        "--out",
        "DIR",
        "Results folder (default: greenprec-results/DATE-TIME).",
        OUTPUT,
        _PATH,
    ),
    Setting(
        "resume",
        "--resume",
        FLAG,
        "Continue the experiment in --out with its own settings (other flags may stay if they "
        "match them).",
        OUTPUT,
        bool,
        default=False,
    ),
    Setting(
        "retry_failed",
        "--retry-failed",
        FLAG,
        "With --resume, also run failed runs again.",
        OUTPUT,
        bool,
        default=False,
    ),
    Setting(
        "no_shuffle",
        "--no-shuffle",
        FLAG,
        "Run in policy order, not seeded random order.",
        PROTOCOL,
        bool,
        default=False,
        fields=("shuffle",),
        convert=_off_when_given("shuffle"),
    ),
    Setting(
        "isolation",
        "--isolation",
        "process|inline",
        "process (a fresh Python per run) or inline.",
        PROTOCOL,
        _STR,
        fields=("isolation",),
    ),
    # The workload's parameters: shortcuts (a config file's ``epochs = 3`` too) and --param.
    Setting("epochs", "--epochs", "N", "Workload epochs.", WORKLOAD, _INT, fields=("epochs",)),
    Setting(
        "batch_size",
        "--batch-size",
        "N",
        "Workload batch size.",
        WORKLOAD,
        _INT,
        fields=("batch_size",),
    ),
    Setting(
        "data",
        "--data",
        "PATH",
        "Workload data path (e.g. CIFAR-10).",
        WORKLOAD,
        _STR,
        fields=("data",),
    ),
    Setting(
        "param",
        "--param",
        "KEY=VALUE",
        "Workload parameter (repeatable).",
        WORKLOAD,
        _STRINGS,
        fields=("params",),
        convert=_params,
    ),
    Setting(
        "config",
        "--config",
        "FILE",
        "TOML file with the same fields.",
        PROTOCOL,
        _PATH,
    ),
    # An alternative spelling of --protocol quick: compare folds it in (and refuses both).
    Setting(
        "quick",
        "--quick",
        FLAG,
        "The quick preset (--protocol quick): see below.",
        PROTOCOL,
        bool,
        default=False,
    ),
    Setting(
        "protocol",
        "--protocol",
        "NAME",
        # The names and values come from PRESETS when help is shown (compare's help).
        "A preset: see below.",
        PROTOCOL,
        _STR,
        fields=("protocol",),
        said_as="--protocol/--quick",
    ),
    Setting(
        "deterministic",
        "--deterministic",
        FLAG,
        "Enable TensorFlow op determinism.",
        WORKLOAD,
        _SWITCH,
        fields=("deterministic",),
    ),
    Setting(
        "fail_fast",
        "--fail-fast",
        FLAG,
        "Stop at the first failed run.",
        PROTOCOL,
        _SWITCH,
        fields=("fail_fast",),
    ),
    Setting(
        "margin",
        "--margin",
        "METRIC=M",
        "Equivalence margin: test_accuracy=1pp (within ±1 pp), test_accuracy=-1pp (not worse "
        "than −1 pp), energy_j=+5% (of the reference mean); an accuracy needs its unit (pp or "
        "%, or a fraction below 1); repeatable (docs/stats.md).",
        STATISTICS,
        _STRINGS,
        fields=("margins",),
        convert=_pairs("margins", "--margin", "test_accuracy=1pp"),
    ),
    Setting(
        "sesoi",
        "--sesoi",
        "METRIC=SPEC",
        "Smallest effect of interest, for the runs needed: energy_j=5% (of the reference "
        "mean), test_accuracy=1pp; repeatable. Default: the metric's margin.",
        STATISTICS,
        _STRINGS,
        fields=("sesoi",),
        convert=_pairs("sesoi", "--sesoi", "energy_j=5%"),
    ),
    Setting(
        "adaptive",
        "--adaptive",
        FLAG,
        "Stop when every question is settled (group-sequential, alpha spending), at most "
        "--max-runs per policy.",
        STATISTICS,
        _SWITCH,
        fields=("adaptive",),
    ),
    # With --adaptive, the runs setting under its adaptive name: compare folds it into runs.
    Setting(
        "max_runs",
        "--max-runs",
        "N",
        "With --adaptive: the most runs per policy.",
        STATISTICS,
        _INT,
    ),
    Setting(
        "target",
        "--target",
        "METRIC=VALUE",
        "Energy to a target, e.g. test_accuracy=0.45: the energy at which each run first "
        "reached it (evaluates the test set after every epoch); repeatable.",
        STATISTICS,
        _STRINGS,
        fields=("targets",),
        convert=_targets,
    ),
    Setting(
        "stop_at_target",
        "--stop-at-target",
        FLAG,
        "With --target: end each run's training at the epoch that reaches every target, so no "
        "energy is spent after it (at most the workload's epochs).",
        PROTOCOL,
        _SWITCH,
        fields=("stop_at_target",),
    ),
    Setting(
        "idle_before_run",
        "--idle-before-run",
        "S",
        "Measure idle power this long before each run.",
        PROTOCOL,
        _FLOAT,
        fields=("idle_before_run_s",),
    ),
    Setting(
        "wait_for_idle",
        "--wait-for-idle",
        "S",
        "Before each run, wait until the machine is idle (other processes under 10 % of the "
        "CPUs over 1 s, no other GPU process), S seconds at most; a run that starts after the "
        "bound is recorded as measured under load (docs/compare.md).",
        PROTOCOL,
        _FLOAT,
        fields=("wait_for_idle_s",),
    ),
    Setting(
        "nproc_per_node",
        "--nproc-per-node",
        "N",
        "Processes per node of each run (torch.distributed ranks, launched with torchrun): a "
        "PyTorch workload that trains with DDP. The run records each host's energy and the "
        "total (docs/compare.md).",
        PROTOCOL,
        _INT,
        fields=("nproc_per_node",),
    ),
    Setting(
        "nodes",
        "--nodes",
        "N",
        "Nodes each run spans (with --executor slurm: the job asks for N nodes and launches "
        "each run with srun and torchrun; debug simulates the nodes here).",
        CLUSTER,
        _INT,
        fields=("nodes",),
    ),
    Setting(
        "executor",
        "--executor",
        "local|slurm|debug",
        "local (runs one after another here, the default), slurm (one Slurm job per block "
        "of runs, through submitit; see docs/cluster.md) or debug (slurm's protocol with each "
        "block's job a process here, no scheduler: to try a cluster set-up on one machine).",
        CLUSTER,
        _STR,
        fields=("executor",),
    ),
    Setting(
        "partition",
        "--partition",
        "NAME",
        "Slurm partition of the jobs.",
        CLUSTER,
        _STR,
        fields=("slurm.partition",),
    ),
    Setting(
        "account",
        "--account",
        "NAME",
        "Slurm account charged for the jobs.",
        CLUSTER,
        _STR,
        fields=("slurm.account",),
    ),
    Setting(
        "qos",
        "--qos",
        "NAME",
        "Slurm QOS of the jobs.",
        CLUSTER,
        _STR,
        fields=("slurm.qos",),
    ),
    Setting(
        "time_per_run",
        "--time-per-run",
        "MIN",
        "Minutes a run may take on the cluster (a job asks for this per run of its block). "
        "Default: the run's time limit.",
        CLUSTER,
        _INT,
        fields=("slurm.time_per_run_min",),
    ),
    Setting(
        "gres",
        "--gres",
        "SPEC",
        "Slurm --gres of each job (gpu:1).",
        CLUSTER,
        _STR,
        fields=("slurm.gres",),
    ),
    Setting(
        "cpus_per_task",
        "--cpus-per-task",
        "N",
        "Slurm --cpus-per-task of each job.",
        CLUSTER,
        _INT,
        fields=("slurm.cpus_per_task",),
    ),
    Setting(
        "mem_gb",
        "--mem-gb",
        "GB",
        "Memory of each job, GB.",
        CLUSTER,
        _FLOAT,
        fields=("slurm.mem_gb",),
    ),
    Setting(
        "shared",
        "--shared",
        FLAG,
        "Let jobs share nodes (not --exclusive). RAPL and NVML count the whole machine: a run "
        "may then measure another job's energy; the report warns.",
        CLUSTER,
        _SWITCH,
        fields=("slurm.exclusive",),
        convert=_off_when_given("slurm.exclusive"),
    ),
    Setting(
        "max_in_flight",
        "--max-in-flight",
        "N",
        "Slurm jobs (blocks) submitted at once. Default: all.",
        CLUSTER,
        _INT,
        fields=("slurm.max_in_flight",),
    ),
    Setting(
        "sbatch",
        "--sbatch",
        "KEY=VALUE",
        "A further sbatch option for each job, e.g. constraint=a100 (repeatable).",
        CLUSTER,
        _STRINGS,
        fields=("slurm.sbatch",),
        convert=_sbatch,
    ),
    Setting(
        "cancel_on_interrupt",
        "--cancel-on-interrupt",
        FLAG,
        "On Ctrl-C, cancel the experiment's Slurm jobs without asking (for scripts). Otherwise "
        "a terminal asks, and a script leaves them running.",
        CLUSTER,
        bool,
        default=False,
    ),
    Setting(
        "quiet",
        "--quiet",
        FLAG,
        "Print only the summary.",
        OUTPUT,
        bool,
        default=False,
        short="-q",
    ),
    Setting(
        "jsonl",
        "--jsonl",
        FLAG,
        "Progress as JSON lines on stdout.",
        OUTPUT,
        bool,
        default=False,
    ),
)
"""``greenprec compare``'s argument and options, in the order ``--help`` lists them."""
