"""Measuring under ``torch.distributed``: each host measured once, the job's total on every rank.

With DDP (torchrun, Lightning, Accelerate) every process runs the same training script, so every
process would open the same machine's meters: RAPL, DRAM and NVML are machine-wide, and a node
with four ranks would report its CPU energy four times. This is the complaint most often raised
against CodeCarbon (issues 544 and 936, PR 1390), also against Zeus (79) and Lightning (6599).
greenprec follows perun: the ranks are grouped by host and the **lowest rank of each host is
its measurer**. It opens every meter of its host, the host-level ones (RAPL, DRAM, EnergiBridge,
the CPU-time estimate) *and* the GPU meters for every GPU the host shows; the other ranks open
no meter at all. So each joule is read by one process, once.

One rank per host for all its GPUs, rather than each rank owning its own GPU: the host-level
meters need one owner per host anyway, and a single owner reads every GPU of the host at the
same instant as its CPU, with one NVML session and one sampling thread. A GPU no rank drives is
still in the host's energy (it draws idle power the job pays for). This needs the measurer to
*see* its host's GPUs: where each rank is given only its own GPU through ``CUDA_VISIBLE_DEVICES``
(Slurm's ``--gpus-per-task``, some launchers), the measurer would read one GPU of several, so a
host whose ranks see different devices is refused with a message saying how to fix it (give
every rank of a host the same devices and pick one with ``LOCAL_RANK``), never undercounted.

Windows open and close together. At each edge (a measurement's start and stop, a
:class:`~greenprec.Monitor` window's begin and end) every rank first synchronises its own device
(``sync="auto"``), then waits at a barrier for every other rank; only then does each measurer
read its meters. The entry reading therefore precedes every rank's block, and the exit reading
follows every rank's block and every GPU's kernels. The waits are bounded
(``GREENPREC_DISTRIBUTED_TIMEOUT_S``, 600 s by default): a rank that never arrives makes the
others fail with a one-line :class:`~greenprec.errors.MeterError` naming it, never hang.

At the stop, every measurer's result (host, energy, domains, meters, estimated) is gathered to
**every** rank, so each one holds the job's total (the sum over hosts, each host once) and the
per-host breakdown (:class:`HostResult`): a logger on rank 0 and a checkpoint callback on rank 3
see the same figures.

The messages go through the process group's key-value store (the ``TCPStore`` that torchrun and
``init_process_group`` create), not through collectives on the training backend: a store
operation never touches a CUDA stream (NCCL's ``all_gather_object`` needs one, and a pickled
CUDA tensor), it works under NCCL and gloo alike, and, unlike ``barrier()``, it can be waited on
with a deadline and tells which rank is missing. Payloads are JSON, never pickle.

Detection never imports torch: only when ``torch.distributed`` is already imported and its
default group initialised with two ranks or more is a measurement distributed. Pass
``distributed=False`` to :func:`greenprec.measure` to measure each process on its own.

``GREENPREC_HOST_ID`` overrides the host name for grouping: for tests that simulate several
hosts on one machine, and for containers that share a host name while running on different
machines (or different host names on one machine: give them the same id).

A run executor gets the per-host list and the total from a finished measurement
(``Measurement.hosts``, ``Measurement.energy_j``) or, from results gathered some other way,
through :func:`job_total_j` and :func:`job_domains`.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict, cast

from greenprec.errors import ConfigError, MeterError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "HOST_ID_VARIABLE",
    "TIMEOUT_VARIABLE",
    "Group",
    "HostResult",
    "Layout",
    "Outcomes",
    "current_group",
    "failure_payload",
    "host_id",
    "host_result",
    "job_domains",
    "job_total_j",
    "outcomes",
    "result_payload",
]

HOST_ID_VARIABLE = "GREENPREC_HOST_ID"
"""Overrides the host name ranks are grouped by (tests; containers sharing a host name)."""
TIMEOUT_VARIABLE = "GREENPREC_DISTRIBUTED_TIMEOUT_S"
"""How long a rank waits for the others at a window's edge, in seconds."""
DEFAULT_TIMEOUT_S = 600.0
"""Ten minutes: ranks may reach a block's end far apart (uneven data, rank 0 saving a
checkpoint inside the block), and a wait that is too short fails a healthy job."""

