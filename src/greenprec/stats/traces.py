"""Power over time: one run's samples in bins, and the mean trace across runs with a 95% band."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from greenprec.errors import ConfigError

__all__ = [
    "BinnedRuns",
    "binned_power",
    "binned_power_runs",
    "mean_power_trace",
    "mean_power_trace_of_runs",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# -- power traces ----------------------------------------------------------------------------------


def binned_power(
    samples: pd.DataFrame,
    bin_s: float = 0.5,
    *,
    domains: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One run's power samples averaged into ``bin_s``-second bins.

    With a ``domain`` column, each counted domain is binned on its own (mean of its readings
    in the bin) and the domains' bin means are added: ``domains`` when given, else those with
    ``in_total`` true when that column exists, else all of them. Meters stamp readings with
    their own clock reads, so two meters never share a timestamp; binning per domain first
    makes their sum independent of that. A bin in which some counted domain has no finite
    reading is left out rather than undercounted (``domains`` given but absent from the
    samples: no bin at all). Returns ``t_s`` (bin start), ``power_w``, ``n_samples`` (the
    fewest readings any counted domain has in the bin); empty bins are left out.
    """
    bin_s = _check_bin(bin_s)
    if not isinstance(samples, pd.DataFrame):
        raise ConfigError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    for column in ("t_s", "power_w"):
        if column not in samples.columns:
            raise ConfigError(f"samples needs a {column!r} column; it has {list(samples.columns)}")
    t = samples["t_s"].to_numpy(dtype=np.float64)
    power = samples["power_w"].to_numpy(dtype=np.float64)
    if "domain" in samples.columns:
        domain = samples["domain"].astype(str).to_numpy()
        if domains is not None:
            wanted = list(dict.fromkeys(str(d) for d in domains))
        elif "in_total" in samples.columns:
            in_total = samples["in_total"].astype(bool).to_numpy()
            wanted = list(dict.fromkeys(domain[in_total].tolist()))
        else:
            wanted = list(dict.fromkeys(domain.tolist()))
    else:
        domain = np.full(t.size, "", dtype=object)
        wanted = [""] if t.size else []
    runs = binned_power_runs(np.zeros(t.size, dtype=np.int64), t, power, domain, [wanted], bin_s)
    result: pd.DataFrame = pd.DataFrame(
        {"t_s": runs.t_s, "power_w": runs.power_w, "n_samples": runs.n_samples}
    )
    return result


@dataclass(frozen=True)
class BinnedRuns:
    """Several runs' power in bins, as :func:`binned_power` bins each: sorted by run, then bin.

    ``run`` is each bin's run (the index given to :func:`binned_power_runs`); ``bin`` its
    number (``t_s`` is ``bin * bin_s``).
    """

    run: IntArray
    bin: IntArray
    t_s: FloatArray
    power_w: FloatArray
    n_samples: IntArray


