"""greenprec.testing.scripted: the scripted meter (a known power per configuration) and the
quick ``training`` workload (a known accuracy per epoch), through the API and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import greenprec
from greenprec import ConfigError
from greenprec.cli import app
from greenprec.experiment.execute import RunSpec, execute_run
from greenprec.results import ResultsStore, RunRecord
from greenprec.testing import ScriptedMeter, check_meter
from greenprec.testing.scripted import (
    DOMAIN,
    WORKLOAD,
    accuracy_after,
    epochs_to_reach,
    final_accuracy,
    run_power_w,
    training,
)
from greenprec.testing.scripted_options import (
    ScriptedOptions,
    TrainingParams,
    format_power_w,
    parse_power_w,
)

runner = CliRunner()
# Quick: no warm-up or cool-down, short epochs; the baseline is measured (idle_w) so the
# phases outside a run are checked too.
FAST = ["--warmup", "0", "--cooldown", "0", "--baseline", "0.2", "--quiet", "--seed", "7"]


@pytest.fixture
def scripted() -> None:
    """``--meter scripted`` works here and in the runs' own processes: a built-in meter."""


def compare(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["compare", *args])
    return result.exit_code, result.output


def runs_by_id(folder: Path) -> dict[str, RunRecord]:
    return {run.run_id: run for run in ResultsStore(folder).load().runs}


def error_line(options: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as raised:
        ScriptedOptions.parse(options)
    (line,) = str(raised.value).splitlines()
    return line


# -- power_w: one text form, read one way ------------------------------------------------------
_POLICIES = st.sampled_from(["fp32", "tf32", "mixed", "bf16"])
_OVERRIDE = st.tuples(
    st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True),
    st.one_of(
        st.integers(1, 4096).map(str),
        st.sampled_from(["0.001", "1e-3", "true", "adam", "sgd-m"]),
    ),
)
_LABEL = st.builds(
    lambda policy, overrides: "-".join([policy, *(f"{k}={v}" for k, v in overrides)]),
    _POLICIES,
    st.lists(_OVERRIDE, max_size=3),
)
_WATTS = st.floats(0, 5000, allow_nan=False, allow_infinity=False)


@given(st.dictionaries(_LABEL, _WATTS, max_size=8))
def test_power_w_text_reads_back_to_the_same_mapping(power_w: dict[str, float]) -> None:
    text = format_power_w(power_w)
    assert parse_power_w(text) == power_w
    # Spaces around the separators change nothing; a mapping from Python reads the same.
    spaced = ", ".join(f" {key} : {watts!r} " for key, watts in power_w.items())
    assert parse_power_w(spaced) == power_w
    assert parse_power_w({key: str(watts) for key, watts in power_w.items()}) == power_w
    assert ScriptedOptions.parse({"power_w": text}).power_w == power_w


@given(_LABEL, st.sampled_from(["=", ";", " "]))
def test_power_w_without_a_colon_is_refused_with_the_form(label: str, separator: str) -> None:
    line = error_line({"power_w": f"{label}{separator}100"})
    assert line.startswith("scripted option power_w: entry ")
    assert "has no ':'; write CONFIGURATION:WATTS" in line
    assert "e.g. fp32:100,bf16-batch_size=256:60" in line


def test_policy_aliases_are_kept_in_canonical_spelling() -> None:
    assert parse_power_w("float32:100,mixed_float16-batch_size=64:60,BF16:50") == {
        "fp32": 100.0,
        "mixed-batch_size=64": 60.0,
        "bf16": 50.0,
    }
    assert parse_power_w("") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fp23:100", "key 'fp23': unknown precision policy 'fp23'; choose one of: fp32"),
        ("fp32:lots", "fp32: 'lots' is not a number of watts (finite, 0 or more)"),
        ("fp32:-5", "fp32: '-5' is not a number of watts"),
        ("fp32:inf", "fp32: 'inf' is not a number of watts"),
        ("fp32:100,,bf16:60", "an empty entry (a comma too many?)"),
        ("fp32:100,float32:90", "fp32 is given twice"),
        ("fp32/x:100", "'fp32/x' is not a configuration label or a precision policy"),
    ],
)
def test_bad_power_w_is_one_line_naming_the_entry(text: str, expected: str) -> None:
    line = error_line({"power_w": text})
    assert line.startswith("scripted option power_w: "), line
    assert expected in line, line


