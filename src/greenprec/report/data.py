"""Reading a results folder for the report: runs, policies, counted domains, power samples.

Every row of runs.csv either enters the analysis or is named in ``ExperimentData.excluded``
with its line and the reason: a report never drops a run, or uses an impossible value, without
saying so.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from greenprec import stats
from greenprec.counters import MAX_ENERGY_J, MAX_POWER_W
from greenprec.errors import ConfigError
from greenprec.results import (
    DOMAIN_PREFIX,
    INDEX_FILE,
    RUN_STATUSES,
    NodeInfo,
    ResultsStore,
    RunRecord,
    Snapshot,
    record_row,
)
from greenprec.results.files import describe, read_bounded
from greenprec.stats import FloatArray

__all__ = [
    "ACCURACY",
    "ENERGY",
    "MAX_SAMPLES_BYTES",
    "UNKNOWN",
    "Excluded",
    "ExperimentData",
    "Plausible",
    "Row",
    "SampleBatch",
    "counted_domains",
    "load",
    "numeric",
    "read_samples",
    "read_samples_of_runs",
]

Row = dict[str, Any]
_STATUSES = RUN_STATUSES

# Beyond this many energy_j:<domain> columns the subset search below gets slow (2^n subsets)
# and no known meter reports that many; all domains are then counted.
_MAX_DOMAINS_SEARCHED = 12
_SAMPLE_DTYPES = {"t_s": "float64", "domain": "category", "power_w": "float64"}

ENERGY = "energy_j"
ACCURACY = "test_accuracy"
# The limits a meter's readings are held to as well (greenprec.counters): beyond them a value
# is a unit or meter error (1e308 J made "100% less").
_MAX_ENERGY_J = MAX_ENERGY_J


@dataclass(frozen=True)
class Plausible:
    """The values of a runs.csv column the analysis accepts; anything else is named, not used."""

    low: float
    high: float
    low_inclusive: bool
    what: str

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return "is not finite"
        if value < self.low or (value == self.low and not self.low_inclusive):
            return f"is not {self.what}"
        if value > self.high:
            return f"is implausible (more than {self.high:g})"
        return None


# energy_j decides whether a run is used at all; the others only lose the one value.
_PLAUSIBLE: dict[str, Plausible] = {
    ENERGY: Plausible(0.0, _MAX_ENERGY_J, False, "positive"),
    "net_energy_j": Plausible(-_MAX_ENERGY_J, _MAX_ENERGY_J, True, "a finite energy"),
    "duration_s": Plausible(0.0, 1e8, False, "positive"),
    "mean_power_w": Plausible(0.0, MAX_POWER_W, True, "zero or positive"),
    ACCURACY: Plausible(0.0, 100.0, True, "zero or positive"),
    "test_loss": Plausible(-math.inf, math.inf, True, "a number"),
}


@dataclass(frozen=True)
class Excluded:
    """A run the analysis does not use (or, with ``column``, one value of it), and why.

    ``line`` is the run's line in runs.csv for a folder whose record is runs.csv (greenprec
    0.1; the header is line 1), else its row in the runs.csv index; ``where`` is the file that
    holds its record (``runs/<run_id>.json`` or ``runs.csv``). ``column`` is None when the
    whole run is left out; otherwise only that column's value is, and the run is used for the
    rest.
    """

    run_id: str
    line: int
    reason: str
    policy: str | None = None
    column: str | None = None
    where: str = "runs.csv"

    @property
    def place(self) -> str:
        """Where to look: ``line 5`` of runs.csv, or the run's own file."""
        return f"line {self.line}" if self.where == "runs.csv" else self.where

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "where": self.where,
            "line": self.line,
            "policy": self.policy,
            "column": self.column,
            "reason": self.reason,
        }

    def text(self) -> str:
        where = (
            f"runs.csv line {self.line}, run {self.run_id}"
            if self.where == "runs.csv"
            else f"{self.where}, run {self.run_id}"
        )
        if self.policy:
            where += f" ({self.policy})"
        return f"{where}: {self.reason}"


