"""Hand-made results folders in greenprec 0.1's layout (runs.csv as the record, no run files).

Tests use it to build folders with exactly the rows they need, including rows no greenprec
writer would produce (``energy_j = "abc"``, ``status = "DONE"``): the store must read and name
them as it reads a real 0.1 folder. greenprec itself never writes this layout any more.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from greenprec.results import INDEX_COLUMNS, SAMPLE_COLUMNS
from greenprec.results.files import write_atomic
from greenprec.results.index import DOMAIN_PREFIX, format_cell


class LegacyFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def samples_file(self, name: str) -> Path:
        return self.path / "samples" / f"{name}.csv"

    def write_runs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        domain_columns = sorted({k for row in rows for k in row if k.startswith(DOMAIN_PREFIX)})
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
        write_atomic(self.path / "runs.csv", buffer.getvalue())

    def write_samples(self, name: str, rows: Iterable[Sequence[Any]]) -> Path:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SAMPLE_COLUMNS)
        for row in rows:
            writer.writerow([format_cell(value) for value in row])
        path = self.samples_file(name)
        write_atomic(path, buffer.getvalue())
        return path

    def write_experiment(self, data: Mapping[str, Any]) -> None:
        write_atomic(self.path / "experiment.json", json.dumps(data, indent=2, default=str) + "\n")


def join_domains(domains: Sequence[str]) -> str:
    """A runs.csv ``counted_domains`` cell."""
    return ";".join(domains)