_VISIBLE_DEVICES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")
_PREFIX = "greenprec"


def host_id() -> str:
    """The name this process's host is grouped by: ``GREENPREC_HOST_ID``, else the host name."""
    return os.environ.get(HOST_ID_VARIABLE) or socket.gethostname()


def _timeout_s() -> float:
    text = os.environ.get(TIMEOUT_VARIABLE)
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"{TIMEOUT_VARIABLE} must be a positive number of seconds, got {text!r}")
    return seconds


@dataclass(frozen=True)
class HostResult:
    """What one host's measurer measured over one window."""

    host: str
    """The host id (its host name, or ``GREENPREC_HOST_ID``)."""
    ranks: list[int]
    """The global ranks running on this host, lowest (the measurer) first."""
    energy_j: float
    """The host's energy in joules: its counted domains, each joule once."""
    duration_s: float
    """The measurer's window, entry reading to exit reading, in seconds."""
    domains: dict[str, float]
    """Energy in joules per domain of this host, counted or not."""
    counted_domains: list[str]
    meters: list[str]
    estimated: bool
    """True when a figure of this host comes from a model rather than a sensor."""

    @property
    def measurer_rank(self) -> int:
        return self.ranks[0]

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "ranks": list(self.ranks),
            "energy_j": self.energy_j,
            "duration_s": self.duration_s,
            "domains": dict(self.domains),
            "counted_domains": list(self.counted_domains),
            "meters": list(self.meters),
            "estimated": self.estimated,
        }


def job_total_j(hosts: Sequence[HostResult]) -> float:
    """The job's energy: the sum over hosts, each host once (never a sum over ranks)."""
    return sum(host.energy_j for host in hosts)


def job_domains(hosts: Sequence[HostResult]) -> dict[str, float]:
    """Energy per domain name summed over hosts (``rapl/package-0`` of every host together), so
    the job's counted domains add up to :func:`job_total_j` as one host's do to its energy."""
    domains: dict[str, float] = {}
    for host in hosts:
        for name, energy_j in host.domains.items():
            domains[name] = domains.get(name, 0.0) + energy_j
    return domains


class _Store(Protocol):
    """The part of ``torch.distributed.Store`` used here (TCPStore, FileStore, HashStore)."""

    def set(self, key: str, value: str) -> None: ...
    def get(self, key: str) -> bytes: ...
    def add(self, key: str, amount: int) -> int: ...
    def check(self, keys: list[str]) -> bool: ...
    def delete_key(self, key: str) -> bool: ...


@dataclass(frozen=True)
class Layout:
    """Who runs where: the job's ranks grouped by host, from one exchange at a window's start."""

    rank: int
    world_size: int
    hosts: dict[str, list[int]]
    """Host id -> its ranks in increasing order; hosts in the order of their lowest rank."""
    visible_devices: dict[int, str]
    """Rank -> the devices it was shown (``CUDA_VISIBLE_DEVICES`` and its ROCm siblings)."""

    @property
    def host(self) -> str:
        return self.host_of(self.rank)

    def host_of(self, rank: int) -> str:
        return next(host for host, ranks in self.hosts.items() if rank in ranks)

    @property
    def measurers(self) -> list[int]:
        """The lowest rank of each host, in host order."""
        return [ranks[0] for ranks in self.hosts.values()]

    @property
    def is_measurer(self) -> bool:
        return self.rank in self.measurers

    def device_mismatch(self) -> str | None:
        """Why this host's measurer cannot read all its GPUs, or None when it can."""
        ranks = self.hosts[self.host]
        views = {rank: self.visible_devices[rank] for rank in ranks}
        if len(set(views.values())) <= 1:
            return None
        shown = ", ".join(f"rank {rank}: {view or 'all'}" for rank, view in views.items())
        return (
            f"the ranks of host {self.host!r} are shown different GPUs ({shown}); greenprec "
            "measures every GPU of a host from its lowest rank, which would miss the others': "
            "give every rank of a host the same CUDA_VISIBLE_DEVICES and choose the device "
            "with LOCAL_RANK (torch.cuda.set_device), or measure each process alone with "
            "measure(distributed=False)"
        )


