"""``build_report``: read a results folder, compute, draw, and write the report into it.

This is the edge where the typed analysis becomes files: ``stats.json`` is
:meth:`Analysis.to_json_dict` plus the report's sentences, the power trace and the figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from greenprec import stats
from greenprec.report import content, html, markdown, prose
from greenprec.report.analysis import (
    Analysis,
    JsonObject,
    PowerTrace,
    Prepared,
    analyse,
    as_sesoi,
    prepare,
)
from greenprec.report.data import (
    Excluded,
    ExperimentData,
    SampleBatch,
    load,
    read_samples_of_runs,
)
from greenprec.report.decisions import phrase
from greenprec.report.equivalence import as_margins
from greenprec.report.figures import FigureFile, make_figures
from greenprec.report.load import load_lines, load_table, run_loads
from greenprec.report.recommendation import Recommendation, from_store, section
from greenprec.results import ResultsStore
from greenprec.results.files import write_atomic
from greenprec.results.recommendation import write_recommendation
from greenprec.stats import BinnedRuns

if TYPE_CHECKING:
    from rich.table import Table as RichTable

__all__ = [
    "Report",
    "build_report",
    "power_traces",
    "stats_json",
]

_BIN_S = 0.5


@dataclass
class Report:
    """What :func:`build_report` wrote, and the numbers and sentences it wrote."""

    folder: Path
    """The results folder the report was written into."""
    analysis: Analysis
    """The typed numbers behind the report (:func:`greenprec.report.analysis.analyse`)."""
    power_trace: PowerTrace
    """What went into the mean power traces: bin width and the domains summed."""
    prose: prose.Prose
    """Every sentence the report says: the verdict, the warnings, the planning."""
    stats: dict[str, Any]
    """What stats.json holds, as JSON-ready data (dicts and lists), for callers that want the
    file's shape: ``report.stats["metrics"]["energy_j"]["comparisons"][0]`` and so on."""
    stats_path: Path
    """``stats.json`` in the folder."""
    markdown_path: Path
    """``report.md`` in the folder."""
    html_path: Path
    """``report.html`` in the folder (self-contained)."""
    figures: list[FigureFile]
    """The figures drawn, each as PNG and SVG under ``figures/``."""
    skipped_figures: dict[str, str]
    """Figures not drawn: name -> why (no power samples, no run with test accuracy ...)."""
    content: content.Content
    """The report's tables and listings, as report.md and report.html render them."""
    warnings: list[str] = field(default_factory=list)
    """The report's warnings, one sentence each."""
    traces: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Per policy: the mean power trace the power figure draws (``t_s``, ``mean_power_w``,
    ``ci_lo_w``, ``ci_hi_w``, ``n_runs``), for callers that plot it their own way."""
    excluded: list[Excluded] = field(default_factory=list)
    """Every row of runs.csv (or value of one, with ``column`` set) the analysis did not use,
    in runs.csv order, with its line and reason: for the caller to show, e.g. on stderr."""
    recommendation: Recommendation | None = None
    """A selection folder's answer (``greenprec recommend``), also written as
    ``recommendation.json`` and shown at the top of report.md and report.html; None for
    other folders."""

    @property
    def verdict(self) -> list[str]:
        """One plain-language sentence per compared policy, and one on the runs it rests on
        when the folder holds runs the analysis did not use."""
        return list(self.prose.verdict)

    def summary_table(self) -> RichTable:
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
    margins: Iterable[stats.Margin | str] | None = None,
    sesoi: Iterable[stats.Margin | str] | None = None,
) -> Report:
    """Write ``stats.json``, ``report.md``, ``report.html`` and ``figures/`` into ``folder``.

    ``outliers=False`` keeps the runs the study's |z| > 3 rule would remove. ``margins``
    (:class:`greenprec.stats.Margin` or ``METRIC=SPEC`` texts such as ``test_accuracy=1pp``)
    set the equivalence margins, before the experiment's ``config.margins`` and the default
    ±1 pp for test accuracy; a text that cannot be read is a ConfigError. ``sesoi``
    (``energy_j=5%``, :func:`greenprec.stats.parse_sesoi`) is the smallest effect of interest
    the runs needed are planned for, before the experiment's ``config.sesoi`` and energy's
    margin. Raises :class:`~greenprec.errors.ConfigError` (one line) when ``folder`` is not a
    results folder; thin data gives a report with "not computed" reasons instead of an error.
    """
    chosen = as_margins(margins)  # a bad margin fails before anything is read or written
    effects = as_sesoi(sesoi)
    data = load(folder)
    prepared = prepare(data, outliers=outliers)
    result = analyse(prepared, margins=chosen, sesoi=effects)
    traces, trace = power_traces(data, prepared)
    figures, skipped = make_figures(prepared, traces, data.path / "figures")
    text = prose.write(result, trace)
    report_content = content.build_content(result, text, figures, skipped)
    loads = run_loads(result)
    if loads is not None:
        report_content.load, report_content.load_lines = load_table(loads), load_lines(loads)
    answer = _recommendation(data.path) if data.experiment.get("selection") else None
    if answer is not None:
        report_content.recommendation = section(answer)
    numbers = stats_json(result, text, trace, figures, skipped)
    if loads is not None:
        numbers["machine_load"] = loads.to_json_dict()
    stats_path = data.path / "stats.json"
    markdown_path = data.path / "report.md"
    html_path = data.path / "report.html"
    write_atomic(stats_path, json.dumps(numbers, indent=2, allow_nan=False) + "\n")
    write_atomic(markdown_path, markdown.render(report_content, data.path))
    write_atomic(html_path, html.render(report_content))
    return Report(
        folder=data.path,
        analysis=result,
        power_trace=trace,
        prose=text,
        stats=numbers,
        stats_path=stats_path,
        markdown_path=markdown_path,
        html_path=html_path,
        figures=figures,
        skipped_figures=skipped,
        content=report_content,
        warnings=list(text.warnings),
        traces=traces,
        excluded=list(result.excluded),
        recommendation=answer,
    )


def _recommendation(folder: Path) -> Recommendation | None:
    """The folder's recommendation, refreshed in ``recommendation.json`` (derived data: the
    runs are the record, so every report rewrites it)."""
    store = ResultsStore(folder)
    answer = from_store(store)
    if answer is not None:
        write_recommendation(store, answer.to_record())
    return answer


def stats_json(
    analysis: Analysis,
    text: prose.Prose,
    trace: PowerTrace,
    figures: list[FigureFile],
    skipped: dict[str, str],
) -> JsonObject:
    """What ``stats.json`` holds: the analysis, then the sentences, trace and figures."""
    out = analysis.to_json_dict()
    out["runs_needed"] = {**analysis.planning.to_json_dict(), "summary": list(text.planning)}
    out["verdict"] = list(text.verdict)
    metrics = out["metrics"]
    assert isinstance(metrics, dict)
    for key, metric in metrics.items():
        assert isinstance(metric, dict)
        for comparison in metric["comparisons"]:
            assert isinstance(comparison, dict)
            # The family's decision about this metric and policy, when it asked one.
            decision = analysis.family.of(key, str(comparison["b"]))
            comparison["verdict"] = phrase(decision) if decision is not None else None
    if analysis.stopping is not None:
        out["stopping"] = {**analysis.stopping.to_json_dict(), "summary": list(text.stopping)}
    out["warnings"] = list(text.warnings)
    out["power_trace"] = trace.to_json_dict()
    out["figures"] = {
        f.name: {
            "png": f.png.relative_to(analysis.data.path).as_posix(),
            "svg": f.svg.relative_to(analysis.data.path).as_posix(),
        }
        for f in figures
    }
    out["figures_not_made"] = dict(skipped)
    return out


def power_traces(
    data: ExperimentData, prepared: Prepared
) -> tuple[dict[str, pd.DataFrame], PowerTrace]:
    """Mean power over time per policy, from the samples of the runs used.

    Runs are read and binned a batch at a time (:func:`read_samples_of_runs`) and only their
    bins are kept: 200 runs of 20,000 samples would otherwise sit in memory at once. Each run's
    last bin, which the run ends inside of, is left out (unless it is the run's only one).
    What had to be left out is in the :class:`PowerTrace` (:func:`prose.trace_warnings` says
    it).
    """
    traces: dict[str, pd.DataFrame] = {}
    runs: dict[str, int] = {}
    left_out = _LeftOut()
    for policy, rows in prepared.kept_by_policy().items():
        run_ids = [str(row["run_id"]) for row in rows]
        binned = _binned_runs(data, run_ids, left_out)
        # Bins are already _BIN_S wide, so re-binning inside the mean trace is the identity.
        traces[policy] = stats.mean_power_trace_of_runs(binned, _BIN_S)
        runs[policy] = int(np.unique(binned.run).size)
    trace = PowerTrace(
        _BIN_S,
        data.counted_domains,
        runs,
        left_out.missing,
        left_out.unreadable,
        left_out.no_counted,
    )
    return traces, trace


@dataclass
class _LeftOut:
    """The runs whose samples did not enter a power trace, and why."""

    missing: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    no_counted: dict[str, list[str] | None] = field(default_factory=dict)


def _binned_runs(data: ExperimentData, run_ids: list[str], left_out: _LeftOut) -> BinnedRuns:
    """The runs' bins (run numbers index ``run_ids``), each run's last bin left out."""
    store = ResultsStore(data.path)  # one store for all: not one per run
    paths = [store.samples_file(run_id) for run_id in run_ids]
    wanted = [_counted(data, run_id) for run_id in run_ids]
    parts: list[BinnedRuns] = []
    for batch in read_samples_of_runs(paths, folder=data.path):
        for index, problem in sorted(batch.problems.items()):
            if isinstance(problem, FileNotFoundError):
                left_out.missing.append(run_ids[index])
            else:
                left_out.unreadable[run_ids[index]] = str(problem)
        binned = stats.binned_power_runs(
            batch.run, batch.t_s, batch.power_w, batch.domain, _resolved(wanted, batch), _BIN_S
        )
        has_bins = set(np.unique(binned.run).tolist())
        for index, count in sorted(batch.rows.items()):
            if count and index not in has_bins:
                left_out.no_counted[run_ids[index]] = data.counted_by_run.get(run_ids[index])
        parts.append(_without_last_bins(binned))
    return stats.BinnedRuns(
        *(
            np.concatenate([getattr(part, name) for part in parts] or [np.empty(0, dtype=kind)])
            for name, kind in _BINNED_FIELDS
        )
    )


_BINNED_FIELDS = (
    ("run", np.int64),
    ("bin", np.int64),
    ("t_s", np.float64),
    ("power_w", np.float64),
    ("n_samples", np.int64),
)


def _counted(data: ExperimentData, run_id: str) -> list[str] | None:
    return data.counted_by_run.get(run_id)


def _resolved(wanted: list[list[str] | None], batch: SampleBatch) -> list[list[str]]:
    """Each run's counted domains; a run that records none sums every domain of its samples,
    in the order they first appear (as :func:`stats.binned_power` does without ``domains``)."""
    out = [list(domains) if domains is not None else [] for domains in wanted]
    unknown = [index for index in batch.rows if wanted[index] is None]
    if unknown:
        mine = np.isin(batch.run, unknown)
        seen = pd.DataFrame({"run": batch.run[mine], "domain": batch.domain[mine]})
        for run, domain in seen.drop_duplicates().itertuples(index=False):
            out[run].append(str(domain))
    return out


def _without_last_bins(binned: BinnedRuns) -> BinnedRuns:
    """Each run's bins less its last: the run ends inside it, so that bin holds less than
    _BIN_S of the run, often one short interval up to the exit reading, and every trace dipped
    there. A run of a single bin keeps it: it is all there is of the run."""
    run = binned.run
    last = np.ones(run.size, dtype=bool)
    last[:-1] = run[1:] != run[:-1]
    first = np.ones(run.size, dtype=bool)
    first[1:] = run[1:] != run[:-1]
    keep = ~last | first
    return stats.BinnedRuns(
        binned.run[keep],
        binned.bin[keep],
        binned.t_s[keep],
        binned.power_w[keep],
        binned.n_samples[keep],
    )