@dataclass
class ExperimentData:
    """What the report needs from a results folder, read once.

    ``rows`` are every row of runs.csv, in order, with the values that are not used (see
    ``excluded``) blanked to None; ``lines`` are their line numbers in runs.csv.
    """

    path: Path
    experiment: dict[str, Any]
    rows: list[Row]
    policies: list[str]
    baseline: str | None
    estimated: bool
    domain_columns: list[str]
    counted_domains: list[str] | None
    counted_source: str
    warnings: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    counted_by_run: dict[str, list[str] | None] = field(default_factory=dict)
    usable: list[bool] = field(default_factory=list)  # per row: a done run the analysis uses
    accuracy_scale: Literal["fraction", "percent"] | None = None
    refused_columns: dict[str, str] = field(default_factory=dict)
    unreadable: int = 0
    """Runs whose record could not be read at all (damaged, missing): named in ``excluded``."""
    node_by_run: dict[str, NodeInfo | None] = field(default_factory=dict)
    """Each run's hardware as its record gives it (``node``; None when not recorded)."""
    records: dict[str, RunRecord] = field(default_factory=dict)
    """Each run's record as read (machine state, idle power, epochs, targets), by run id."""

    @property
    def done(self) -> list[Row]:
        """Finished runs the analysis uses (before outlier removal)."""
        return [row for row, used in zip(self.rows, self.usable, strict=True) if used]

    @property
    def failed(self) -> list[Row]:
        return [row for row in self.rows if row.get("status") == "failed"]

    @property
    def unfinished(self) -> list[Row]:
        return [row for row in self.rows if row.get("status") in ("pending", "running")]

    def line_of(self, run_id: str) -> int | None:
        for row, line in zip(self.rows, self.lines, strict=True):
            if str(row["run_id"]) == run_id:
                return line
        return None

    def samples_path(self, run_id: str) -> Path:
        return ResultsStore(self.path).samples_file(run_id)


def load(path: str | Path) -> ExperimentData:
    """Read the folder through :class:`greenprec.results.ResultsStore`; ConfigError when it is
    not a results folder. Runs the store could not read are named like any other unused run."""
    store = ResultsStore(path)
    warnings: list[str] = []
    snapshot = store.load()
    if snapshot.experiment.created_at == UNKNOWN:
        warnings.append("no experiment.json: the environment and settings are unknown")
    experiment = snapshot.experiment.model_dump(mode="json", by_alias=True)
    raw_rows = [record_row(run) for run in snapshot.runs]
    wheres, lines = _places(snapshot)
    checked = _check_rows(raw_rows, lines, wheres)
    rows, usable, excluded = checked.rows, checked.usable, checked.excluded
    from_store = _store_problems(snapshot, warnings)
    excluded.extend(from_store)
    done = [row for row, used in zip(rows, usable, strict=True) if used]
    scale, refused = _accuracy_unit(rows, usable, lines, excluded)
    policies, baseline = _policies(experiment, rows)
    domain_columns = sorted(
        {
            key.removeprefix(DOMAIN_PREFIX)
            for row in rows
            for key in row
            if key.startswith(DOMAIN_PREFIX)
        }
    )
    meters = experiment.get("meters") if isinstance(experiment.get("meters"), dict) else {}
    assert isinstance(meters, dict)
    estimated = bool(meters.get("estimated")) or any(row.get("estimated") is True for row in done)
    counted = counted_domains(experiment, done, domain_columns)
    if counted.guessed:
        warnings.append(
            f"counted domains of {len(counted.guessed)} run(s) are not recorded (runs.csv has no "
            "counted_domains and experiment.json no meters.counted_domains); "
            f"{counted.source}"
        )
    return ExperimentData(
        path=store.path,
        experiment=experiment,
        rows=rows,
        policies=policies,
        baseline=baseline,
        estimated=estimated,
        domain_columns=domain_columns,
        counted_domains=counted.summary,
        counted_source=counted.source,
        warnings=warnings,
        lines=lines,
        excluded=sorted(excluded, key=lambda e: (e.line, e.column or "")),
        counted_by_run=counted.by_run,
        usable=usable,
        accuracy_scale=scale,
        refused_columns=refused,
        unreadable=sum(1 for e in from_store if e.column is None),
        node_by_run={run.run_id: run.node for run in snapshot.runs},
        records={run.run_id: run for run in snapshot.runs},
    )


