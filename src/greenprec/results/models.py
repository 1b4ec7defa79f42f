"""The results folder's records, as pydantic models: one experiment, one run.

Every file greenprec writes into a results folder (``experiment.json``, ``runs/<run_id>.json``)
is one of these models, written by :mod:`greenprec.results.store` and read back through the same
models, so a field has one name, one type and one unit everywhere. ``schema_version`` is
``MAJOR.MINOR``: a reader accepts any minor version of its major (fields it does not know are
kept), refuses a newer major with one line, and reads the 0.1 layout (``format_version: 1``,
no run files) through :mod:`greenprec.results.legacy`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from greenprec.results.location import Location

__all__ = [
    "COUNTED_SUM_REL_TOL",
    "INTERRUPTED",
    "JOB_ID_PATTERN",
    "JOB_STOPPED",
    "RUN_ID_PATTERN",
    "RUN_STATUSES",
    "SCHEMA_MAJOR",
    "SCHEMA_VERSION",
    "SLURM_FINAL_STATES",
    "UNDER_LOAD_CPU_FRACTION",
    "UNDER_LOAD_STEAL_FRACTION",
    "AnswerRecord",
    "EpochRecord",
    "ExperimentRecord",
    "ExperimentStatus",
    "HostEnergy",
    "JobRecord",
    "LookRecord",
    "MachineLoad",
    "MachineState",
    "MetersRecord",
    "NodeInfo",
    "PhaseRecord",
    "RunRecord",
    "RunStatus",
    "ScheduledRun",
    "SequentialRecord",
    "Submission",
    "SubmissionsRecord",
    "TargetRecord",
    "check_job_id",
    "check_run_id",
    "counted_sum_problem",
]

SCHEMA_VERSION = "2.0"

ParamValue = bool | int | float | str
"""A workload parameter's value as a configuration sets it (``batch_size=256``)."""
"""The schema this greenprec writes (``MAJOR.MINOR``)."""
SCHEMA_MAJOR = 2

RunStatus = Literal["pending", "running", "done", "failed"]
RUN_STATUSES: tuple[RunStatus, ...] = ("pending", "running", "done", "failed")
ExperimentStatus = Literal["running", "complete", "incomplete"]

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,127}")
"""A run id is a file name in ``runs/``, ``samples/`` and ``logs/``: no separator, no leading
dot, so no run id can name a path outside its folder (``../../escaped`` is refused). ``=``
is allowed for configurations' labels (``bf16-batch_size=256-001``)."""

INTERRUPTED = "interrupted"
"""A failed run's error starts with this when it was stopped by the user or a signal."""


def check_run_id(value: object, where: str = "run id") -> str:
    """``value`` as a run id, or ValueError naming what is wrong (never a path built from it)."""
    if not isinstance(value, str) or RUN_ID_PATTERN.fullmatch(value) is None:
        shown = repr(value)[:60]
        raise ValueError(
            f"{where} {shown} is not a valid run id (letters, digits, '_', '.', '+', '=', '-'; "
            "starting with a letter or digit; at most 128 characters)"
        )
    return value


