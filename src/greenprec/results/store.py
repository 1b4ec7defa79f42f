"""The results folder on disk: the only code that knows its layout.

::

    DIR/experiment.json        ExperimentRecord: config, schedule, meters, host, versions
    DIR/runs/<run_id>.json     RunRecord, one file per run, written by whoever executed it
    DIR/runs.csv               the index: one row per run, rebuilt from the run files
    DIR/samples/<name>.csv     t_s, domain, power_w, energy_j (runs, warmup, baseline)
    DIR/logs/<run_id>.log      a run's output, when it ran in a process of its own
    DIR/.work/                 hand-over files between the driver and a run's process
    DIR/submissions.json       the cluster executor's jobs (SubmissionsRecord), its submitter's
    DIR/jobs/<job_id>.json     JobRecord: one Slurm job's node, baseline and warm-up, its own
    DIR/slurm/<job_id>/        submitit's files of a job: batch script, pickles, the job's log
    DIR/.greenprec.lock        held by the process driving the folder (see lock.py)
    DIR/recommendation.json    RecommendationRecord: greenprec recommend's answer (derived;
                               every report of a selection folder rewrites it; see
                               greenprec.results.recommendation)

Every write is atomic (:func:`greenprec.results.files.write_atomic`), so a crash leaves a
readable folder. Every file is read and written from the folder down without following a link
(:meth:`ResultsStore.read_file`, bounded, regular files only), and a sub-folder that is a link
or a file is refused with one line (:meth:`ResultsStore.check_layout`): nothing outside the
folder is read or written through it. Two writers never write the same file at the same
time: the driver creates the run files as *pending*, the executor of a run then owns that
run's file until it ends, and the driver writes it again only when the executor is gone.
Every path is built from a validated run id or a fixed name, never from text read out of a
file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from greenprec.errors import ConfigError
from greenprec.results.files import (
    MAX_RECORD_BYTES,
    check_subfolder,
    describe,
    read_bounded,
    write_atomic,
)
from greenprec.results.index import RowProblem, index_text, read_legacy_runs
from greenprec.results.location import INDEX_FILE, Location
from greenprec.results.lock import LOCK_NAME, FolderLock
from greenprec.results.models import (
    RUN_ID_PATTERN,
    SCHEMA_MAJOR,
    ExperimentRecord,
    JobRecord,
    RunRecord,
    SubmissionsRecord,
    check_job_id,
    check_run_id,
    counted_sum_problem,
)

__all__ = [
    "SAMPLE_COLUMNS",
    "SUBFOLDERS",
    "ExperimentExists",
    "Problem",
    "ResultsStore",
    "Snapshot",
]

SAMPLE_COLUMNS = ("t_s", "domain", "power_w", "energy_j")
SUBFOLDERS = ("runs", "samples", "logs", ".work", "jobs", "slurm", "figures")
"""The folders greenprec keeps inside a results folder: each a real folder, never a link."""
_SAMPLE_NAME_RESERVED = ("warmup", "baseline")


class ExperimentExists(ConfigError):
    """A new experiment was asked for in a folder that already holds one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path} already holds a greenprec experiment")


@dataclass(frozen=True)
class Problem:
    """A run the store could not use as it is (or, with ``column``, one value of it), and why:
    named in every report."""

    run_id: str | None
    location: Location
    """The file (and line, for a 0.1 runs.csv) the problem is in."""
    reason: str
    column: str | None = None
    policy: str | None = None

    @property
    def where(self) -> str:
        """The location as text: ``runs/<id>.json``, ``runs.csv:5``."""
        return str(self.location)

    def __str__(self) -> str:
        who = f"run {self.run_id}: " if self.run_id else ""
        return f"{who}{self.where}: {self.reason}"


