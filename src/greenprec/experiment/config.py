"""The experiment's configuration: presets, a TOML file and flags, validated before any run."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from greenprec.errors import ConfigError, GreenprecWarning

__all__ = [
    "MAX_JOB_MINUTES",
    "PARAM_SHORTCUTS",
    "PRESETS",
    "Configuration",
    "Difference",
    "ExperimentConfig",
    "Preset",
    "SelectionSettings",
    "SlurmConfig",
    "differences",
    "given_table",
    "load_config",
    "load_table",
    "run_timeout_for",
    "stored_config",
    "unused_meter_options",
    "validate",
]

if TYPE_CHECKING:
    from greenprec.experiment.candidates import Candidate
    from greenprec.results import ExperimentRecord

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


class _Protocol(TypedDict):
    workload: str
    runs: int
    seed: int
    warmup_s: float
    cooldown_s: float
    interval_s: float


class Preset(_Protocol, total=False):
    """A complete protocol, named: the settings a config file and then flags override."""

    params: dict[str, int]
    """The workload's parameters, for this preset's workload (and its PyTorch twin) only."""


# Each preset is a complete protocol; a config file and then flags override it field by field.
PRESETS: dict[str, Preset] = {
    # Between a smoke test and the paper: minutes on a laptop, enough runs for a first answer.
    "default": {
        "workload": "digits-cnn",
        "runs": 10,
        "seed": 42,
        "warmup_s": 60.0,
        "cooldown_s": 30.0,
        "interval_s": 0.2,
    },
    # About a minute on 2 cores where float16 is not pathologically emulated: the README's
    # main command. Three epochs keep an emulated mixed run bounded (docs/compare.md).
    "quick": {
        "workload": "digits-cnn",
        "params": {"epochs": 3},
        "runs": 3,
        "seed": 42,
        "warmup_s": 0.0,
        "cooldown_s": 2.0,
        "interval_s": 0.2,
    },
    # The published study: CIFAR-10 CNN, 30 runs per policy, seed 42, 5 min warm-up, 2 min rest.
    "paper": {
        "workload": "cifar10-cnn",
        "runs": 30,
        "seed": 42,
        "warmup_s": 300.0,
        "cooldown_s": 120.0,
        "interval_s": 0.2,
    },
}

# Shortcuts a config file or flag may set directly; they travel to the workload as params.
PARAM_SHORTCUTS = ("epochs", "batch_size", "data", "train_size")


# Finite bounds on every duration and count: ``inf`` busy-looped for ever (warm-up), overflowed
# (cool-down 1e300) or left a folder no one could resume (interval inf), and a huge run count
# built its schedule until memory ran out. Each bound is far beyond any real experiment.
_MAX_RUNS = 10_000
"""Runs per policy: the study used 30."""
_MAX_CONFIGURATIONS = 64
"""Configurations one experiment compares (see greenprec.experiment.candidates)."""
_MAX_PHASE_S = 86_400.0
"""A warm-up, cool-down or idle baseline: at most a day."""
_MAX_INTERVAL_S = 60.0
"""The sampling interval: a minute (RAPL counters wrap in minutes under load)."""
_MAX_RUN_TIMEOUT_S = 30 * 86_400.0
"""A run's time limit: at most 30 days."""
_MAX_RANKS = 64
"""The most processes per node, and nodes, one run may span."""


MAX_JOB_MINUTES = 30 * 24 * 60
"""A Slurm job's time limit: at most 30 days, in minutes (what sbatch's ``--time`` takes)."""

# sbatch options a user may add through ``slurm.sbatch``: a long option's name. Values are
# quoted by submitit; a newline in either would be a new line of the batch script.
_SBATCH_KEY = r"^[a-z][a-z0-9-]{0,40}$"
# What greenprec sets itself: given again, the job would not be what the experiment records.
_SBATCH_OWN = frozenset(
    {
        "array",
        "exclusive",
        "oversubscribe",
        "requeue",
        "no-requeue",
        "output",
        "error",
        "job-name",
        "signal",
        "open-mode",
        "nodes",
        "ntasks",
        "ntasks-per-node",
        "wrap",
        "time",
    }
)
# sbatch options the [slurm] table has a key for: given through sbatch, one would silently
# override the other (or both would be written).
_SBATCH_TABLE_KEYS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "gres": "gres",
    "cpus-per-task": "cpus_per_task",
    "mem": "mem_gb",
}


def _sbatch_owner(key: str) -> str | None:
    """The option greenprec sets that ``key`` names. sbatch, like getopt_long, takes any
    unique prefix of a long option (``--arr`` is ``--array``): a prefix counts too."""
    for option in sorted(_SBATCH_OWN):
        if option == key or (len(key) >= 2 and option.startswith(key)):
            return option
    return None