def _finite_or_none(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


class _Record(BaseModel):
    # Unknown fields are kept (a newer minor version may add some) and written back unchanged.
    model_config = ConfigDict(extra="allow", populate_by_name=True, validate_assignment=False)


class ScheduledRun(_Record):
    """One planned run: which policy, which repetition, its place and its seed."""

    run_id: str
    order: int = Field(ge=1)
    policy: str = Field(min_length=1)
    repetition: int = Field(ge=1)
    seed: int | None = None
    block: int | None = Field(default=None, ge=1)
    """The block of a blocked schedule (one run of each policy, on one host); None when the
    whole schedule is shuffled as one (the local executor)."""
    precision: str | None = None
    """The precision policy to apply when ``policy`` is a configuration's label
    (``bf16-batch_size=256``); None when ``policy`` is the policy itself."""
    params: dict[str, ParamValue] = Field(default_factory=dict)
    """The configuration's workload parameters, laid over the experiment's."""

    @property
    def precision_policy(self) -> str:
        """The precision policy the run applies."""
        return self.precision or self.policy

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        return check_run_id(value)


class NodeInfo(_Record):
    """The hardware a run ran on, so runs from different hosts can be told apart."""

    cpu_model: str | None = None
    logical_cpus: int | None = None
    gpus: list[dict[str, str]] = Field(default_factory=list)
    """NVIDIA GPUs as ``nvidia-smi`` lists them: ``name``, ``driver_version``, more."""

    def hardware(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What must match for two hosts to count as the same hardware: the CPU model and
        each GPU's model and driver."""
        gpus = tuple(sorted((g.get("name", "?"), g.get("driver_version", "?")) for g in self.gpus))
        return (self.cpu_model or "unknown", gpus)

    def describe(self) -> str:
        """One line: the CPU, then the GPUs with their driver."""
        gpus = ", ".join(
            f"{g.get('name', '?')} (driver {g.get('driver_version', '?')})" for g in self.gpus
        )
        return f"{self.cpu_model or 'unknown CPU'}" + (f"; {gpus}" if gpus else "; no GPU")


class HostEnergy(_Record):
    """The energy one host measured for a run: one entry per host of a ``torch.distributed``
    run (``--nproc-per-node``, ``--nodes``), each host counted once in the run's total."""

    hostname: str
    energy_j: float | None = None
    domains: dict[str, float] = Field(default_factory=dict)
    counted_domains: list[str] = Field(default_factory=list)
    ranks: list[int] = Field(default_factory=list)
    """The ``torch.distributed`` ranks that ran on this host (the lowest measured it); empty
    for a run of one process."""
    duration_s: float | None = None
    """This host's measured window."""
    meters: list[str] = Field(default_factory=list)
    estimated: bool | None = None


class MachineState(_Record):
    """What changes a machine's energy without changing the code, read at one moment (the start
    or the end of a run). None where this machine does not let it be read."""

    cpu_freq_mhz: float | None = None
    """Mean current frequency over the CPUs (cpufreq ``scaling_cur_freq``)."""
    cpu_temp_c: float | None = None
    """The hottest CPU package sensor (thermal zone or hwmon: coretemp, k10temp, zenpower)."""
    gpu_temp_c: float | None = None
    """The hottest GPU (NVML)."""
    gpu_sm_clock_mhz: float | None = None
    """Mean SM clock over the GPUs (NVML)."""
    gpu_power_limit_w: float | None = None
    """Sum of the GPUs' enforced power limits (NVML)."""
    gpu_throttle_reasons: list[str] = Field(default_factory=list)
    """Active clock throttle reasons on any GPU (NVML names, e.g. ``sw_thermal_slowdown``)."""
    sources: list[str] = Field(default_factory=list)
    """Where the values came from (``cpufreq``, ``thermal_zone``, ``hwmon``, ``nvml``)."""


class MachineLoad(_Record):
    """What else used this machine while a run ran (its ``load``): read from ``/proc`` and NVML
    at the run's start and end by :mod:`greenprec.machine_load`. None where this machine does
    not let it be known (no ``/proc`` off Linux, no NVML): never zero in its place; ``unknown``
    says why each missing value is missing."""

    duration_s: float | None = None
    """Wall time between the two readings (the run's start and end), seconds."""
    logical_cpus: int | None = None
    """CPUs ``/proc/stat`` counts: the machine's CPU capacity is this many CPU-seconds a
    second."""
    other_cpu_s: float | None = None
    """CPU time the machine spent on anything but this run's process tree (the run's process
    and its descendants), seconds: busy time in ``/proc/stat`` less the tree's time from
    ``/proc/<pid>/stat``."""
    other_cpu_fraction: float | None = None
    """``other_cpu_s`` as a fraction of the machine's CPU capacity over ``duration_s``
    (0.25: a quarter of all CPUs busy with other work)."""
    cpu_steal_fraction: float | None = None
    """Time the hypervisor gave this machine's CPUs to other guests (``steal`` in
    ``/proc/stat``), as a fraction of the CPU capacity over ``duration_s``."""
    loadavg_1m_start: float | None = None
    """The 1-minute load average (``/proc/loadavg``) as the run started."""
    loadavg_1m_end: float | None = None
    """...and as it ended."""
    gpu_other_processes: int | None = None
    """Processes NVML lists as computing on the run's GPUs that are not the run's, the most
    seen at the start or the end; None: not known (no NVML)."""
    waited_for_idle_s: float | None = None
    """How long the run waited for a quiet machine before it started (``wait_for_idle_s``);
    None: it did not wait."""
    idle_wait_note: str | None = None
    """Set when the wait reached its bound with the machine still busy: what was seen."""
    unknown: list[str] = Field(default_factory=list)
    """Why values are None (``no /proc/stat on this machine``, ``NVML not available``)."""

    @field_validator(
        "duration_s",
        "other_cpu_s",
        "other_cpu_fraction",
        "cpu_steal_fraction",
        "loadavg_1m_start",
        "loadavg_1m_end",
        "waited_for_idle_s",
    )
    @classmethod
    def _finite(cls, value: float | None, info: ValidationInfo) -> float | None:
        return _finite_or_none(value, str(info.field_name))

    def under_load(self) -> list[str]:
        """Why the run counts as measured under load, one phrase per reason; empty when it does
        not (or when nothing was known: not known is not loaded). The thresholds:
        :data:`UNDER_LOAD_CPU_FRACTION`, :data:`UNDER_LOAD_STEAL_FRACTION`, any other GPU
        process, a wait for idle that reached its bound."""
        reasons: list[str] = []
        cpu, steal = self.other_cpu_fraction, self.cpu_steal_fraction
        if cpu is not None and cpu > UNDER_LOAD_CPU_FRACTION:
            reasons.append(
                f"other processes used {100 * cpu:.0f} % of the CPUs, over "
                f"{100 * UNDER_LOAD_CPU_FRACTION:.0f} %"
            )
        if steal is not None and steal > UNDER_LOAD_STEAL_FRACTION:
            reasons.append(
                f"the hypervisor took {100 * steal:.0f} % of the CPU time (steal), over "
                f"{100 * UNDER_LOAD_STEAL_FRACTION:.0f} %"
            )
        if self.gpu_other_processes:
            reasons.append(f"{self.gpu_other_processes} other process(es) computed on its GPUs")
        if self.idle_wait_note is not None:
            reasons.append(self.idle_wait_note)
        return reasons


UNDER_LOAD_CPU_FRACTION = 0.10
"""A run is measured under load when other processes used more than this share of the
machine's CPU capacity over it (1.6 of 16 CPUs, or 0.2 of 2): enough to take memory bandwidth,
caches and boost clocks from the run, and to show in package energy. The same share decides
whether ``wait_for_idle_s`` finds the machine quiet."""
UNDER_LOAD_STEAL_FRACTION = 0.05
"""...or when the hypervisor took more than this share of the CPU time (steal): a virtual
machine whose host is busy."""


class EpochRecord(_Record):
    """The end of one epoch inside a run's measured window: time and energy so far, metrics."""

    epoch: int = Field(ge=1)
    duration_s: float
    """Seconds from the start of the measured window to the end of this epoch."""
    energy_j: float | None = None
    """Energy from the start of the measured window to the end of this epoch."""
    metrics: dict[str, float | str | None] = Field(default_factory=dict)
    """The epoch's metrics as the run's are kept: a value that was not a finite number as its
    name (``"inf"``, ``"-inf"``, ``"nan"``), never a silent null."""


class TargetRecord(_Record):
    """Energy to a target: the first epoch at which a run's metric reached the target."""

    metric: str
    value: float
    higher_is_better: bool = True
    reached: bool = False
    epoch: int | None = None
    energy_j: float | None = None
    duration_s: float | None = None
    final_value: float | None = None
    """The metric's value as the run ended (what the workload returned, else its last
    epoch's); None when the run never reported it. Written since 0.3."""


COUNTED_SUM_REL_TOL = 1e-4
"""How far ``energy_j`` may be from the sum of its counted domains, relative: floating-point
sums in another order (the hosts of a distributed run, CodeCarbon's parts, which it checks to
1e-6) stay far inside it; a total that disagrees with its parts (30.7 J for 1.0 J) does not."""
_COUNTED_SUM_ABS_TOL_J = 1e-6


def counted_sum_problem(
    energy_j: float | None, domains: dict[str, float], counted_domains: list[str]
) -> str | None:
    """Why ``energy_j`` is not the sum of the counted domains' energies, or None when it is,
    or when there is no breakdown to check it against: no total, no counted domains (an
    import or a hand-made record may have none), or a counted domain whose energy is not
    recorded.

    The store refuses a run file this names (:meth:`greenprec.results.ResultsStore.load`) and
    :meth:`RunRecord.finished` refuses to make one. A 0.1 ``runs.csv`` is not checked: it is
    read by its own rules (the report finds its counted domains where they are not recorded).
    """
    if energy_j is None or not counted_domains:
        return None
    if any(name not in domains for name in counted_domains):
        return None
    parts_j = math.fsum(domains[name] for name in counted_domains)
    if not all(math.isfinite(x) for x in (energy_j, parts_j)):
        return None  # each field's own check names that
    if math.isclose(energy_j, parts_j, rel_tol=COUNTED_SUM_REL_TOL, abs_tol=_COUNTED_SUM_ABS_TOL_J):
        return None
    names = ", ".join(counted_domains[:4]) + (" ..." if len(counted_domains) > 4 else "")
    return (
        f"energy_j {energy_j:.6g} J is not the sum of its counted domains ({names}: "
        f"{parts_j:.6g} J)"
    )


class RunRecord(_Record):
    """One run: what was planned, what happened, what it measured (``runs/<run_id>.json``)."""

    schema_version: str = SCHEMA_VERSION
    run_id: str
    order: int = Field(ge=1)
    policy: str = Field(min_length=1)
    repetition: int = Field(ge=1)
    seed: int | None = None
    status: RunStatus = "pending"
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    energy_j: float | None = None
    net_energy_j: float | None = None
    """``energy_j`` less the idle baseline's power over ``duration_s`` (None without one)."""
    mean_power_w: float | None = None
    meter: str | None = None
    estimated: bool | None = None
    domains: dict[str, float] = Field(default_factory=dict)
    """Energy in joules per domain, counted in the total or not."""
    counted_domains: list[str] = Field(default_factory=list)
    """The domains whose energies add up to ``energy_j`` (each joule once)."""
    metrics: dict[str, float | str | None] = Field(default_factory=dict)
    """What the workload reported (``test_accuracy``, ``test_loss``, more)."""
    host: str | None = None
    """The host that executed the run."""
    node: NodeInfo | None = None
    """That host's hardware (CPU and GPU models, GPU driver)."""
    hosts: list[HostEnergy] = Field(default_factory=list)
    machine_start: MachineState | None = None
    """The machine's state as the run started (clocks, temperatures, GPU limits)."""
    machine_end: MachineState | None = None
    idle_power_w: float | None = None
    """Power measured idle just before the run (what the machine drew while it rested)."""
    load: MachineLoad | None = None
    """What else used the machine while the run ran (other processes' CPU, load average, CPU
    steal, other GPU processes); None in records written before 0.3 and where nothing could be
    read."""
    epochs: list[EpochRecord] = Field(default_factory=list)
    """Per-epoch time, energy so far and metrics (workloads that report their epochs)."""
    targets: list[TargetRecord] = Field(default_factory=list)
    """Energy to each target the experiment set (``targets``)."""
    stopped_at_target: bool = False
    """Training ended at the epoch that reached every target (``stop_at_target``): no energy
    was spent after the target. False in folders written before 0.3."""
    epochs_run: int | None = None
    """The epochs the run trained (its last reported epoch); None when it reported none."""
    samples_trained: int | None = None
    """Training samples seen in the measured window, when the workload reported them."""
    samples_per_s: float | None = None
    """Throughput: ``samples_trained`` over ``duration_s`` (the measured window, evaluation
    after each epoch included)."""
    energy_per_sample_j: float | None = None
    """``energy_j`` over ``samples_trained``."""
    block: int | None = Field(default=None, ge=1)
    """The run's block in a blocked schedule (see :class:`ScheduledRun`)."""
    precision: str | None = None
    """The precision policy applied when ``policy`` is a configuration's label (see
    :class:`ScheduledRun`); None when ``policy`` is the policy itself."""
    params: dict[str, ParamValue] = Field(default_factory=dict)
    """The configuration's workload parameters (see :class:`ScheduledRun`)."""
    slurm_job_id: str | None = None
    """The Slurm job that executed the run (the cluster executor)."""
    job_state: str | None = None
    """Slurm's state of that job (``TIMEOUT``, ``NODE_FAIL``, ``PREEMPTED``, ``OUT_OF_MEMORY``,
    ``CANCELLED``) when it ended before the run had its final record: the run failed for the
    cluster's reason, not its own, and resuming submits it again."""
    executor_pid: int | None = None
    """The process executing the run while it is ``running`` (to recognise a stale state)."""
    error: str | None = None
    _location: Location | None = PrivateAttr(default=None)

    @property
    def location(self) -> Location | None:
        """Where this record was read from (``runs/<id>.json``, ``runs.csv:<line>``), if read."""
        return self._location

    @location.setter
    def location(self, value: Location | None) -> None:
        self._location = value

    @property
    def where(self) -> str:
        """:attr:`location` as text; empty if the record was not read from a folder."""
        return "" if self._location is None else str(self._location)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        return check_run_id(value)

    @field_validator(
        "duration_s",
        "energy_j",
        "net_energy_j",
        "mean_power_w",
        "samples_per_s",
        "energy_per_sample_j",
    )
    @classmethod
    def _finite(cls, value: float | None, info: Any) -> float | None:
        return _finite_or_none(value, info.field_name)

    @field_validator("domains")
    @classmethod
    def _finite_domains(cls, value: dict[str, float]) -> dict[str, float]:
        for domain, energy_j in value.items():
            _finite_or_none(energy_j, f"domains[{domain!r}]")
        return value

    @classmethod
    def planned(cls, run: ScheduledRun) -> RunRecord:
        """The pending record of a scheduled run."""
        return cls(
            run_id=run.run_id,
            order=run.order,
            policy=run.policy,
            repetition=run.repetition,
            seed=run.seed,
            block=run.block,
            precision=run.precision,
            params=run.params,
        )

    def cleared(self) -> RunRecord:
        """The same scheduled run, pending again, with every result forgotten."""
        return RunRecord(
            run_id=self.run_id,
            order=self.order,
            policy=self.policy,
            repetition=self.repetition,
            seed=self.seed,
            block=self.block,
            precision=self.precision,
            params=self.params,
        )

    # -- transitions: each returns a new record; every change of status goes through one ----
    def started(
        self,
        *,
        started_at: str | None = None,
        host: str | None = None,
        node: NodeInfo | None = None,
        slurm_job_id: str | None = None,
        executor_pid: int | None = None,
        machine_start: MachineState | None = None,
    ) -> RunRecord:
        """Running. Each field given (not None) replaces the record's; the others are kept, so
        ``record.started()`` alone is the record as the index shows a run about to start."""
        given = {
            "started_at": started_at,
            "host": host,
            "node": node,
            "slurm_job_id": slurm_job_id,
            "executor_pid": executor_pid,
            "machine_start": machine_start,
        }
        return self._becomes("running", given)

    def finished(
        self,
        *,
        started_at: str,
        ended_at: str,
        duration_s: float,
        energy_j: float,
        mean_power_w: float | None,
        meter: str,
        estimated: bool,
        domains: dict[str, float],
        counted_domains: list[str],
        metrics: dict[str, float | str | None],
        net_energy_j: float | None = None,
        machine_end: MachineState | None = None,
        idle_power_w: float | None = None,
        epochs: list[EpochRecord] | None = None,
        targets: list[TargetRecord] | None = None,
        framework: dict[str, Any] | None = None,
        stopped_at_target: bool = False,
        epochs_run: int | None = None,
        samples_trained: int | None = None,
    ) -> RunRecord:
        """Done, with what the run measured; no process holds it any more and no error stays.

        ``framework`` (what :class:`greenprec.frameworks.FrameworkInfo` says) is written only
        when given: a record without it (an import, a synthetic folder) has no such key.
        Throughput (``samples_per_s``, ``energy_per_sample_j``) follows from
        ``samples_trained`` and the measured time and energy.
        """
        samples_per_s = energy_per_sample_j = None
        if samples_trained is not None and samples_trained > 0:
            samples_per_s = samples_trained / duration_s if duration_s > 0 else None
            energy_per_sample_j = energy_j / samples_trained
        update: dict[str, Any] = {
            "status": "done",
            "started_at": started_at,
            "ended_at": ended_at,
            "duration_s": duration_s,
            "energy_j": energy_j,
            "net_energy_j": net_energy_j,
            "mean_power_w": mean_power_w,
            "meter": meter,
            "estimated": estimated,
            "domains": domains,
            "counted_domains": counted_domains,
            "metrics": metrics,
            "executor_pid": None,
            "error": None,
            "machine_end": machine_end,
            "idle_power_w": idle_power_w,
            "epochs": [] if epochs is None else epochs,
            "targets": [] if targets is None else targets,
            "stopped_at_target": stopped_at_target,
            "epochs_run": epochs_run,
            "samples_trained": samples_trained,
            "samples_per_s": samples_per_s,
            "energy_per_sample_j": energy_per_sample_j,
        }
        if framework is not None:
            update["framework"] = framework
        # model_copy does not validate: check here what reading would refuse, so no writer
        # ever records a total its own domains contradict.
        problem = counted_sum_problem(energy_j, domains, counted_domains)
        if problem is not None:
            raise ValueError(problem)
        return self.model_copy(update=update)

    def failed(
        self,
        error: str,
        *,
        ended_at: str | None = None,
        executor_pid: int | None = None,
        host: str | None = None,
        node: NodeInfo | None = None,
        slurm_job_id: str | None = None,
        job_state: str | None = None,
    ) -> RunRecord:
        """Failed with ``error``. ``ended_at`` and ``executor_pid`` are set as given (None: not
        timed, no process holds the run); ``host``, ``node``, ``slurm_job_id`` and ``job_state``
        replace the record's when given and are kept otherwise."""
        given = {"host": host, "node": node, "slurm_job_id": slurm_job_id, "job_state": job_state}
        set_always = {"ended_at": ended_at, "executor_pid": executor_pid, "error": error}
        return self._becomes("failed", given, set_always)

    def _becomes(
        self,
        status: RunStatus,
        given: dict[str, Any],
        set_always: dict[str, Any] | None = None,
    ) -> RunRecord:
        update: dict[str, Any] = {"status": status}
        update.update((name, value) for name, value in given.items() if value is not None)
        update.update(set_always or {})
        return self.model_copy(update=update)

    @property
    def precision_policy(self) -> str:
        """The precision policy the run applies."""
        return self.precision or self.policy

    @property
    def interrupted(self) -> bool:
        return self.status == "failed" and (self.error or "").startswith(INTERRUPTED)

    @property
    def ended_by_scheduler(self) -> bool:
        """Failed because its Slurm job ended first (time limit, node failure, preemption,
        cancellation): resuming runs it again, as it does an interrupted run."""
        return self.status == "failed" and self.job_state is not None

    def failed_and_runs_again(self, retry_failed: bool) -> bool:
        """A failed run that resuming runs again: one stopped by the user, a signal or the
        cluster always; one that failed on its own only with ``retry_failed``."""
        return self.status == "failed" and (
            retry_failed or self.interrupted or self.ended_by_scheduler
        )


class MetersRecord(_Record):
    """The meters asked for and used (an importer adds ``counted_domains``, the files' own)."""

    requested: list[str] = Field(default_factory=list)
    used: list[str] = Field(default_factory=list)
    estimated: bool = False
    simulated: list[str] | None = None
    """Those of ``used`` that make their readings up (a meter class with ``simulated``),
    recorded as the meters were opened, so a report need not ask the meters installed where
    it runs. None in folders written before 0.3 and by importers: not recorded."""


class PhaseRecord(_Record):
    """A measured phase outside the runs: the idle baseline or a warm-up."""

    samples: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    energy_j: float | None = None
    power_w: float | None = None
    estimated: bool = False
    domains: dict[str, float] = Field(default_factory=dict)
    settled: bool | None = None
    """An automatic warm-up: whether the power settled (True) or the time cap ended it (False);
    None for a warm-up of fixed length."""
    criterion: str | None = None
    """An automatic warm-up: the rule it stopped by, in words."""


class AnswerRecord(_Record):
    """One question of an adaptive experiment, as one look answered it.

    Folders written before 0.3 lack the interval fields (None), and their carried answers
    record the level of the look that carried them, not the one that settled them."""

    metric: str
    policy: str
    reference: str
    kind: Literal["difference", "equivalence", "noninferiority"]
    settled: bool
    verdict: str | None = None
    """When settled: ``different``, ``equivalent``, ``beyond margin`` (an equivalence
    question's interval wholly outside the margin), ``not worse``, ``worse``."""
    p: float | None = None
    level: float | None = None
    """The nominal level its p was compared with at the look that answered it (for a carried
    answer: the look that settled it): two-sided for a difference question, one-sided (each
    side) for a margin question."""
    margin: float | None = None
    """The margin in the metric's own units (equivalence and non-inferiority)."""
    margin_value: float | None = None
    margin_unit: Literal["pp", "%", "abs"] | None = None
    margin_tolerated: Literal[-1, 1] | None = None
    """The margin as given: 1 and ``pp``; 2 and ``%`` (of the reference mean); 0.01 and
    ``abs``; for non-inferiority the side it tolerates (−1 lower, +1 higher)."""
    estimate: float | None = None
    """The estimate: % change of the mean when ``scale`` is ``percent``, else the difference."""
    ci_low: float | None = None
    ci_high: float | None = None
    """The repeated confidence interval at that look (valid under the stopping rule)."""
    confidence: float | None = None
    """The interval's level (1 − level, or 1 − 2·level for a margin question)."""
    scale: Literal["percent", "difference"] | None = None
    settled_at: int | None = None
    """Runs per policy of the look that settled it."""
    carried: bool = False


class LookRecord(_Record):
    """One interim analysis of an adaptive experiment, after a complete block."""

    block: int = Field(ge=1)
    runs_per_policy: int = Field(ge=1)
    information: float
    """The information time (the spending function's): runs done over the maximum, less what
    failed runs took (:func:`greenprec.sequential.information`)."""
    alpha_spent: float
    """The cumulative alpha spent by this look."""
    answers: list[AnswerRecord] = Field(default_factory=list)
    level: float | None = None
    """The nominal two-sided level of a difference question at this look (its exact
    boundary for its share of alpha); None in folders written before 0.3."""
    alpha_share: float | None = None
    """Each question's share of alpha (alpha / number of questions)."""
    runs_by_policy: dict[str, int] = Field(default_factory=dict)
    """The done runs of each policy the look used (empty in folders before 0.3)."""
    failed: list[str] = Field(default_factory=list)
    """The runs of the blocks up to this look that had failed when it was made."""


class SequentialRecord(_Record):
    """How an adaptive experiment decided to stop (``experiment.json``)."""

    method: str
    alpha: float
    min_runs: int = Field(ge=1)
    max_runs: int = Field(ge=1)
    looks: list[LookRecord] = Field(default_factory=list)
    stopped_early: bool = False
    reason: str | None = None
    runs_per_policy: int | None = None
    """Runs per policy when it stopped."""
    skipped: list[int] = Field(default_factory=list)
    """Blocks after which no look was made: a failed run left no new run of every policy."""


class PairRecord(_Record):
    """The comparison that dropped a configuration: ``worse`` against ``better``, the ratio of
    their geometric-mean energies to the target and its interval at one-sided ``level`` each
    side (see :class:`greenprec.stats.PairComparison`)."""

    worse: str
    better: str
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    level: float
    look: int
    runs: int


class ConfigurationStatusRecord(_Record):
    """One configuration at one look of a selection (see
    :class:`greenprec.stats.ConfigurationStatus`)."""

    name: str
    status: str
    """``leading``, ``in_play``, ``recommended``, ``within_indifference``, ``not_separated``,
    ``dropped``, ``never_reached``, ``too_few_reached``."""
    runs: int
    reached: int
    mean_energy_j: float | None = None
    """Mean energy to the target of its runs that reached it."""
    geometric_mean_energy_j: float | None = None
    ratio_to_leader: float | None = None
    ratio_ci_low: float | None = None
    ratio_ci_high: float | None = None
    dropped_by: PairRecord | None = None
    dropped_at_look: int | None = None
    note: str | None = None
    final: bool = False


class SelectionLookRecord(_Record):
    """One look of a selection, after a complete block (see
    :class:`greenprec.stats.SelectionLook`)."""

    look: int = Field(ge=1)
    block: int = Field(ge=1)
    runs: int
    """Runs per configuration still in play at this look."""
    schedule: list[int] = Field(default_factory=list)
    """Runs per configuration of every look so far (the spending function's times)."""
    alpha: float
    indifference: float
    """δ on the log scale (ln 1.03 for 3 %)."""
    min_reached_share: float
    level: float | None = None
    """The one-sided nominal level of each pair test at this look (None before min_runs)."""
    configurations: list[ConfigurationStatusRecord] = Field(default_factory=list)
    leader: str | None = None
    stop: bool = False
    outcome: str
    reason: str
    recommended: str | None = None
    within: list[str] = Field(default_factory=list)


class SelectionRecord(_Record):
    """How ``greenprec recommend`` selected (``experiment.json``): its looks and its answer."""

    method: str
    alpha: float
    indifference: str
    """As given (``3%``)."""
    min_reached_share: float
    min_runs: int = Field(ge=1)
    max_runs: int = Field(ge=1)
    looks: list[SelectionLookRecord] = Field(default_factory=list)
    skipped: list[int] = Field(default_factory=list)
    """Blocks after which no look was made (a failed run left no new run of every
    configuration still in play)."""
    stopped: bool = False
    stopped_early: bool = False
    """Stopped before the maximum runs (one left, or the rest within the zone)."""
    reason: str | None = None

    @property
    def last(self) -> SelectionLookRecord | None:
        return self.looks[-1] if self.looks else None

    @property
    def dropped(self) -> set[str]:
        """The configurations dropped for good (no more runs of them are made)."""
        last = self.last
        if last is None:
            return set()
        return {
            c.name
            for c in last.configurations
            if c.status == "dropped"
            or (c.final and c.status in ("never_reached", "too_few_reached"))
        }


JOB_ID_PATTERN = re.compile(r"[0-9]{1,12}(_[0-9]{1,9})?")
"""A Slurm job id (``1234``, or ``1234_5`` for an array task): it names a file in ``jobs/``."""

SLURM_FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "SPECIAL_EXIT",
        "REVOKED",
        "UNKNOWN",
    }
)
"""Slurm job states after which the job does nothing more (``UNKNOWN``: Slurm no longer
knows the job, so it is not running either)."""