def binned_power_runs(
    run: IntArray,
    t_s: FloatArray,
    power_w: FloatArray,
    domain: npt.NDArray[np.str_] | npt.NDArray[np.object_],
    wanted: Sequence[Sequence[str]],
    bin_s: float = 0.5,
) -> BinnedRuns:
    """:func:`binned_power` for many runs at once: row ``i`` is a sample of run ``run[i]``,
    whose counted domains are ``wanted[run[i]]`` (in the order their bin means are added).

    One grouping over every run instead of one per run and domain (10,000 runs took minutes):
    each bin's mean is still pandas' grouped mean over the same readings in the same order,
    and the domains' means are added in the same order, so every number is the same as
    :func:`binned_power` gives run by run.
    """
    bin_s = _check_bin(bin_s)
    # The small epsilon keeps a timestamp such as 0.3 with bin 0.1 in bin 3, not 2.99... -> 2.
    with np.errstate(invalid="ignore"):
        bins = np.floor(t_s / bin_s + 1e-9)
    ok = np.isfinite(t_s) & np.isfinite(power_w)
    position = _domain_positions(run, domain, wanted)
    keep = ok & (position >= 0)
    grouped = (
        pd.DataFrame(
            {
                "run": run[keep],
                "position": position[keep],
                "bin": bins[keep].astype(np.int64),
                "power_w": power_w[keep],
            }
        )
        .groupby(["run", "position", "bin"], sort=True)["power_w"]
        .agg(["mean", "size"])
    )
    g_run = grouped.index.get_level_values("run").to_numpy(dtype=np.int64)
    g_pos = grouped.index.get_level_values("position").to_numpy(dtype=np.int64)
    g_bin = grouped.index.get_level_values("bin").to_numpy(dtype=np.int64)
    order = np.lexsort((g_pos, g_bin, g_run))
    g_run, g_bin = g_run[order], g_bin[order]
    mean = grouped["mean"].to_numpy(dtype=np.float64)[order]
    size = grouped["size"].to_numpy(dtype=np.int64)[order]
    # One segment per (run, bin); its rows are the counted domains that reach the bin.
    new = np.ones(g_run.size, dtype=bool)
    new[1:] = (g_run[1:] != g_run[:-1]) | (g_bin[1:] != g_bin[:-1])
    starts = np.flatnonzero(new)
    count = np.diff(np.append(starts, g_run.size))
    needed = np.array([len(w) for w in wanted], dtype=np.int64)
    # Only bins every counted domain reaches: a missing domain would undercount the total.
    full = starts[count == needed[g_run[starts]]]
    needed_here = needed[g_run[full]]
    total = np.zeros(full.size)
    fewest = np.full(full.size, np.iinfo(np.int64).max, dtype=np.int64)
    for k in range(int(needed_here.max()) if full.size else 0):
        # Added domain by domain in the counted order, as binned_power adds them.
        more = needed_here > k
        total[more] += mean[full[more] + k]
        fewest[more] = np.minimum(fewest[more], size[full[more] + k])
    numbers = g_bin[full].astype(np.float64)
    return BinnedRuns(
        run=g_run[full],
        bin=g_bin[full],
        t_s=numbers * bin_s,
        power_w=total,
        n_samples=fewest.astype(np.int64),
    )


def _domain_positions(
    run: IntArray,
    domain: npt.NDArray[np.str_] | npt.NDArray[np.object_],
    wanted: Sequence[Sequence[str]],
) -> IntArray:
    """Each sample's domain's place in its run's counted list; -1 when it is not counted."""
    codes, names = pd.factorize(domain)
    code_of = {str(name): i for i, name in enumerate(names)}
    kinds: dict[tuple[str, ...], int] = {}
    kind_of_run = np.array([kinds.setdefault(tuple(w), len(kinds)) for w in wanted], dtype=np.int64)
    position = np.full(run.size, -1, dtype=np.int64)
    if not run.size:
        return position
    row_kind = kind_of_run[run]
    for names_wanted, kind in kinds.items():
        table = np.full(len(names) + 1, -1, dtype=np.int64)
        for place, name in enumerate(names_wanted):
            if name in code_of:
                table[code_of[name]] = place
        mine = row_kind == kind
        position[mine] = table[codes[mine]]
    return position


