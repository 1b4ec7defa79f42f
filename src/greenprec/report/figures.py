"""The report's figures, each as PNG (embedded in report.html) and SVG (for papers).

matplotlib is imported inside :func:`make_figures` and drawn through the Agg canvas directly,
without pyplot: no global figure state, no GUI backend, and ``import greenprec`` never loads
it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from greenprec import stats
from greenprec.report.analysis import ACCURACY, ENERGY, Prepared, accuracy_points, removed_rows
from greenprec.report.data import numeric
from greenprec.results.files import check_subfolder, write_atomic
from greenprec.stats import FloatArray

if TYPE_CHECKING:
    # Types only: matplotlib itself is imported while drawing (untyped where an old
    # matplotlib without type hints is installed).
    from matplotlib.axes import Axes
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

__all__ = [
    "FigureFile",
    "colour",
    "make_figures",
]

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_WIDTH_IN, _HEIGHT_IN, _DPI = 7.2, 4.4, 110


@dataclass(frozen=True)
class FigureFile:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path
    png_bytes: bytes


def colour(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def make_figures(
    prepared: Prepared, traces: dict[str, pd.DataFrame], out_dir: Path
) -> tuple[list[FigureFile], dict[str, str]]:
    """Draw every figure the data allows; the others get a reason instead.

    ``out_dir`` (a results folder's ``figures/``) must be a real folder or not exist yet: a
    link there is refused (ConfigError) before anything is drawn, never written through.
    """
    import matplotlib

    check_subfolder(out_dir)

    figures: list[FigureFile] = []
    skipped: dict[str, str] = {}
    label = " (estimated)" if prepared.data.estimated else ""
    # Fixed SVG ids and no timestamps: the same data gives byte-identical files. Policy names
    # are the user's text: matplotlib would parse "$...$" in them as mathtext (a policy named
    # "$\frac{$" raised ValueError and no figure was drawn) or hand them to LaTeX with usetex
    # on in a matplotlibrc; every label is drawn as the characters it holds.
    with matplotlib.rc_context(
        {
            "svg.hashsalt": "greenprec",
            "font.size": 11,
            "axes.titlesize": 12.5,
            "text.parse_math": False,
            "text.usetex": False,
        }
    ):
        makers = (
            ("energy_violin", _energy_violin),
            ("power_trace", _power_trace),
            ("energy_vs_accuracy", _energy_vs_accuracy),
            ("duration_violin", _duration_violin),
        )
        for name, maker in makers:
            drawn = maker(prepared, traces, label)
            if isinstance(drawn, str):
                skipped[name] = drawn
                continue
            figure, title, caption = drawn
            figures.append(_save(figure, name, title, caption, out_dir))
    return figures, skipped


def _new_figure() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(_WIDTH_IN, _HEIGHT_IN), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, name: str, title: str, caption: str, out_dir: Path) -> FigureFile:
    png, svg = io.BytesIO(), io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    figure.savefig(svg, format="svg", metadata={"Date": None})
    png_path, svg_path = out_dir / f"{name}.png", out_dir / f"{name}.svg"
    # From the results folder down, no step followed if it is a link (out_dir swapped for one
    # while drawing): each file lands in the folder's own figures/ or nowhere.
    write_atomic(png_path, png.getvalue(), folder=out_dir.parent)
    write_atomic(svg_path, svg.getvalue(), folder=out_dir.parent)
    return FigureFile(name, title, caption, png_path, svg_path, png.getvalue())


def _policy_arrays(prepared: Prepared, key: str) -> list[tuple[str, FloatArray]]:
    out = []
    for policy, rows in prepared.kept_by_policy().items():
        values = numeric(rows, key)
        out.append((policy, values[np.isfinite(values)]))
    return out


# A kernel density from fewer runs than this is a blob whose shape is the kernel's, not the
# data's: below it every run is drawn, large enough to count, with the mean and its 95% CI.
_VIOLIN_MIN_RUNS = 10
# Above this many points a scatter is drawn into the SVG as an image: 10,000 runs as 10,000
# vector markers per figure took most of a report's time and made an SVG no viewer opens fast.
# The PNG and every smaller experiment's SVG are unchanged.
_VECTOR_POINTS = 2000


def _distribution(
    ax: Axes,
    groups: Sequence[tuple[str, FloatArray]],
    removed: dict[str, list[float]],
) -> str:
    """Each policy's runs: a violin with a box from _VIOLIN_MIN_RUNS runs on, else every run
    with the mean ± 95% CI. Returns the caption that says which."""
    rng = np.random.default_rng(0)  # fixed jitter: reruns draw identical figures
    positions = list(range(1, len(groups) + 1))
    kinds: set[str] = set()
    for index, (pos, (policy, values)) in enumerate(zip(positions, groups, strict=True)):
        c = colour(index)
        if values.size >= _VIOLIN_MIN_RUNS:
            kinds.add("violin")
            _violin(ax, pos, values, c, rng)
        elif values.size:
            kinds.add("runs")
            _runs_with_mean(ax, pos, values, c, rng)
        gone = removed.get(policy, [])
        if gone:
            ax.scatter(
                [pos] * len(gone),
                gone,
                marker="x",
                s=40,
                color="#d62728",
                zorder=4,
                label="removed outlier (|z| > 3)",
            )
    ax.set_xticks(positions, [f"{p}\n(n = {v.size})" for p, v in groups])
    ax.set_xlim(0.4, len(groups) + 0.6)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), loc="best", fontsize=9.5)
    violin = "violin (density) with box (median, quartiles, 1.5 IQR whiskers) and every run"
    runs = "every run with the mean and its 95% CI (t-based)"
    if kinds == {"violin"}:
        return violin[0].upper() + violin[1:] + "."
    if kinds == {"runs"}:
        return (
            f"{runs[0].upper()}{runs[1:]}: fewer than {_VIOLIN_MIN_RUNS} runs per policy are too "
            "few for a violin."
        )
    return (
        f"Policies with {_VIOLIN_MIN_RUNS} or more runs: {violin}; with fewer: {runs}."
        if kinds
        else ""
    )


def _violin(ax: Axes, pos: int, values: FloatArray, c: str, rng: np.random.Generator) -> None:
    # A kernel density needs spread; with identical values only the box and points are drawn.
    if np.ptp(values) > 0:
        parts = ax.violinplot([values], positions=[pos], widths=0.75, showextrema=False)
        # Typed as one Collection in matplotlib's hints; it is the list of violins drawn.
        bodies = cast("list[PolyCollection]", parts["bodies"])
        for body in bodies:
            body.set_facecolor(c)
            body.set_edgecolor(c)
            body.set_alpha(0.3)
    ax.boxplot(
        [values],
        positions=[pos],
        widths=0.16,
        showfliers=False,
        manage_ticks=False,
        patch_artist=True,
        boxprops={"facecolor": "white", "edgecolor": "#333333"},
        medianprops={"color": c, "linewidth": 2},
        whiskerprops={"color": "#333333"},
        capprops={"color": "#333333"},
    )
    jitter = rng.uniform(-0.07, 0.07, size=values.size)
    ax.scatter(
        pos + jitter,
        values,
        s=12,
        color=c,
        alpha=0.7,
        zorder=3,
        linewidths=0,
        rasterized=values.size > _VECTOR_POINTS,
    )


def _runs_with_mean(
    ax: Axes, pos: int, values: FloatArray, c: str, rng: np.random.Generator
) -> None:
    jitter = rng.uniform(-0.12, 0.12, size=values.size)
    ax.scatter(
        pos + jitter,
        values,
        s=48,
        color=c,
        alpha=0.85,
        zorder=3,
        edgecolors="white",
        linewidths=0.8,
        rasterized=values.size > _VECTOR_POINTS,
    )
    described = stats.describe(values)
    ci = described.ci95
    if described.mean is None or ci is None:
        return  # one run: its point is all there is, a mean beside it would repeat it
    # The same t-based interval as the report's tables.
    yerr = [[described.mean - ci[0]], [ci[1] - described.mean]]
    ax.errorbar(
        [pos + 0.25],
        [described.mean],
        yerr=yerr,
        fmt="D",
        markersize=6,
        color="#222222",
        ecolor="#222222",
        elinewidth=1.4,
        capsize=5,
        zorder=4,
        label="mean ± 95% CI",
    )


def _removed(prepared: Prepared, key: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for row in removed_rows(prepared):
        value = numeric([row], key)[0]
        if math.isfinite(value):
            out.setdefault(str(row["policy"]), []).append(float(value))
    return out


_Drawn = tuple["Figure", str, str] | str


def _energy_violin(prepared: Prepared, traces: dict[str, pd.DataFrame], label: str) -> _Drawn:
    groups = _policy_arrays(prepared, ENERGY)
    if not any(v.size for _, v in groups):
        return "no finished run has an energy value"
    figure = _new_figure()
    ax = figure.add_subplot()
    caption = _distribution(ax, groups, _removed(prepared, ENERGY))
    title = f"Energy per run{label}"
    ax.set_title(title)
    ax.set_ylabel(f"Energy per run (J{', estimated' if label else ''})")
    return figure, title, caption


def _duration_violin(prepared: Prepared, traces: dict[str, pd.DataFrame], label: str) -> _Drawn:
    groups = _policy_arrays(prepared, "duration_s")
    if not any(v.size for _, v in groups):
        return "no finished run has a duration"
    figure = _new_figure()
    ax = figure.add_subplot()
    caption = _distribution(ax, groups, _removed(prepared, "duration_s"))
    title = "Duration per run"
    ax.set_title(title)
    ax.set_ylabel("Duration of the measured window (s)")
    return figure, title, caption + " The duration is the measured training time."


def _power_trace(prepared: Prepared, traces: dict[str, pd.DataFrame], label: str) -> _Drawn:
    usable = {p: t for p, t in traces.items() if len(t)}
    if not usable:
        return "no samples/<run_id>.csv with power readings for the runs used"
    figure = _new_figure()
    ax = figure.add_subplot()
    policies = prepared.data.policies
    for policy, trace in usable.items():
        c = colour(policies.index(policy) if policy in policies else len(policies))
        runs = int(trace["n_runs"].max())
        # Late bins reached by few runs are one run's noise; keep those most runs reach.
        shown = trace[trace["n_runs"] >= max(1, math.ceil(runs / 2))]
        t = shown["t_s"].to_numpy()
        ax.plot(t, shown["mean_power_w"].to_numpy(), color=c, lw=1.3, label=f"{policy} ({runs})")
        lo, hi = shown["ci_lo_w"].to_numpy(), shown["ci_hi_w"].to_numpy()
        # Power is never negative; a t-band over few runs can reach below zero. The figure
        # clips it at 0, stats.json keeps the band as computed.
        lo = np.clip(lo, 0.0, None)
        band = np.isfinite(lo) & np.isfinite(hi)
        if band.any():
            ax.fill_between(t, lo, hi, where=band, color=c, alpha=0.25, linewidth=0)
    title = f"Mean power over time{label}"
    ax.set_title(title)
    ax.set_xlabel("Time since the run started (s)")
    ax.set_ylabel(f"Power (W{', estimated' if label else ''})")
    ax.grid(alpha=0.3)
    ax.legend(title="policy (runs)", fontsize=9.5, title_fontsize=9.5, loc="best")
    caption = (
        "Mean over runs of power in 0.5 s bins, with the t-based 95% band; each run's last bin, "
        "which the run ends inside of, is left out, and bins reached by fewer than half of a "
        "policy's runs are not drawn."
    )
    return figure, title, caption


def _energy_vs_accuracy(prepared: Prepared, traces: dict[str, pd.DataFrame], label: str) -> _Drawn:
    scale = prepared.accuracy_scale
    refused = prepared.data.refused_columns.get(ACCURACY)
    if refused is not None:
        return refused
    if scale is None:
        return "no finished run reported test_accuracy"
    figure = _new_figure()
    ax = figure.add_subplot()
    for index, (policy, rows) in enumerate(prepared.kept_by_policy().items()):
        energy, accuracy = numeric(rows, ENERGY), numeric(rows, ACCURACY)
        ok = np.isfinite(energy) & np.isfinite(accuracy)
        points = accuracy_points(1.0, scale) or 1.0
        ax.scatter(
            accuracy[ok] * points,
            energy[ok],
            s=18,
            color=colour(index),
            alpha=0.8,
            label=policy,
            rasterized=int(ok.sum()) > _VECTOR_POINTS,
        )
    gone = removed_rows(prepared)
    if gone:
        energy, accuracy = numeric(gone, ENERGY), numeric(gone, ACCURACY)
        ok = np.isfinite(energy) & np.isfinite(accuracy)
        if ok.any():
            points = accuracy_points(1.0, scale) or 1.0
            ax.scatter(
                accuracy[ok] * points,
                energy[ok],
                marker="x",
                s=40,
                color="#d62728",
                label="removed outlier",
            )
    title = f"Energy against test accuracy{label}"
    ax.set_title(title)
    ax.set_xlabel("Test accuracy (%)")
    ax.set_ylabel(f"Energy per run (J{', estimated' if label else ''})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9.5, loc="best")
    caption = "One point per run: lower and further right is better."
    return figure, title, caption