JOB_STOPPED = "STOPPED"
"""A run's ``job_state`` as its job writes it when Slurm ends the job mid-run; the submitter
replaces it by Slurm's final state (``CANCELLED``, ``TIMEOUT``, ...) once the job has ended."""


def check_job_id(value: object) -> str:
    """``value`` as a Slurm job id, or ValueError (never a path built from other text)."""
    if not isinstance(value, str) or JOB_ID_PATTERN.fullmatch(value) is None:
        raise ValueError(f"{repr(value)[:40]} is not a Slurm job id (digits, or digits_digits)")
    return value


class Submission(_Record):
    """One job the submitting process handed to Slurm: a block's runs (``submissions.json``)."""

    name: str
    """The job's name in Slurm; unique per folder, block and attempt, so a job whose id was
    never recorded (the submitter killed mid-submission) is found again by its name."""
    block: int = Field(ge=1)
    attempt: int = Field(default=1, ge=1)
    run_ids: list[str]
    job_id: str | None = None
    submitted_at: str | None = None
    state: str = "SUBMITTING"
    """Slurm's word for the job, as last seen (``PENDING``, ``RUNNING``, ``COMPLETED``, ...)."""
    reason: str | None = None
    node: str | None = None
    settled: bool = False
    """The job ended and its runs were read (and those it left unfinished marked failed)."""

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str | None) -> str | None:
        return None if value is None else check_job_id(value)

    @field_validator("run_ids")
    @classmethod
    def _run_ids(cls, value: list[str]) -> list[str]:
        return [check_run_id(run_id) for run_id in value]

    @property
    def final(self) -> bool:
        return self.state in SLURM_FINAL_STATES