def test_the_other_options_take_watts_and_a_relative_noise() -> None:
    options = ScriptedOptions.parse({"default_w": "80", "idle_w": "0", "noise": "5%"})
    assert (options.default_w, options.idle_w, options.noise) == (80.0, 0.0, 0.05)
    assert ScriptedOptions.parse({"default_w": ""}).default_w is None
    assert ScriptedOptions.parse({}).idle_w == 20.0
    assert "scripted option noise must be a relative standard deviation from 0 to 1" in (
        error_line({"noise": "5"})
    )
    assert "scripted option idle_w must be a zero or positive number of watts" in (
        error_line({"idle_w": "-1"})
    )
    assert "meter 'scripted' takes no option 'power'" in error_line({"power": "fp32:1"})


# -- the meter ---------------------------------------------------------------------------------
def test_the_meter_keeps_the_contract() -> None:
    report = check_meter(ScriptedMeter, options={"idle_w": "30"})
    assert report.available and not report.skipped_names, str(report)
    assert ScriptedMeter.simulated and not ScriptedMeter.estimated and not ScriptedMeter.auto


def test_outside_a_run_the_meter_draws_idle_power_exactly() -> None:
    meter = ScriptedMeter(power_w="fp32:100", idle_w="12.5")
    assert meter.configuration is None and meter.power_w == 12.5
    with greenprec.measure(meter, interval=0.02) as m:
        time.sleep(0.1)
    assert m.energy_j == pytest.approx(12.5 * m.duration_s, rel=1e-9)
    assert list(m.domains) == [DOMAIN]


def test_noise_is_a_seeded_factor_of_mean_one() -> None:
    assert run_power_w(100.0, 0.0, 1) == 100.0
    assert run_power_w(100.0, 0.1, 42) == run_power_w(100.0, 0.1, 42)
    draws = [run_power_w(100.0, 0.1, seed) / 100.0 for seed in range(2000)]
    assert len(set(draws)) == len(draws) and min(draws) > 0
    mean = sum(draws) / len(draws)
    sd = (sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)) ** 0.5
    assert mean == pytest.approx(1.0, abs=0.01) and sd == pytest.approx(0.1, rel=0.08)


def _spec(tmp_path: Path, policy: str, precision: str | None, options: dict[str, str]) -> RunSpec:
    run = RunRecord(
        run_id=f"{policy}-001",
        order=1,
        policy=policy,
        repetition=1,
        seed=11,
        precision=precision,
        params={"accuracy_step": 0.25} if precision else {},
    )
    return RunSpec(
        run=run,
        workload=WORKLOAD,
        params={"epoch_s": 0.01, **run.params},
        meters=["scripted"],
        meter_options=options,
        interval_s=0.05,
        targets={"test_accuracy": 0.5},
        stop_at_target=True,
    )


@pytest.mark.parametrize(
    ("policy", "precision", "options", "power_w"),
    [
        # A label wins over its precision policy; the policy serves every label without its own.
        ("bf16-accuracy_step=0.25", "bf16", {"power_w": "bf16-accuracy_step=0.25:40,bf16:60"}, 40),
        ("bf16-accuracy_step=0.25", "bf16", {"power_w": "fp32:100,bf16:60"}, 60),
        ("bf16", None, {"power_w": "bf16:60"}, 60),
        ("bf16", None, {"power_w": "fp32:100", "default_w": "75"}, 75),
    ],
)
def test_in_a_run_the_meter_draws_its_configurations_power(
    scripted: None,
    tmp_path: Path,
    policy: str,
    precision: str | None,
    options: dict[str, str],
    power_w: float,
) -> None:
    done = execute_run(_spec(tmp_path, policy, precision, options), ResultsStore(tmp_path / "x"))
    assert done.status == "done", done.error
    assert done.energy_j == pytest.approx(power_w * (done.duration_s or 0), rel=1e-9)
    # accuracy_step 0.25 reaches 0.5 at epoch 2; the default step (0.1) at epoch 5.
    assert done.epochs_run == (2 if precision else 5) and done.stopped_at_target