def _one_line(value: str, name: str) -> str:
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError(f"{name} must be one line (it goes into the batch script)")
    return value


class SlurmConfig(BaseModel):
    """The ``[slurm]`` table: how each block's job is submitted (see docs/cluster.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    partition: str | None = Field(default=None, min_length=1, max_length=200)
    account: str | None = Field(default=None, min_length=1, max_length=200)
    qos: str | None = Field(default=None, min_length=1, max_length=200)
    time_per_run_min: StrictInt | None = Field(default=None, ge=1, le=MAX_JOB_MINUTES)
    """Minutes one run may take on the cluster; the job asks for this per run of its block,
    plus the warm-up, the cool-downs and the idle baseline. None: the run's time limit."""
    gres: str | None = Field(default=None, min_length=1, max_length=200)
    """Generic resources per job, as sbatch's ``--gres`` takes them (``gpu:1``)."""
    cpus_per_task: StrictInt | None = Field(default=None, ge=1, le=4096)
    mem_gb: float | None = Field(default=None, gt=0, le=65536, allow_inf_nan=False)
    exclusive: StrictBool = True
    """Each job has its node to itself: RAPL and NVML count the whole machine, so two jobs on
    one node would each measure the other's energy. False only with a warning in the report."""
    max_in_flight: StrictInt | None = Field(default=None, ge=1, le=_MAX_RUNS)
    """Jobs (blocks) submitted at once; a job runs its block's runs one after another, so this
    is also how many runs measure at once. None: every block at once."""
    sbatch: dict[str, str] = Field(default_factory=dict)
    """Further sbatch options, ``name = "value"`` (``constraint = "a100"``, ``mail-type``)."""
    poll_s: float = Field(default=10.0, ge=0.2, le=600, allow_inf_nan=False)
    """How often the submitting process asks Slurm about its jobs."""

    @field_validator("partition", "account", "qos", "gres")
    @classmethod
    def _line(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _one_line(value, str(info.field_name))

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, options: dict[str, str]) -> dict[str, str]:
        import re

        for key, value in options.items():
            if re.fullmatch(_SBATCH_KEY, key) is None:
                raise ValueError(
                    f"{key[:40]!r} is not an sbatch option name (lower-case letters, digits "
                    "and '-', as in constraint or mail-type)"
                )
            owner = _sbatch_owner(key)
            if owner is not None:
                named = "" if owner == key else f" (sbatch reads it as --{owner})"
                raise ValueError(f"{key!r}{named} is set by greenprec itself; it cannot be given")
            table_key = next(
                (k for option, k in _SBATCH_TABLE_KEYS.items() if option.startswith(key)), None
            )
            if table_key is not None and len(key) >= 2:
                raise ValueError(
                    f"{key!r} has its own key in the [slurm] table: set {table_key} there"
                )
            _one_line(str(value), f"sbatch.{key}")
        return {key: str(value) for key, value in options.items()}


ParamValue = StrictBool | StrictInt | float | str


