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

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.sequential import (
    Look,
    Question,
    SequentialDesign,
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


@pytest.mark.parametrize("kind", ["obrien-fleming", "pocock"])
def test_levels_add_up_to_alpha(kind: str) -> None:
    design = SequentialDesign(max_runs=30, spending=kind)  # type: ignore[arg-type]
    levels = design.levels()
    assert [n for n, _ in levels] == list(range(3, 31))
    assert all(level > 0 for _, level in levels)
    assert sum(level for _, level in levels) == pytest.approx(0.05)
    sparse = design.levels([3, 10, 20, 30])
    assert sum(level for _, level in sparse) == pytest.approx(0.05)
    assert sparse[1][1] == pytest.approx(design.spent(10) - design.spent(3))
    assert design.level_at(3, None) == design.spent(3)
    assert kind.split("-")[0].lower()[:5] in design.method.lower().replace("'", "")


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
        Question("test_accuracy", "fp32", "mixed", "equivalence", margin=parse_margin("a=-1pp"))
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
    assert answer.verdict == "different" and answer.p == answer.p_difference


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
        assert "worse (lower by more than 1 pp)" in last.reason
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
    assert result.level == pytest.approx(design.spent(8) - design.spent(6))
    assert result.alpha_spent == pytest.approx(design.spent(8))
    assert result.information == pytest.approx(0.4)
    p = result.answers[0].p
    assert p is not None
    assert result.answers[0].settled == (p < result.level)
    # The p-value is the primary test's, as compare_groups computes it.
    compare = stats.compare_groups(data["energy_j"]["fp32"], data["energy_j"]["mixed"])
    assert p == pytest.approx(compare.log_ratio_p, rel=1e-12)


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
        assert answer.verdict in (None, "different", "equivalent", "not worse", "worse")
        if answer.settled and answer.p is not None:
            assert answer.p < result.level


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