def test_a_configuration_without_power_fails_its_run_with_one_line(
    scripted: None, tmp_path: Path
) -> None:
    spec = _spec(tmp_path, "bf16-accuracy_step=0.25", "bf16", {"power_w": "fp32:100"})
    failed = execute_run(spec, ResultsStore(tmp_path / "x"))
    assert failed.status == "failed"
    assert failed.error == (
        "ConfigError: scripted meter: no power for configuration 'bf16-accuracy_step=0.25' "
        "(precision bf16); power_w lists fp32: add it "
        "(-o scripted.power_w=...,bf16-accuracy_step=0.25:WATTS) or set a fallback "
        "(-o scripted.default_w=WATTS)"
    )


# -- the workload ------------------------------------------------------------------------------
@given(
    st.floats(0.01, 1.0, allow_nan=False),
    st.floats(0.0, 0.99, allow_nan=False),
    st.integers(1, 200),
)
def test_epochs_to_reach_is_the_first_epoch_at_the_target(
    step: float, target: float, epochs: int
) -> None:
    epoch = epochs_to_reach(target, step, epochs)
    first = next((k for k in range(1, epochs + 1) if accuracy_after(k, step) >= target), None)
    assert epoch == first


def test_the_workload_declares_what_it_records_and_checks_its_params() -> None:
    assert {m.name for m in training.metrics} == {"test_accuracy", "test_loss"}  # type: ignore[attr-defined]
    training.check_params({"epochs": 3, "batch_size": 64, "epoch_s": None})  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"bad params for workload .*accuracy_step"):
        training.check_params({"accuracy_step": 0})  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"learning_rate.*known params: epochs"):
        training.check_params({"learning_rate": 0.1})  # type: ignore[attr-defined]
    assert list(TrainingParams.model_fields) == [
        "epochs",
        "epoch_s",
        "accuracy_step",
        "batch_size",
        "steps_per_epoch",
        "final_accuracy_sd",
    ]
    assert training.timeout_s({"epochs": 10, "epoch_s": 1}) == 160.0  # type: ignore[attr-defined]


def test_final_accuracy_noise_is_seeded_and_leaves_the_epochs_exact(
    scripted: None, tmp_path: Path
) -> None:
    assert final_accuracy(0.5, 0.0, 3) == 0.5
    draws = [final_accuracy(0.5, 0.01, seed) for seed in range(200)]
    assert len(set(draws)) > 190 and all(0.45 < d < 0.55 for d in draws)
    assert final_accuracy(0.99, 0.1, 1) <= 1.0 and final_accuracy(0.0, 0.1, 2) >= 0.0
    spec = _spec(tmp_path, "bf16", None, {"power_w": "bf16:60"})
    spec = spec.model_copy(update={"params": {**spec.params, "final_accuracy_sd": 0.01}})
    done = execute_run(spec, ResultsStore(tmp_path / "x"))
    assert done.status == "done", done.error
    assert [point.metrics["test_accuracy"] for point in done.epochs] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert done.metrics["test_accuracy"] == final_accuracy(0.5, 0.01, 11)  # the run's seed


# -- through the CLI ---------------------------------------------------------------------------
@pytest.mark.slow
def test_compare_measures_each_configurations_known_power_and_stops_at_the_target(
    scripted: None, tmp_path: Path
) -> None:
    """Each run (a process of its own) draws its policy's power; training stops at the epoch
    that reaches the target (0.5 at epoch 5 with the default step); the idle baseline, outside
    any run, draws idle_w."""
    out = tmp_path / "exp"
    code, output = compare(
        "fp32", "bf16", "--workload", WORKLOAD, "--runs", "2",
        "--meter", "scripted", "-o", "scripted.power_w=fp32:100,bf16:60", "-o", "idle_w=15",
        "--param", "epoch_s=0.02", "--target", "test_accuracy=0.5", "--stop-at-target",
        "--out", str(out), *FAST,
    )  # fmt: skip
    assert code == 0, output
    runs = runs_by_id(out)
    assert sorted(runs) == ["bf16-001", "bf16-002", "fp32-001", "fp32-002"]
    for run in runs.values():
        power_w = {"fp32": 100.0, "bf16": 60.0}[run.policy]
        assert run.status == "done" and run.meter == "scripted", run.error
        assert run.energy_j == pytest.approx(power_w * (run.duration_s or 0), rel=1e-9)
        assert run.mean_power_w == pytest.approx(power_w)
        assert run.epochs_run == 5 and run.stopped_at_target
        assert [point.epoch for point in run.epochs] == [1, 2, 3, 4, 5]
        (target,) = run.targets
        assert target.reached and target.epoch == 5 and target.final_value == 0.5
        assert run.samples_trained == 5 * 32 * 10  # 5 epochs of 10 steps of 32
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["baseline"]["power_w"] == pytest.approx(15.0)


