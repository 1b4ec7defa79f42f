"""The group-sequential design (greenprec.sequential): spending, levels, looks and the
stopping rule on synthetic streams."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.sequential import (
    Look,
    Question,
    SequentialDesign,
    boundaries,
    fixed_runs_same_power,
    look,
    spending,
)
from greenprec.stats import DEFAULT_ACCURACY_MARGIN, parse_margin

ENERGY = Question("energy_j", "fp32", "mixed", "difference", log_scale=True)
ACCURACY = Question("test_accuracy", "fp32", "mixed", "equivalence", margin=DEFAULT_ACCURACY_MARGIN)


def _stream(
    seed: int,
    *,
    energy_change: float = -0.126,
    energy_cv: float = 0.0035,
    accuracy_shift: float = 0.0,
    accuracy_sd: float = 0.001,
    max_runs: int = 30,
) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    fp32_j = 32_000.0 * np.exp(rng.normal(0, energy_cv, max_runs))
    mixed_j = 32_000.0 * (1 + energy_change) * np.exp(rng.normal(0, energy_cv, max_runs))
    return {
        "energy_j": {"fp32": fp32_j, "mixed": mixed_j},
        "test_accuracy": {
            "fp32": rng.normal(0.466, accuracy_sd, max_runs),
            "mixed": rng.normal(0.466 + accuracy_shift, accuracy_sd, max_runs),
        },
    }


def _run(
    design: SequentialDesign, stream: dict[str, dict[str, np.ndarray]], questions: list[Question]
) -> list[Look]:
    looks: list[Look] = []
    previous: int | None = None
    for n in range(design.min_runs, design.max_runs + 1):
        data = {m: {p: v[:n].tolist() for p, v in by.items()} for m, by in stream.items()}
        result = look(
            design, n, previous, data, questions, settled=looks[-1].answers if looks else ()
        )
        looks.append(result)
        previous = n
        if result.stop:
            break
    return looks


# -- the design ------------------------------------------------------------------------------------


def test_spending_functions() -> None:
    assert spending(0.0, 0.05) == 0.0
    assert spending(1.0, 0.05) == pytest.approx(0.05)
    assert spending(1.0, 0.05, "pocock") == pytest.approx(0.05)
    # O'Brien-Fleming-type at t = 0.5: 2 - 2 Phi(1.959964 / sqrt(0.5)) = 0.00557.
    assert spending(0.5, 0.05) == pytest.approx(0.005575, abs=1e-5)
    assert spending(0.5, 0.05, "pocock") == pytest.approx(0.05 * math.log(1 + (math.e - 1) / 2))
    ts = np.linspace(0, 1, 51)
    for kind in ("obrien-fleming", "pocock"):
        spent = [spending(float(t), 0.05, kind) for t in ts]  # type: ignore[arg-type]
        assert all(x <= y for x, y in itertools.pairwise(spent))
    with pytest.raises(ConfigError):
        spending(1.5, 0.05)
    with pytest.raises(ConfigError):
        spending(0.5, 0.05, "haybittle")  # type: ignore[arg-type]


def test_boundaries_match_published_values() -> None:
    """Lan–DeMets spending with exact boundaries (Jennison & Turnbull 2000, ch. 7 and 19)."""
    # Pocock-type spending, 5 equally spaced looks, two-sided alpha 0.05.
    pocock = boundaries([0.2, 0.4, 0.6, 0.8, 1.0], 0.05, "pocock")
    assert pocock == pytest.approx([2.438, 2.427, 2.410, 2.397, 2.386], abs=1.5e-3)
    # The first look spends alpha(t1) on its own: c1 = z(1 - alpha(t1) / 2) exactly.
    obf = boundaries([1 / 3, 2 / 3, 1.0], 0.05)
    assert obf[0] == pytest.approx(float(norm.isf(0.025)) * math.sqrt(3), rel=1e-9)
    assert obf[1] > obf[2] > 1.959964  # the last look is above the fixed-sample value
    with pytest.raises(ConfigError, match="increase"):
        boundaries([0.5, 0.5], 0.05)


@pytest.mark.parametrize("kind", ["obrien-fleming", "pocock"])
def test_each_look_spends_exactly_its_alpha_increment(kind: str) -> None:
    """Brownian motion under H0 crosses the boundaries at look k, not before, with
    probability alpha(t_k) - alpha(t_{k-1}) (looks at 3, 5, 6, ..., 12 of 12: one skipped)."""
    design = SequentialDesign(max_runs=12, spending=kind)  # type: ignore[arg-type]
    looks = [3, 5, 6, 7, 8, 9, 10, 11, 12]
    times = np.array([n / 12 for n in looks])
    critical = np.array(boundaries(times, 0.05, kind))  # type: ignore[arg-type]
    rng = np.random.default_rng(11)
    paths = 400_000
    steps = rng.normal(size=(paths, times.size)) * np.sqrt(np.diff(np.r_[0.0, times]))
    z = np.cumsum(steps, axis=1) / np.sqrt(times)
    crossed = np.abs(z) >= critical
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    observed = np.bincount(first[first >= 0], minlength=times.size) / paths
    expected = np.diff(np.r_[0.0, [design.spent(n) for n in looks]])
    se = np.sqrt(expected / paths)
    assert np.all(np.abs(observed - expected) < 4 * se + 1e-5)
    assert observed.sum() == pytest.approx(0.05, abs=4 * math.sqrt(0.05 / paths))


@pytest.mark.parametrize("kind", ["obrien-fleming", "pocock"])
def test_levels_are_the_nominal_levels_of_the_boundaries(kind: str) -> None:
    design = SequentialDesign(max_runs=30, spending=kind)  # type: ignore[arg-type]
    levels = design.levels()
    assert [n for n, _ in levels] == list(range(3, 31))
    assert all(0 < level < 0.05 for _, level in levels)
    # The first look is tested at alpha(t1); later looks at 2(1 - Phi(c_k)), more than the
    # increment alpha(t_k) - alpha(t_{k-1}) that 0.2.0 tested at.
    assert design.level_at(3, None) == pytest.approx(design.spent(3), rel=1e-9)
    sparse = design.levels([3, 10, 20, 30])
    assert sparse[1][1] > design.spent(10) - design.spent(3)
    assert design.level_at(20, [3, 10]) == pytest.approx(sparse[2][1], rel=1e-12)
    assert design.level_at(8, 7) == pytest.approx(design.level_at(8, [3, 4, 5, 6, 7]))
    assert "exact boundaries" in design.method and "Bonferroni" in design.method
    # A one-sided level is half the two-sided level of the design for twice the alpha.
    assert design.level_at(10, 9, alpha=0.01, sides=1) == pytest.approx(
        design.level_at(10, 9, alpha=0.02) / 2
    )


@pytest.mark.slow
def test_the_last_look_is_nearly_a_fixed_sample_test() -> None:
    """0.2.0 tested the last of the looks 3..30 at its alpha increment, 0.0038."""
    design = SequentialDesign(max_runs=30)
    last = design.levels()[-1][1]
    assert 0.025 < last < 0.05
    # Its maximum is close to the runs of a fixed design of the same power.
    assert 26 <= design.fixed_runs() <= 30
    assert design.fixed_runs(alpha=0.0125) <= 30


def test_design_validation() -> None:
    with pytest.raises(ConfigError, match="min_runs"):
        SequentialDesign(max_runs=5, min_runs=6)
    with pytest.raises(ConfigError, match="max_runs"):
        SequentialDesign(max_runs=1)
    with pytest.raises(ConfigError, match="alpha"):
        SequentialDesign(max_runs=10, alpha=0.7)
    with pytest.raises(ConfigError, match="spending"):
        SequentialDesign(max_runs=10, spending="linear")  # type: ignore[arg-type]
    design = SequentialDesign(max_runs=10)
    with pytest.raises(ConfigError, match="no look before 3"):
        design.level_at(2, None)
    with pytest.raises(ConfigError, match="before this one"):
        design.level_at(5, 5)
    with pytest.raises(ConfigError, match="maximum"):
        design.level_at(11, 10)


def test_no_look_before_min_runs() -> None:
    design = SequentialDesign(max_runs=10, min_runs=4)
    data = {"energy_j": {"fp32": [1.0, 2.0, 3.0], "mixed": [1.0, 2.0, 3.0]}}
    with pytest.raises(ConfigError, match="no look before 4"):
        look(design, 3, None, data, [ENERGY])
    with pytest.raises(ConfigError, match="question"):
        look(design, 4, None, data, [])


def test_question_validation() -> None:
    with pytest.raises(ConfigError, match="needs a margin"):
        Question("test_accuracy", "fp32", "mixed", "equivalence")
    with pytest.raises(ConfigError, match="noninferiority"):
        Question(
            "test_accuracy",
            "fp32",
            "mixed",
            "equivalence",
            margin=parse_margin("test_accuracy=-1pp"),
        )
    with pytest.raises(ConfigError, match="two policies"):
        Question("energy_j", "fp32", "fp32", "difference")


# -- the stopping rule -----------------------------------------------------------------------------


def test_a_huge_effect_stops_at_min_runs() -> None:
    design = SequentialDesign(max_runs=30, spending="pocock")
    looks = _run(design, _stream(1, energy_change=-0.5, energy_cv=0.0005), [ENERGY])
    assert len(looks) == 1 and looks[0].stop and looks[0].settled
    assert looks[0].runs_per_policy == 3
    assert looks[0].answers[0].verdict == "different"
    assert looks[0].reason.startswith("every question is settled after 3 runs per policy: ")
    assert "energy_j mixed vs fp32 different (p = " in looks[0].reason


def test_the_study_effect_settles_energy_different() -> None:
    looks = _run(SequentialDesign(max_runs=30), _stream(2), [ENERGY])
    last = looks[-1]
    assert last.settled and last.answers[0].verdict == "different"
    assert last.runs_per_policy < 10
    assert last.answers[0].p is not None and last.answers[0].p < last.level


def test_no_effect_runs_to_the_maximum() -> None:
    design = SequentialDesign(max_runs=12)
    looks = _run(design, _stream(3, energy_change=0.0, energy_cv=0.01), [ENERGY])
    last = looks[-1]
    assert last.runs_per_policy == 12 and last.stop and not last.settled
    assert last.reason == (
        "the maximum of 12 runs per policy was reached with energy_j mixed vs fp32 still open"
    )
    assert all(not one.stop for one in looks[:-1])
    assert "still open (tested at level" in looks[0].reason


def test_equivalence_settles_with_small_sd() -> None:
    looks = _run(SequentialDesign(max_runs=30), _stream(4, accuracy_sd=0.001), [ENERGY, ACCURACY])
    last = looks[-1]
    assert last.settled
    verdicts = {a.metric: a.verdict for a in last.answers}
    assert verdicts == {"energy_j": "different", "test_accuracy": "equivalent"}
    accuracy = next(a for a in last.answers if a.metric == "test_accuracy")
    assert accuracy.margin_abs == pytest.approx(0.01)
    assert "test_accuracy mixed vs fp32 equivalent within ±1 pp (p = " in last.reason


def test_equivalence_question_settles_different_for_a_large_difference() -> None:
    stream = _stream(5, accuracy_shift=-0.05, accuracy_sd=0.002)
    last = _run(SequentialDesign(max_runs=30), stream, [ACCURACY])[-1]
    assert last.settled
    answer = last.answers[0]
    # Read off the one 1 - 2 alpha' interval: wholly below -1 pp; never "different".
    assert answer.verdict == "beyond margin"
    assert answer.ci_high is not None and answer.ci_high < -0.01
    assert "test_accuracy mixed vs fp32 lower by more than 1 pp (p = " in last.reason


@pytest.mark.slow
def test_accuracy_of_the_study_stays_open() -> None:
    """SD 2.2 pp and a true difference of -0.96 pp: equivalence within 1 pp cannot be shown."""
    stream = _stream(6, accuracy_shift=-0.0096, accuracy_sd=0.022)
    last = _run(SequentialDesign(max_runs=30), stream, [ENERGY, ACCURACY])[-1]
    accuracy = next(a for a in last.answers if a.metric == "test_accuracy")
    assert not accuracy.settled and accuracy.verdict is None
    assert last.runs_per_policy == 30 and last.stop and not last.settled
    assert "the maximum of 30 runs per policy was reached with test_accuracy" in last.reason
    assert "settled: energy_j mixed vs fp32 different" in last.reason


@pytest.mark.parametrize(
    ("shift", "verdict"),
    [(0.0, "not worse"), (-0.03, "worse")],
)
def test_noninferiority(shift: float, verdict: str) -> None:
    question = Question(
        "test_accuracy",
        "fp32",
        "mixed",
        "noninferiority",
        margin=parse_margin("test_accuracy=-1pp"),
    )
    last = _run(SequentialDesign(max_runs=30), _stream(7, accuracy_shift=shift), [question])[-1]
    assert last.settled and last.answers[0].verdict == verdict
    if verdict == "worse":
        assert "worse than −1 pp" in last.reason and "different" not in last.reason
    else:
        assert "not worse than −1 pp" in last.reason


def test_settled_answers_are_carried() -> None:
    design = SequentialDesign(max_runs=30)
    stream = _stream(8)
    first = _run(design, stream, [ENERGY])[-1]
    assert first.settled
    # The next look would test at a new, tiny level; the answer is kept instead.
    n = first.runs_per_policy + 1
    data = {m: {p: v[:n].tolist() for p, v in by.items()} for m, by in stream.items()}
    again = look(design, n, first.runs_per_policy, data, [ENERGY, ACCURACY], settled=first.answers)
    energy = again.answers[0]
    assert energy.carried and energy.verdict == "different" and energy.p == first.answers[0].p
    assert not again.answers[1].carried


def test_missing_data_leaves_a_question_open() -> None:
    design = SequentialDesign(max_runs=5)
    data = {"energy_j": {"fp32": [1.0, 1.1, 0.9], "mixed": [0.5, 0.6, 0.55]}}
    result = look(design, 5, None, data, [ENERGY, ACCURACY])
    accuracy = result.answers[1]
    assert not accuracy.settled and accuracy.not_computed == "no values of test_accuracy"
    assert result.stop and "maximum of 5" in result.reason
    json.dumps(result.to_dict())


def test_the_level_is_the_designs() -> None:
    design = SequentialDesign(max_runs=20)
    stream = _stream(9, energy_change=-0.01, energy_cv=0.01)
    data = {m: {p: v[:8].tolist() for p, v in by.items()} for m, by in stream.items()}
    result = look(design, 8, 6, data, [ENERGY])
    assert result.level == pytest.approx(design.level_at(8, [3, 4, 5, 6]), rel=1e-12)
    assert result.answers[0].level == result.level
    assert result.alpha_spent == pytest.approx(design.spent(8))
    assert result.information == pytest.approx(0.4)
    p = result.answers[0].p
    assert p is not None
    assert result.answers[0].settled == (p < result.level)
    # The p-value is the primary test's, as compare_groups computes it.
    compare = stats.compare_groups(data["energy_j"]["fp32"], data["energy_j"]["mixed"])
    assert p == pytest.approx(compare.log_ratio_p, rel=1e-12)
    # Its repeated CI is the log-ratio interval at the look's nominal level, in %.
    fp32, mixed = np.asarray(data["energy_j"]["fp32"]), np.asarray(data["energy_j"]["mixed"])
    test = stats.welch_log_ratio(
        fp32.mean(), fp32.std(ddof=1), 8, mixed.mean(), mixed.std(ddof=1), 8, alpha=result.level
    )
    answer = result.answers[0]
    assert answer.scale == "percent" and answer.confidence == pytest.approx(1 - result.level)
    assert answer.ci_low == pytest.approx(float(test.ci_lo_pct), rel=1e-9)
    assert answer.ci_high == pytest.approx(float(test.ci_hi_pct), rel=1e-9)
    assert answer.estimate == pytest.approx(100 * (mixed.mean() / fp32.mean() - 1), rel=1e-9)


def test_alpha_is_split_over_the_family() -> None:
    """Two policies besides the reference, two questions each: each question spends 0.05 / 4
    (0.2.0 tested every question at the full alpha)."""
    design = SequentialDesign(max_runs=20)
    stream = _stream(12)
    data = {m: {p: v[:6].tolist() for p, v in by.items()} for m, by in stream.items()}
    for metric in data:
        data[metric]["bf16"] = data[metric]["mixed"]
    questions = [
        ENERGY,
        ACCURACY,
        Question("energy_j", "fp32", "bf16", "difference", log_scale=True),
        Question("test_accuracy", "fp32", "bf16", "equivalence", margin=DEFAULT_ACCURACY_MARGIN),
    ]
    result = look(design, 6, 5, data, questions)
    assert result.alpha_share == pytest.approx(0.0125)
    assert result.level == pytest.approx(design.level_at(6, 5, alpha=0.0125), rel=1e-12)
    alone = look(design, 6, 5, data, [ENERGY])
    assert result.level < alone.level
    for answer in result.answers:
        expected = design.level_at(
            6, 5, alpha=0.0125, sides=2 if answer.kind == "difference" else 1
        )
        assert answer.level == pytest.approx(expected, rel=1e-12)


def test_a_carried_answer_keeps_the_level_and_interval_it_was_settled_at() -> None:
    design = SequentialDesign(max_runs=30)
    stream = _stream(8)
    first = _run(design, stream, [ENERGY])[-1]
    settled = first.answers[0]
    assert settled.settled and settled.settled_at == first.runs_per_policy
    n = first.runs_per_policy + 1
    data = {m: {p: v[:n].tolist() for p, v in by.items()} for m, by in stream.items()}
    previous = list(range(3, n))
    again = look(design, n, previous, data, [ENERGY, ACCURACY], settled=first.answers)
    carried = again.answers[0]
    assert carried.carried
    assert carried.level == settled.level != again.level  # 0.2.0 showed the current level
    assert (carried.ci_low, carried.ci_high) == (settled.ci_low, settled.ci_high)
    assert carried.settled_at == first.runs_per_policy


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**31), st.floats(min_value=-0.05, max_value=0.05))
def test_look_is_consistent(seed: int, shift: float) -> None:
    design = SequentialDesign(max_runs=10, spending="pocock")
    stream = _stream(seed, accuracy_shift=shift, accuracy_sd=0.01, max_runs=10)
    data = {m: {p: v[:6].tolist() for p, v in by.items()} for m, by in stream.items()}
    result = look(design, 6, 4, data, [ENERGY, ACCURACY])
    assert result.settled == all(a.settled for a in result.answers)
    assert result.stop == result.settled
    for answer in result.answers:
        assert answer.settled == (answer.verdict is not None)
        assert answer.verdict in (
            None,
            "different",
            "equivalent",
            "beyond margin",
            "not worse",
            "worse",
        )
        if answer.verdict in ("equivalent", "beyond margin"):
            assert answer.kind == "equivalence"
        if answer.p is not None:
            assert (answer.p < answer.level) == answer.settled
        # The decision is read off the interval shown with it.
        if answer.ci_low is not None and answer.ci_high is not None:
            margin = answer.margin_abs
            if answer.verdict == "different":
                assert answer.ci_low > 0 or answer.ci_high < 0
            elif answer.verdict == "equivalent":
                assert margin is not None and -margin < answer.ci_low < answer.ci_high < margin
            elif answer.verdict == "beyond margin":
                assert margin is not None
                assert answer.ci_high < -margin or answer.ci_low > margin
            elif answer.kind == "difference":
                assert answer.ci_low <= 0 <= answer.ci_high


# -- fixed design comparison -----------------------------------------------------------------------


def test_fixed_runs_same_power() -> None:
    rng = np.random.default_rng(10)
    fp32 = 32_000 * (1 + rng.normal(0, 0.01, 5))
    mixed = 28_000 * (1 + rng.normal(0, 0.01, 5))
    n = fixed_runs_same_power(fp32, mixed)
    assert n is not None and n >= 2
    pooled = math.sqrt((np.var(fp32, ddof=1) + np.var(mixed, ddof=1)) / 2)
    change = 100 * (mixed.mean() / fp32.mean() - 1)
    assert n == stats.runs_needed(100 * pooled / fp32.mean(), change)
    assert fixed_runs_same_power([1.0], [2.0, 3.0]) is None
    assert fixed_runs_same_power([1.0, 1.0], [1.0, 1.0]) is None
    small = fixed_runs_same_power([100.0, 101, 99, 100], [100.5, 101.5, 99.5, 100.5])
    assert small is not None and small > 20


def test_the_benchmarks_vectorised_rule_is_the_librarys() -> None:
    """benchmarks/sequential_error.py simulates with its own vectorised looks; a few
    experiments replayed through look() must agree (the benchmark itself is not run here)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "sequential_error.py"
    spec = importlib.util.spec_from_file_location("sequential_error", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(13)
    design = SequentialDesign(max_runs=10)
    energy = bench._energy(rng, 30, 10, (32_000.0, 31_000.0), (0.01, 0.01))
    accuracy = bench._accuracy(rng, 30, 10, (0.466, 0.466), (0.003, 0.003))
    bench._replay(design, (energy[0], energy[1]), (accuracy[0], accuracy[1]), 30)
    levels = bench.exact_levels(design, 4)
    assert levels.two_sided[-1] == pytest.approx(design.level_at(10, 9, alpha=0.0125))


def test_margin_answers_are_worded_from_their_interval_never_different() -> None:
    """0.2.0 recorded and printed "different" for an equivalence question shown outside the
    margin and for non-inferiority shown worse; the wording is now the margin's."""
    from greenprec.report.prose import answer_text, answer_verdict
    from greenprec.results.models import AnswerRecord

    stream = _stream(5, accuracy_shift=-0.05, accuracy_sd=0.002)
    beyond = _run(SequentialDesign(max_runs=30), stream, [ACCURACY])[-1].answers[0]
    worse_q = Question(
        "test_accuracy",
        "fp32",
        "mixed",
        "noninferiority",
        margin=parse_margin("test_accuracy=-1pp"),
    )
    worse = _run(SequentialDesign(max_runs=30), stream, [worse_q])[-1].answers[0]
    texts = []
    for answer in (beyond, worse):
        fields = answer.to_dict()
        fields["margin"] = fields.pop("margin_abs")
        record = AnswerRecord.model_validate(fields)
        texts.append((answer_verdict(record), answer_text(record)))
    assert texts[0][0] == "lower by more than 1 pp (0.0100)"
    assert texts[1][0] == "worse than −1 pp (−0.0100)"
    for _, text in texts:
        assert "different" not in text and "repeated CI" in text and " pp to " in text