def mean_power_trace(
    runs: Mapping[Any, pd.DataFrame] | Sequence[pd.DataFrame],
    bin_s: float = 0.5,
    *,
    domains: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean power over time across runs, with a t-based 95% band per bin.

    Each run is binned with :func:`binned_power`; per bin the runs that reach it are averaged.
    Returns ``t_s, mean_power_w, ci_lo_w, ci_hi_w, n_runs``; the band is NaN where fewer than
    2 runs reach a bin, so late bins of runs of unequal length are visible in ``n_runs``.
    """
    bin_s = _check_bin(bin_s)
    frames = list(runs.values()) if isinstance(runs, Mapping) else list(runs)
    columns = ["t_s", "mean_power_w", "ci_lo_w", "ci_hi_w", "n_runs"]
    per_run = []
    for frame in frames:
        binned = binned_power(frame, bin_s, domains=domains)
        if len(binned):
            per_run.append(binned.set_index("t_s")["power_w"])
    if not per_run:
        empty: pd.DataFrame = pd.DataFrame(
            {c: pd.Series(dtype=np.int64 if c == "n_runs" else np.float64) for c in columns}
        )
        return empty
    wide = pd.concat(per_run, axis=1).sort_index()
    return _trace_table(wide.index.to_numpy(dtype=np.float64), wide.to_numpy(dtype=np.float64))


def mean_power_trace_of_runs(binned: BinnedRuns, bin_s: float = 0.5) -> pd.DataFrame:
    """:func:`mean_power_trace` of runs already binned by :func:`binned_power_runs` with the
    same ``bin_s``: the same table, without a pandas frame per run.

    Runs are the columns in the order of their run numbers; a run with no finite bin is left
    out, as :func:`mean_power_trace` leaves it out.
    """
    bin_s = _check_bin(bin_s)
    # mean_power_trace bins each run again; a bin start binned again is the same bin (kept
    # exact by the same formula) and a bin's one value its own mean, so only the rebinned
    # times and the finite values are needed here.
    with np.errstate(invalid="ignore"):
        again = np.floor(binned.t_s / bin_s + 1e-9)
    ok = np.isfinite(binned.t_s) & np.isfinite(binned.power_w)
    run, number, power = binned.run[ok], again[ok].astype(np.int64), binned.power_w[ok]
    # Sorted by run, then bin, and rebinning keeps that order: a repeat is next to its twin.
    if np.any((run[1:] == run[:-1]) & (number[1:] == number[:-1])):
        # Two bins of one run fell into one bin again (a bin width that does not round-trip):
        # let mean_power_trace average them as it always has.
        frames = [
            pd.DataFrame(
                {"t_s": binned.t_s[binned.run == r], "power_w": binned.power_w[binned.run == r]}
            )
            for r in np.unique(binned.run)
        ]
        return mean_power_trace(frames, bin_s)
    if not run.size:
        return mean_power_trace([], bin_s)
    columns, column = np.unique(run, return_inverse=True)
    times, row = np.unique(number.astype(np.float64) * bin_s, return_inverse=True)
    # Built run by run and transposed: the same memory layout as pd.concat(...).to_numpy()
    # in mean_power_trace, so numpy adds the same numbers in the same order.
    by_run = np.full((columns.size, times.size), np.nan)
    by_run[column, row] = power
    return _trace_table(times, by_run.T)


def _trace_table(times: FloatArray, matrix: FloatArray) -> pd.DataFrame:
    """Mean, 95% band and run count per bin of a bins x runs matrix (NaN: run not there)."""
    n_runs = np.sum(~np.isnan(matrix), axis=1)
    mean = np.nanmean(matrix, axis=1)
    from scipy import stats

    many = n_runs >= 2
    half = np.full(mean.shape, np.nan)
    if many.any():
        sd = np.nanstd(matrix[many], axis=1, ddof=1)
        half[many] = stats.t.ppf(0.975, n_runs[many] - 1) * sd / np.sqrt(n_runs[many])
    trace: pd.DataFrame = pd.DataFrame(
        {
            "t_s": times,
            "mean_power_w": mean,
            "ci_lo_w": mean - half,
            "ci_hi_w": mean + half,
            "n_runs": n_runs.astype(np.int64),
        }
    )
    return trace


def _check_bin(bin_s: float) -> float:
    if not isinstance(bin_s, (int, float)) or not bin_s > 0 or math.isinf(bin_s):
        raise ConfigError(f"bin_s must be a positive number of seconds, got {bin_s!r}")
    return float(bin_s)
