"""Power over time: one run's samples in bins, and the mean trace across runs with a 95% band."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from greenprec.errors import ConfigError

__all__ = [
    "binned_power",
    "mean_power_trace",
]

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
        domain = np.zeros(t.size, dtype=object)
        wanted = [domain[0]] if t.size else []
    # The small epsilon keeps a timestamp such as 0.3 with bin 0.1 in bin 3, not 2.99... -> 2.
    with np.errstate(invalid="ignore"):
        bins = np.floor(t / bin_s + 1e-9)
    ok = np.isfinite(t) & np.isfinite(power)
    per_domain = []
    for name in wanted:
        mine = ok & (domain == name)
        grouped = (
            pd.DataFrame({"bin": bins[mine].astype(np.int64), "power_w": power[mine]})
            .groupby("bin", sort=True)["power_w"]
            .agg(["mean", "size"])
        )
        per_domain.append(grouped)
    if per_domain:
        # Only bins every counted domain reaches: a missing domain would undercount the total.
        common = per_domain[0].index
        for grouped in per_domain[1:]:
            common = common.intersection(grouped.index)
        common = common.sort_values()
        total = np.zeros(len(common))
        fewest = np.full(len(common), np.iinfo(np.int64).max, dtype=np.int64)
        for grouped in per_domain:
            total += grouped.loc[common, "mean"].to_numpy(dtype=np.float64)
            fewest = np.minimum(fewest, grouped.loc[common, "size"].to_numpy(dtype=np.int64))
        index = common.to_numpy(dtype=np.float64)
    else:
        index, total, fewest = np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    result: pd.DataFrame = pd.DataFrame(
        {"t_s": index * bin_s, "power_w": total, "n_samples": fewest.astype(np.int64)}
    )
    return result


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
    matrix = wide.to_numpy(dtype=np.float64)
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
            "t_s": wide.index.to_numpy(dtype=np.float64),
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