UNKNOWN = "unknown"


def _places(snapshot: Snapshot) -> tuple[list[str], list[int]]:
    """Each usable run's record file and line: runs.csv's line for a 0.1 folder, else the
    run's row in the runs.csv index (rebuilt in schedule order)."""
    wheres: list[str] = []
    lines: list[int] = []
    for index, run in enumerate(snapshot.runs):
        location = run.location or snapshot.locations.get(run.run_id)
        if location is not None and location.file == INDEX_FILE and location.line is not None:
            wheres.append(INDEX_FILE)
            lines.append(location.line)
        else:
            wheres.append(str(location) if location else f"runs/{run.run_id}.json")
            lines.append(index + 2)
    return wheres, lines


def _store_problems(snapshot: Snapshot, warnings: list[str]) -> list[Excluded]:
    """The runs the store could not use (damaged, missing, unscheduled), named as unused."""
    named: list[Excluded] = []
    policy_of = {run.run_id: run.policy for run in snapshot.experiment.schedule}
    policies = {run.run_id: run.policy for run in snapshot.runs}
    for problem in snapshot.problems:
        if problem.run_id is None:
            warnings.append(str(problem))
            continue
        location = problem.location
        named.append(
            Excluded(
                problem.run_id,
                location.line or 0,
                problem.reason,
                policy_of.get(problem.run_id) or policies.get(problem.run_id) or problem.policy,
                problem.column,
                where=INDEX_FILE if location.file == INDEX_FILE else str(location),
            )
        )
    return named


@dataclass
class _CheckedRows:
    """Rows with unusable values blanked, which rows the analysis uses, and what was left out."""

    rows: list[Row]
    usable: list[bool]
    excluded: list[Excluded]


def _check_rows(
    raw_rows: Sequence[Row], lines: Sequence[int], wheres: Sequence[str] | None = None
) -> _CheckedRows:
    """Decide for every row of runs.csv whether the analysis uses it, naming what it does not.

    A row is left out when its status is not one of the contract's, when it failed or has not
    finished, when its run_id repeats an earlier row's, or when it is done but its energy_j
    is missing, not a number, not positive, not finite or implausibly large. In a used row a
    single implausible value of another metric (_PLAUSIBLE) is blanked and named.
    """
    rows: list[Row] = []
    usable: list[bool] = []
    excluded: list[Excluded] = []
    first_line: dict[str, int] = {}
    places = wheres if wheres is not None else ["runs.csv"] * len(lines)
    for raw, line, where in zip(raw_rows, lines, places, strict=True):
        row = dict(raw)
        run_id, policy = str(row["run_id"]), str(row["policy"])
        status = row.get("status")

        def leave_out(reason: str, column: str | None = None) -> None:
            excluded.append(Excluded(run_id, line, reason, policy, column, where))  # noqa: B023

        used = False
        if run_id in first_line:
            leave_out(f"run_id repeats line {first_line[run_id]}; only the first row is used")
        elif status not in _STATUSES:
            leave_out(f"status {status!r} is not one of {', '.join(_STATUSES)}")
        elif status == "failed":
            leave_out(f"the run failed: {row.get('error') or 'no error recorded'}")
        elif status != "done":
            leave_out(f"the run has not finished (status {status})")
        else:
            problem = _value_problem(ENERGY, row.get(ENERGY))
            if problem is None:
                used = True
            else:
                leave_out(problem)
        first_line.setdefault(run_id, line)
        if used:
            for key in _PLAUSIBLE:
                if key == ENERGY or row.get(key) is None:
                    continue
                problem = _value_problem(key, row[key])
                if problem is not None:
                    leave_out(problem + "; this value is not used", key)
                    row[key] = None
        rows.append(row)
        usable.append(used)
    return _CheckedRows(rows, usable, excluded)


