"""Terminal tables of a results folder's runs (rich)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

Row = dict[str, Any]


def _number(value: Any, digits: int) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:.{digits}f}"
    return "-"


def _mean_sd(values: Sequence[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def runs_table(rows: Sequence[Row], title: str | None = None) -> Any:
    from rich.table import Table

    estimated = any(row.get("estimated") for row in rows)
    label = " (estimated)" if estimated else ""
    table = Table(title=title)
    for column in ("order", "run_id", "policy", "status"):
        table.add_column(column)
    for column in (f"energy_j{label}", "duration_s", "test_accuracy"):
        table.add_column(column, justify="right")
    table.add_column("error")
    for row in sorted(rows, key=lambda r: r.get("order") or 0):
        colour = {"done": "green", "failed": "red", "running": "yellow"}.get(row["status"], "")
        table.add_row(
            str(row.get("order", "")),
            row["run_id"],
            row["policy"],
            f"[{colour}]{row['status']}[/]" if colour else row["status"],
            _number(row.get("energy_j"), 2),
            _number(row.get("duration_s"), 2),
            _number(row.get("test_accuracy"), 4),
            str(row.get("error") or ""),
        )
    return table


def summary_table(rows: Sequence[Row], title: str | None = None) -> Any:
    """Per policy: runs done/failed, energy, duration, mean power, accuracy (mean ± sd)."""
    from rich.table import Table

    estimated = any(row.get("estimated") for row in rows)
    label = " (estimated)" if estimated else ""
    table = Table(title=title)
    table.add_column("policy")
    table.add_column("done", justify="right")
    table.add_column("failed", justify="right")
    table.add_column(f"energy_j{label}", justify="right")
    table.add_column("duration_s", justify="right")
    table.add_column(f"mean_power_w{label}", justify="right")
    table.add_column("test_accuracy", justify="right")
    policies = list(dict.fromkeys(row["policy"] for row in rows))
    for policy in policies:
        group = [row for row in rows if row["policy"] == policy]
        done = [row for row in group if row["status"] == "done"]

        def values(key: str, done: list[Row] = done) -> list[float]:
            return [float(row[key]) for row in done if isinstance(row.get(key), (int, float))]

        table.add_row(
            policy,
            str(len(done)),
            str(sum(row["status"] == "failed" for row in group)),
            _mean_sd(values("energy_j"), 2),
            _mean_sd(values("duration_s"), 2),
            _mean_sd(values("mean_power_w"), 2),
            _mean_sd(values("test_accuracy"), 4),
        )
    return table
