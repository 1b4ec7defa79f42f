"""Coverage of the relative-change CI: the old percentile bootstrap against Welch's log ratio.

Simulates experiments with normal run-to-run noise (energy data: CV of about 1-10%), computes
both 95% intervals of the relative change 100 * (mean_b / mean_a - 1) for each, and prints
how often each interval contains the true change. A 95% interval should cover about 95% of
the time; the Monte Carlo standard error of one cell is about 0.5 percentage points at 2,000
experiments.

    python benchmarks/ci_coverage.py                  # 2,000 experiments per cell, ~15 s
    python benchmarks/ci_coverage.py --reps 20000     # tighter numbers, a few minutes
    python benchmarks/ci_coverage.py --n 3 4 --cv 5 --change 0

The new interval is computed by greenprec itself (``stats.welch_log_ratio``, the function
``compare_groups`` uses); the old one is re-implemented here exactly as greenprec 0.x had it
(stratified resampling, percentile interval), since the library no longer contains it.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np

from greenprec import stats

# Rows of bootstrap index matrices per chunk: bounds memory to ~50 MB at n = 30, B = 1000.
_CHUNK_ELEMENTS = 6_000_000


@dataclass(frozen=True)
class Cell:
    n: int
    cv_pct: float
    bootstrap: float
    log_ratio: float
    bootstrap_width: float
    log_ratio_width: float


def simulate(
    n: int,
    cv_pct: float,
    *,
    change_pct: float,
    reps: int,
    n_boot: int,
    alpha: float,
    rng: np.random.Generator,
) -> Cell:
    mean_a = 1000.0
    mean_b = mean_a * (1 + change_pct / 100)
    truth = change_pct
    # The same CV in both groups: run-to-run noise in proportion to the energy.
    a = rng.normal(mean_a, cv_pct / 100 * mean_a, size=(reps, n))
    b = rng.normal(mean_b, cv_pct / 100 * abs(mean_b), size=(reps, n))

    test = stats.welch_log_ratio(
        a.mean(axis=1),
        a.std(axis=1, ddof=1),
        n,
        b.mean(axis=1),
        b.std(axis=1, ddof=1),
        n,
        alpha=alpha,
    )
    new_lo, new_hi = test.ci_lo_pct, test.ci_hi_pct
    # The benchmark measures the library's own interval: spot-check against compare_groups.
    for k in range(3):
        ci = stats.compare_groups(a[k], b[k], alpha=alpha).relative_change_ci
        assert ci is not None and np.allclose(ci, (new_lo[k], new_hi[k]), rtol=1e-12)

    old_lo, old_hi = _bootstrap(a, b, n_boot, alpha, rng)
    return Cell(
        n=n,
        cv_pct=cv_pct,
        bootstrap=float(np.mean((old_lo <= truth) & (truth <= old_hi))),
        log_ratio=float(np.mean((new_lo <= truth) & (truth <= new_hi))),
        bootstrap_width=float(np.median(old_hi - old_lo)),
        log_ratio_width=float(np.median(new_hi - new_lo)),
    )


def _bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The old interval: resample each group to its size, percentile of 100 (mb / ma - 1)."""
    reps, n = a.shape
    lo, hi = np.empty(reps), np.empty(reps)
    chunk = max(1, _CHUNK_ELEMENTS // (n_boot * n))
    for start in range(0, reps, chunk):
        stop = min(reps, start + chunk)
        k = stop - start
        rows = np.arange(k)[:, None, None]
        mean_a = a[start:stop][rows, rng.integers(0, n, size=(k, n_boot, n))].mean(axis=2)
        mean_b = b[start:stop][rows, rng.integers(0, n, size=(k, n_boot, n))].mean(axis=2)
        change = 100.0 * (mean_b / mean_a - 1.0)
        lo[start:stop], hi[start:stop] = np.percentile(
            change, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=1
        )
    return lo, hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000, help="experiments per cell")
    parser.add_argument("--n", type=int, nargs="+", default=[3, 5, 10, 30], help="runs per group")
    parser.add_argument("--cv", type=float, nargs="+", default=[1.0, 3.0, 10.0], help="CV in %%")
    parser.add_argument("--change", type=float, default=-12.0, help="true relative change in %%")
    parser.add_argument(
        "--boot", type=int, default=1000, help="bootstrap resamples (greenprec used 10,000)"
    )
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    level = f"{100 * (1 - args.alpha):g}%"
    se = 100 * math.sqrt((1 - args.alpha) * args.alpha / args.reps)
    print(
        f"{level} CI coverage of a {args.change:+g}% change, {args.reps:,} simulated experiments "
        f"per cell (Monte Carlo SE ~{se:.1f} points), normal runs, {args.boot:,} bootstrap "
        "resamples"
    )
    print()
    print("| runs per policy | CV | percentile bootstrap (old) | Welch log ratio (new) |")
    print("| ---: | ---: | ---: | ---: |")
    started = time.perf_counter()
    for n in args.n:
        for cv in args.cv:
            cell = simulate(
                n,
                cv,
                change_pct=args.change,
                reps=args.reps,
                n_boot=args.boot,
                alpha=args.alpha,
                rng=rng,
            )
            print(
                f"| {n} | {cv:g}% | {100 * cell.bootstrap:.1f}% "
                f"(width {cell.bootstrap_width:.2f} pts) | {100 * cell.log_ratio:.1f}% "
                f"(width {cell.log_ratio_width:.2f} pts) |",
                flush=True,
            )
    print()
    print(f"{time.perf_counter() - started:.1f} s; widths are medians, in percentage points")


if __name__ == "__main__":
    main()