class Configuration(BaseModel):
    """One configuration an experiment compares when it varies more than the policy: a
    precision policy with workload parameter overrides (``greenprec recommend --vary``).

    Its ``label`` (``bf16-batch_size=256``) is what its runs record as their ``policy`` and what
    the report groups them by; ``policy`` is the precision policy they apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    policy: str
    params: dict[str, ParamValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Configuration:
        from greenprec.experiment.candidates import Candidate

        candidate = Candidate(self.policy, tuple(self.params.items()))  # ConfigError: unsafe
        if candidate.label != self.label:
            raise ValueError(
                f"configuration {self.label[:60]!r}: its label must be {candidate.label!r} "
                "(the policy, then KEY=VALUE for each parameter)"
            )
        return self

    @property
    def candidate(self) -> Candidate:
        from greenprec.experiment.candidates import Candidate

        return Candidate(self.policy, tuple(self.params.items()))


class SelectionSettings(BaseModel):
    """How ``greenprec recommend`` selects: after each block, configurations shown worse in
    energy to the target are dropped (:func:`greenprec.stats.select_look`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    indifference: str = "3%"
    """Configurations whose energy to the target is within this of the leader's count as
    equally good (``"3%"``)."""
    min_reached_share: float = Field(default=0.8, gt=0, le=1, allow_inf_nan=False)
    """A configuration whose runs reach the target less often than this is not recommended."""
    alpha: float = Field(default=0.05, gt=0, lt=0.5, allow_inf_nan=False)
    """The chance of dropping the best configuration (or wrongly calling another within the
    indifference zone of it) at any look."""

    @field_validator("indifference")
    @classmethod
    def _indifference(cls, value: str) -> str:
        from greenprec.stats.selection import parse_indifference

        parse_indifference(value)  # ConfigError names the problem
        return value


class ExperimentConfig(BaseModel):
    """Everything ``greenprec compare`` needs; stored in ``experiment.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    policies: list[str] = Field(min_length=1)
    protocol: Literal["default", "quick", "paper"] = "default"
    workload: str = "digits-cnn"
    runs: StrictInt = Field(default=10, ge=1, le=_MAX_RUNS, description="runs per policy")
    seed: StrictInt = 42
    warmup_s: float = Field(default=60.0, ge=0, le=_MAX_PHASE_S, allow_inf_nan=False)
    cooldown_s: float = Field(default=30.0, ge=0, le=_MAX_PHASE_S, allow_inf_nan=False)
    baseline_s: float = Field(default=0.0, ge=0, le=_MAX_PHASE_S, allow_inf_nan=False)
    meters: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    meter_options: dict[str, str] = Field(default_factory=dict)
    interval_s: float = Field(default=0.2, gt=0, le=_MAX_INTERVAL_S, allow_inf_nan=False)
    run_timeout_s: float | None = Field(
        default=None, gt=0, le=_MAX_RUN_TIMEOUT_S, allow_inf_nan=False
    )
    """A run still going after this long is stopped and recorded as failed ("timed out after N
    s"). None: the workload's own generous default (see :func:`run_timeout_for`)."""
    shuffle: StrictBool = True
    isolation: Literal["process", "inline"] = "process"
    margins: dict[str, str] = Field(default_factory=dict)
    """Equivalence or non-inferiority margins per metric: ``test_accuracy = "1pp"`` (within
    ±1 pp), ``"-1pp"`` (not worse than −1 pp), ``energy_j = "+5%"``; see docs/stats.md."""
    sesoi: dict[str, str] = Field(default_factory=dict)
    """The smallest effect of interest per metric, for planning ("runs needed"): ``energy_j =
    "5%"`` (5 % of the reference mean), ``test_accuracy = "1pp"``. Default: the metric's
    margin; energy without either gets no runs-needed figure."""
    adaptive: StrictBool = False
    """Stop when every question is settled (a group-sequential design), at most ``runs``
    runs per policy, in blocks of one run of each policy."""
    min_runs: StrictInt = Field(default=3, ge=2, le=_MAX_RUNS)
    """Adaptive: runs per policy before the first look."""
    warmup_auto: StrictBool = False
    """Warm up until the measured power settles, ``warmup_s`` at most."""
    targets: dict[str, float] = Field(default_factory=dict)
    """Energy to a target: ``test_accuracy = 0.45`` records, per run, the energy at which the
    metric first reached it (workloads that report their epochs)."""
    stop_at_target: StrictBool = False
    """End each run's training at the epoch that reaches every target (``ctx.epoch_end``
    returns True; Keras: the callback stops ``fit``), so no energy is spent after it; at most
    the workload's epochs. Needs ``targets``."""
    idle_before_run_s: float = Field(default=0.0, ge=0, le=_MAX_PHASE_S, allow_inf_nan=False)
    """Measure this long idle just before each run: the run's ``idle_power_w``."""
    wait_for_idle_s: float = Field(default=0.0, ge=0, le=_MAX_PHASE_S, allow_inf_nan=False)
    """Before each run, wait until the machine is quiet, this long at most (0: do not wait).
    Quiet: over a 1 s window other processes used at most 10 % of the CPU capacity, CPU steal
    was at most 5 % and no other process computed on the GPUs
    (:func:`greenprec.machine_load.wait_for_idle`). When the bound passes first, the run goes
    on and its ``load`` records it as measured under load, with what was seen."""
    executor: Literal["local", "slurm", "debug"] = "local"
    """Where runs execute: here, one after another; as Slurm jobs (one per block); or
    ``debug``: the cluster protocol with each block's job a process on this machine."""
    slurm: SlurmConfig | None = None
    """How the jobs are submitted (``executor = "slurm"``)."""
    nproc_per_node: StrictInt = Field(default=1, ge=1, le=_MAX_RANKS)
    """Processes (torch.distributed ranks) per node of each run: above 1, each run is launched
    through torchrun and its workload trains with DDP (see docs/compare.md)."""
    nodes: StrictInt = Field(default=1, ge=1, le=_MAX_RANKS)
    """Nodes each run spans (the Slurm executor: one ``srun`` step per run; the debug executor
    simulates them on this machine)."""
    params: dict[str, Any] = Field(default_factory=dict)
    configurations: list[Configuration] = Field(default_factory=list)
    """The configurations compared, when more than the policy varies (``greenprec recommend
    --vary``); empty: one per policy. Each one's policy is among ``policies``."""
    selection: SelectionSettings | None = None
    """Select the configuration with the least energy to the target (``greenprec recommend``):
    a look after each block drops those shown worse, and the experiment stops when one is
    left or the rest are within the indifference zone. Needs a target and ``stop_at_target``."""
    grid_intensity: str | None = None
    """A grid carbon intensity (``"350g/kWh"``) to convert energy to CO2e in the
    recommendation; a conversion the user states, never looked up."""
    deterministic: StrictBool = False
    fail_fast: StrictBool = False

    @field_validator("policies")
    @classmethod
    def _canonical_policies(cls, policies: list[str]) -> list[str]:
        from greenprec.precision import resolve_policy

        names = [resolve_policy(policy).name for policy in policies]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"policy listed twice: {', '.join(duplicates)}")
        return names

    @field_validator("margins")
    @classmethod
    def _margins(cls, margins: dict[str, str]) -> dict[str, str]:
        from greenprec.stats import parse_margin

        for metric, spec in margins.items():
            parse_margin(f"{metric}={spec}")  # ConfigError names the problem
        return margins

    @field_validator("sesoi")
    @classmethod
    def _sesoi(cls, sesoi: dict[str, str]) -> dict[str, str]:
        from greenprec.stats import parse_sesoi

        for metric, spec in sesoi.items():
            parse_sesoi(f"{metric}={spec}")  # ConfigError names the problem
        return sesoi

    @field_validator("targets")
    @classmethod
    def _targets(cls, targets: dict[str, float]) -> dict[str, float]:
        for metric, value in targets.items():
            if not metric.isidentifier():
                raise ValueError(f"target metric {metric[:40]!r} is not a metric name")
            if not math.isfinite(value):
                raise ValueError(f"target {metric} must be a finite number, got {value!r}")
        return targets

    @field_validator("stop_at_target")
    @classmethod
    def _stop_needs_a_target(cls, stop: bool, info: ValidationInfo) -> bool:
        # Declared after targets: info.data has them (when they were valid).
        if stop and not info.data.get("targets", {"unchecked": 0.0}):
            raise ValueError(
                "stopping at the target needs a target; add one, e.g. --target "
                "test_accuracy=0.97 (a [targets] table in a config file)"
            )
        return stop

    @field_validator("nproc_per_node")
    @classmethod
    def _ranks_need_a_process(cls, nproc: int, info: ValidationInfo) -> int:
        # Declared after isolation: info.data has it. torchrun starts the ranks as processes
        # of their own; an inline run has no process to hand them to.
        if nproc > 1 and info.data.get("isolation") == "inline":
            raise ValueError(
                "several processes per node launch each run through torchrun, which needs "
                'isolation = "process" (the default), not inline'
            )
        return nproc

    @field_validator("nodes")
    @classmethod
    def _nodes_need_a_cluster(cls, nodes: int, info: ValidationInfo) -> int:
        # Declared after executor and isolation: info.data has them (when they were valid).
        executor = info.data.get("executor", "slurm")
        if nodes > 1 and executor not in _BLOCK_EXECUTORS:
            raise ValueError(
                'a run across several nodes needs executor = "slurm" (or "debug", which '
                "simulates the nodes on this machine)"
            )
        if nodes > 1 and info.data.get("isolation") == "inline":
            raise ValueError(
                "a run across several nodes is launched with srun and torchrun: it needs "
                'isolation = "process" (the default), not inline'
            )
        return nodes

    @field_validator("grid_intensity")
    @classmethod
    def _grid_intensity(cls, value: str | None) -> str | None:
        if value is not None:
            from greenprec.carbon import parse_grid_intensity

            try:
                parse_grid_intensity(value)
            except ConfigError as error:
                # The setting names itself: the forms that were probably meant, once.
                raise ValueError(str(error).removeprefix("grid intensity: ")) from None
        return value

    @model_validator(mode="after")
    def _combinations(self) -> ExperimentConfig:
        self._check_configurations()
        if self.selection is not None:
            if self.adaptive:
                raise ValueError(
                    "selection and adaptive are two stopping rules; a recommendation stops by "
                    "its own looks, so leave adaptive off"
                )
            if not self.targets or not self.stop_at_target:
                raise ValueError(
                    "selection compares energy to a target: it needs a target (e.g. "
                    "test_accuracy = 0.97) and stop_at_target = true"
                )
            if len(self.arms()) < 2:
                raise ValueError(
                    "selection needs at least two configurations; name two policies or vary a "
                    "parameter (e.g. batch_size = [64, 256])"
                )
            if self.runs < self.min_runs:
                raise ValueError(
                    f"selection: runs (the maximum per configuration, {self.runs}) must be at "
                    f"least min_runs ({self.min_runs}), the runs before the first look"
                )
        # A cluster executor runs an adaptive experiment too: it submits its blocks in waves,
        # looking after each (greenprec.experiment.cluster.Waves).
        if self.adaptive and self.runs < self.min_runs:
            raise ValueError(
                f"adaptive: runs (the maximum per policy, {self.runs}) must be at least "
                f"min_runs ({self.min_runs}), the runs before the first look"
            )
        if self.warmup_auto and self.warmup_s <= 0:
            raise ValueError("warmup_auto: warmup_s is its time cap and must be above 0")
        return self

    def _check_configurations(self) -> None:
        if not self.configurations:
            return
        labels = [c.label for c in self.configurations]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise ValueError(f"configuration listed twice: {', '.join(twice)}")
        unknown = sorted({c.policy for c in self.configurations} - set(self.policies))
        if unknown:
            raise ValueError(f"configurations use policies not in policies: {', '.join(unknown)}")
        if len(self.configurations) > _MAX_CONFIGURATIONS:
            raise ValueError(f"at most {_MAX_CONFIGURATIONS} configurations")

    def arms(self) -> tuple[Candidate, ...]:
        """What the experiment compares, in order (the first is the reference): its
        configurations, else one per policy."""
        from greenprec.experiment.candidates import Candidate

        if self.configurations:
            return tuple(c.candidate for c in self.configurations)
        return tuple(Candidate(policy) for policy in self.policies)

    @property
    def arm_labels(self) -> list[str]:
        """The labels its runs are grouped by (their ``policy`` field)."""
        return [arm.label for arm in self.arms()]

    @property
    def slurm_settings(self) -> SlurmConfig:
        """The ``[slurm]`` table, or its defaults."""
        return self.slurm or SlurmConfig()


_DEFAULT_WARMUP_CAP_S = 300.0
"""An automatic warm-up's time cap when neither the preset nor the user gives one."""

_DEFAULT_RUN_TIMEOUT_S = 12 * 3600.0
"""A user workload that declares no time of its own gets half a day per run."""


def run_timeout_for(config: ExperimentConfig) -> float:
    """The time limit of one run: the config's, else the workload's (``timeout_s`` attribute, a
    number or a function of the params), else half a day."""
    if config.run_timeout_s is not None:
        return config.run_timeout_s
    from greenprec.workloads import get_workload

    try:
        declared = getattr(get_workload(config.workload), "timeout_s", None)
    except ConfigError:
        declared = None
    value = declared(config.params) if callable(declared) else declared
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(min(value, _MAX_RUN_TIMEOUT_S))
    return _DEFAULT_RUN_TIMEOUT_S


def _load_toml(path: Path) -> dict[str, Any]:
    """A TOML file's table; ConfigError (``param="config"``) naming the file when it cannot be
    read or is not TOML."""
    try:
        with path.open("rb") as handle:
            values: dict[str, Any] = tomllib.load(handle)
            return values
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; check its path", param="config"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a folder; give the path of a TOML file", param="config"
        ) from None
    except OSError as error:
        raise ConfigError(
            f"cannot read the config file {path}: {error.strerror or error}; check its permissions",
            param="config",
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8",
            param="config",
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"config file {path} is not valid TOML: {error}", param="config"
        ) from None


