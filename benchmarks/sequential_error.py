"""Error rates and savings of stopping early (greenprec.sequential), by simulation.

Simulates whole adaptive experiments (a look after every run from ``--min-runs`` to
``--max-runs`` runs per policy, as ``greenprec compare --adaptive`` does) and measures:

1. under no difference (log-normal energies, CV 1 %): how often the energy question ends
   "different" (a false positive), against the design's alpha, and against testing every look
   at the full alpha ("naive"), which is what looking without a design does;
2. with the true accuracy difference equal to the margin (normal accuracies, SD 2 pp as in the
   study, and 0.5 pp where TOST has power): how often the equivalence question ends
   "equivalent" (a false equivalence);
3. under the published study's effect (energy −12.6 % at its CVs, accuracy −0.96 pp at its SDs):
   runs per policy at stopping, with max_runs 30, for energy alone and for energy plus accuracy
   equivalence within ±1 pp.

    python benchmarks/sequential_error.py            # 10,000 experiments per scenario, ~30 s
    python benchmarks/sequential_error.py --quick    # 2,000
    python benchmarks/sequential_error.py --figure docs/figures/sequential_stopping

The looks are vectorised over experiments with the same formulas as greenprec.sequential
(``welch_log_ratio`` for energy, Welch TOST and Welch's t for accuracy, each look at the level
``SequentialDesign.level_at`` gives, settled answers kept); 200 experiments per design are
replayed through ``greenprec.sequential.look`` itself and must agree exactly.
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


@dataclass
class Outcome:
    """Per experiment: the look (runs per policy) at which each question settled, and how."""

    energy_at: np.ndarray  # runs per policy at which energy settled "different"; 0 = never
    accuracy_at: np.ndarray  # runs at which accuracy settled; 0 = never
    accuracy_verdict: np.ndarray  # 0 open, 1 equivalent, 2 different


def _cumulative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running means and SDs (ddof=1) over the first n runs, for n = 1..N (columns)."""
    n = np.arange(1, x.shape[1] + 1)
    mean = np.cumsum(x, axis=1) / n
    # Welford-free but stable enough here: centre on the first value first.
    centred = x - x[:, :1]
    s1 = np.cumsum(centred, axis=1)
    s2 = np.cumsum(centred * centred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / n) / (n - 1)
    return mean, np.sqrt(np.maximum(var, 0.0))


def simulate(
    design: SequentialDesign,
    energy: tuple[np.ndarray, np.ndarray] | None,
    accuracy: tuple[np.ndarray, np.ndarray] | None,
    *,
    naive: bool = False,
) -> Outcome:
    """Run the design's looks over simulated experiments (rows) of up to max_runs runs."""
    reps = (energy or accuracy)[0].shape[0]  # type: ignore[index]
    energy_at = np.zeros(reps, dtype=np.int64)
    accuracy_at = np.zeros(reps, dtype=np.int64)
    verdict = np.zeros(reps, dtype=np.int64)
    if energy is not None:
        ea, sa = _cumulative(energy[0])
        eb, sb = _cumulative(energy[1])
    if accuracy is not None:
        aa, asd = _cumulative(accuracy[0])
        ab, bsd = _cumulative(accuracy[1])
    previous = None
    for n in range(design.min_runs, design.max_runs + 1):
        level = design.alpha if naive else design.level_at(n, previous)
        previous = n
        k = n - 1
        if energy is not None:
            test = stats.welch_log_ratio(ea[:, k], sa[:, k], n, eb[:, k], sb[:, k], n, alpha=level)
            new = (energy_at == 0) & test.significant
            energy_at[new] = n
        if accuracy is not None:
            diff = ab[:, k] - aa[:, k]
            ua, ub = asd[:, k] ** 2 / n, bsd[:, k] ** 2 / n
            se = np.sqrt(ua + ub)
            r = ua / (ua + ub)
            df = 1.0 / (r * r / (n - 1) + (1 - r) * (1 - r) / (n - 1))
            half = sp.t.isf(level, df) * se
            equivalent = (diff - half > -MARGIN) & (diff + half < MARGIN)
            different = np.abs(diff) > sp.t.isf(level / 2, df) * se
            open_ = accuracy_at == 0
            verdict[open_ & equivalent] = 1
            verdict[open_ & ~equivalent & different] = 2
            accuracy_at[open_ & (equivalent | different)] = n
    return Outcome(energy_at, accuracy_at, verdict)


