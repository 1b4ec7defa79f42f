"""Error rates, power and savings of stopping early (greenprec.sequential), by simulation.

Simulates whole adaptive experiments (a look after every run from ``--min-runs`` to
``--max-runs`` runs per policy, as ``greenprec compare --adaptive`` does) and compares the
design greenprec uses — exact Lan–DeMets boundaries (recursive numerical integration), each
question tested at the nominal level of its boundary, α split equally over the family's
questions — with the design of 0.2.0, which tested every look at its α *increment*
α(t_k) − α(t_{k−1}) and every question at the full α:

1. one question (energy, no true difference, log-normal energies at CV 1 %): the false-positive
   rate of each design, of testing every look at α ("naive"), and of one fixed test;
2. one question, a 1 % energy change at CV 1 % (d = 1): power and mean runs at stopping;
3. the family: 3 policies (2 besides the reference) × 2 questions (energy difference; accuracy
   equivalence within ±1 pp), with no energy difference and the true accuracy difference at
   the margin (−1 pp, SD 0.5 pp): the family-wise error (any false "different" or false
   "equivalent"), which must stay ≤ α;
4. coverage of the repeated confidence interval reported at the look where the experiment
   stopped, against the naive fixed-sample interval on the same data (d = 1);
5. the published study's effect: runs per policy at stopping.

    python benchmarks/sequential_error.py            # 20,000 experiments per scenario
    python benchmarks/sequential_error.py --quick    # 2,000 (for a quick check)

The looks are vectorised over experiments with the same formulas as greenprec.sequential
(Welch's t on the log ratio for energy, Welch's t on the difference for accuracy, decisions read
off the interval at the look's nominal level, settled answers kept); ``--replay`` experiments
are replayed through ``greenprec.sequential.look`` itself and must agree exactly.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

from greenprec import stats
from greenprec.sequential import Question, SequentialDesign, look

# The published study (seed study, one FP32 outlier removed as the study did): means and SDs.
STUDY_ENERGY_J = (31_922.7, 27_909.7)
STUDY_ENERGY_CV = (0.00355, 0.00319)
STUDY_ACCURACY = (0.4662, 0.4566)  # -0.96 pp
STUDY_ACCURACY_SD = (0.0220, 0.0210)
MARGIN = 0.01  # ±1 pp of a fraction-scale accuracy

Pair = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Levels:
    """Per look (runs per policy min_runs..max_runs): the two-sided level of a difference
    question and the one-sided level of each side of an equivalence question."""

    two_sided: np.ndarray
    one_sided: np.ndarray


def exact_levels(design: SequentialDesign, questions: int) -> Levels:
    """greenprec's design: exact boundaries for the share alpha / questions."""
    share = design.alpha / questions
    two = [level for _, level in design.levels(alpha=share)]
    one = [level / 2 for _, level in design.levels(alpha=2 * share)]
    return Levels(np.array(two), np.array(one))


def increment_levels(design: SequentialDesign) -> Levels:
    """0.2.0's design: each look at its alpha increment, every question at the full alpha."""
    looks = range(design.min_runs, design.max_runs + 1)
    spent = np.array([design.spent(n) for n in looks])
    increments = np.diff(np.r_[0.0, spent])
    return Levels(increments, increments)


def naive_levels(design: SequentialDesign) -> Levels:
    n = design.max_runs - design.min_runs + 1
    return Levels(np.full(n, design.alpha), np.full(n, design.alpha))


@dataclass
class Outcome:
    """Per experiment: the runs per policy at which each question settled (0 = never), how,
    and the interval reported for energy at that look (or at the last look)."""

    energy_at: np.ndarray
    accuracy_at: np.ndarray
    accuracy_verdict: np.ndarray  # 0 open, 1 equivalent, 2 beyond the margin
    energy_low: np.ndarray  # log scale
    energy_high: np.ndarray