@dataclass
class Snapshot:
    """Everything a results folder holds, read and checked against its schedule."""

    experiment: ExperimentRecord
    runs: list[RunRecord]
    """The usable runs, in schedule order (then unscheduled ones, which are named problems)."""
    problems: list[Problem] = field(default_factory=list)
    """Damaged, missing and unscheduled runs, and an index that disagrees with the run files."""
    legacy: bool = False
    """True for a folder written by greenprec 0.1 (runs.csv is its record)."""
    locations: dict[str, Location] = field(default_factory=dict)
    """Where each usable run's record is: ``runs/<run_id>.json``, or ``runs.csv:<line>``."""

    @property
    def missing(self) -> list[str]:
        return [p.run_id for p in self.problems if p.run_id and p.reason.startswith("missing")]


class ResultsStore:
    """One results folder. Cheap to create; nothing is read or written until asked."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- layout ------------------------------------------------------------------------------
    @property
    def experiment_file(self) -> Path:
        return self.path / "experiment.json"

    def _subfolder(self, name: str) -> Path:
        """``DIR/<name>``, checked: a link or a file there is refused (ConfigError), so nothing
        is ever read or written through it."""
        return check_subfolder(self.path / name)

    def check_layout(self) -> None:
        """Refuse a folder whose ``runs/``, ``samples/``, ``figures/`` ... is a symbolic link
        or not a folder (one ConfigError naming it), before anything is read or written."""
        for name in SUBFOLDERS:
            self._subfolder(name)

    @property
    def runs_dir(self) -> Path:
        return self._subfolder("runs")

    @property
    def index_file(self) -> Path:
        return self.path / INDEX_FILE

    @property
    def samples_dir(self) -> Path:
        return self._subfolder("samples")

    @property
    def logs_dir(self) -> Path:
        return self._subfolder("logs")

    @property
    def work_dir(self) -> Path:
        return self._subfolder(".work")

    def run_file(self, run_id: str) -> Path:
        return self.runs_dir / f"{_checked(run_id)}.json"

    def samples_file(self, name: str) -> Path:
        return self.samples_dir / f"{_checked(name)}.csv"

    def log_file(self, run_id: str) -> Path:
        return self.logs_dir / f"{_checked(run_id)}.log"

    def work_file(self, run_id: str, suffix: str) -> Path:
        return self.work_dir / f"{_checked(run_id)}.{suffix}"

    @property
    def figures_dir(self) -> Path:
        """The report's figures (written by :func:`greenprec.report.build_report`)."""
        return self._subfolder("figures")

    @property
    def submissions_file(self) -> Path:
        return self.path / "submissions.json"

    @property
    def jobs_dir(self) -> Path:
        return self._subfolder("jobs")

    @property
    def slurm_dir(self) -> Path:
        """submitit's folder: one sub-folder per job (``%j``), named by submitit."""
        return self._subfolder("slurm")

    def job_file(self, job_id: str) -> Path:
        try:
            return self.jobs_dir / f"{check_job_id(job_id)}.json"
        except ValueError as error:
            raise ConfigError(str(error)) from None

    # -- what is there -----------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the folder holds a greenprec experiment (of any version)."""
        # lexists: a link there is ours to name (reading refuses it), not "no experiment".
        return os.path.lexists(self.experiment_file) or os.path.lexists(self.index_file)

    def check_new(self) -> None:
        """Refuse a folder that already holds an experiment, or anything that is not ours."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} exists and is not a folder; choose another folder")
        if self.exists():
            raise ExperimentExists(self.path)
        if self.path.is_dir():
            strangers = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_NAME)
            if strangers:
                shown = ", ".join(strangers[:3]) + (" ..." if len(strangers) > 3 else "")
                raise ConfigError(
                    f"{self.path} is not empty ({shown}) and is not a greenprec experiment; "
                    "choose a new or empty folder (nothing was written)"
                )

    def lock(self, purpose: str) -> FolderLock:
        """The driver's lock (see :mod:`greenprec.results.lock`); use it as a context manager."""
        return FolderLock(self.path, purpose)

    # -- creating ----------------------------------------------------------------------------
    def create(self, experiment: ExperimentRecord, runs: Sequence[RunRecord]) -> None:
        """Write a new experiment: its record, a run file per scheduled run, the index.

        The caller holds the lock and has called :meth:`check_new`. ``experiment.json``
        comes first, so the schedule is on disk before anything else: a crash in between
        leaves a folder whose missing run files are recognised (and recreated on resume).
        """
        scheduled = {run.run_id for run in experiment.schedule}
        unknown = sorted(run.run_id for run in runs if run.run_id not in scheduled)
        if unknown:
            raise ValueError(f"runs not in the schedule: {', '.join(unknown)}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_experiment(experiment)
        for run in runs:
            self.write_run(run)
        self.write_index(runs)

    # -- experiment.json ---------------------------------------------------------------------
    def read_experiment(self) -> ExperimentRecord:
        data = self._read_json(self.experiment_file, what="experiment.json")
        if not isinstance(data, dict):
            raise ConfigError(f"{self.experiment_file} must hold a JSON object")
        if "schema_version" not in data and data.get("format_version") == 1:
            from greenprec.results.legacy import upgrade_experiment

            data = upgrade_experiment(data)
        _check_schema(data.get("schema_version"), self.experiment_file)
        try:
            return ExperimentRecord.model_validate(data)
        except ValidationError as error:
            raise ConfigError(
                f"{self.experiment_file} is damaged: {_validation_line(error)}; it cannot be "
                "read (restore it from a copy, or re-import the source files)"
            ) from None

    def write_experiment(self, experiment: ExperimentRecord) -> None:
        text = experiment.model_dump_json(indent=2, by_alias=True)
        self._write(self.experiment_file, text + "\n")

    # -- run files ---------------------------------------------------------------------------
    def write_run(self, run: RunRecord) -> Path:
        """Write one run's file atomically (the caller is the run's executor, or the driver
        once the executor is gone)."""
        path = self.run_file(run.run_id)
        self._write(path, run.model_dump_json(indent=2) + "\n")
        return path

    def read_run(self, run_id: str) -> RunRecord:
        """One run's file; ConfigError naming the file when it is missing or damaged."""
        path = self.run_file(run_id)
        data = self._read_json(path, what="run file")
        return self._run_from(data, path, run_id)

    def _run_from(self, data: Any, path: Path, run_id: str) -> RunRecord:
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: damaged run file (not a JSON object)")
        _check_schema(data.get("schema_version"), path)
        try:
            record = RunRecord.model_validate(data)
        except ValidationError as error:
            raise ConfigError(f"{path}: damaged run file ({_validation_line(error)})") from None
        if record.run_id != run_id:
            raise ConfigError(
                f"{path}: damaged run file (it names run {record.run_id!r}, not {run_id!r})"
            )
        problem = counted_sum_problem(record.energy_j, record.domains, record.counted_domains)
        if problem is not None:
            raise ConfigError(f"{path}: damaged run file ({problem})")
        return record

    def forget_run(self, run_id: str) -> None:
        """Remove a run that never ran from the folder (an adaptive experiment that stopped
        early cuts its schedule, then its pending runs' files)."""
        with contextlib.suppress(FileNotFoundError):
            self.run_file(run_id).unlink()

    def write_index(self, runs: Sequence[RunRecord]) -> None:
        """Rebuild runs.csv from the runs (in their order)."""
        self._write(self.index_file, index_text(sorted(runs, key=lambda r: r.order)))

    # -- the cluster executor's files -------------------------------------------------------
    def read_submissions(self) -> SubmissionsRecord:
        """The jobs submitted so far (none when the file does not exist)."""
        if not self.submissions_file.exists():
            return SubmissionsRecord()
        data = self._read_json(self.submissions_file, what="submissions file")
        if isinstance(data, dict):
            _check_schema(data.get("schema_version"), self.submissions_file)
        try:
            return SubmissionsRecord.model_validate(data)
        except ValidationError as error:
            raise ConfigError(
                f"{self.submissions_file} is damaged ({_validation_line(error)}); its jobs "
                "cannot be followed: cancel them with scancel (their names start with "
                "greenprec-), move the file away and resume"
            ) from None

    def write_submissions(self, record: SubmissionsRecord) -> None:
        self._write(self.submissions_file, record.model_dump_json(indent=2) + "\n")

    def write_job(self, job: JobRecord) -> Path:
        path = self.job_file(job.job_id)
        self._write(path, job.model_dump_json(indent=2) + "\n")
        return path

    def read_job(self, job_id: str) -> JobRecord:
        path = self.job_file(job_id)
        data = self._read_json(path, what="job file")
        try:
            return JobRecord.model_validate(data)
        except ValidationError as error:
            raise ConfigError(f"{path}: damaged job file ({_validation_line(error)})") from None

    # -- samples -----------------------------------------------------------------------------
    def write_samples(self, name: str, rows: Iterable[Sequence[Any]]) -> Path:
        from greenprec.results.index import format_cell

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        for row in rows:
            writer.writerow([format_cell(value) for value in row])
        path = self.samples_file(name)
        self._write(path, buffer.getvalue())
        return path

    # -- reading everything ------------------------------------------------------------------
    def load(self) -> Snapshot:
        """Read the experiment and all its runs, checked against the schedule.

        Each scheduled run must have exactly one usable record; every missing, damaged,
        unscheduled or tampered one is a named :class:`Problem`, never silently dropped.
        """
        if not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a directory; give a greenprec results folder")
        if not self.exists():
            raise ConfigError(
                f"{self.path} is not a greenprec results folder (no experiment.json or "
                "runs.csv); make one with greenprec compare or greenprec import"
            )
        self.check_layout()
        if os.path.lexists(self.experiment_file):
            experiment = self.read_experiment()
        else:
            # A runs.csv alone (hand-made, or experiment.json lost): readable, with nothing
            # known about how it was made; it has no schedule to check against.
            from greenprec.results.legacy import LEGACY_SCHEMA_VERSION

            experiment = ExperimentRecord(
                schema_version=LEGACY_SCHEMA_VERSION, created_at="unknown", source="unknown"
            )
        if os.path.lexists(self.runs_dir):
            runs, problems = self._load_run_files()
            problems.extend(self._check_index(runs))
            legacy = False
            locations = {run.run_id: Location(f"runs/{run.run_id}.json") for run in runs}
        else:
            runs, problems, lines = self._load_legacy()
            legacy = True
            locations = {run_id: Location(INDEX_FILE, line) for run_id, line in lines.items()}
        named = {p.run_id for p in problems if p.run_id and p.column is None}
        runs, schedule_problems = _against_schedule(experiment, runs, named, legacy)
        return Snapshot(experiment, runs, [*problems, *schedule_problems], legacy, locations)

    def _load_run_files(self) -> tuple[list[RunRecord], list[Problem]]:
        runs: list[RunRecord] = []
        problems: list[Problem] = []
        for path in sorted(self.runs_dir.iterdir()):
            name = path.name
            if name.startswith(".") and name.endswith(".tmp"):
                continue  # a write a kill interrupted: the old file (if any) is still whole
            stem = name.removesuffix(".json")
            if not name.endswith(".json") or RUN_ID_PATTERN.fullmatch(stem) is None:
                problems.append(
                    Problem(None, Location(f"runs/{name[:60]!r}"), "not a run file; ignored")
                )
                continue
            try:
                data = self._read_json(path, what="run file")
                run = self._run_from(data, path, stem)
                run.location = Location(f"runs/{name}")
                runs.append(run)
            except ConfigError as error:
                problems.append(Problem(stem, Location(f"runs/{name}"), _reason(str(error), path)))
        return runs, problems

    def _load_legacy(self) -> tuple[list[RunRecord], list[Problem], dict[str, int]]:
        try:
            raw = self.read_file(self.index_file)
        except FileNotFoundError:
            return [], [], {}
        except OSError as error:
            raise ConfigError(
                f"{self.index_file}: cannot read it ({_unreadable(error)}); in this folder "
                "runs.csv is the record of the runs: put the file itself back (from a copy)"
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError(
                f"{self.index_file}: not UTF-8 text (byte {error.start}); save it as UTF-8"
            ) from None
        records, row_problems, lines = read_legacy_runs(text, str(self.index_file))
        return records, [_row_problem(p) for p in row_problems], lines

    def _check_index(self, runs: Sequence[RunRecord]) -> list[Problem]:
        """runs.csv is only an index; say so when it disagrees with the run files."""
        if not os.path.lexists(self.index_file):
            return [Problem(None, Location(INDEX_FILE), "missing; it is rebuilt on the next write")]
        try:
            text = self.read_file(self.index_file).decode("utf-8", errors="replace")
        except OSError as error:
            return [
                Problem(
                    None,
                    Location(INDEX_FILE),
                    f"cannot read it ({_unreadable(error)}); the run files were used, and the "
                    "index is rebuilt on the next write",
                )
            ]
        try:
            indexed = {
                (row.get("run_id"), row.get("status"))
                for row in csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))
            }
        except csv.Error:
            indexed = set()
        actual = {(run.run_id, run.status) for run in runs}
        if indexed != actual:
            return [
                Problem(
                    None,
                    Location(INDEX_FILE),
                    "does not match the run files in runs/ (an interrupted update or an edit); "
                    "the run files were used, and the index is rebuilt on the next write",
                )
            ]
        return []

    # -- every read and write of a file in the folder goes through these two ----------------
    def read_file(self, path: Path, limit: int = MAX_RECORD_BYTES) -> bytes:
        """A regular file of this folder, at most ``limit`` bytes, reached without following
        a link; OSError otherwise (:func:`greenprec.results.files.describe` says why)."""
        return read_bounded(path, limit, folder=self.path)

    def _write(self, path: Path, data: str | bytes) -> None:
        write_atomic(path, data, folder=self.path)

    def _read_json(self, path: Path, *, what: str) -> Any:
        try:
            raw = self.read_file(path)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no {what}") from None
        except OSError as error:
            raise ConfigError(f"{path}: cannot read {what}: {describe(error)}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: {what} is not UTF-8 text") from None
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{path}: {what} is not valid JSON (line {error.lineno}: {error.msg})"
            ) from None
        except RecursionError:
            # Python's parser recurses per level: 200,000 nested brackets is no record of ours.
            raise ConfigError(f"{path}: {what} is nested too deeply to be a record") from None
        except ValueError as error:
            if "digits" in str(error):  # an integer longer than Python converts (4300 digits)
                raise ConfigError(
                    f"{path}: {what} holds an integer of more than "
                    f"{sys.get_int_max_str_digits()} digits, which no record of greenprec has"
                ) from None
            raise ConfigError(f"{path}: {what} is damaged ({_first_line(error)})") from None
        if _nested_deeper(raw, data, _MAX_NESTING):
            # Parsed, but a record this deep cannot be written back (pydantic's serializer stops
            # near 255 levels): a run resumed from it would crash its executor.
            raise ConfigError(
                f"{path}: {what} is nested too deeply to be a record (more than {_MAX_NESTING} "
                "levels)"
            )
        return data

    # -- the running state -------------------------------------------------------------------
    def is_stale(self, run: RunRecord) -> bool:
        """A ``running`` run whose executor is gone (this host, its process dead).

        A run executed on another host is judged by whoever can see that host (the cluster
        executor asks its scheduler); here it is not stale.
        """
        if run.status != "running":
            return False
        if run.host is not None and run.host != platform.node():
            return False
        if run.executor_pid is None:
            return True  # nobody claimed it: a driver that died between two writes
        return not _alive(run.executor_pid)

    def ensure_dirs(self) -> None:
        """Make ``runs/``, ``samples/`` and ``logs/``; ConfigError (before anything is made)
        when any of the folder's sub-folders is a link or a file."""
        self.check_layout()
        for directory in (self.runs_dir, self.samples_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)

    def remove_work_file(self, run_id: str, suffix: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.work_file(run_id, suffix).unlink()


def _checked(name: str) -> str:
    try:
        return check_run_id(name, "name")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _check_schema(version: object, path: Path) -> None:
    if version is None:
        raise ConfigError(f"{path}: no schema_version; it was not written by greenprec")
    major_text = str(version).split(".", 1)[0]
    if not major_text.isdigit():
        raise ConfigError(f"{path}: unreadable schema_version {str(version)[:20]!r}")
    if int(major_text) > SCHEMA_MAJOR:
        from greenprec._version import __version__

        raise ConfigError(
            f"{path} was written by a newer greenprec (schema {str(version)[:20]}; this is "
            f"greenprec {__version__}, schema {SCHEMA_MAJOR}.x); upgrade greenprec to read it"
        )


def _validation_line(error: ValidationError) -> str:
    item = error.errors()[0]
    where = ".".join(str(part) for part in item["loc"]) or "record"
    return f"{where}: {item['msg']}"


_MAX_NESTING = 100
"""Levels of JSON nesting a record may have: greenprec's own go about six deep."""


def _nested_deeper(raw: bytes, data: Any, limit: int) -> bool:
    """Whether ``data`` (parsed from ``raw``) nests more than ``limit`` levels. A file with no
    more than ``limit`` brackets cannot, and is not walked: reading 10,000 run files stays
    fast."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[Any] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _reason(message: str, path: Path) -> str:
    return message.removeprefix(f"{path}: ")


def _row_problem(problem: RowProblem) -> Problem:
    return Problem(
        problem.run_id,
        Location(INDEX_FILE, problem.line),
        problem.reason,
        problem.column,
        problem.policy,
    )


def _unreadable(error: OSError) -> str:
    """Why a file could not be read, in words (not ``[Errno 40] Too many levels of ...``)."""
    return describe(error)


def _alive(pid: int) -> bool:
    """Whether the process that claimed a run is still there: an unreaped zombie (a runner
    killed with kill -9 leaves its run's process so) is not, and its run runs again."""
    from greenprec._processes import process_alive

    return process_alive(pid)


def _against_schedule(
    experiment: ExperimentRecord, runs: list[RunRecord], named: set[str], legacy: bool
) -> tuple[list[RunRecord], list[Problem]]:
    """Keep the runs the schedule planned, in its order; name every other difference."""
    where = Location(INDEX_FILE if legacy else "runs/")
    if not experiment.schedule:
        # Nothing planned to check against (a hand-made runs.csv): the runs as recorded.
        return (runs if legacy else sorted(runs, key=lambda r: r.order)), []
    planned = {run.run_id: run for run in experiment.schedule}
    problems: list[Problem] = []
    seen: dict[str, RunRecord] = {}
    for run in runs:
        plan = planned.get(run.run_id)
        if plan is None:
            problems.append(Problem(run.run_id, where, "not in the experiment's schedule; ignored"))
            continue
        if run.run_id in seen:
            problems.append(Problem(run.run_id, where, "recorded twice; the first was used"))
            continue
        differs = [
            name
            for name in ("order", "policy", "repetition")
            if getattr(run, name) != getattr(plan, name)
        ]
        if differs:
            problems.append(
                Problem(
                    run.run_id,
                    where,
                    f"its {', '.join(differs)} differ from the schedule (edited?); ignored",
                )
            )
            continue
        seen[run.run_id] = run
    for run_id in planned:
        if (
            run_id not in seen
            and run_id not in named
            and not any(p.run_id == run_id for p in problems)
        ):
            problems.append(Problem(run_id, where, "missing: scheduled but not recorded"))
    ordered = [seen[run.run_id] for run in experiment.schedule if run.run_id in seen]
    return ordered, problems