# Settings that load_config merges itself before validation: their shape is checked first,
# or ``params = 5`` ends in a TypeError instead of a line naming the setting.
_TABLES = ("params", "meter_options", "slurm", "margins", "sesoi", "targets", "recommend")


def _shape_problems(values: Mapping[str, object]) -> list[str]:
    problems = [
        f"{name}: must be a table of KEY = VALUE (got {values[name]!r:.60})"
        for name in _TABLES
        if values.get(name) is not None and not isinstance(values[name], Mapping)
    ]
    protocol = values.get("protocol")
    if protocol is not None and not isinstance(protocol, str):
        problems.append(f"protocol: must be one of {', '.join(PRESETS)} (got {protocol!r:.60})")
    return problems


def _table(values: Mapping[str, object], name: str) -> Mapping[str, object]:
    """One table of ``values`` (``{}`` when absent; its shape was checked first)."""
    table = values.get(name)
    return table if isinstance(table, Mapping) else {}


def _merge(
    sources: Sequence[Mapping[str, object]],
) -> tuple[dict[str, object], dict[str, object]]:
    """The settings of ``sources`` (a config file's, then the flags'), later ones winning:
    top-level settings, and workload params (``params`` and the shortcuts) on their own.
    ``meter_options`` are merged key by key."""
    merged: dict[str, object] = {}
    params: dict[str, object] = {}
    for source in sources:
        params.update(_table(source, "params"))
        params.update((key, source[key]) for key in PARAM_SHORTCUTS if key in source)
        for table in ("meter_options", "slurm", "margins", "sesoi", "targets"):
            values = _table(source, table)
            if values:
                before = _table(merged, table)
                merged[table] = {**before, **values}
                if table == "slurm" and isinstance(values.get("sbatch"), Mapping):
                    # sbatch options merge option by option too: a flag adds to the file's.
                    sbatch = {**_table(before, "sbatch"), **_table(values, "sbatch")}
                    merged[table] = {**before, **values, "sbatch": sbatch}
        merged.update((key, value) for key, value in source.items() if key not in _MERGED_APART)
    return merged, params


