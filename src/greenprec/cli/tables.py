"""Terminal tables of a results folder's runs (rich).

Every value is printed as it is (no rich markup: an error may hold "[/data/cifar-10]") and
whole (columns fold instead of cutting; see :func:`greenprec.cli._common.add_column`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from greenprec.cli._common import add_column, make_table

__all__ = ["Row", "runs_table", "summary_table"]

Row = dict[str, Any]


def _number(value: Any, digits: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def _mean_sd(values: Sequence[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def runs_table(rows: Sequence[Row], title: str | None = None) -> Any:
    from rich.text import Text

    estimated = any(row.get("estimated") for row in rows)
    label = " (estimated)" if estimated else ""
    table = make_table(title)
    for column in ("order", "run_id", "policy", "status"):
        add_column(table, column)
    for column in (f"energy_j{label}", "duration_s", "test_accuracy"):
        add_column(table, column, right=True)
    # Where each run ran, and its Slurm job (a cluster experiment) with the job's state.
    hosts = any(row.get("host") for row in rows)
    jobs = any(row.get("slurm_job_id") or row.get("job") for row in rows)
    if hosts:
        add_column(table, "host")
    if jobs:
        add_column(table, "job")
    add_column(table, "error")
    for row in sorted(rows, key=lambda r: r.get("order") or 0):
        colour = {"done": "green", "failed": "red", "running": "yellow"}.get(row["status"], "")
        cells: list[Any] = [
            str(row.get("order", "")),
            str(row["run_id"]),
            str(row["policy"]),
            Text(str(row["status"]), style=colour),
            _number(row.get("energy_j"), 2),
            _number(row.get("duration_s"), 2),
            _number(row.get("test_accuracy"), 4),
        ]
        if hosts:
            cells.append(Text(str(row.get("host") or "")))
        if jobs:
            job = " ".join(str(row.get(key) or "") for key in ("slurm_job_id", "job")).strip()
            cells.append(Text(job))
        cells.append(str(row.get("error") or ""))
        table.add_row(*cells)
    return table


def summary_table(rows: Sequence[Row], title: str | None = None) -> Any:
    """Per policy: runs done/failed, energy, duration, mean power, accuracy (mean ± sd)."""
    estimated = any(row.get("estimated") for row in rows)
    label = " (estimated)" if estimated else ""
    table = make_table(title)
    add_column(table, "policy")
    for column in (
        "done",
        "failed",
        f"energy_j{label}",
        "duration_s",
        f"mean_power_w{label}",
        "test_accuracy",
    ):
        add_column(table, column, right=True)
    policies = list(dict.fromkeys(row["policy"] for row in rows))
    for policy in policies:
        group = [row for row in rows if row["policy"] == policy]
        done = [row for row in group if row["status"] == "done"]

        def values(key: str, done: list[Row] = done) -> list[float]:
            # A NaN or an infinity (a workload's metric; records allow them there) is no
            # value to average: statistics.stdev raised AttributeError on a NaN.
            return [
                float(row[key])
                for row in done
                if isinstance(row.get(key), (int, float))
                and not isinstance(row[key], bool)
                and math.isfinite(row[key])
            ]

        table.add_row(
            str(policy),
            str(len(done)),
            str(sum(row["status"] == "failed" for row in group)),
            _mean_sd(values("energy_j"), 2),
            _mean_sd(values("duration_s"), 2),
            _mean_sd(values("mean_power_w"), 2),
            _mean_sd(values("test_accuracy"), 4),
        )
    return table
