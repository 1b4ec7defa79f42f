"""``build_report``: read a results folder, compute, draw, and write the report into it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report import analysis, content, html, markdown
from greenprec.report.data import Excluded, ExperimentData, load, read_samples
from greenprec.report.figures import FigureFile, make_figures
from greenprec.results.files import write_atomic

BIN_S = 0.5


@dataclass
class Report:
    """What :func:`build_report` wrote, and the numbers it wrote."""

    folder: Path
    stats: dict[str, Any]
    stats_path: Path
    markdown_path: Path
    html_path: Path
    figures: list[FigureFile]
    skipped_figures: dict[str, str]
    content: content.Content
    warnings: list[str] = field(default_factory=list)
    # Every row of runs.csv (or value of one, with ``column`` set) the analysis did not use,
    # in runs.csv order, with its line and reason: for the caller to show, e.g. on stderr.
    excluded: list[Excluded] = field(default_factory=list)

    def summary_table(self) -> Any:
        """The per-policy summary as a rich Table, for the terminal."""
        from rich.table import Table

        summary = self.content.summary
        table = Table(title=self.content.title, caption=self.content.subtitle)
        for index, header in enumerate(summary.headers):
            table.add_column(header, justify="right" if index in summary.align_right else "left")
        for row in summary.rows:
            table.add_row(*row)
        return table


def build_report(
    folder: str | Path,
    *,
    outliers: bool = True,
) -> Report:
    """Write ``stats.json``, ``report.md``, ``report.html`` and ``figures/`` into ``folder``.

    ``outliers=False`` keeps the runs the study's |z| > 3 rule would remove. Raises
    ConfigError (one line) when ``folder`` is not a results folder; thin data gives a report
    with "not computed" reasons instead of an error.
    """
    data = load(folder)
    prepared = analysis.prepare(data, outliers=outliers)
    result = analysis.statistics(prepared)
    traces, trace_info, trace_warnings = power_traces(data, prepared)
    result["warnings"].extend(trace_warnings)
    result["power_trace"] = trace_info

    figures_dir = data.path / "figures"
    figures, skipped = make_figures(prepared, traces, figures_dir)
    result["figures"] = {
        f.name: {
            "png": f.png.relative_to(data.path).as_posix(),
            "svg": f.svg.relative_to(data.path).as_posix(),
        }
        for f in figures
    }
    result["figures_not_made"] = skipped

    result["runs_needed"]["summary"] = content.planning_lines(result)
    report_content = content.build_content(data, result, figures, skipped)
    stats_path = data.path / "stats.json"
    markdown_path = data.path / "report.md"
    html_path = data.path / "report.html"
    write_atomic(stats_path, json.dumps(result, indent=2, allow_nan=False) + "\n")
    write_atomic(markdown_path, markdown.render(report_content, data.path))
    write_atomic(html_path, html.render(report_content))
    return Report(
        folder=data.path,
        stats=result,
        stats_path=stats_path,
        markdown_path=markdown_path,
        html_path=html_path,
        figures=figures,
        skipped_figures=skipped,
        content=report_content,
        warnings=list(result["warnings"]),
        excluded=prepared.excluded(),
    )


def power_traces(
    data: ExperimentData, prepared: analysis.Prepared
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], list[str]]:
    """Mean power over time per policy, from the samples of the runs used.

    Each run is binned as soon as it is read and only its bins are kept: 200 runs of 20,000
    samples would otherwise sit in memory at once.
    """
    traces: dict[str, pd.DataFrame] = {}
    info: dict[str, Any] = {
        "bin_s": BIN_S,
        "domains": data.counted_domains,
        "runs": {},
        "missing": [],
    }
    warnings: list[str] = []
    missing: list[str] = []
    no_counted: list[str] = []
    for policy, rows in prepared.kept_by_policy().items():
        binned: list[pd.DataFrame] = []
        for row in rows:
            run_id = str(row["run_id"])
            try:
                samples = read_samples(data.samples_path(run_id))
            except FileNotFoundError:
                missing.append(run_id)
                continue
            except ConfigError as error:
                warnings.append(f"power trace skips run {run_id}: {error}")
                continue
            counted = data.counted_by_run.get(run_id)
            per_run = stats.binned_power(samples, BIN_S, domains=counted)
            if len(samples) and not len(per_run):
                no_counted.append(f"{run_id}: {', '.join(counted or ['any domain'])}")
            if len(per_run):
                binned.append(per_run[["t_s", "power_w"]])
        # Bins are already BIN_S wide, so re-binning inside mean_power_trace is the identity.
        traces[policy] = stats.mean_power_trace(binned, BIN_S)
        info["runs"][policy] = len(binned)
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        warnings.append(
            f"no samples/<run_id>.csv for {len(missing)} run(s) used ({shown}): "
            "the power trace leaves them out"
        )
    if no_counted:
        more = f"; and {len(no_counted) - 8} more" if len(no_counted) > 8 else ""
        warnings.append(
            f"the samples of {len(no_counted)} run(s) have no 0.5 s bin with a reading of every "
            f"counted domain ({'; '.join(no_counted[:8])}{more}): the power trace leaves them out"
        )
    info["missing"] = missing
    return traces, info, warnings