def _value_problem(key: str, value: object) -> str | None:
    """Why a runs.csv value cannot enter the analysis, or None when it can."""
    if value is None:
        return f"{key} is empty"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        unit = " in joules" if key.endswith("_j") else ""
        return f"{key} {str(value)!r} is not a number{unit}"
    problem = _PLAUSIBLE[key].problem(float(value))
    return None if problem is None else f"{key} {float(value):g} {problem}"


def _accuracy_unit(
    rows: list[Row], usable: Sequence[bool], lines: Sequence[int], excluded: list[Excluded]
) -> tuple[Literal["fraction", "percent"] | None, dict[str, str]]:
    """The unit of test_accuracy, decided once from every used value of the column.

    A column that mixes fractions and percentages (0.45 beside 95.0) has no unit that reads
    every value right: the column is refused as a whole, blanked in every row, and each odd
    value is named. Energy and the other metrics are still analysed.
    """
    index = [i for i, used in enumerate(usable) if used and rows[i].get(ACCURACY) is not None]
    values = np.array([float(rows[i][ACCURACY]) for i in index], dtype=np.float64)
    try:
        return stats.accuracy_scale(values, ids=[str(rows[i]["run_id"]) for i in index]), {}
    except ConfigError as error:
        reason = f"{ACCURACY} is not analysed: {error}"
    fractions = [i for i, v in zip(index, values, strict=True) if 0 < v <= 1]
    percents = [i for i, v in zip(index, values, strict=True) if v > 1]
    odd, kind = (
        (fractions, "a fraction")
        if len(fractions) <= len(percents)
        else (
            percents,
            "a percentage",
        )
    )
    for i in odd:
        excluded.append(
            Excluded(
                str(rows[i]["run_id"]),
                lines[i],
                f"{ACCURACY} {rows[i][ACCURACY]:g} reads as {kind} while most of the column "
                "does not; the column is not analysed",
                str(rows[i]["policy"]),
                ACCURACY,
            )
        )
    for row in rows:
        row[ACCURACY] = None
    return None, {ACCURACY: reason}


def _policies(experiment: dict[str, Any], rows: Sequence[Row]) -> tuple[list[str], str | None]:
    """Configured policies first (their order makes the first one the baseline), then others.
    An experiment that varied more than the policy (``greenprec recommend --vary``) groups its
    runs by configuration: its configurations' labels are what its runs record as policy."""
    config = experiment.get("config")
    configured = config.get("policies") if isinstance(config, dict) else None
    arms = config.get("configurations") if isinstance(config, dict) else None
    if isinstance(arms, list) and arms:
        configured = [a.get("label") for a in arms if isinstance(a, dict) and a.get("label")]
    names = [str(p) for p in configured] if isinstance(configured, list) else []
    seen = [str(row["policy"]) for row in rows]
    policies = list(dict.fromkeys([*names, *seen]))
    return policies, (policies[0] if policies else None)


_RUNS_CSV_SOURCE = "runs.csv counted_domains"
_EXPERIMENT_SOURCE = "experiment.json meters.counted_domains"


@dataclass
class _CountedDomains:
    """Which domains make up each run's energy_j, and where that answer came from."""

    by_run: dict[str, list[str] | None]
    summary: list[str] | None  # the runs' lists when they agree, else their union
    source: str
    guessed: list[str] = field(default_factory=list)  # run ids without a recorded answer


