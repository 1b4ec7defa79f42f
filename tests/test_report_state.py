"""The report's sections on what the run records hold beyond totals: why an adaptive
experiment stopped, the machine's state as each run started, and energy to a target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.report import build_report
from greenprec.results import RunRecord
from greenprec.results.models import (
    AnswerRecord,
    LookRecord,
    MachineState,
    PhaseRecord,
    SequentialRecord,
    TargetRecord,
)
from test_report_equivalence import write_folder


def _run(
    policy: str, index: int, order: int, energy: float, accuracy: float = 0.8, **extra: object
) -> RunRecord:
    return RunRecord(
        run_id=f"{policy}-{index:03d}",
        order=order,
        policy=policy,
        repetition=index,
        status="done",
        duration_s=10.0,
        energy_j=energy,
        mean_power_w=energy / 10.0,
        meter="rapl",
        estimated=False,
        metrics={"test_accuracy": accuracy},
        **extra,  # type: ignore[arg-type]
    )


# -- why the experiment stopped --------------------------------------------------------------------


def _adaptive(path: Path) -> Path:
    runs = []
    for i in range(1, 7):
        runs.append(_run("fp32", i, len(runs) + 1, 1000.0 + 3 * i, 0.80 + 0.001 * (i % 3)))
        runs.append(_run("mixed", i, len(runs) + 1, 880.0 + 3 * i, 0.80 + 0.001 * (i % 2)))
    answers = [
        AnswerRecord(
            metric="energy_j",
            policy="mixed",
            reference="fp32",
            kind="difference",
            settled=True,
            verdict="different",
            p=1e-9,
            level=0.0118,
        ),
        AnswerRecord(
            metric="test_accuracy",
            policy="mixed",
            reference="fp32",
            kind="equivalence",
            settled=True,
            verdict="equivalent",
            p=0.001,
            level=0.0118,
            margin=0.01,
        ),
    ]
    sequential = SequentialRecord(
        method="O'Brien–Fleming alpha spending (Lan–DeMets)",
        alpha=0.05,
        min_runs=3,
        max_runs=20,
        looks=[
            LookRecord(
                block=3,
                runs_per_policy=3,
                information=0.15,
                alpha_spent=0.0001,
                answers=[a.model_copy(update={"settled": False, "verdict": None}) for a in answers],
            ),
            LookRecord(
                block=6, runs_per_policy=6, information=0.3, alpha_spent=0.0118, answers=answers
            ),
        ],
        stopped_early=True,
        reason="every question is settled",
        runs_per_policy=6,
    )
    return write_folder(path, runs, {"adaptive": True, "runs": 20}, sequential=sequential)


def test_why_the_experiment_stopped(tmp_path: Path) -> None:
    folder = _adaptive(tmp_path / "adaptive")
    report = build_report(folder)
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    assert "## Why the experiment stopped" in md and "Why the experiment stopped</h2>" in html
    lines = report.prose.stopping
    assert lines[0].startswith("Method: O'Brien–Fleming alpha spending (Lan–DeMets), α = 0.05")
    assert "Look after block 3: 3 runs per policy, 15% of the maximum" in lines[1]
    assert "test_accuracy mixed vs fp32 (equivalence): not settled" in lines[1]
    assert "Look after block 6: 6 runs per policy" in lines[2]
    assert "α spent so far 0.0118" in lines[2]
    assert "energy_j mixed vs fp32 (difference): settled, different" in lines[2]
    assert lines[3] == (
        "The stopping rule stopped it early, after block 6 at 6 runs per policy of the planned "
        "maximum of 20 runs per policy. Every question is settled."
    )
    assert "Stopping after block 6 of 20 left 28 planned runs unmade" in lines[4]
    saved = report.stats["stopping"]
    assert saved["runs_per_policy"] == 6
    assert saved["sequential"]["looks"][1]["alpha_spent"] == 0.0118
    # against a fixed design of the same power: computed, or said plainly that it cannot be
    fixed = saved["fixed_runs_per_policy"]
    if fixed is None:
        assert "cannot be computed" in lines[4]
        assert saved["not_computed"]["fixed_runs_per_policy"]
    else:
        assert saved["saved_runs"] == (fixed - 6) * 2
        assert f"A fixed design of the same power needs {fixed} runs per policy" in lines[4]
    assert "Looks" in md and "| 6 | 6 | 30% | 0.0118 |" in md


def test_adaptive_without_looks_says_so(tmp_path: Path) -> None:
    runs = [_run("fp32", 1, 1, 1000.0), _run("fp32", 2, 2, 1001.0)]
    folder = write_folder(tmp_path / "nolooks", runs, {"adaptive": True})
    report = build_report(folder)
    assert any("records no looks" in w for w in report.warnings)
    assert "## Why the experiment stopped" in (folder / "report.md").read_text()


def test_no_adaptive_no_section(tmp_path: Path) -> None:
    runs = [_run("fp32", i, i, 1000.0 + i) for i in range(1, 4)]
    folder = write_folder(tmp_path / "plain", runs)
    report = build_report(folder)
    md = (folder / "report.md").read_text()
    assert "Why the experiment stopped" not in md and "Machine state" not in md
    assert "Energy to a target" not in md
    assert "stopping" not in report.stats and "machine_state" not in report.stats


# -- machine state ---------------------------------------------------------------------------------


def _state(cpu_temp: float, gpu_clock: float, reasons: list[str] | None = None) -> MachineState:
    return MachineState(
        cpu_freq_mhz=3000.0,
        cpu_temp_c=cpu_temp,
        gpu_temp_c=40.0,
        gpu_sm_clock_mhz=gpu_clock,
        gpu_power_limit_w=300.0,
        gpu_throttle_reasons=reasons or [],
        sources=["cpufreq", "hwmon", "nvml"],
    )


def test_machine_state_table_and_flags(tmp_path: Path) -> None:
    runs = []
    temps = [50.0, 51.0, 49.5, 62.0, 50.5, 50.0]
    clocks = [1800.0, 1790.0, 1810.0, 1800.0, 1500.0, 1805.0]
    for i in range(6):
        policy = "fp32" if i % 2 == 0 else "mi<x>ed"
        reasons = ["sw_thermal_slowdown", "gpu_idle"] if i == 2 else ["gpu_idle"]
        runs.append(
            _run(
                "fp32" if i % 2 == 0 else "mixed",
                i // 2 + 1,
                i + 1,
                1000.0 - 100 * (i % 2) + i,
                machine_start=_state(temps[i], clocks[i], reasons),
                idle_power_w=20.0 + i,
            ).model_copy(update={"policy": policy})
        )
    warmups = [
        PhaseRecord(
            duration_s=120.0,
            settled=False,
            criterion="power within 2% over 30 s",
        )
    ]
    folder = write_folder(
        tmp_path / "state", runs, {"warmup_s": 120.0, "warmup_auto": True}, warmups=warmups
    )
    result = CliRunner().invoke(app, ["report", str(folder)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    saved = json.loads((folder / "stats.json").read_text())
    state = saved["machine_state"]
    assert len(state["runs"]) == 6
    assert state["runs"][0]["cpu_temp_c"] == 50.0 and state["runs"][0]["idle_power_w"] == 20.0
    assert state["medians"]["cpu_temp_c"] == pytest.approx(50.25)
    flags = {(f["run_id"], f["field"]) for f in state["flags"]}
    assert flags == {
        ("mixed-002", "cpu_temp_c"),  # 62 °C: 11.75 °C above the median
        ("fp32-003", "gpu_sm_clock_mhz"),  # 1500 MHz: 17% below the median
        ("fp32-002", "gpu_throttle_reasons"),  # sw_thermal_slowdown (gpu_idle is not flagged)
    }
    assert state["warmups"] == [
        {
            "duration_s": 120.0,
            "automatic": True,
            "settled": False,
            "criterion": "power within 2% over 30 s",
            "cap_s": 120.0,
        }
    ]
    warnings = saved["warnings"]
    assert any(
        w.startswith("run mixed-002 (mi<x>ed) started with CPU temperature 62")
        and "+11.8 °C from the median of all runs (50.25 °C)" in w
        for w in warnings
    )
    assert any(
        "run fp32-003 (fp32) started with GPU SM clock 1500 MHz, −16.7%" in w for w in warnings
    )
    assert any(
        "run fp32-002 (fp32): heat or power throttled" in w and "sw_thermal_slowdown" in w
        for w in warnings
    )
    assert any(
        "automatic warm-up hit its cap of 120 s before the power settled" in w for w in warnings
    )
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    assert "## Machine state" in md and "Machine state</h2>" in html
    assert "Warm-up: 120 s, automatic: it hit its cap of 120 s before the power settled " in md
    assert "(criterion: power within 2% over 30 s)" in md
    assert "idle power before the run (W)" in md
    # the policy name from the files is escaped
    assert "mi&lt;x>ed" in md and "mi<x>ed" not in md
    assert "mi&lt;x&gt;ed" in html and "mi<x>ed" not in html
    assert "run mixed-002 (mi<x>ed) started with CPU temperature" in result.output


def test_warmup_that_settled(tmp_path: Path) -> None:
    runs = [_run("fp32", i, i, 1000.0 + i, idle_power_w=10.0) for i in range(1, 4)]
    warmups = [PhaseRecord(duration_s=42.0, settled=True, criterion="power within 2% over 30 s")]
    folder = write_folder(tmp_path / "settled", runs, {"warmup_s": 300.0}, warmups=warmups)
    report = build_report(folder)
    assert report.prose.machine[0] == (
        "Warm-up: 42 s, automatic: the power settled (criterion: power within 2% over 30 s)."
    )
    assert not any("warm-up" in w for w in report.warnings)
    assert report.stats["machine_state"]["flags"] == []


# -- energy to a target ----------------------------------------------------------------------------


def _target_run(
    policy: str, index: int, order: int, per_epoch_j: float, epochs_to_target: int | None
) -> RunRecord:
    reached = epochs_to_target is not None
    epoch = epochs_to_target or 0
    return _run(
        policy,
        index,
        order,
        per_epoch_j * 10,
        targets=[
            TargetRecord(
                metric="test_accuracy",
                value=0.45,
                reached=reached,
                epoch=epoch if reached else None,
                energy_j=per_epoch_j * epoch + index if reached else None,
                duration_s=5.0 * epoch if reached else None,
            )
        ],
    )


def test_cheaper_per_epoch_but_more_epochs_costs_more_to_the_target(tmp_path: Path) -> None:
    runs = []
    for i in range(1, 6):
        # fp32: 100 J per epoch, reaches 0.45 at epoch 4 (about 400 J)
        runs.append(_target_run("fp32", i, len(runs) + 1, 100.0, 4))
        # mixed: 80 J per epoch (20% cheaper per run), but needs 7 epochs (about 560 J);
        # one run never gets there
        runs.append(_target_run("mixed", i, len(runs) + 1, 80.0, None if i == 5 else 7))
    folder = write_folder(tmp_path / "target", runs, {"targets": {"test_accuracy": 0.45}})
    report = build_report(folder)
    energy = report.stats["metrics"]["energy_j"]["comparisons"][0]
    assert energy["relative_change_pct"] < -15  # cheaper per run
    (target,) = report.stats["energy_to_target"]
    assert target["metric"] == "test_accuracy" and target["value"] == 0.45
    fp32, mixed = target["policies"]["fp32"], target["policies"]["mixed"]
    assert (fp32["reached"], fp32["runs"]) == (5, 5)
    assert (mixed["reached"], mixed["runs"]) == (4, 5)
    assert mixed["not_reached"] == ["mixed-005"]
    assert mixed["mean_energy_j"] > fp32["mean_energy_j"]
    (comparison,) = target["comparisons"]
    assert comparison["relative_change_pct"] > 30  # more energy to the target
    assert comparison["log_ratio_p"] < 0.05
    assert comparison["reaches_less_often"] is True
    assert any(
        "mixed reached test_accuracy ≥ 0.45 in 4 of 5 runs, less often than fp32 (5 of 5)" in w
        and "flattering" in w
        for w in report.warnings
    )
    md = (folder / "report.md").read_text()
    assert "## Energy to a target" in md
    assert "did not reach it: mixed-005" in md
    assert "Energy to a target</h2>" in (folder / "report.html").read_text()


def test_targets_from_the_runs_only(tmp_path: Path) -> None:
    runs = [_target_run("fp32", i, i, 100.0, 3) for i in range(1, 4)]
    folder = write_folder(tmp_path / "runs-only", runs)
    report = build_report(folder)
    (target,) = report.stats["energy_to_target"]
    assert target["policies"]["fp32"]["reached"] == 3
    assert target["comparisons"] == []
