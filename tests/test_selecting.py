"""A recommendation's experiment: configurations, runs stopping at the target, a selection look
after each block that drops what is shown worse, and a folder that resumes and reads back.

The workload ``experiment_workloads:to_target`` reaches ``step`` accuracy per epoch and stops
at the target, so a configuration's energy to the target is (epochs to the target) x
``epoch_s`` x the mock meter's 100 W: the best configuration is known before anything runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenprec.carbon import co2e_g, parse_grid_intensity
from greenprec.errors import ConfigError
from greenprec.experiment.config import ExperimentConfig, validate
from greenprec.experiment.runner import run_experiment
from greenprec.experiment.selecting import energy_to_target, selection_data
from greenprec.results import ResultsStore, RunRecord, TargetRecord

TESTS = Path(__file__).parent


def _configuration(step: float) -> dict[str, object]:
    return {"label": f"fp32-step={step}", "policy": "fp32", "params": {"step": step}}


def _config(steps: list[float], **changes: object) -> ExperimentConfig:
    values: dict[str, object] = {
        "policies": ["fp32"],
        "workload": "experiment_workloads:to_target",
        "runs": 6,
        "min_runs": 3,
        "warmup_s": 0,
        "cooldown_s": 0,
        "meters": ["mock"],
        "isolation": "inline",
        "targets": {"test_accuracy": 0.5},
        "stop_at_target": True,
        "selection": {"indifference": "3%"},
        "configurations": [_configuration(step) for step in steps],
        "params": {"epoch_s": 0.03},
    }
    values.update(changes)
    return validate(values)


@pytest.fixture(autouse=True)
def _workloads_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


def test_the_best_configuration_is_kept_and_the_others_dropped(tmp_path: Path) -> None:
    # Energy to 50 %: step 0.25 -> 2 epochs, 0.2 -> 3, 0.1 -> 5 (at 30 ms each, 100 W).
    store, runs = run_experiment(_config([0.2, 0.1, 0.25]), tmp_path / "out")
    selection = store.read_experiment().selection
    assert selection is not None and selection.stopped and selection.stopped_early
    first, last = selection.looks[0], selection.looks[-1]
    assert (first.look, first.block) == (1, 3)
    assert last.recommended == "fp32-step=0.25" and last.outcome == "one_remains"
    by_name = {c.name: c for c in last.configurations}
    # 0.1 takes 2.5 times the energy of 0.25: shown worse at the first look whatever the
    # timing noise; 0.2 (1.5 times) at the first look or a later one.
    assert by_name["fp32-step=0.1"].dropped_at_look == 1
    assert by_name["fp32-step=0.2"].status == "dropped"
    assert by_name["fp32-step=0.1"].dropped_by is not None
    # A dropped configuration gets no run after the block of its drop; the rest stop with
    # the selection: what was never run left the schedule.
    blocks = {look.look: look.block for look in selection.looks}
    for name, status in by_name.items():
        made = [run for run in runs if run.policy == name]
        if status.dropped_at_look is not None:
            assert len(made) == blocks[status.dropped_at_look]
    assert len(store.read_experiment().schedule) == len(runs) < 18
    assert all(run.status == "done" and run.stopped_at_target for run in runs)
    epochs = {run.policy: run.epochs_run for run in runs}
    assert epochs == {"fp32-step=0.2": 3, "fp32-step=0.1": 5, "fp32-step=0.25": 2}
    # The configuration's parameters reached the workload; the policy is the precision one.
    assert {run.params["step"] for run in runs} == {0.2, 0.1, 0.25}
    assert {run.precision_policy for run in runs} == {"fp32"}


def test_two_equal_best_configurations_are_both_kept(tmp_path: Path) -> None:
    # 0.5 and 0.6 reach 50 % in one epoch: equal, so neither may be dropped by the other; 0.1
    # takes five epochs and is dropped, after which it gets no run.
    store, runs = run_experiment(_config([0.5, 0.6, 0.1], runs=5, min_runs=3), tmp_path / "out")
    selection = store.read_experiment().selection
    assert selection is not None and selection.stopped
    last = selection.looks[-1]
    by_name = {c.name: c for c in last.configurations}
    assert by_name["fp32-step=0.5"].status != "dropped"
    assert by_name["fp32-step=0.6"].status != "dropped"
    dropped_at = by_name["fp32-step=0.1"].dropped_at_look
    assert dropped_at is not None
    block = next(look.block for look in selection.looks if look.look == dropped_at)
    assert sum(run.policy == "fp32-step=0.1" for run in runs) == block
    # The answer names both, or one leads without being shown best: never one "shown best".
    assert last.outcome in ("within_indifference", "max_runs")


def test_a_killed_recommendation_resumes_without_looking_twice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    store, _ = run_experiment(_config([0.2, 0.25], runs=4, min_runs=2), out)
    experiment = store.read_experiment()
    assert experiment.selection is not None
    looks = len(experiment.selection.looks)
    # Resuming a finished recommendation makes no run and no look.
    store, runs = run_experiment(None, out, resume=True)
    again = store.read_experiment().selection
    assert again is not None and len(again.looks) == looks
    assert {run.status for run in runs} == {"done"}


def test_energy_to_the_target_is_the_last_target_reached() -> None:
    run = RunRecord(run_id="a-001", order=1, policy="a", repetition=1, status="done")
    reached = [
        TargetRecord(metric="test_accuracy", value=0.9, reached=True, epoch=3, energy_j=30.0),
        TargetRecord(metric="test_loss", value=0.1, reached=True, epoch=4, energy_j=40.0),
    ]
    assert energy_to_target(run.model_copy(update={"targets": reached})) == 40.0
    missed = [reached[0], TargetRecord(metric="test_loss", value=0.1, reached=False)]
    assert energy_to_target(run.model_copy(update={"targets": missed})) is None
    assert energy_to_target(run) is None
    # A failed run is no run of the comparison; a done one that missed counts as not reaching.
    failed = run.model_copy(update={"status": "failed", "energy_j": 5.0, "targets": reached})
    done = run.model_copy(update={"energy_j": 50.0, "targets": missed})
    assert selection_data(["a"], [failed, done]) == {"a": [None]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"adaptive": True}, "two stopping rules"),
        ({"stop_at_target": False}, "stop_at_target = true"),
        ({"configurations": [_configuration(0.2)]}, "at least two configurations"),
        ({"runs": 2}, "must be at least min_runs"),
        ({"configurations": [_configuration(0.2), _configuration(0.2)]}, "listed twice"),
        (
            {"configurations": [{"label": "x", "policy": "fp32", "params": {"step": 0.2}}]},
            "its label must be 'fp32-step=0.2'",
        ),
        (
            {"configurations": [_configuration(0.2), {"label": "bf16", "policy": "bf16"}]},
            "not in policies: bf16",
        ),
        ({"selection": {"indifference": "three"}}, "indifference must look like"),
        ({"selection": {"alpha": 0.7}}, "alpha"),
        ({"grid_intensity": "350"}, "has no unit; did you mean 350g/kWh"),
    ],
)
def test_a_selection_that_cannot_be_right_is_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _config([0.2, 0.1], **changes)


def test_a_compare_config_file_may_carry_a_recommend_table(tmp_path: Path) -> None:
    from greenprec.experiment.config import load_config, load_table

    path = tmp_path / "experiment.toml"
    path.write_text('policies = ["fp32"]\n[recommend]\nindifference = "5%"\n', encoding="utf-8")
    assert load_config({}, path).policies == ["fp32"]
    assert load_table(path, "recommend") == {"indifference": "5%"}
    path.write_text('recommend = 3\npolicies = ["fp32"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="recommend: must be a table"):
        load_config({}, path)


def test_run_ids_of_configurations_read_back(tmp_path: Path) -> None:
    store, runs = run_experiment(_config([0.5, 0.25], runs=2, min_runs=2), tmp_path / "out")
    snapshot = ResultsStore(store.path).load()
    assert not snapshot.problems
    assert {run.run_id for run in snapshot.runs} == {run.run_id for run in runs}
    assert snapshot.experiment.policies == ["fp32-step=0.5", "fp32-step=0.25"]


# --- the grid intensity: a unit is never guessed ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "g_per_kwh"),
    [("350g/kWh", 350.0), ("0.35 kg/kWh", 350.0), ("350 gCO2e/kWh", 350.0), ("350kg/MWh", 350.0)],
)
def test_a_grid_intensity_is_read_with_its_unit(text: str, g_per_kwh: float) -> None:
    assert parse_grid_intensity(text) == pytest.approx(g_per_kwh)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("350", "has no unit"),
        ("350 W", "is not an intensity"),
        ("350kg/kWh", "above any grid"),
        ("", "is not an intensity"),
    ],
)
def test_an_ambiguous_grid_intensity_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid_intensity(text)


@settings(max_examples=50)
@given(
    energy_j=st.floats(0, 1e12, allow_nan=False),
    g_per_kwh=st.floats(0, 2000, allow_nan=False),
)
def test_co2e_is_energy_in_kwh_times_the_intensity(energy_j: float, g_per_kwh: float) -> None:
    assert math.isclose(co2e_g(energy_j, g_per_kwh), energy_j / 3.6e6 * g_per_kwh, rel_tol=1e-12)
    assert co2e_g(3.6e6, g_per_kwh) == pytest.approx(g_per_kwh)


def test_a_session_killed_between_a_look_and_its_cut_cuts_on_resume(tmp_path: Path) -> None:
    """The look is written before the schedule is cut; a kill in between must not let a
    dropped configuration's later runs be made."""
    out = tmp_path / "out"
    store, _ = run_experiment(_config([0.5, 0.1], runs=6, min_runs=3), out)
    experiment = store.read_experiment()
    assert experiment.selection is not None and experiment.selection.stopped
    made = {run.run_id for run in store.load().runs}
    # Put back what the cut removed, as if the session had died right after writing the look.
    from greenprec.experiment.schedule import make_blocked_schedule

    config = _config([0.5, 0.1], runs=6, min_runs=3)
    full = make_blocked_schedule(config.arms(), config.runs, config.seed)
    experiment.schedule = full
    store.write_experiment(experiment)
    for planned in full:
        if planned.run_id not in made:
            store.write_run(RunRecord.planned(planned))
    store, runs = run_experiment(None, out, resume=True)
    assert {run.run_id for run in runs} == made
    assert {p.run_id for p in store.read_experiment().schedule} == made