def counted_domains(
    experiment: dict[str, Any], done: Sequence[Row], domain_columns: Sequence[str]
) -> _CountedDomains:
    """The domains whose energies make up each run's ``energy_j``, and where they came from.

    Meters report parts that are contained in another domain (RAPL's core inside its
    package); summing those in a power trace would count the same joule twice. In order: the
    run's own ``counted_domains`` cell in runs.csv (written by the runner and the importer);
    else experiment.json's ``meters.counted_domains`` (limited to the domains the run has an
    ``energy_j:<domain>`` value for, since an import may list the union of several machines);
    only for folders that record neither, the largest set of ``energy_j:<domain>`` columns that
    sums to ``energy_j`` in every such run.
    """
    meters = experiment.get("meters")
    recorded: list[str] | None = None
    for candidate in (
        meters.get("counted_domains") if isinstance(meters, dict) else None,
        experiment.get("counted_domains"),
    ):
        if isinstance(candidate, list) and all(isinstance(d, str) for d in candidate) and candidate:
            recorded = list(candidate)
            break
    by_run: dict[str, list[str] | None] = {}
    sources: dict[str, list[str]] = {}
    unrecorded: list[Row] = []
    for row in done:
        run_id = str(row["run_id"])
        own = _split_domains(row.get("counted_domains"))
        if own is not None:
            by_run[run_id] = own
            sources.setdefault(_RUNS_CSV_SOURCE, []).append(run_id)
        elif recorded is not None:
            present = [d for d in recorded if row.get(DOMAIN_PREFIX + d) is not None]
            has_columns = any(row.get(DOMAIN_PREFIX + d) is not None for d in domain_columns)
            by_run[run_id] = present if has_columns and present else list(recorded)
            sources.setdefault(_EXPERIMENT_SOURCE, []).append(run_id)
        else:
            unrecorded.append(row)
    guessed: list[str] = []
    if unrecorded:
        found, how = _search_counted(unrecorded, domain_columns)
        for row in unrecorded:
            by_run[str(row["run_id"])] = found
            guessed.append(str(row["run_id"]))
        sources.setdefault(how, []).extend(guessed)
    if not done and recorded is not None:
        sources[_EXPERIMENT_SOURCE] = []
    lists = [tuple(v) if v is not None else None for v in by_run.values()]
    if not lists:
        summary = recorded
    elif all(v is None for v in lists):
        summary = None
    else:
        summary = list(dict.fromkeys(d for v in lists if v is not None for d in v))
    if not sources:
        source = "no finished run"
    elif len(sources) == 1:
        source = next(iter(sources))
    else:
        source = "; ".join(f"{how} for {len(ids)} run(s)" for how, ids in sources.items())
    return _CountedDomains(by_run, summary, source, guessed)


def _search_counted(
    done: Sequence[Row], domain_columns: Sequence[str]
) -> tuple[list[str] | None, str]:
    """Old folders only: the largest set of energy_j:<domain> columns summing to energy_j."""
    if not domain_columns:
        return None, "runs.csv has no energy_j:<domain> columns; every sampled domain is summed"
    totals = np.array([_number(row.get("energy_j")) for row in done])
    matrix = np.array(
        [[_number(row.get(DOMAIN_PREFIX + d)) for d in domain_columns] for row in done]
    ).reshape(len(done), len(domain_columns))
    usable = np.isfinite(totals)
    totals, matrix = totals[usable], np.nan_to_num(matrix[usable], nan=0.0)
    if totals.size == 0:
        return list(domain_columns), "no finished run to check against; every domain is summed"
    if len(domain_columns) > _MAX_DOMAINS_SEARCHED:
        return list(domain_columns), "too many domains to search; every domain is summed"
    # Largest subsets first: a domain that is always zero is harmless to include.
    for size in range(len(domain_columns), 0, -1):
        for combo in itertools.combinations(range(len(domain_columns)), size):
            sums = matrix[:, list(combo)].sum(axis=1)
            if np.allclose(sums, totals, rtol=1e-6, atol=1e-6):
                return (
                    [domain_columns[i] for i in combo],
                    "guessed: the energy_j:<domain> columns that sum to energy_j",
                )
    return list(domain_columns), (
        "no set of energy_j:<domain> columns sums to energy_j; every domain is summed"
    )


def _split_domains(cell: object) -> list[str] | None:
    if not isinstance(cell, str) or not cell.strip():
        return None
    return [part.strip() for part in cell.split(";") if part.strip()]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    # An infinite energy or time is a broken measurement: missing, not a value to average.
    return float(value) if math.isfinite(value) else math.nan


