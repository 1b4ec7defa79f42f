"""Error rates of the report's decisions, by simulation: the family, and margins in percent.

1. **The family** (a fixed design): 3 policies (2 besides the reference) × 2 questions each
   (energy: different?; test accuracy: equivalent within ±1 pp?), n runs per policy. Every
   null hypothesis is made true where it is hardest to keep: no energy difference, and the
   true accuracy difference exactly at the margin (−1 pp, SD 0.5 pp). A false decision is
   "lower"/"higher" energy, or "equivalent" accuracy. Decided as the report decides
   (``greenprec.report.decisions.decide``: Holm's procedure over the family, each decision
   read off its interval) and as 0.2.0 did (every question at the full α on its own).
2. **Margins in percent of the reference mean**: a non-inferiority margin "not more than
   +m %" with energy exactly m % above the reference (the boundary of the null). 0.2.0 turned
   the margin into joules at the *observed* reference mean and ran Welch's test on the
   difference; greenprec now tests the log ratio of the means against ln(1 + m/100). The rate
   of false "not worse" must stay at or below α.

    python benchmarks/family_error.py            # 20,000 experiments per scenario
    python benchmarks/family_error.py --quick    # 2,000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from greenprec import stats
from greenprec.report.decisions import Question, TFit, decide

ALPHA = 0.05
MARGIN = 0.01  # ±1 pp of a fraction-scale accuracy


def _energy_question(policy: str, a: np.ndarray, b: np.ndarray) -> Question:
    test = stats.welch_log_ratio(a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size)
    return Question(
        metric="energy_j",
        label="energy",
        policy=policy,
        reference="fp32",
        kind="difference",
        test="Welch t on the log ratio",
        test_key="welch_log_ratio",
        scale="log_ratio",
        unit="%",
        factor=1.0,
        fit=TFit(float(test.log_ratio), float(test.se), float(test.df)),
    )


def _accuracy_question(policy: str, a: np.ndarray, b: np.ndarray) -> Question:
    result = stats.tost_welch(a, b, MARGIN)
    assert result.difference is not None and result.se is not None and result.df is not None
    return Question(
        metric="test_accuracy",
        label="test accuracy",
        policy=policy,
        reference="fp32",
        kind="equivalence",
        test="TOST (Welch)",
        test_key="tost_welch",
        scale="difference",
        unit=" pp",
        factor=100.0,
        fit=TFit(result.difference, result.se, result.df),
        lower_bound=-MARGIN,
        upper_bound=MARGIN,
    )


def family(n: int, sims: int, seed: int) -> tuple[float, float]:
    """Family-wise error (any false decision) of Holm over the family, and of 0.2.0's
    unadjusted decisions, with every null true at its boundary."""
    rng = np.random.default_rng(seed)
    holm_errors = naive_errors = 0
    for _ in range(sims):
        energy = {p: rng.lognormal(math.log(1000.0), 0.01, n) for p in ("fp32", "a", "b")}
        accuracy = {"fp32": rng.normal(0.80, 0.005, n)}
        for p in ("a", "b"):
            accuracy[p] = rng.normal(0.80 - MARGIN, 0.005, n)
        questions = []
        for p in ("a", "b"):
            questions.append(_energy_question(p, energy["fp32"], energy[p]))
            questions.append(_accuracy_question(p, accuracy["fp32"], accuracy[p]))
        decided = decide(questions, ALPHA)
        holm_errors += any(
            d.outcome in ("lower", "higher", "equivalent") for d in decided.decisions
        )
        naive = [q.decide(ALPHA)[0] for q in questions]
        naive_errors += any(o in ("lower", "higher", "equivalent") for o in naive)
    return holm_errors / sims, naive_errors / sims


def percent_margin(margin_pct: float, n: int, sims: int, seed: int) -> tuple[float, float]:
    """False "not worse" at the boundary (energy exactly margin_pct % above the reference):
    0.2.0's difference test with the margin converted at the observed mean, and the log-ratio
    test."""
    rng = np.random.default_rng(seed)
    old = new = 0
    cv = 0.10
    for _ in range(sims):
        a = rng.normal(100.0, 100.0 * cv, n)
        b = rng.normal(100.0 * (1 + margin_pct / 100), 100.0 * (1 + margin_pct / 100) * cv, n)
        converted = margin_pct * abs(a.mean()) / 100.0
        old += bool(stats.noninferiority_welch(a, b, converted, 1).noninferior)
        new += bool(stats.noninferiority_log_ratio(a, b, margin_pct, 1).noninferior)
    return old / sims, new / sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 experiments per scenario")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    sims = 2_000 if args.quick else 20_000
    se = math.sqrt(ALPHA * (1 - ALPHA) / sims)
    print(f"{sims:,} simulated experiments per scenario (Monte Carlo SE at 5 %: {se:.2%})\n")
    print("1. the family: 3 policies x 2 questions, every null true at its boundary")
    print("   runs per policy | family-wise error, Holm (now) | each question at alpha alone")
    for n in (3, 5, 10):
        start = time.perf_counter()
        holm, naive = family(n, sims, args.seed + n)
        print(f"   {n:16d} | {holm:29.2%} | {naive:28.2%}   ({time.perf_counter() - start:.0f} s)")
    print("\n2. non-inferiority 'not more than +m %' at the boundary (CV 10 %)")
    print("   margin | runs per policy | false 'not worse', margin at observed mean (0.2.0)"
          " | log ratio (now)")  # fmt: skip
    for margin_pct in (5.0, 20.0, 50.0):
        for n in (3, 10):
            old, new = percent_margin(margin_pct, n, sims, args.seed + int(margin_pct) + n)
            print(f"   {margin_pct:5.0f}% | {n:15d} | {old:52.2%} | {new:15.2%}")


if __name__ == "__main__":
    main()
