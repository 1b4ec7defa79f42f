"""``runs.csv``: the spreadsheet view of a results folder's runs, and 0.1's only run table.

Since schema 2 the run files (``runs/<run_id>.json``) are the record and ``runs.csv`` is an
index rebuilt from them after every change, kept because people open it in a spreadsheet.
Folders written by greenprec 0.1 have no run files: there ``runs.csv`` *is* the record, and
:func:`read_legacy_runs` reads it strictly, naming every row it cannot use.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from greenprec.results.location import INDEX_FILE, Location
from greenprec.results.models import RUN_STATUSES, MachineState, RunRecord

__all__ = [
    "COUNTED_SEPARATOR",
    "DOMAIN_PREFIX",
    "INDEX_COLUMNS",
    "RESERVED_NAMES",
    "RUN_OUTCOME_COLUMNS",
    "RowProblem",
    "format_cell",
    "index_text",
    "is_reserved",
    "read_legacy_runs",
    "record_row",
    "rows_text",
]

INDEX_COLUMNS = (
    "run_id",
    "order",
    "policy",
    "repetition",
    "seed",
    "status",
    "started_at",
    "ended_at",
    "duration_s",
    "energy_j",
    "net_energy_j",
    "mean_power_w",
    "meter",
    "estimated",
    "counted_domains",
    "test_accuracy",
    "test_loss",
    "host",
    "cpu_freq_mhz_start",
    "cpu_temp_c_start",
    "gpu_temp_c_start",
    "gpu_sm_clock_mhz_start",
    "gpu_power_limit_w",
    "gpu_throttle_reasons",
    "idle_power_w",
    "cpu_temp_c_end",
    "gpu_temp_c_end",
    "block",
    "slurm_job_id",
    "job_state",
    "error",
)
"""The index's leading columns; ``energy_j:<domain>`` columns and further metrics follow."""
RUN_OUTCOME_COLUMNS = (
    "stopped_at_target",
    "epochs_run",
    "samples_trained",
    "samples_per_s",
    "energy_per_sample_j",
)
"""Columns written since 0.3, after the per-domain energies and before further metrics, only
for runs that have them (so the index of an older folder is unchanged): whether training
stopped at the target, the epochs it trained, and its throughput. A metric of the same name
keeps its column."""
DOMAIN_PREFIX = "energy_j:"
COUNTED_SEPARATOR = ";"
_REASON_SEPARATOR = ";"
"""Joins ``gpu_throttle_reasons`` in one cell."""
_MACHINE_START_COLUMNS = {
    "cpu_freq_mhz_start": "cpu_freq_mhz",
    "cpu_temp_c_start": "cpu_temp_c",
    "gpu_temp_c_start": "gpu_temp_c",
    "gpu_sm_clock_mhz_start": "gpu_sm_clock_mhz",
    "gpu_power_limit_w": "gpu_power_limit_w",
}
"""runs.csv columns from ``machine_start`` (the GPU power limit as the run started), by field."""
_MACHINE_END_COLUMNS = {"cpu_temp_c_end": "cpu_temp_c", "gpu_temp_c_end": "gpu_temp_c"}
"""runs.csv columns from ``machine_end``, by field."""
_NAMED_METRICS = ("test_accuracy", "test_loss")
"""Metrics with a column of their own among the leading columns."""
RESERVED_NAMES = frozenset(INDEX_COLUMNS) - frozenset(_NAMED_METRICS)
"""Names a metric may not take: they are columns greenprec fills itself."""


def is_reserved(name: str) -> bool:
    """Whether a metric named ``name`` would overwrite a column greenprec fills itself."""
    return name in RESERVED_NAMES or name.startswith(DOMAIN_PREFIX) or not name