def numeric(rows: Sequence[Row], key: str) -> FloatArray:
    """One column as floats; missing, non-numeric or infinite cells are NaN."""
    return np.array([_number(row.get(key)) for row in rows], dtype=np.float64)


def read_samples(path: Path, *, folder: Path | None = None) -> pd.DataFrame:
    """One run's samples (t_s, domain, power_w); ConfigError naming the file when it cannot be
    read (a link, a FIFO or device, over :data:`MAX_SAMPLES_BYTES`, not a samples CSV), never
    quoting its content; FileNotFoundError when there is none. With ``folder`` (the results
    folder), no folder between it and ``path`` is followed if it is a link."""
    return _parse_samples(_samples_bytes(path, folder), path)


MAX_SAMPLES_BYTES = 2 * 2**30
"""The largest samples file the report reads: 2 GiB. A run sampled at 10 Hz for a week with
two domains writes about 0.8 GB (65 bytes a row); a larger file is not one greenprec wrote, and
reading it whole (``/dev/zero`` has no end) would take the machine's memory."""

# Files read together and parsed as one CSV: 10,000 runs of 150 samples took 20 s one file at
# a time, almost all of it pandas' fixed cost per call. The cap keeps memory bounded.
_BATCH_BYTES = 16 * 2**20
# A file whose body could parse differently inside a batch than alone (quotes, carriage
# returns, blank or whitespace-only lines, NUL bytes) is parsed alone.
_NOT_PLAIN = (b'"', b"\r", b"\x00", b"\n\n", b"\n ", b"\n\t")


@dataclass
class SampleBatch:
    """The samples of some runs, row by row: ``run`` is each row's index in the paths given to
    :func:`read_samples_of_runs`; ``rows`` counts each run's rows; ``problems`` holds the runs
    whose file could not be read (FileNotFoundError: there is none; ConfigError: why not)."""

    run: npt.NDArray[np.int64]
    t_s: FloatArray
    domain: npt.NDArray[np.object_]
    power_w: FloatArray
    rows: dict[int, int]
    problems: dict[int, FileNotFoundError | ConfigError]


def read_samples_of_runs(
    paths: Sequence[Path], *, folder: Path | None = None
) -> Iterator[SampleBatch]:
    """The samples of many runs, read as :func:`read_samples` reads each (same checks, same
    numbers) but parsed in batches of up to 16 MiB, in the order of ``paths``."""
    start = 0
    while start < len(paths):
        raw: dict[int, bytes] = {}
        problems: dict[int, FileNotFoundError | ConfigError] = {}
        size = 0
        index = start
        while index < len(paths) and (size < _BATCH_BYTES or not raw):
            try:
                raw[index] = _samples_bytes(paths[index], folder)
                size += len(raw[index])
            except (FileNotFoundError, ConfigError) as error:
                problems[index] = error
            index += 1
        yield _batch(paths, raw, problems)
        start = index


def _samples_bytes(path: Path, folder: Path | None) -> bytes:
    try:
        return read_bounded(path, MAX_SAMPLES_BYTES, folder=folder)
    except FileNotFoundError:
        raise
    except OSError as error:
        # Why, never what is in it: a link to /etc/shadow is named, not quoted.
        raise ConfigError(f"{path}: samples not read: {describe(error)}") from None


def _parse_samples(data: bytes, path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            io.BytesIO(data), usecols=list(_SAMPLE_DTYPES), dtype=_SAMPLE_DTYPES, engine="c"
        )
    except (ValueError, pd.errors.ParserError) as error:
        # The parser's message can quote a cell; say only what kind of damage it is.
        what = "no columns" if isinstance(error, pd.errors.EmptyDataError) else _damage(error)
        raise ConfigError(
            f"{path}: unreadable samples ({what}); a samples file has the columns "
            f"{', '.join(_SAMPLE_DTYPES)}"
        ) from None
    return frame


def _damage(error: Exception) -> str:
    text = str(error)
    if "Usecols do not match" in text:
        return "a column is missing"
    if "Expected" in text and "fields" in text:
        return "a line has more fields than the header"
    if "could not convert" in text or "Unable to parse" in text:
        return "a t_s or power_w value is not a number"
    return type(error).__name__


