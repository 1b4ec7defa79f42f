"""Selecting the configuration with the least energy to the target (greenprec.stats.selection).

Exact small cases first, then properties: a drop is read off its interval, identical data never
drop anything, the leader is never dropped, drops are final and survive worse data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenprec.errors import ConfigError
from greenprec.sequential import SequentialDesign
from greenprec.stats import SelectionLook, parse_indifference, select_look

DESIGN = SequentialDesign(max_runs=10, min_runs=3)
DELTA = math.log(1.03)


def _noisy(mean_j: float, n: int, cv: float, seed: int) -> list[float | None]:
    rng = np.random.default_rng(seed)
    return [float(v) for v in mean_j * np.exp(rng.normal(0.0, cv, n))]


def _run(
    means_j: dict[str, float], cv: float, seed: int, design: SequentialDesign = DESIGN
) -> SelectionLook:
    """A whole experiment: one run of every configuration still in play per look."""
    rng = np.random.default_rng(seed)
    data: dict[str, list[float | None]] = {name: [] for name in means_j}
    look: SelectionLook | None = None
    for _ in range(design.max_runs):
        for name, mean_j in means_j.items():
            if look is None or look.status(name).status not in ("dropped",):
                data[name].append(float(mean_j * math.exp(rng.normal(0.0, cv))))
        look = select_look(data, design, indifference=DELTA, earlier=look)
        if look.stop:
            return look
    raise AssertionError("the design's maximum must stop the experiment")


# -- exact small cases -----------------------------------------------------------------------------


def test_a_clearly_worse_configuration_is_dropped_and_the_other_recommended() -> None:
    data = {
        "fp32": [1000.0, 1010.0, 990.0, 1005.0],
        "bf16": [800.0, 805.0, 795.0, 802.0],
    }
    look = select_look(data, DESIGN, indifference=DELTA, earlier=_first(data, 3))
    assert look.outcome == "one_remains" and look.stop
    assert look.recommended == "bf16" and look.leader == "bf16"
    fp32 = look.status("fp32")
    assert fp32.status == "dropped" and fp32.dropped_at_look == 1 and look.look == 2
    assert fp32.dropped_by is not None and fp32.dropped_by.better == "bf16"
    assert fp32.dropped_by.ratio_ci_low > 1.0
    assert look.sentence.startswith("Use bf16: ") and "less energy" in look.sentence
    assert look.status("bf16").status == "recommended"


def _first(data: dict[str, list[float | None]], runs: int) -> SelectionLook:
    return select_look(
        {name: values[:runs] for name, values in data.items()}, DESIGN, indifference=DELTA
    )


def test_before_min_runs_nothing_is_tested() -> None:
    look = select_look({"a": [1.0, 1.1], "b": [5.0, 5.1]}, DESIGN, indifference=DELTA)
    assert look.outcome == "too_early" and not look.stop and look.level is None
    assert {c.status for c in look.configurations} == {"leading", "in_play"}
    assert look.leader == "a"


def test_two_configurations_within_the_zone_stop_as_a_tie() -> None:
    # Tiny noise and a 0.5 % difference: shown within ±3 % at the maximum's level.
    a = [100.0 * (1 + 0.001 * ((-1) ** i)) for i in range(10)]
    b = [100.5 * (1 + 0.001 * ((-1) ** (i + 1))) for i in range(10)]
    look = None
    for n in range(3, 11):
        look = select_look({"a": a[:n], "b": b[:n]}, DESIGN, indifference=DELTA, earlier=look)
        if look.stop:
            break
    assert look is not None and look.outcome == "within_indifference"
    assert look.recommended == "a" and look.within == ("b",)
    assert look.status("b").status == "within_indifference"
    assert look.sentence == "No single best: a and b are within 3 % of each other."
    b_status = look.status("b")
    assert b_status.ratio_ci_low is not None and b_status.ratio_ci_high is not None
    assert 1 / 1.03 < b_status.ratio_ci_low < b_status.ratio_ci_high < 1.03


def test_a_configuration_that_rarely_reaches_the_target_is_not_recommended() -> None:
    data: dict[str, list[float | None]] = {
        "fp32": [1000.0, 1010.0, 990.0, 1005.0, 1000.0],
        "bf16": [500.0, None, None, None, 505.0],  # very cheap when it gets there
        "int8": [None, None, None, None, None],
    }
    design = SequentialDesign(max_runs=5, min_runs=3)
    look = select_look(data, design, indifference=DELTA)
    bf16 = look.status("bf16")
    assert bf16.status == "too_few_reached" and bf16.final
    assert bf16.note == "reached the target in 2 of 5 runs"
    assert look.status("int8").status == "never_reached" and look.status("int8").final
    assert look.outcome == "one_remains" and look.recommended == "fp32"


def test_a_share_that_cannot_rise_any_more_is_final_and_stays() -> None:
    # 1 of 3 reached; 7 more runs of 10 could give 8 of 10 = 0.8: not final yet. 0 of 3 with a
    # maximum of 5: at most 2 of 5, final.
    design = SequentialDesign(max_runs=5, min_runs=3)
    data: dict[str, list[float | None]] = {"a": [1.0, 1.01, 0.99], "b": [None, None, None]}
    first = select_look(data, design, indifference=DELTA)
    assert first.status("b").final and first.status("b").status == "never_reached"
    assert first.outcome == "one_remains"
    later = {"a": [*data["a"], 1.0], "b": [*data["b"], 0.1]}
    assert select_look(later, design, indifference=DELTA, earlier=first).status("b") == (
        first.status("b")
    )


def test_a_share_that_may_still_rise_keeps_the_experiment_going() -> None:
    design = SequentialDesign(max_runs=10, min_runs=3)
    data: dict[str, list[float | None]] = {"a": [1.0, 1.0, 1.01], "b": [0.5, None, 0.51]}
    look = select_look(data, design, indifference=DELTA)
    assert look.status("b").status == "too_few_reached"
    assert look.status("b").note == "reached the target in 2 of 3 runs"
    assert not look.stop and look.outcome == "continue"


def test_the_maximum_stops_with_the_leader_not_shown_best() -> None:
    data = {"a": _noisy(100.0, 10, 0.1, 1), "b": _noisy(101.0, 10, 0.1, 2)}
    look = select_look(data, DESIGN, indifference=DELTA, earlier=_first(data, 9))
    assert look.outcome == "max_runs" and look.stop
    assert look.recommended == look.leader
    other = "b" if look.leader == "a" else "a"
    assert look.status(other).status == "not_separated"
    assert "not shown best" in look.sentence


def test_earlier_drops_stay_dropped() -> None:
    data = {"a": [1.0, 1.01, 0.99], "b": [2.0, 2.02, 1.98], "c": [1.0, 1.02, 0.98]}
    first = select_look(data, DESIGN, indifference=DELTA)
    assert first.status("b").status == "dropped"
    # b's later runs (none were made) and a's and c's: b stays dropped with its old comparison.
    later = {"a": [*data["a"], 1.0], "b": data["b"], "c": [*data["c"], 1.01]}
    second = select_look(later, DESIGN, indifference=DELTA, earlier=first)
    assert second.status("b") == first.status("b")
    assert second.runs == 4 and second.schedule == (3, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"indifference": 0.0}, "indifference"),
        ({"indifference": -0.1}, "indifference"),
        ({"indifference": DELTA, "alpha": 0.0}, "alpha"),
        ({"indifference": DELTA, "alpha": 1.5}, "alpha"),
        ({"indifference": DELTA, "min_reached_share": 0.0}, "min_reached_share"),
    ],
)
def test_nonsense_arguments_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        select_look({"a": [1.0, 1.1, 1.2], "b": [1.0, 1.1, 1.2]}, DESIGN, **kwargs)


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf])
def test_nonsense_energies_are_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="positive finite joules"):
        select_look({"a": [1.0, bad, 1.2], "b": [1.0, 1.1, 1.2]}, DESIGN, indifference=DELTA)


def test_one_configuration_or_a_repeated_look_is_refused() -> None:
    with pytest.raises(ConfigError, match="two configurations"):
        select_look({"a": [1.0, 1.1, 1.2]}, DESIGN, indifference=DELTA)
    first = select_look({"a": [1.0, 1.1, 1.2], "b": [1.0, 1.1, 1.2]}, DESIGN, indifference=DELTA)
    with pytest.raises(ConfigError, match="more runs than the previous"):
        select_look(
            {"a": [1.0, 1.1, 1.2], "b": [1.0, 1.1, 1.2]},
            DESIGN,
            indifference=DELTA,
            earlier=first,
        )


def test_parse_indifference() -> None:
    assert parse_indifference("3%") == pytest.approx(math.log(1.03))
    assert parse_indifference(0.03) == pytest.approx(math.log(1.03))
    for bad in ("0%", "-2%", "three", 0.0):
        with pytest.raises(ConfigError):
            parse_indifference(bad)


def test_the_record_is_json_ready() -> None:
    data = {"a": [1.0, 1.01, 0.99], "b": [2.0, 2.02, 1.98]}
    record = select_look(data, DESIGN, indifference=DELTA).to_dict()
    assert record["configurations"][1]["dropped_by"]["better"] == "a"
    assert record["schedule"] == [3]


def test_a_whole_experiment_recommends_the_clearly_best() -> None:
    look = _run({"fp32": 1000.0, "bf16": 850.0, "tf32": 950.0}, cv=0.03, seed=4)
    assert look.recommended == "bf16" and look.outcome == "one_remains"


# -- properties ------------------------------------------------------------------------------------

_ENERGY = st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False)
_RUNS = st.lists(_ENERGY, min_size=3, max_size=10)
_DATA = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _RUNS, min_size=2, max_size=4)


@settings(max_examples=60, deadline=None)
@given(_DATA)
def test_a_drop_is_read_off_its_interval_and_the_leader_stays(
    data: dict[str, list[float]],
) -> None:
    runs = max(len(v) for v in data.values())
    look = select_look(data, SequentialDesign(max_runs=max(runs, 10)), indifference=DELTA)
    assert look.leader is not None
    assert look.status(look.leader).status in ("leading", "recommended")
    for configuration in look.configurations:
        if configuration.status == "dropped":
            pair = configuration.dropped_by
            assert pair is not None and look.level is not None
            # "Not worse" (a ratio ≤ 1) lies outside the interval at the decision's level.
            assert 1.0 < pair.ratio_ci_low <= pair.ratio <= pair.ratio_ci_high
            assert pair.level == look.level and pair.better != configuration.name


@settings(max_examples=40, deadline=None)
@given(_RUNS, st.integers(min_value=2, max_value=4))
def test_identical_data_never_drop_anything(runs: list[float], k: int) -> None:
    data = {f"c{i}": list(runs) for i in range(k)}
    look = select_look(data, SequentialDesign(max_runs=10), indifference=DELTA)
    assert all(c.status != "dropped" for c in look.configurations)


@settings(max_examples=40, deadline=None)
@given(_RUNS, _RUNS, st.floats(min_value=1.0, max_value=10.0))
def test_a_dropped_configuration_stays_dropped_when_it_gets_worse(
    a: list[float], b: list[float], factor: float
) -> None:
    design = SequentialDesign(max_runs=10)
    look = select_look({"a": a, "b": b}, design, indifference=DELTA)
    for worse, better in (("a", "b"), ("b", "a")):
        if look.status(worse).status == "dropped":
            data = {worse: [v * factor for v in (a if worse == "a" else b)]}
            data[better] = b if better == "b" else a
            assert select_look(data, design, indifference=DELTA).status(worse).status == ("dropped")