# What _merge takes out of a source: the workload's params, and the tables merged key by key.
# ``[recommend]`` is greenprec recommend's own table (its candidates and selection, read with
# load_table): compare, given the same file, leaves it alone.
_MERGED_APART = frozenset(
    {
        "params",
        *PARAM_SHORTCUTS,
        "meter_options",
        "slurm",
        "margins",
        "sesoi",
        "targets",
        "recommend",
    }
)


def load_table(config_file: Path | None, name: str) -> dict[str, object]:
    """The ``[name]`` table of a TOML config file (``{}`` without a file or the table);
    ConfigError naming the file when it cannot be read, or the table when it is not one."""
    if config_file is None:
        return {}
    table = _load_toml(config_file).get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"{name}: must be a table ([{name}] in {config_file})", param="config")
    return dict(table)


def _given(
    overrides: Mapping[str, object] | None, config_file: Path | None
) -> tuple[dict[str, object], dict[str, object]]:
    """The settings a config file and then flags give (a None flag: not given), and the
    workload params among them; ConfigError listing each setting of the wrong shape."""
    file_values = _load_toml(config_file) if config_file is not None else {}
    flag_values = {key: value for key, value in (overrides or {}).items() if value is not None}
    problems = _shape_problems(file_values) + _shape_problems(flag_values)
    if problems:
        raise ConfigError("\n".join(problems))
    return _merge([file_values, flag_values])