def record_row(record: RunRecord) -> dict[str, Any]:
    """A run as one flat row (what runs.csv shows, and what tables and the report index)."""
    start, end = record.machine_start, record.machine_end
    row: dict[str, Any] = {
        "run_id": record.run_id,
        "order": record.order,
        "policy": record.policy,
        "repetition": record.repetition,
        "seed": record.seed,
        "status": record.status,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration_s": record.duration_s,
        "energy_j": record.energy_j,
        "net_energy_j": record.net_energy_j,
        "mean_power_w": record.mean_power_w,
        "meter": record.meter,
        "estimated": record.estimated,
        "counted_domains": COUNTED_SEPARATOR.join(record.counted_domains) or None,
        "host": record.host,
        "gpu_throttle_reasons": (
            _REASON_SEPARATOR.join(start.gpu_throttle_reasons) or None
            if start is not None
            else None
        ),
        "idle_power_w": record.idle_power_w,
        "block": record.block,
        "slurm_job_id": record.slurm_job_id,
        "job_state": record.job_state,
        "error": record.error,
    }
    for column, field in _MACHINE_START_COLUMNS.items():
        row[column] = getattr(start, field) if start is not None else None
    for column, field in _MACHINE_END_COLUMNS.items():
        row[column] = getattr(end, field) if end is not None else None
    for name in _NAMED_METRICS:
        row[name] = record.metrics.get(name)
    for domain, energy_j in record.domains.items():
        row[DOMAIN_PREFIX + domain] = energy_j
    if (
        record.stopped_at_target
        or record.epochs_run is not None
        or record.samples_trained is not None
    ):
        # Not reserved names: a 0.2 workload may return a metric ``epochs_run``; its own
        # value keeps the column (the run file has both), so its index reads as before.
        for column in RUN_OUTCOME_COLUMNS:
            if column not in record.metrics:
                row[column] = getattr(record, column)
    for name, value in record.metrics.items():
        if name not in _NAMED_METRICS:
            row[name] = value
    return row


def index_text(records: Sequence[RunRecord]) -> str:
    """runs.csv text: the leading columns, then per-domain energies, then further metrics."""
    return rows_text([record_row(record) for record in records])


def rows_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """runs.csv text of flat rows (``record_row``'s shape): the leading columns, then
    per-domain energies, then further metrics."""
    domain_columns = sorted({key for row in rows for key in row if key.startswith(DOMAIN_PREFIX)})
    # Then, in the rows' order: the run outcome columns (record_row puts them before the
    # metrics) and further metrics.
    extra = [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if key not in INDEX_COLUMNS and not key.startswith(DOMAIN_PREFIX)
    ]
    columns = [*INDEX_COLUMNS, *domain_columns, *extra]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: format_cell(row.get(column)) for column in columns})
    return buffer.getvalue()


def format_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


@dataclass(frozen=True)
class RowProblem:
    """A row of a 0.1 runs.csv that cannot be used (or, with ``column``, one value of it)."""

    line: int
    run_id: str | None
    reason: str
    column: str | None = None
    policy: str | None = None


_TEXT = {
    "run_id",
    "policy",
    "status",
    "started_at",
    "ended_at",
    "meter",
    "error",
    "host",
    "slurm_job_id",
    "job_state",
}
_INTEGER = {"order", "repetition", "seed", "block"}
_RUN_FLOATS = ("duration_s", "energy_j", "net_energy_j", "mean_power_w", "idle_power_w")


def read_legacy_runs(
    text: str, source: str
) -> tuple[list[RunRecord], list[RowProblem], dict[str, int]]:
    """The runs of a 0.1 ``runs.csv`` (``text``), every row that cannot be used, and the line
    each usable run starts on (a quoted error message may span lines)."""
    from pydantic import ValidationError

    text = text.removeprefix("\ufeff")  # a spreadsheet may have saved it with a BOM
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return [], [RowProblem(1, None, "empty file: no header")], {}
    except csv.Error as error:
        return [], [RowProblem(1, None, f"unreadable header ({error})")], {}
    missing = [name for name in ("run_id", "policy", "status") if name not in header]
    if missing:
        return [], [RowProblem(1, None, f"no {', '.join(missing)} column in the header")], {}
    records: list[RunRecord] = []
    problems: list[RowProblem] = []
    lines: dict[str, int] = {}
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append(RowProblem(reader.line_num, None, f"unreadable row ({error})"))
            break
        if not any(cell.strip() for cell in cells):
            continue
        named = dict(zip(header, cells, strict=False))
        run_id = named.get("run_id", "").strip()[:60] or None
        policy = named.get("policy", "").strip()[:40] or None
        if len(cells) != len(header):
            problems.append(
                RowProblem(
                    line,
                    run_id,
                    f"{len(cells)} cells where the header has {len(header)} (a cut or edited row)",
                    policy=policy,
                )
            )
            continue
        raw = dict(zip(header, cells, strict=True))
        # A hand-made table may have no order column: the rows' own order is the order.
        raw.setdefault("order", str(line - 1))
        raw.setdefault("repetition", "1")
        blanked: list[tuple[str, str]] = []
        try:
            record = _legacy_record(raw, blanked)
        except (ValueError, ValidationError) as error:
            problems.append(RowProblem(line, run_id, _first_line(error), policy=policy))
            continue
        problems.extend(RowProblem(line, record.run_id, why, column) for column, why in blanked)
        record.location = Location(INDEX_FILE, line)
        records.append(record)
        lines.setdefault(record.run_id, line)
    return records, problems, lines


