"""The results folder: the contract that ``report``, the EnergiBridge importer and users read.

::

    DIR/experiment.json        resolved config, schedule, versions, host, meters, precision support
    DIR/runs.csv               one row per scheduled run (RUN_COLUMNS, then energy_j:<domain>,
                               then any further metrics the workload returned)
    DIR/samples/<run_id>.csv   t_s, domain, power_w, energy_j  (also warmup.csv, baseline.csv)

Every write is atomic (temporary file, fsync, rename), so a crash leaves a readable folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from greenprec.errors import ConfigError
from greenprec.experiment.atomic import write_atomic

RUN_COLUMNS = (
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
    "error",
)
STATUSES = ("pending", "running", "done", "failed")
DOMAIN_PREFIX = "energy_j:"
SAMPLE_COLUMNS = ("t_s", "domain", "power_w", "energy_j")
INTERRUPTED = "interrupted"

Row = dict[str, Any]


class ResultsFolder:
    """Read and update one results folder. Rows are plain dicts keyed by column name."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def experiment_file(self) -> Path:
        return self.path / "experiment.json"

    @property
    def runs_file(self) -> Path:
        return self.path / "runs.csv"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    def exists(self) -> bool:
        return self.runs_file.exists() or self.experiment_file.exists()

    # -- experiment.json ---------------------------------------------------------------
    def read_experiment(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.experiment_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path} is not a greenprec results folder (no experiment.json)"
            ) from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{self.experiment_file} is not valid JSON: {error}") from None
        return data

    def write_experiment(self, data: Mapping[str, Any]) -> None:
        write_atomic(self.experiment_file, json.dumps(data, indent=2, default=str) + "\n")

    # -- runs.csv --------------------------------------------------------------------------
    def read_runs(self) -> list[Row]:
        try:
            text = self.runs_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path} has no runs.csv; is it a greenprec results folder?"
            ) from None
        rows = []
        for line_number, raw in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            missing = [column for column in ("run_id", "policy", "status") if not raw.get(column)]
            if missing:
                raise ConfigError(f"{self.runs_file}:{line_number}: missing {', '.join(missing)}")
            rows.append({key: _parse_cell(key, value) for key, value in raw.items()})
        return rows

    def write_runs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        write_atomic(self.runs_file, runs_csv(rows))

    # -- samples ---------------------------------------------------------------------------
    def samples_file(self, name: str) -> Path:
        return self.samples_dir / f"{name}.csv"

    def write_samples(self, name: str, rows: Iterable[Sequence[Any]]) -> Path:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        for row in rows:
            writer.writerow([_format_cell(value) for value in row])
        path = self.samples_file(name)
        write_atomic(path, buffer.getvalue())
        return path


def runs_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """runs.csv text: the contract's columns, then per-domain energies, then extra metrics."""
    domain_columns = sorted({key for row in rows for key in row if key.startswith(DOMAIN_PREFIX)})
    extra = [
        key
        for key in dict.fromkeys(key for row in rows for key in row)
        if key not in RUN_COLUMNS and not key.startswith(DOMAIN_PREFIX)
    ]
    columns = [*RUN_COLUMNS, *domain_columns, *extra]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: _format_cell(row.get(column)) for column in columns})
    return buffer.getvalue()


_TEXT_COLUMNS = {
    "run_id",
    "policy",
    "status",
    "started_at",
    "ended_at",
    "meter",
    "error",
    "counted_domains",
}
COUNTED_SEPARATOR = ";"
"""``counted_domains`` holds the domains added up in ``energy_j``, joined by this character."""


def join_domains(domains: Sequence[str]) -> str:
    """The ``counted_domains`` cell for a run: its counted domains in order, ``;``-joined."""
    return COUNTED_SEPARATOR.join(domains)


def split_domains(cell: Any) -> list[str] | None:
    """The counted domains a ``counted_domains`` cell records (None when it records none)."""
    if not isinstance(cell, str) or not cell.strip():
        return None
    return [part.strip() for part in cell.split(COUNTED_SEPARATOR) if part.strip()]


def _parse_cell(key: str, value: str | None) -> Any:
    if value is None or value == "":
        return None
    if key in _TEXT_COLUMNS:
        return value
    if key == "estimated":
        return value.lower() == "true"
    if key in {"order", "repetition", "seed"}:
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def _format_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value