def _batch(
    paths: Sequence[Path],
    raw: dict[int, bytes],
    problems: dict[int, FileNotFoundError | ConfigError],
) -> SampleBatch:
    """Parse the files of one batch: plain files with one header together, the others alone."""
    frames: list[pd.DataFrame] = []
    runs: list[npt.NDArray[np.int64]] = []
    rows: dict[int, int] = {}
    together: dict[bytes, list[tuple[int, bytes]]] = {}
    for index, data in raw.items():
        header, newline, body = data.partition(b"\n")
        if newline and b'"' not in header and _plain(body):
            together.setdefault(header, []).append((index, body))
        else:
            _alone(paths, index, data, frames, runs, rows, problems)
    for header, parts in together.items():
        _together(paths, header, parts, raw, frames, runs, rows, problems)
    return _joined(frames, runs, rows, problems)


def _plain(body: bytes) -> bool:
    """Whether a file's lines (after its header) parse the same inside a batch as alone."""
    return bool(body) and body[:1] not in b"\n \t" and not any(m in body for m in _NOT_PLAIN)


def _alone(
    paths: Sequence[Path],
    index: int,
    data: bytes,
    frames: list[pd.DataFrame],
    runs: list[npt.NDArray[np.int64]],
    rows: dict[int, int],
    problems: dict[int, FileNotFoundError | ConfigError],
) -> None:
    try:
        frame = _parse_samples(data, paths[index])
    except ConfigError as error:
        problems[index] = error
        return
    frames.append(frame)
    runs.append(np.full(len(frame), index, dtype=np.int64))
    rows[index] = len(frame)


def _together(
    paths: Sequence[Path],
    header: bytes,
    parts: list[tuple[int, bytes]],
    raw: dict[int, bytes],
    frames: list[pd.DataFrame],
    runs: list[npt.NDArray[np.int64]],
    rows: dict[int, int],
    problems: dict[int, FileNotFoundError | ConfigError],
) -> None:
    """Parse files with the same header as one CSV; a batch that fails, or whose row count
    is not the files' line count, is split in halves until the damaged file is parsed alone
    (and named by itself)."""
    bodies = [body if body.endswith(b"\n") else body + b"\n" for _, body in parts]
    counts = [body.count(b"\n") for body in bodies]
    commas = header.count(b",")
    plain = all(
        body.count(b",") == count * commas for body, count in zip(bodies, counts, strict=True)
    )
    frame: pd.DataFrame | None = None
    if plain:
        try:
            frame = _parse_samples(header + b"\n" + b"".join(bodies), paths[parts[0][0]])
        except ConfigError:
            frame = None
    if frame is not None and len(frame) == sum(counts):
        frames.append(frame)
        for (index, _), count in zip(parts, counts, strict=True):
            runs.append(np.full(count, index, dtype=np.int64))
            rows[index] = count
        return
    if len(parts) == 1:
        _alone(paths, parts[0][0], raw[parts[0][0]], frames, runs, rows, problems)
        return
    half = len(parts) // 2
    for chunk in (parts[:half], parts[half:]):
        _together(paths, header, chunk, raw, frames, runs, rows, problems)


def _joined(
    frames: list[pd.DataFrame],
    runs: list[npt.NDArray[np.int64]],
    rows: dict[int, int],
    problems: dict[int, FileNotFoundError | ConfigError],
) -> SampleBatch:
    if frames:
        t_s = np.concatenate([f["t_s"].to_numpy(dtype=np.float64) for f in frames])
        power = np.concatenate([f["power_w"].to_numpy(dtype=np.float64) for f in frames])
        # As binned_power reads a domain: its text, a missing one as 'nan'.
        domain = np.concatenate([f["domain"].astype(str).to_numpy(dtype=object) for f in frames])
        run = np.concatenate(runs)
    else:
        t_s, power = np.empty(0), np.empty(0)
        domain, run = np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return SampleBatch(run, t_s, domain, power, rows, problems)
