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

from greenprec.results import SAMPLE_COLUMNS
from greenprec.results.files import write_atomic
from greenprec.results.index import format_cell, rows_text


class LegacyFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def samples_file(self, name: str) -> Path:
        return self.path / "samples" / f"{name}.csv"

    def write_runs(self, rows: Sequence[Mapping[str, Any]]) -> None:
        # The same text greenprec writes for its index; 0.1 used this layout as its record.
        write_atomic(self.path / "runs.csv", rows_text(rows))

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
