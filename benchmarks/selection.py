"""Selecting a configuration (``greenprec recommend``): the selection's guarantee, by simulation.

Simulates whole selections (``greenprec.stats.select_look`` after every block of one run per
configuration still in play, from ``--min-runs`` on) on log-normal energies to the target and
reports:

1. the probability of correct selection (PCS) under the least favourable configuration — the
   best lower than the runner-up by exactly the indifference zone δ, the rest equal to the
   runner-up — for k = 2, 3, 4 configurations and CVs of 3–10 % (like real energy data),
   which must be ≥ 1 − α (checked against 1 − α − 3 Monte Carlo SE);
2. the expected number of runs (all configurations together) against a fixed design with the
   same guarantee: Bechhofer's (1954) n per configuration from the normal approximation,
   n = ⌈2 (h σ / δ)²⌉, h the (1 − α) quantile of the largest of k − 1 equicorrelated (ρ = ½)
   standard normals (by Monte Carlo), σ the SD of log energy;
3. a clearer case, the others 10 % above the best: runs against the same fixed design (which
   must take its n whatever the differences turn out to be);
4. ties: the best two configurations exactly equal — how often the selection stops "within the
   indifference zone", at the maximum, or with a strict best (a wrong claim: one remains while
   its equal was dropped), which must stay ≤ α.

Each scenario's maximum is ``--max-factor`` × the fixed design's n (at least 10 runs): with
too small a maximum the selection stops undecided and the leader it names is not guaranteed.

    python benchmarks/selection.py            # 10,000 selections per scenario
    python benchmarks/selection.py --quick    # 1,000, CVs 3 % and 6 % (about 30 s on 2 cores)

The looks are vectorised over selections with the formulas of greenprec.stats.selection;
``--replay`` selections per scenario are replayed through ``select_look`` itself and must agree
exactly (outcome, recommendation, runs).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

from greenprec.sequential import SequentialDesign
from greenprec.stats import SelectionLook, select_look

OUTCOMES = ("one_remains", "within_indifference", "max_runs")


@dataclass
class Result:
    """Per selection: the recommended configuration (index), the outcome (index into
    OUTCOMES), the runs per configuration at the stop and the runs of all configurations."""

    recommended: np.ndarray
    outcome: np.ndarray
    runs: np.ndarray
    total_runs: np.ndarray


def bechhofer_h(k: int, alpha: float, draws: int = 400_000) -> float:
    """The (1 − alpha) quantile of the largest of k − 1 equicorrelated (ρ = ½) normals (its own
    seed, so that every table gets the same fixed design)."""
    if k == 2:
        return float(sp.norm.isf(alpha))
    z = np.random.default_rng(k).standard_normal((draws, k))
    largest = ((z[:, 1:] - z[:, :1]) / math.sqrt(2.0)).max(axis=1)
    return float(np.quantile(largest, 1.0 - alpha))


def fixed_runs(k: int, cv: float, delta: float, alpha: float) -> int:
    """Bechhofer's n per configuration (normal approximation, σ known)."""
    sigma = math.sqrt(math.log1p(cv * cv))
    return max(2, math.ceil(2.0 * (bechhofer_h(k, alpha) * sigma / delta) ** 2))