def stopping_runs(outcome: Outcome, design: SequentialDesign, with_accuracy: bool) -> np.ndarray:
    """Runs per policy at which the experiment stops: every question settled, or max_runs."""
    at = np.where(outcome.energy_at > 0, outcome.energy_at, design.max_runs)
    if with_accuracy:
        acc = np.where(outcome.accuracy_at > 0, outcome.accuracy_at, design.max_runs)
        at = np.maximum(at, acc)
    return at


def _energy(
    rng: np.random.Generator,
    reps: int,
    n: int,
    means: tuple[float, float],
    cvs: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    # Log-normal with the given CV: sigma^2 = ln(1 + CV^2), mean kept exact.
    out = []
    for mean, cv in zip(means, cvs, strict=True):
        sigma = math.sqrt(math.log1p(cv * cv))
        out.append(mean * np.exp(rng.normal(-sigma * sigma / 2, sigma, size=(reps, n))))
    return out[0], out[1]


def _accuracy(
    rng: np.random.Generator,
    reps: int,
    n: int,
    means: tuple[float, float],
    sds: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    return (
        rng.normal(means[0], sds[0], size=(reps, n)),
        rng.normal(means[1], sds[1], size=(reps, n)),
    )


def _replay(
    design: SequentialDesign,
    energy: tuple[np.ndarray, np.ndarray],
    accuracy: tuple[np.ndarray, np.ndarray],
    outcome: Outcome,
    count: int,
) -> None:
    """The vectorised rule must be the library's: replay ``count`` experiments through look()."""
    questions = [
        Question("energy_j", "fp32", "mixed", "difference", log_scale=True),
        Question(
            "test_accuracy", "fp32", "mixed", "equivalence", margin=stats.DEFAULT_ACCURACY_MARGIN
        ),
    ]
    names = {1: "equivalent", 2: "different"}
    for i in range(count):
        previous, answers = None, []
        for n in range(design.min_runs, design.max_runs + 1):
            data = {
                "energy_j": {"fp32": energy[0][i, :n], "mixed": energy[1][i, :n]},
                "test_accuracy": {"fp32": accuracy[0][i, :n], "mixed": accuracy[1][i, :n]},
            }
            result = look(design, n, previous, data, questions, settled=answers)  # type: ignore[arg-type]
            previous, answers = n, result.answers
            if result.stop:
                break
        energy_answer, accuracy_answer = result.answers
        expected_energy = outcome.energy_at[i] > 0 and outcome.energy_at[i] <= n
        assert energy_answer.settled == expected_energy, (i, n)
        acc_settled = outcome.accuracy_at[i] > 0 and outcome.accuracy_at[i] <= n
        assert accuracy_answer.settled == acc_settled, (i, n)
        if acc_settled:
            assert accuracy_answer.verdict == names[int(outcome.accuracy_verdict[i])], i
        assert n == stopping_runs(outcome, design, True)[i], (i, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10_000, help="experiments per scenario")
    parser.add_argument("--quick", action="store_true", help="2,000 experiments per scenario")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--min-runs", type=int, default=3)
    parser.add_argument("--max-runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--replay", type=int, default=200, help="experiments checked via look()")
    parser.add_argument("--figure", help="write PATH.png and PATH.svg (needs matplotlib)")
    args = parser.parse_args()
    reps = 2_000 if args.quick else args.reps
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    se = math.sqrt(args.alpha * (1 - args.alpha) / reps)
    designs = {
        "O'Brien-Fleming-type": SequentialDesign(
            alpha=args.alpha, min_runs=args.min_runs, max_runs=args.max_runs
        ),
        "Pocock-type": SequentialDesign(
            alpha=args.alpha, min_runs=args.min_runs, max_runs=args.max_runs, spending="pocock"
        ),
    }
    N = args.max_runs
    print(
        f"{reps:,} simulated experiments per scenario, looks after every run from "
        f"{args.min_runs} to {N} runs per policy, alpha {args.alpha:g} "
        f"(Monte Carlo SE of a rate near alpha: {se:.4f}; bound alpha + 2 SE = "
        f"{args.alpha + 2 * se:.4f})"
    )

    # 1. No energy difference, CV 1 %.
    null_energy = _energy(rng, reps, N, (32_000.0, 32_000.0), (0.01, 0.01))
    print("\n### False 'different' for energy (no true difference, log-normal, CV 1 %)\n")
    print("| design | false positive rate | bound |")
    print("| --- | ---: | ---: |")
    curves: dict[str, np.ndarray] = {}
    for name, design in designs.items():
        out = simulate(design, null_energy, None)
        rate = float(np.mean(out.energy_at > 0))
        curves[name] = np.array(
            [
                np.mean((out.energy_at > 0) & (out.energy_at <= n))
                for n in range(args.min_runs, N + 1)
            ]
        )
        assert rate <= args.alpha + 2 * se, (name, rate)
        print(f"| {name} | {rate:.4f} | ≤ {args.alpha + 2 * se:.4f} |")
    naive = simulate(designs["O'Brien-Fleming-type"], null_energy, None, naive=True)
    naive_rate = float(np.mean(naive.energy_at > 0))
    curves["naive (alpha at every look)"] = np.array(
        [
            np.mean((naive.energy_at > 0) & (naive.energy_at <= n))
            for n in range(args.min_runs, N + 1)
        ]
    )
    fixed = stats.welch_log_ratio(
        null_energy[0].mean(axis=1),
        null_energy[0].std(axis=1, ddof=1),
        N,
        null_energy[1].mean(axis=1),
        null_energy[1].std(axis=1, ddof=1),
        N,
        alpha=args.alpha,
    )
    print(f"| naive: every look at alpha {args.alpha:g} | {naive_rate:.4f} | (no bound) |")
    print(f"| fixed: one test at {N} runs | {float(np.mean(fixed.significant)):.4f} | |")

    # 2. False equivalence: the true accuracy difference is the margin.
    print("\n### False 'equivalent' for accuracy (true difference = −1 pp = the margin)\n")
    print(
        "| design | SD | false equivalence rate | bound | equivalent when the true "
        "difference is 0 (power) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for sd in (0.02, 0.005):
        at_margin = _accuracy(rng, reps, N, (0.466, 0.466 - MARGIN), (sd, sd))
        same = _accuracy(rng, reps, N, (0.466, 0.466), (sd, sd))
        for name, design in designs.items():
            out = simulate(design, None, at_margin)
            rate = float(np.mean(out.accuracy_verdict == 1))
            assert rate <= args.alpha + 2 * se, (name, sd, rate)
            power = float(np.mean(simulate(design, None, same).accuracy_verdict == 1))
            print(
                f"| {name} | {100 * sd:g} pp | {rate:.4f} | ≤ {args.alpha + 2 * se:.4f} | "
                f"{power:.3f} |"
            )

    # 3. The study's effect.
    print(f"\n### Runs per policy at stopping under the study's effect (max_runs {N})\n")
    energy = _energy(rng, reps, N, STUDY_ENERGY_J, STUDY_ENERGY_CV)
    accuracy = _accuracy(rng, reps, N, STUDY_ACCURACY, STUDY_ACCURACY_SD)
    print(
        "| design | questions | mean | median | 5th–95th pct | min–max | stopped early | "
        "energy 'different' | accuracy: equivalent / different / open |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    histograms: dict[str, np.ndarray] = {}
    for name, design in designs.items():
        out = simulate(design, energy, accuracy)
        if args.replay:
            _replay(design, energy, accuracy, out, min(args.replay, reps))
        for with_accuracy in (False, True):
            runs = stopping_runs(out, design, with_accuracy)
            label = "energy + accuracy ±1 pp" if with_accuracy else "energy only"
            histograms[f"{name}, {label}"] = runs
            lo, hi = np.percentile(runs, [5, 95])
            shares = [np.mean(out.accuracy_verdict == v) for v in (1, 2, 0)]
            verdicts = " / ".join(f"{share:.3f}" for share in shares) if with_accuracy else "—"
            print(
                f"| {name} | {label} | {runs.mean():.2f} | {np.median(runs):g} | "
                f"{lo:g}–{hi:g} | {runs.min()}–{runs.max()} | {np.mean(runs < N):.3f} | "
                f"{np.mean(out.energy_at > 0):.4f} | {verdicts} |"
            )
    fixed_n = stats.runs_needed(
        100 * math.sqrt((STUDY_ENERGY_CV[0] ** 2 + STUDY_ENERGY_CV[1] ** 2) / 2),
        100 * (STUDY_ENERGY_J[1] / STUDY_ENERGY_J[0] - 1),
    )
    print(
        f"\nA fixed design needs {fixed_n} runs per policy for 80 % power against the study's "
        "energy effect (stats.runs_needed); TOST within ±1 pp at the study's accuracy SD needs "
        f"{stats.runs_needed_equivalence(0.0215, MARGIN)} per policy for 80 % power if the "
        f"true difference is 0, and {stats.runs_needed_equivalence(0.0215, MARGIN, -0.0096)} "
        "if it is the observed −0.96 pp."
    )

    # 4. A smaller effect, where a fixed design needs many runs: energy -1 % at CV 1 % (d = 1).
    print(f"\n### A 1 % energy change at CV 1 % (d = 1; max_runs {N})\n")
    fixed_small = stats.runs_needed(1.0, -1.0)
    print("| design | mean runs at stopping | median | shown 'different' (power) |")
    print("| --- | ---: | ---: | ---: |")
    small = _energy(rng, reps, N, (32_000.0, 32_000.0 * 0.99), (0.01, 0.01))
    for name, design in designs.items():
        out = simulate(design, small, None)
        runs = stopping_runs(out, design, False)
        print(
            f"| {name} | {runs.mean():.2f} | {np.median(runs):g} | "
            f"{np.mean(out.energy_at > 0):.3f} |"
        )
    for n_fixed in (fixed_small, N):
        test = stats.welch_log_ratio(
            small[0][:, :n_fixed].mean(axis=1),
            small[0][:, :n_fixed].std(axis=1, ddof=1),
            n_fixed,
            small[1][:, :n_fixed].mean(axis=1),
            small[1][:, :n_fixed].std(axis=1, ddof=1),
            n_fixed,
            alpha=args.alpha,
        )
        print(
            f"| fixed, {n_fixed} runs | {n_fixed} | {n_fixed} | "
            f"{float(np.mean(test.significant)):.3f} |"
        )
    print(f"\n{time.perf_counter() - started:.1f} s")
    if args.figure:
        _figure(args.figure, curves, histograms, args.min_runs, N, args.alpha)


def _figure(
    path: str,
    curves: dict[str, np.ndarray],
    histograms: dict[str, np.ndarray],
    min_runs: int,
    max_runs: int,
    alpha: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    looks = np.arange(min_runs, max_runs + 1)
    for name, curve in curves.items():
        left.step(looks, curve, where="post", label=name)
    left.axhline(alpha, color="grey", linestyle=":", linewidth=1)
    left.set_xlabel("runs per policy")
    left.set_ylabel("false 'different' so far")
    left.set_title("No true difference (energy, CV 1 %)")
    left.legend(fontsize=8)
    bins = np.arange(min_runs - 0.5, max_runs + 1.5)
    for name, runs in histograms.items():
        if "O'Brien" in name:
            right.hist(runs, bins=bins, histtype="step", label=name.split(", ")[1], linewidth=1.5)
    right.set_xlabel("runs per policy at stopping")
    right.set_ylabel("experiments")
    right.set_title("The study's effect, O'Brien-Fleming-type")
    right.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(f"{path}.{ext}", dpi=120)
    print(f"figure: {path}.png, {path}.svg")


if __name__ == "__main__":
    main()