def load_config(
    overrides: Mapping[str, object] | None = None, config_file: Path | None = None
) -> ExperimentConfig:
    """Merge preset, config file and flags (in that order of precedence) and validate.

    ``overrides`` holds the flags the user actually gave (None means "not given"). Every
    problem is reported, one line each, in a single :class:`ConfigError`.
    """
    given, params = _given(overrides, config_file)
    protocol = given.get("protocol", "default")
    if not isinstance(protocol, str) or protocol not in PRESETS:
        raise ConfigError(
            f"protocol: unknown protocol {protocol!r}; choose one of {', '.join(PRESETS)}"
        )
    preset = PRESETS[protocol]
    settings = {key: value for key, value in preset.items() if key != "params"}
    merged: dict[str, object] = {**settings, "protocol": protocol, **given}
    # A preset's workload parameters belong to its workload (and that workload's PyTorch
    # twin, which takes the same params), not to one the user chose.
    if merged["workload"] in (preset["workload"], f"{preset['workload']}-torch"):
        params = {**preset.get("params", {}), **params}
    merged["params"] = params
    if merged.get("warmup_auto") and not merged.get("warmup_s"):
        merged["warmup_s"] = _DEFAULT_WARMUP_CAP_S  # a preset without a warm-up: the cap
    config = validate(merged)
    _check_targets(config)
    return config


def _check_targets(config: ExperimentConfig) -> None:
    """Before anything runs: each target names a metric the workload records, inside its
    range (``test_accuracy = 97`` where fractions are recorded is refused). A workload that
    declares nothing gets the range rule for accuracies only, and a warning per target."""
    if not config.targets:
        return
    from greenprec.workloads import get_workload, target_problems

    function = get_workload(config.workload)  # validate() has checked that it loads
    problems, notes = target_problems(config.targets, function, config.workload)
    if problems:
        raise ConfigError("\n".join(problems))
    for note in notes:
        warnings.warn(note, GreenprecWarning, stacklevel=3)


_UNSET = object()
"""A setting the stored experiment does not have."""


@dataclass(frozen=True)
class Difference:
    """A setting given for an experiment that already exists, which differs from its own."""

    setting: str
    """The setting (``runs``), or one key of a table (``params.epochs``, ``meter_options.x``)."""
    given: object
    stored: object
    """The experiment's value, or ``_UNSET`` where it has none."""

    def __str__(self) -> str:
        stored = "has none" if self.stored is _UNSET else f"has {self.stored!r}"
        return f"{self.setting}: {self.given!r} given, the experiment {stored}"