class _Devices(TypedDict):
    host: str
    devices: str


class Group:
    """The ranks of the default ``torch.distributed`` group, talking through its store.

    Every rank must make the same exchanges in the same order (as with any collective): each is
    numbered by a counter of this process, and its keys are ``greenprec/<n>/...``.
    """

    _rounds = 0
    """Exchanges made by this process so far (all ranks agree on it)."""

    def __init__(self, store: _Store, rank: int, world_size: int, *, timeout_s: float) -> None:
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.timeout_s = timeout_s
        self.layout: Layout | None = None

    def exchange(
        self, what: str, payload: Mapping[str, object], *, from_ranks: Sequence[int] | None = None
    ) -> dict[int, dict[str, object]]:
        """Wait until every rank has arrived (at most ``timeout_s``), then read the payloads of
        ``from_ranks`` (every rank's when None). ``what`` names the edge in the error of a rank
        that does not come: ``rank 3 (host 'b') did not reach the end of the window ...``."""
        Group._rounds += 1
        round_ = Group._rounds
        key = f"{_PREFIX}/{round_}"
        try:
            payloads = self._exchange(key, what, payload, from_ranks)
        except MeterError:
            raise
        except Exception as error:
            # The store lives in one process (rank 0 under torchrun): when it has ended, every
            # store call fails; one line, not a traceback from the store's client.
            raise MeterError(
                f"rank {self.rank} lost torch.distributed's key-value store at {what} "
                f"({type(error).__name__}: {' '.join(str(error).split())[:200]}): the process "
                "that holds it (rank 0, or the torchrun agent) has probably ended"
            ) from error
        if self.rank == 0 and round_ > 1:
            # Every rank has arrived here, so every rank has read the previous exchange: its
            # keys can go (a long run with a window per epoch must not grow the store).
            self._forget(round_ - 1)
        return payloads

    def _exchange(
        self,
        key: str,
        what: str,
        payload: Mapping[str, object],
        from_ranks: Sequence[int] | None,
    ) -> dict[int, dict[str, object]]:
        self.store.set(f"{key}/{self.rank}", json.dumps(payload, allow_nan=True))
        arrived = self.store.add(f"{key}/arrived", 1)
        deadline = time.monotonic() + self.timeout_s
        pause_s = 0.0005
        while arrived < self.world_size:
            if time.monotonic() > deadline:
                raise MeterError(self._missing(key, what))
            time.sleep(pause_s)
            pause_s = min(pause_s * 2, 0.02)  # quick when ranks are close, cheap when not
            arrived = self.store.add(f"{key}/arrived", 0)
        ranks = range(self.world_size) if from_ranks is None else from_ranks
        return {
            rank: cast("dict[str, object]", json.loads(self.store.get(f"{key}/{rank}")))
            for rank in ranks
        }

    def _missing(self, key: str, what: str) -> str:
        missing = [
            rank for rank in range(self.world_size) if not self.store.check([f"{key}/{rank}"])
        ]
        named = ", ".join(
            f"rank {rank}" + (f" (host {self.layout.host_of(rank)!r})" if self.layout else "")
            for rank in missing
        )
        return (
            f"{named or 'a rank'} did not reach {what} within {self.timeout_s:g} s "
            f"(rank {self.rank} waited): every rank of a torch.distributed job must open and "
            "close each measured window together; set GREENPREC_DISTRIBUTED_TIMEOUT_S for ranks "
            "that legitimately arrive further apart"
        )

    def _forget(self, round_: int) -> None:
        key = f"{_PREFIX}/{round_}"
        for name in [f"{key}/arrived", *(f"{key}/{rank}" for rank in range(self.world_size))]:
            try:
                self.store.delete_key(name)
            except Exception:  # a store without deletion keeps a few bytes per edge
                return

    def join(self) -> Layout:
        """The start of a window: every rank says where it runs; the ranks grouped by host."""
        devices = ";".join(f"{name}={os.environ.get(name, '')}" for name in _VISIBLE_DEVICES)
        mine: _Devices = {"host": host_id(), "devices": devices}
        payloads = self.exchange("the start of the window", dict(mine))
        hosts: dict[str, list[int]] = {}
        visible: dict[int, str] = {}
        for rank in range(self.world_size):
            entry = cast("_Devices", payloads[rank])
            hosts.setdefault(entry["host"], []).append(rank)
            visible[rank] = ";".join(
                part for part in entry["devices"].split(";") if not part.endswith("=")
            )
        self.layout = Layout(self.rank, self.world_size, hosts, visible)
        return self.layout