def _cumulative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running means and SDs (ddof=1) over the first n runs, for n = 1..N (columns)."""
    n = np.arange(1, x.shape[1] + 1)
    mean = np.cumsum(x, axis=1) / n
    centred = x - x[:, :1]
    s1 = np.cumsum(centred, axis=1)
    s2 = np.cumsum(centred * centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / n) / (n - 1)
    return mean, np.sqrt(np.maximum(var, 0.0))


def _welch(ua: np.ndarray, ub: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    var = ua + ub
    df = var * var / (ua * ua / (n - 1) + ub * ub / (n - 1))
    return np.sqrt(var), df


def simulate(
    design: SequentialDesign,
    levels: Levels,
    energy: Pair | None,
    accuracy: Pair | None,
) -> Outcome:
    """Run the design's looks over simulated experiments (rows) of up to max_runs runs."""
    reps = (energy or accuracy)[0].shape[0]  # type: ignore[index]
    energy_at = np.zeros(reps, dtype=np.int64)
    accuracy_at = np.zeros(reps, dtype=np.int64)
    verdict = np.zeros(reps, dtype=np.int64)
    low = np.full(reps, np.nan)
    high = np.full(reps, np.nan)
    if energy is not None:
        ea, sa = _cumulative(energy[0])
        eb, sb = _cumulative(energy[1])
    if accuracy is not None:
        aa, asd = _cumulative(accuracy[0])
        ab, bsd = _cumulative(accuracy[1])
    for i, n in enumerate(range(design.min_runs, design.max_runs + 1)):
        k = n - 1
        if energy is not None:
            est = np.log(eb[:, k] / ea[:, k])
            se, df = _welch((sa[:, k] / ea[:, k]) ** 2 / n, (sb[:, k] / eb[:, k]) ** 2 / n, n)
            half = sp.t.isf(levels.two_sided[i] / 2, df) * se
            open_ = energy_at == 0
            new = open_ & (np.abs(est) > half)
            energy_at[new] = n
            # The interval reported: at the look that settled it, else the latest look.
            low[open_], high[open_] = (est - half)[open_], (est + half)[open_]
        if accuracy is not None:
            diff = ab[:, k] - aa[:, k]
            se, df = _welch(asd[:, k] ** 2 / n, bsd[:, k] ** 2 / n, n)
            half = sp.t.isf(levels.one_sided[i], df) * se
            equivalent = (diff - half > -MARGIN) & (diff + half < MARGIN)
            beyond = (diff + half < -MARGIN) | (diff - half > MARGIN)
            open_ = accuracy_at == 0
            verdict[open_ & equivalent] = 1
            verdict[open_ & beyond] = 2
            accuracy_at[open_ & (equivalent | beyond)] = n
    return Outcome(energy_at, accuracy_at, verdict, low, high)


def stopping_runs(outcomes: list[Outcome], max_runs: int) -> np.ndarray:
    """Runs per policy at which the experiment stops: every question settled, or max_runs."""
    at = np.zeros_like(outcomes[0].energy_at)
    for out in outcomes:
        for settled_at, asked in ((out.energy_at, True), (out.accuracy_at, True)):
            if asked and settled_at is not None:
                at = np.maximum(at, np.where(settled_at > 0, settled_at, max_runs))
    return at


def _energy(
    rng: np.random.Generator, reps: int, n: int, means: tuple[float, ...], cvs: tuple[float, ...]
) -> list[np.ndarray]:
    # Log-normal with the given CV: sigma^2 = ln(1 + CV^2), mean kept exact.
    out = []
    for mean, cv in zip(means, cvs, strict=True):
        sigma = math.sqrt(math.log1p(cv * cv))
        out.append(mean * np.exp(rng.normal(-sigma * sigma / 2, sigma, size=(reps, n))))
    return out


def _accuracy(
    rng: np.random.Generator, reps: int, n: int, means: tuple[float, ...], sds: tuple[float, ...]
) -> list[np.ndarray]:
    return [rng.normal(mean, sd, size=(reps, n)) for mean, sd in zip(means, sds, strict=True)]