def differences(
    stored: ExperimentConfig,
    overrides: Mapping[str, object] | None = None,
    config_file: Path | None = None,
) -> list[Difference]:
    """The settings given (flags, a config file) that differ from an existing experiment's.

    Only what was given is compared, after it is resolved as :func:`load_config` resolves it
    (shortcuts become params, policy aliases their canonical names, ``"3"`` the number 3):
    continuing an experiment with the very command that started it is no conflict. A value
    that is invalid in itself raises ConfigError as it would when starting the experiment.
    """
    given, params = _given(overrides, config_file)
    current = stored.model_dump()
    options, slurm = _table(given, "meter_options"), _table(given, "slurm")
    resolved = validate(
        {
            **current,
            **given,
            "params": {**stored.params, **params},
            "meter_options": {**stored.meter_options, **options},
            "slurm": {**(current.get("slurm") or {}), **slurm} or None,
        }
    )
    found: list[Difference] = []
    for name in given:
        if name in ("meter_options", "slurm"):
            continue
        # Every name given is a field: validate() refuses any other.
        mine, theirs = getattr(resolved, name), current.get(name, _UNSET)
        same = set(mine) == set(theirs) if name == "policies" else mine == theirs
        if not same:
            found.append(Difference(name, mine, theirs))
    tables: tuple[tuple[str, Mapping[str, object]], ...] = (
        ("params", params),
        ("meter_options", options),
    )
    for table, keys in tables:
        ours, theirs = getattr(resolved, table), getattr(stored, table)
        for key in keys:
            if ours.get(key) != theirs.get(key, _UNSET):
                found.append(Difference(f"{table}.{key}", ours.get(key), theirs.get(key, _UNSET)))
    ours_slurm, theirs_slurm = resolved.slurm_settings, stored.slurm_settings
    for key in slurm:
        mine, stored_value = getattr(ours_slurm, key, None), getattr(theirs_slurm, key, None)
        if mine != stored_value:
            found.append(Difference(f"slurm.{key}", mine, stored_value))
    return found


def given_table(
    table: str, overrides: Mapping[str, object] | None = None, config_file: Path | None = None
) -> dict[str, object]:
    """The keys of one table (``slurm``) a config file and flags give, flags winning."""
    given, _ = _given(overrides, config_file)
    return dict(_table(given, table))


def stored_config(experiment: ExperimentRecord) -> ExperimentConfig:
    """The settings ``greenprec compare`` stored in an experiment's ``config``, typed: the
    one way from experiment.json back to an :class:`ExperimentConfig` (resuming, a Slurm
    block). They are validated as flags are, so a hand-edited or damaged file is one
    ConfigError listing every problem. Only compare's folders hold these settings (an
    importer's ``config`` is its own)."""
    return validate(experiment.config)


def validate(values: Mapping[str, object]) -> ExperimentConfig:
    """Validate every field; raise one ConfigError listing every problem, one per line."""
    problems: list[str] = []
    config: ExperimentConfig | None = None
    try:
        config = ExperimentConfig.model_validate(dict(values))
    except ValidationError as error:
        problems.extend(_problem_lines(error))
    problems.extend(_semantic_problems(values))
    if problems or config is None:
        raise ConfigError("\n".join(problems))
    return config


def _problem_lines(error: ValidationError) -> list[str]:
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "config"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown setting; check its spelling (see docs/compare.md)"
        given = problem.get("input")
        suffix = "" if problem["type"] in {"extra_forbidden", "missing"} else f" (got {given!r})"
        lines.append(f"{field}: {message}{suffix}")
    return lines


def _semantic_problems(values: Mapping[str, object]) -> list[str]:
    """Problems only the rest of greenprec can judge: is the workload known, can the meters run
    here? Checked on the raw values, so they are reported alongside field errors."""
    from greenprec.meters.registry import resolve
    from greenprec.workloads import get_workload

    problems = []
    workload = values.get("workload", ExperimentConfig.model_fields["workload"].default)
    if isinstance(workload, str):
        try:
            function = get_workload(workload)
        except ConfigError as error:
            problems.append(f"workload: {error}")
        else:
            from greenprec.workloads import missing_requirements

            # Its framework first: every run would fail on "No module named 'keras'" after
            # the warm-up; one line naming the extra to install is better, before anything.
            missing = missing_requirements(function, workload)
            if missing is not None:
                problems.append(f"workload: {missing}")
            # A workload may check its params (and its data) up front: better now than after
            # hours of warm-up and runs.
            problems.extend(_distributed_problems(values, function, workload))
            check = getattr(function, "check_params", None)
            params = values.get("params") or {}
            if callable(check) and isinstance(params, Mapping):
                try:
                    check(params)
                except ConfigError as error:
                    problems.append(f"params: {error}")
    given_meters = values.get("meters") or ["auto"]
    options = values.get("meter_options") or {}
    # Names of the wrong type are the field validation's to report, not a meter's.
    meters: list[str] | None = None
    if isinstance(given_meters, list) and all(isinstance(m, str) for m in given_meters):
        meters = [str(m) for m in given_meters]
    if values.get("executor") in _BLOCK_EXECUTORS:
        scheduler = values.get("executor") == "slurm"
        problems.extend(_cluster_problems(meters or [], options, scheduler=scheduler))
        return problems
    if values.get("slurm"):
        problems.append(
            'slurm: these settings are for the cluster executor; set executor = "slurm" or '
            "drop them"
        )
    if meters is not None and isinstance(options, Mapping):
        try:
            with warnings.catch_warnings():
                # The fallback warning is given once, when the experiment starts.
                warnings.simplefilter("ignore", GreenprecWarning)
                chosen = resolve(meters if meters != ["auto"] else "auto", options)
        except Exception as error:  # MeterUnavailable too: a reason, not a crash
            problems.append(f"meters: {error}")
        else:
            problems.extend(
                f"meter_options: {line}"
                for line in unused_meter_options(
                    options, [m.name for m in chosen], auto=meters == ["auto"]
                )
            )
    return problems