@dataclass
class _Failure:
    """A rank's failure as it travels to the others."""

    rank: int
    message: str
    config: bool = False


@dataclass
class Outcomes:
    """The measurers' payloads of one exchange, with the failures among them."""

    payloads: dict[int, dict[str, object]]
    failures: list[_Failure] = field(default_factory=list)

    def raise_first(self, layout: Layout, what: str) -> None:
        """Raise the first failure as one line naming its rank and host (ConfigError for bad
        input, MeterError otherwise); nothing when every rank succeeded."""
        if not self.failures:
            return
        failure = self.failures[0]
        message = f"rank {failure.rank} (host {layout.host_of(failure.rank)!r}) {what}: " + (
            failure.message
        )
        raise (ConfigError if failure.config else MeterError)(message)


def failure_payload(error: BaseException) -> dict[str, object]:
    """What a rank sends instead of its result when it failed."""
    text = " ".join(str(error).split())[:500] or type(error).__name__
    return {"error": text, "config": isinstance(error, ConfigError)}


def outcomes(payloads: dict[int, dict[str, object]]) -> Outcomes:
    """The payloads of one exchange, its failures picked out."""
    found = Outcomes(payloads)
    for rank, payload in payloads.items():
        error = payload.get("error")
        if isinstance(error, str):
            found.failures.append(_Failure(rank, error, bool(payload.get("config"))))
    return found


def host_result(layout: Layout, rank: int, payload: Mapping[str, object]) -> HostResult:
    """A measurer's result from its payload (see :func:`result_payload`)."""
    host = layout.host_of(rank)
    return HostResult(
        host=host,
        ranks=list(layout.hosts[host]),
        energy_j=float(cast("float", payload["energy_j"])),
        duration_s=float(cast("float", payload["duration_s"])),
        domains={k: float(v) for k, v in cast("dict[str, float]", payload["domains"]).items()},
        counted_domains=list(cast("list[str]", payload["counted_domains"])),
        meters=list(cast("list[str]", payload["meters"])),
        estimated=bool(payload["estimated"]),
    )


def result_payload(
    *,
    energy_j: float,
    duration_s: float,
    domains: Mapping[str, float],
    counted_domains: Sequence[str],
    meters: Sequence[str],
    estimated: bool,
) -> dict[str, object]:
    """What a measurer sends at the stop: its host's figures (see :class:`HostResult`)."""
    return {
        "energy_j": energy_j,
        "duration_s": duration_s,
        "domains": dict(domains),
        "counted_domains": list(counted_domains),
        "meters": list(meters),
        "estimated": estimated,
    }


def current_group() -> Group | None:
    """The default ``torch.distributed`` group when one is initialised with 2 ranks or more.

    Never imports torch: a process that has not imported ``torch.distributed`` is not in a
    distributed job (greenprec is also used from Keras and plain scripts).
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if not (dist.is_available() and dist.is_initialized()):
            return None
        world_size = int(dist.get_world_size())
        rank = int(dist.get_rank())
    except Exception:  # a half-initialised or broken torch must not break measuring
        return None
    if world_size < 2:
        return None
    try:
        store = dist.distributed_c10d._get_default_store()
    except Exception as error:
        raise MeterError(
            "greenprec cannot reach torch.distributed's key-value store to coordinate the "
            f"ranks ({type(error).__name__}: {error}); measure each process alone with "
            "measure(distributed=False)"
        ) from error
    return Group(cast("_Store", store), rank, world_size, timeout_s=_timeout_s())