@pytest.mark.slow
def test_noise_is_reproducible_from_the_runs_seeds(scripted: None, tmp_path: Path) -> None:
    powers = []
    for name in ("first", "again"):
        out = tmp_path / name
        code, output = compare(
            "fp32", "mixed", "--workload", WORKLOAD, "--runs", "3", "--isolation", "inline",
            "--meter", "scripted", "-o", "power_w=fp32:100,mixed:70", "-o", "noise=10%",
            "--param", "epoch_s=0.01", "--out", str(out), *FAST,
        )  # fmt: skip
        assert code == 0, output
        runs = runs_by_id(out)
        for run in runs.values():
            base_w = {"fp32": 100.0, "mixed": 70.0}[run.policy]
            assert run.seed is not None and run.mean_power_w is not None
            assert run.mean_power_w == pytest.approx(run_power_w(base_w, 0.1, run.seed))
            assert run.mean_power_w != pytest.approx(base_w)
        powers.append({run_id: run.mean_power_w for run_id, run in runs.items()})
    assert powers[0] == pytest.approx(powers[1], rel=1e-12)


@pytest.mark.slow
def test_a_configuration_missing_from_power_w_fails_its_runs_and_says_how_to_add_it(
    scripted: None, tmp_path: Path
) -> None:
    out = tmp_path / "missing"
    code, _ = compare(
        "fp32", "bf16", "--workload", WORKLOAD, "--runs", "1",
        "--meter", "scripted", "-o", "scripted.power_w=fp32:100",
        "--param", "epoch_s=0.01", "--out", str(out), *FAST,
    )  # fmt: skip
    assert code == 1
    runs = runs_by_id(out)
    assert runs["fp32-001"].status == "done"
    failed = runs["bf16-001"]
    assert failed.status == "failed" and failed.error is not None
    assert len(failed.error.splitlines()) == 1
    assert "no power for configuration 'bf16'" in failed.error
    assert "-o scripted.power_w=...,bf16:WATTS" in failed.error


def _compare_in_a_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenprec", "compare", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "300"},
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-o", "scripted.power_w=fp32=100,bf16=60"], "entry 'fp32=100' has no ':'"),
        (["-o", "scripted.noise=7"], "scripted option noise must be a relative standard"),
        (["--param", "accuracy_step=2"], "accuracy_step"),
        (["--target", "test_accuracy=97"], "for 97 % write test_accuracy=0.97"),
    ],
)
def test_bad_options_params_and_targets_are_refused_before_any_run(
    scripted: None, tmp_path: Path, args: list[str], expected: str
) -> None:
    out = tmp_path / "refused"
    result = _compare_in_a_process(
        "fp32", "--workload", WORKLOAD, "--meter", "scripted", "--out", str(out), *args, *FAST
    )
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr, result.stderr
    assert not out.exists()


# -- registration ------------------------------------------------------------------------------
def test_the_meter_is_built_in_and_registering_it_stays_light() -> None:
    code = textwrap.dedent(
        """
        import sys
        from greenprec.meters.registry import meter_classes
        print("scripted" in meter_classes())
        # Registering the meter imports neither pydantic nor any workload module.
        print(sorted(m for m in sys.modules if m == "pydantic" or m.startswith("greenprec.work")))
        """
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.split("\n")[:2] == ["True", "[]"]