def _first_line(error: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        item = error.errors()[0]
        where = ".".join(str(part) for part in item["loc"])
        return f"{where}: {item['msg']}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _legacy_record(raw: dict[str, str], blanked: list[tuple[str, str]]) -> RunRecord:
    """One 0.1 row as a run. A bad energy_j or identity cell refuses the row; a bad value of
    another number is left out (None) and named in ``blanked``, and the run kept."""
    values: dict[str, Any] = {}
    domains: dict[str, float] = {}
    metrics: dict[str, float | str | None] = {}
    machine: dict[str, dict[str, Any]] = {"machine_start": {}, "machine_end": {}}

    def lenient(cell: str, key: str) -> float | None:
        try:
            return _number(cell, key)
        except ValueError as error:
            blanked.append((key, f"{error}; this value is not used"))
            return None

    for key, cell in raw.items():
        cell = cell.strip()
        if key.startswith(DOMAIN_PREFIX):
            if cell and (number := lenient(cell, key)) is not None:
                domains[key.removeprefix(DOMAIN_PREFIX)] = number
        elif key in _TEXT:
            values[key] = cell or None
        elif key in _INTEGER:
            values[key] = _integer(cell, key) if cell else None
        elif key == "energy_j":
            values[key] = _number(cell, key) if cell else None
        elif key in _RUN_FLOATS:
            values[key] = lenient(cell, key) if cell else None
        elif key == "estimated":
            values[key] = None if not cell else cell.lower() == "true"
        elif key == "counted_domains":
            values[key] = [d.strip() for d in cell.split(COUNTED_SEPARATOR) if d.strip()]
        elif key in _MACHINE_START_COLUMNS or key in _MACHINE_END_COLUMNS:
            state, field = (
                ("machine_start", _MACHINE_START_COLUMNS[key])
                if key in _MACHINE_START_COLUMNS
                else ("machine_end", _MACHINE_END_COLUMNS[key])
            )
            if cell and (number := lenient(cell, key)) is not None:
                machine[state][field] = number
        elif key == "gpu_throttle_reasons":
            reasons = [r.strip() for r in cell.split(_REASON_SEPARATOR) if r.strip()]
            if reasons:
                machine["machine_start"]["gpu_throttle_reasons"] = reasons
        elif key in _NAMED_METRICS:
            metrics[key] = lenient(cell, key) if cell else None
        elif cell:
            try:
                metrics[key] = float(cell)
            except ValueError:
                metrics[key] = cell
    status = values.get("status")
    if status not in RUN_STATUSES:
        raise ValueError(f"status {str(status)[:20]!r} is not one of {', '.join(RUN_STATUSES)}")
    for state, fields in machine.items():
        if fields:
            values[state] = MachineState(**fields)
    return RunRecord(
        **{k: v for k, v in values.items() if v is not None}, domains=domains, metrics=metrics
    )


def _integer(cell: str, column: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ValueError(f"{column} {cell[:20]!r} is not a whole number") from None


def _number(cell: str, column: str) -> float:
    unit = " in joules" if column.endswith("_j") else ""
    try:
        number = float(cell)
    except ValueError:
        raise ValueError(f"{column} {cell[:20]!r} is not a number{unit}") from None
    if not math.isfinite(number):
        raise ValueError(f"{column} {cell[:20]} is not finite")
    return number