def _distributed_problems(
    values: Mapping[str, object], function: Callable[..., object], workload: str
) -> list[str]:
    """Several ranks per run start torch.distributed: only a PyTorch workload can use them."""
    from greenprec.workloads import framework_of

    ranks = {name: values.get(name, 1) for name in ("nproc_per_node", "nodes")}
    wanted = [name for name, value in ranks.items() if isinstance(value, int) and value > 1]
    if not wanted or framework_of(function) == "torch":
        return []
    return [
        f"{name}: workload {workload!r} is not a PyTorch workload (framework "
        f"{framework_of(function) or 'none'}); several processes or nodes per run launch "
        "torch.distributed ranks, which only a workload declared with "
        '@workload(framework="torch") can use'
        for name in wanted
    ]


_BLOCK_EXECUTORS = ("slurm", "debug")
"""Executors that run blocks as jobs (the cluster protocol); their settings are ``[slurm]``."""


def _cluster_problems(meters: list[str], options: object, *, scheduler: bool) -> list[str]:
    """What the cluster executor needs here, on the submitting machine: submitit and sbatch
    (with a ``scheduler``; the debug executor's jobs are local processes), and meters named
    (not ``auto``). Whether a meter works is up to each compute node: a login node often has no
    RAPL or GPU, so a meter is not probed here; a node that lacks it fails its runs with the
    reason."""
    import importlib.util
    import shutil

    from greenprec.meters.registry import meter_classes

    problems = []
    if scheduler and importlib.util.find_spec("submitit") is None:
        problems.append(
            "executor: the cluster executor needs submitit; install it with "
            "pip install 'greenprec[slurm]'"
        )
    if scheduler and shutil.which("sbatch") is None:
        problems.append(
            "executor: no sbatch on this machine's PATH; run greenprec compare on a machine "
            "that submits Slurm jobs (a login node), or use the local executor"
        )
    if meters == ["auto"]:
        problems.append(
            "meters: name the meters for a cluster (for example rapl and nvml): auto would "
            "choose them on this machine, not on the compute nodes"
        )
        return problems
    known = meter_classes()
    unknown = [name for name in meters if name not in known]
    if unknown:
        problems.append(
            f"meters: unknown meter {', '.join(repr(n[:40]) for n in unknown)} (known: "
            f"{', '.join(sorted(known))}); check its spelling"
        )
    elif isinstance(options, Mapping):
        problems.extend(f"meter_options: {line}" for line in unused_meter_options(options, meters))
    return problems


def unused_meter_options(
    options: Mapping[str, object], used: Sequence[str], *, auto: bool = False
) -> list[str]:
    """The options aimed at one meter (``rapl.root``) that reach none of the meters ``used``,
    one line each: meters skip options scoped to others, so a misspelt meter name, or an option
    for a meter that is not measuring, would otherwise be dropped without a word. (A plain key
    goes to whichever meters take it; a lone meter refuses one it does not take.)

    With ``auto``, an option for a meter that ``auto`` tries is accepted even when that meter
    turned out unavailable: auto measures with what works, and says what did not.
    """
    from greenprec.meters.registry import meter_classes

    known = meter_classes()
    problems = []
    for key in options:
        meter, dot, _ = key.partition(".")
        if not dot or meter in used or (auto and meter in known and known[meter].auto):
            continue
        if meter not in known:
            problems.append(
                f"option {key!r} is for meter {meter!r}, which does not exist (known: "
                f"{', '.join(sorted(known))}); check its spelling"
            )
        else:
            problems.append(
                f"option {key!r} is for meter {meter!r}, which is not used here (used: "
                f"{', '.join(used)}); drop the option or measure with that meter"
            )
    return problems