def levels(design: SequentialDesign, k: int) -> dict[int, float]:
    """The one-sided level of each pair test at a look after every run from min_runs on."""
    share = design.alpha / (2 * (k - 1))
    # One boundary computation for all looks (a look's boundary depends only on the looks up to
    # it): the one-sided level is half the two-sided level of the design for twice the share,
    # as SequentialDesign.level_at(sides=1) computes it look by look.
    return {n: level / 2.0 for n, level in design.levels(alpha=2.0 * share)}


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running means and variances (ddof=1) over the first n runs: [R, K, N] arrays."""
    n = np.arange(1, x.shape[2] + 1)
    mean = np.cumsum(x, axis=2) / n
    centred = x - x[:, :, :1]  # shifted for accuracy, as greenprec's SD is two-pass
    s1, s2 = np.cumsum(centred, axis=2), np.cumsum(centred * centred, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / n) / (n - 1)
    return mean, np.maximum(var, 0.0)


def simulate(x: np.ndarray, design: SequentialDesign, delta: float) -> Result:
    """Run the selection over simulated log energies ``x`` [selections, configurations, runs]."""
    reps, k, _ = x.shape
    level = levels(design, k)
    mean, var = _moments(x)
    alive = np.ones((reps, k), dtype=bool)
    dropped_at = np.zeros((reps, k), dtype=np.int64)
    open_ = np.ones(reps, dtype=bool)
    result = Result(
        np.full(reps, -1), np.full(reps, -1), np.zeros(reps, np.int64), np.zeros(reps, np.int64)
    )
    for n in range(design.min_runs, design.max_runs + 1):
        m, u = mean[:, :, n - 1], var[:, :, n - 1] / n
        diff = m[:, :, None] - m[:, None, :]  # [R, i, j]: log(i) − log(j)
        total = u[:, :, None] + u[:, None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            df = total * total / ((u[:, :, None] ** 2 + u[:, None, :] ** 2) / (n - 1))
            half = sp.t.isf(level[n], df) * np.sqrt(total)
        both = alive[:, :, None] & alive[:, None, :] & ~np.eye(k, dtype=bool)
        usable = both & (total > 0)
        drop = (usable & (diff - half > 0)).any(axis=2) & open_[:, None]
        alive &= ~drop
        dropped_at[drop] = n
        ranked = np.where(alive, m, np.inf)
        leader = ranked.argmin(axis=1)
        rows = np.arange(reps)
        d_l, h_l = diff[rows, :, leader], half[rows, :, leader]
        ok_l = usable[rows, :, leader]
        within = (~alive | (np.arange(k)[None, :] == leader[:, None])) | (
            ok_l & (d_l - h_l > -delta) & (d_l + h_l < delta)
        )
        one = alive.sum(axis=1) == 1
        outcome = np.where(
            one, 0, np.where(within.all(axis=1), 1, 2 if n == design.max_runs else -1)
        )
        stop = open_ & (outcome >= 0)
        result.recommended[stop], result.outcome[stop] = leader[stop], outcome[stop]
        result.runs[stop] = n
        runs_each = np.where(dropped_at > 0, dropped_at, n)
        result.total_runs[stop] = runs_each[stop].sum(axis=1)
        open_ &= ~stop
        if not open_.any():
            break
    return result


def replay(x: np.ndarray, design: SequentialDesign, delta: float) -> tuple[int, int, int, int]:
    """One selection through select_look itself: (recommended, outcome, runs, total runs)."""
    k = x.shape[0]
    names = [f"c{i}" for i in range(k)]
    data: dict[str, list[float | None]] = {name: [] for name in names}
    look: SelectionLook | None = None
    for n in range(1, design.max_runs + 1):
        for i, name in enumerate(names):
            if look is None or look.status(name).status != "dropped":
                data[name].append(float(np.exp(x[i, n - 1])))
        look = select_look(data, design, indifference=delta, earlier=look)
        if look.stop:
            assert look.recommended is not None
            total = sum(c.runs for c in look.configurations)
            return names.index(look.recommended), OUTCOMES.index(look.outcome), n, total
    raise AssertionError("the maximum must stop the selection")


def draw(
    rng: np.random.Generator, reps: int, k: int, runs: int, cv: float, gaps: list[float]
) -> np.ndarray:
    """Log energies: configuration i has log mean ln(1000) + gaps[i], SD from the CV."""
    sigma = math.sqrt(math.log1p(cv * cv))
    centre = math.log(1000.0) + np.asarray(gaps)[None, :, None]
    return centre + sigma * rng.standard_normal((reps, k, runs))


def _check_replay(
    x: np.ndarray, design: SequentialDesign, delta: float, res: Result, m: int
) -> None:
    for r in range(min(m, x.shape[0])):
        got = replay(x[r], design, delta)
        want = (
            int(res.recommended[r]),
            int(res.outcome[r]),
            int(res.runs[r]),
            int(res.total_runs[r]),
        )
        assert got == want, (r, got, want)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10_000, help="selections per scenario")
    parser.add_argument("--quick", action="store_true", help="1,000 selections, CVs 3 and 6 %%")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--indifference", type=float, default=0.03, help="δ as a fraction")
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--max-factor", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--replay", type=int, default=40, help="selections via select_look")
    parser.add_argument(
        "--replay-max-runs", type=int, default=60, help="replay only designs up to this maximum"
    )
    args = parser.parse_args()
    reps = 1_000 if args.quick else args.reps
    cvs = (0.03, 0.06) if args.quick else (0.03, 0.06, 0.10)
    replays = min(args.replay, 10) if args.quick else args.replay
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    alpha, delta = args.alpha, math.log1p(args.indifference)
    se = math.sqrt(alpha * (1 - alpha) / reps)
    print(
        f"{reps:,} simulated selections per scenario, indifference zone "
        f"{100 * args.indifference:g} % (δ = ln {1 + args.indifference:g}), alpha {alpha:g}, "
        f"a look after every block from {args.min_runs} runs per configuration, maximum "
        f"{args.max_factor:g} × the fixed design's n (at least 10); Monte Carlo SE of a rate "
        f"near alpha: {se:.4f}; checked bounds: PCS ≥ 1 − alpha − 3 SE = {1 - alpha - 3 * se:.4f}, "
        f"wrong strict claims ≤ alpha + 3 SE = {alpha + 3 * se:.4f}. {replays} selections per "
        f"scenario with a maximum up to {args.replay_max_runs} runs replayed through select_look."
    )

    def scenario(k: int, cv: float, gaps: list[float]) -> tuple[Result, int, int]:
        n_fixed = fixed_runs(k, cv, delta, alpha)
        max_runs = max(10, math.ceil(args.max_factor * n_fixed))
        design = SequentialDesign(alpha=alpha, min_runs=args.min_runs, max_runs=max_runs)
        x = draw(rng, reps, k, max_runs, cv, gaps)
        res = simulate(x, design, delta)
        if max_runs <= args.replay_max_runs:
            # select_look computes each look's boundary afresh (seconds at 100 looks): replays
            # are kept to the shorter designs.
            _check_replay(x, design, delta, res, replays)
        return res, max_runs, n_fixed

    print("\n### Least favourable configuration: the best lower by exactly δ, the rest equal\n")
    print(
        "| k | CV | max runs | PCS | one remains / within δ / at the maximum | mean runs "
        "(all configurations) | fixed design: n per configuration, runs | mean runs / fixed |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in (2, 3, 4):
        for cv in cvs:
            res, max_runs, n_fixed = scenario(k, cv, [0.0] + [delta] * (k - 1))
            pcs = float(np.mean(res.recommended == 0))
            assert pcs >= 1 - alpha - 3 * se, (k, cv, pcs)
            shares = " / ".join(f"{np.mean(res.outcome == i):.3f}" for i in range(3))
            mean_runs = float(res.total_runs.mean())
            print(
                f"| {k} | {100 * cv:g} % | {max_runs} | {pcs:.4f} | {shares} | {mean_runs:.1f} | "
                f"{n_fixed}, {k * n_fixed} | {mean_runs / (k * n_fixed):.2f} |"
            )
    print("\n### A clearer case: the others 10 % above the best\n")
    print(
        "| k | CV | max runs | PCS | one remains / within δ / at the maximum | mean runs | "
        "fixed design runs | mean runs / fixed |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in (2, 3, 4):
        for cv in cvs:
            res, max_runs, n_fixed = scenario(k, cv, [0.0] + [math.log(1.1)] * (k - 1))
            pcs = float(np.mean(res.recommended == 0))
            shares = " / ".join(f"{np.mean(res.outcome == i):.3f}" for i in range(3))
            mean_runs = float(res.total_runs.mean())
            print(
                f"| {k} | {100 * cv:g} % | {max_runs} | {pcs:.4f} | {shares} | {mean_runs:.1f} | "
                f"{k * n_fixed} | {mean_runs / (k * n_fixed):.2f} |"
            )
    print("\n### Ties: the best two configurations equal (the others, if any, δ worse)\n")
    print("| k | CV | max runs | within δ | at the maximum | one remains (wrong strict best) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in (2, 3, 4):
        for cv in cvs:
            res, max_runs, _ = scenario(k, cv, [0.0, 0.0] + [delta] * (k - 2))
            wrong = float(np.mean(res.outcome == 0))
            assert wrong <= alpha + 3 * se, (k, cv, wrong)
            print(
                f"| {k} | {100 * cv:g} % | {max_runs} | {np.mean(res.outcome == 1):.3f} | "
                f"{np.mean(res.outcome == 2):.3f} | {wrong:.4f} |"
            )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