class SubmissionsRecord(_Record):
    """``submissions.json``: every job submitted for the experiment, written by the submitter."""

    schema_version: str = SCHEMA_VERSION
    jobs: list[Submission] = Field(default_factory=list)


class JobRecord(_Record):
    """``jobs/<job_id>.json``: what one job did on its node, written by the job itself."""

    schema_version: str = SCHEMA_VERSION
    job_id: str
    block: int = Field(ge=1)
    host: str
    node: NodeInfo | None = None
    started_at: str
    ended_at: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    baseline: PhaseRecord | None = None
    """The node's idle power before its runs (``baseline_s``): each run's ``net_energy_j``
    subtracts this node's own baseline."""
    warmup: PhaseRecord | None = None

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        return check_job_id(value)


class ExperimentRecord(_Record):
    """``experiment.json``: how the experiment was set up, where its data came from."""

    schema_version: str = SCHEMA_VERSION
    created_at: str = "unknown"
    updated_at: str | None = None
    status: ExperimentStatus = "running"
    source: str = "greenprec compare"
    # The producer's own settings: compare's validated ExperimentConfig, or an importer's
    # groups and files. Each producer validates its own; the store only carries them.
    config: dict[str, Any] = Field(default_factory=dict)
    schedule: list[ScheduledRun] = Field(default_factory=list)
    meters: MetersRecord = Field(default_factory=MetersRecord)
    precision_support: dict[str, Any] | None = None
    warnings: list[str] = Field(default_factory=list)
    baseline: PhaseRecord | None = None
    warmups: list[PhaseRecord] = Field(default_factory=list)
    versions: dict[str, str | None] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    sequential: SequentialRecord | None = None
    """An adaptive experiment: its looks and why it stopped."""
    selection: SelectionRecord | None = None
    """A recommendation (``greenprec recommend``): its looks and its answer."""
    imported: dict[str, Any] | None = Field(default=None, alias="import")
    """For imported folders: the tool, the files read, their columns."""

    @property
    def policies(self) -> list[str]:
        """What the runs are grouped by, in order (the first is the reference): the
        configurations' labels when the experiment varied more than the policy, else its
        policies (an importer's groups)."""
        configurations = self.config.get("configurations")
        if isinstance(configurations, list) and configurations:
            return [str(c.get("label")) for c in configurations if isinstance(c, dict)]
        configured = self.config.get("policies")
        if isinstance(configured, list):
            return [str(p) for p in configured]
        return list(dict.fromkeys(run.policy for run in self.schedule))