def _replay(design: SequentialDesign, energy: Pair, accuracy: Pair, count: int) -> None:
    """The vectorised rule must be the library's: replay ``count`` experiments through look()
    (one policy besides the reference, two questions: alpha / 2 each)."""
    questions = [
        Question("energy_j", "fp32", "mixed", "difference", log_scale=True),
        Question(
            "test_accuracy", "fp32", "mixed", "equivalence", margin=stats.DEFAULT_ACCURACY_MARGIN
        ),
    ]
    outcome = simulate(design, exact_levels(design, 2), energy, accuracy)
    names = {1: "equivalent", 2: "beyond margin"}
    expected_stop = stopping_runs([outcome], design.max_runs)
    for i in range(count):
        looks: list[int] = []
        answers: list = []  # type: ignore[type-arg]
        for n in range(design.min_runs, design.max_runs + 1):
            data = {
                "energy_j": {"fp32": energy[0][i, :n], "mixed": energy[1][i, :n]},
                "test_accuracy": {"fp32": accuracy[0][i, :n], "mixed": accuracy[1][i, :n]},
            }
            result = look(design, n, looks, data, questions, settled=answers)  # type: ignore[arg-type]
            looks, answers = [*looks, n], result.answers
            if result.stop:
                break
        energy_answer, accuracy_answer = result.answers
        assert energy_answer.settled == (0 < outcome.energy_at[i] <= n), (i, n)
        acc_settled = 0 < outcome.accuracy_at[i] <= n
        assert accuracy_answer.settled == acc_settled, (i, n)
        if acc_settled:
            assert accuracy_answer.verdict == names[int(outcome.accuracy_verdict[i])], i
        assert n == expected_stop[i], (i, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=20_000, help="experiments per scenario")
    parser.add_argument("--quick", action="store_true", help="2,000 experiments per scenario")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--max-runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--replay", type=int, default=200, help="experiments checked via look()")
    args = parser.parse_args()
    reps = 2_000 if args.quick else args.reps
    replay = min(args.replay, 50) if args.quick else args.replay
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    alpha, N = args.alpha, args.max_runs
    se = math.sqrt(alpha * (1 - alpha) / reps)
    bound = alpha + 3 * se
    design = SequentialDesign(alpha=alpha, min_runs=args.min_runs, max_runs=N)
    pocock = SequentialDesign(alpha=alpha, min_runs=args.min_runs, max_runs=N, spending="pocock")
    one = {
        "exact boundaries, O'Brien-Fleming-type (greenprec)": exact_levels(design, 1),
        "exact boundaries, Pocock-type": exact_levels(pocock, 1),
        "each look at its alpha increment, O'Brien-Fleming-type (0.2.0)": increment_levels(design),
        f"naive: every look at alpha {alpha:g}": naive_levels(design),
    }
    print(
        f"{reps:,} simulated experiments per scenario, looks after every run from "
        f"{args.min_runs} to {N} runs per policy, alpha {alpha:g} (Monte Carlo SE of a rate "
        f"near alpha: {se:.4f}; checked bound alpha + 3 SE = {bound:.4f}). Nominal level of "
        "the last "
        f"look: {one[next(iter(one))].two_sided[-1]:.4f} (exact boundaries) against "
        f"{increment_levels(design).two_sided[-1]:.4f} (increment)."
    )

    # 1 and 2: one question, energy.
    null = _energy(rng, reps, N, (32_000.0, 32_000.0), (0.01, 0.01))
    small = _energy(rng, reps, N, (32_000.0, 32_000.0 * 0.99), (0.01, 0.01))
    print("\n### One question: energy (log-normal, CV 1 %)\n")
    print(
        "| design | false positive rate (no difference) | power at −1 % (d = 1) | "
        "mean runs at stopping (d = 1) |"
    )
    print("| --- | ---: | ---: | ---: |")
    for name, levels in one.items():
        false = simulate(design, levels, (null[0], null[1]), None)
        rate = float(np.mean(false.energy_at > 0))
        if "naive" not in name:
            assert rate <= bound, (name, rate)
        power = simulate(design, levels, (small[0], small[1]), None)
        runs = np.where(power.energy_at > 0, power.energy_at, N)
        print(f"| {name} | {rate:.4f} | {np.mean(power.energy_at > 0):.3f} | {runs.mean():.1f} |")
    fixed_small = stats.runs_needed(1.0, -1.0)
    for n_fixed in (fixed_small, design.fixed_runs(), N):
        rates = []
        for data in (null, small):
            test = stats.welch_log_ratio(
                data[0][:, :n_fixed].mean(axis=1),
                data[0][:, :n_fixed].std(axis=1, ddof=1),
                n_fixed,
                data[1][:, :n_fixed].mean(axis=1),
                data[1][:, :n_fixed].std(axis=1, ddof=1),
                n_fixed,
                alpha=alpha,
            )
            rates.append(float(np.mean(test.significant)))
        print(
            f"| fixed, one test at {n_fixed} runs | {rates[0]:.4f} | {rates[1]:.3f} | {n_fixed} |"
        )
    print(
        f"\n{fixed_small} runs: 80 % power by `stats.runs_needed`; {design.fixed_runs()}: the "
        "fixed design with the power of the exact-boundary design (`SequentialDesign.fixed_runs`)."
    )

    # 3. The family: 3 policies x 2 questions.
    print(
        "\n### The family: 3 policies (2 besides the reference) × 2 questions, no energy "
        "difference, accuracy difference at the margin (−1 pp, SD 0.5 pp)\n"
    )
    print("| design | family-wise error | false 'different' (energy) | false 'equivalent' |")
    print("| --- | ---: | ---: | ---: |")
    family = {
        "exact boundaries, alpha / 4 per question (greenprec)": exact_levels(design, 4),
        "exact boundaries, full alpha per question (no split)": exact_levels(design, 1),
        "each look at its increment, full alpha per question (0.2.0)": increment_levels(design),
    }
    energies = _energy(rng, reps, N, (32_000.0,) * 3, (0.01,) * 3)
    accuracies = _accuracy(rng, reps, N, (0.466, 0.466 - MARGIN, 0.466 - MARGIN), (0.005,) * 3)
    for name, levels in family.items():
        any_energy = np.zeros(reps, dtype=bool)
        any_equivalent = np.zeros(reps, dtype=bool)
        for policy in (1, 2):
            out = simulate(
                design,
                levels,
                (energies[0], energies[policy]),
                (accuracies[0], accuracies[policy]),
            )
            any_energy |= out.energy_at > 0
            any_equivalent |= out.accuracy_verdict == 1
        fwer = float(np.mean(any_energy | any_equivalent))
        if "greenprec" in name or "0.2.0" in name:
            assert fwer <= bound, (name, fwer)
        print(
            f"| {name} | {fwer:.4f} | {np.mean(any_energy):.4f} | {np.mean(any_equivalent):.4f} |"
        )

    # 4. Coverage of the interval reported at stopping.
    print("\n### Coverage of the energy interval reported where the experiment stopped (d = 1)\n")
    truth = math.log(0.99)
    out = simulate(design, one[next(iter(one))], (small[0], small[1]), None)
    covered = (out.energy_low <= truth) & (truth <= out.energy_high)
    at = np.where(out.energy_at > 0, out.energy_at, N)
    idx = np.arange(reps)
    ma = np.cumsum(small[0], axis=1)[idx, at - 1] / at
    mb = np.cumsum(small[1], axis=1)[idx, at - 1] / at
    sa = np.array([small[0][i, : at[i]].std(ddof=1) for i in range(reps)])
    sb = np.array([small[1][i, : at[i]].std(ddof=1) for i in range(reps)])
    fixed = stats.welch_log_ratio(ma, sa, at, mb, sb, at, alpha=alpha)
    naive_cov = (np.log1p(fixed.ci_lo_pct / 100) <= truth) & (
        truth <= np.log1p(fixed.ci_hi_pct / 100)
    )
    early = at < N
    estimate = np.log(mb / ma)
    print("| interval | coverage | coverage when stopped early |")
    print("| --- | ---: | ---: |")
    print(f"| repeated CI (greenprec) | {covered.mean():.4f} | {covered[early].mean():.4f} |")
    print(
        f"| fixed-sample 95 % CI at the stop | {naive_cov.mean():.4f} | "
        f"{naive_cov[early].mean():.4f} |"
    )
    print(
        f"\nMean estimate when stopped early: {100 * np.expm1(estimate[early].mean()):+.2f} % "
        f"(truth −1.00 %): biased away from zero, as an estimate from a design that stopped "
        "because it was large."
    )

    # 5. The study's effect.
    print(f"\n### Runs per policy at stopping under the study's effect (max_runs {N})\n")
    energy = _energy(rng, reps, N, STUDY_ENERGY_J, STUDY_ENERGY_CV)
    accuracy = _accuracy(rng, reps, N, STUDY_ACCURACY, STUDY_ACCURACY_SD)
    print(
        "| design | questions | mean | median | 5th–95th pct | stopped early | "
        "accuracy: equivalent / beyond the margin / open |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, des in (("O'Brien-Fleming-type", design), ("Pocock-type", pocock)):
        alone = simulate(des, exact_levels(des, 1), (energy[0], energy[1]), None)
        both = simulate(
            des, exact_levels(des, 2), (energy[0], energy[1]), (accuracy[0], accuracy[1])
        )
        for label, out, runs in (
            ("energy only", alone, np.where(alone.energy_at > 0, alone.energy_at, N)),
            ("energy + accuracy ±1 pp", both, stopping_runs([both], N)),
        ):
            lo, hi = np.percentile(runs, [5, 95])
            shares = (
                " / ".join(f"{np.mean(out.accuracy_verdict == v):.3f}" for v in (1, 2, 0))
                if label != "energy only"
                else "—"
            )
            print(
                f"| {name} | {label} | {runs.mean():.2f} | {np.median(runs):g} | {lo:g}–{hi:g} "
                f"| {np.mean(runs < N):.3f} | {shares} |"
            )
    if replay:
        _replay(design, (energy[0], energy[1]), (accuracy[0], accuracy[1]), min(replay, reps))
        _replay(design, (small[0], small[1]), (accuracy[0], accuracy[1]), min(replay, reps))
        print(f"\n{min(replay, reps)} experiments per scenario replayed through look(): identical.")
    print(f"\n{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
