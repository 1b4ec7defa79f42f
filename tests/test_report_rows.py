"""Issue 9 §2, §4, §5 in the report: two-meter power traces, counted domains, rows and values
that cannot be used, accuracy units, and a verdict whose test and CI always agree."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenprec.report import build_report
from greenprec.report.analysis import Analysis, analyse, prepare
from greenprec.report.build import power_traces
from greenprec.report.data import ExperimentData, load
from greenprec.report.prose import trace_warnings, verdict
from legacy_folder import LegacyFolder as ResultsFolder
from legacy_folder import join_domains

DOMAINS = {"rapl/package-0": 0.6, "nvml/gpu0": 0.4, "rapl/core": 0.3}  # core inside package
COUNTED = ["rapl/package-0", "nvml/gpu0"]


def two_meter_folder(
    path: Path,
    energies: dict[str, list[float]],
    *,
    record_counted: str = "runs.csv",
    accuracy: dict[str, list[float]] | None = None,
    duration_s: float = 6.0,
) -> list[dict[str, Any]]:
    """A folder as compare writes it with rapl + nvml: each meter's samples on its own clock.

    ``record_counted``: "runs.csv" (the counted_domains column), "experiment.json"
    (meters.counted_domains only) or "none" (an old folder: the report must guess).
    """
    folder = ResultsFolder(path)
    path.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for policy, values in energies.items():
        for index, energy in enumerate(values):
            run_id = f"{policy}-{index + 1:03d}"
            power = energy / duration_s
            row: dict[str, Any] = {
                "run_id": run_id,
                "order": len(rows) + 1,
                "policy": policy,
                "repetition": index + 1,
                "seed": len(rows) + 1,
                "status": "done",
                "duration_s": duration_s,
                "energy_j": energy,
                "mean_power_w": power,
                "meter": "rapl+nvml",
                "estimated": False,
            }
            if record_counted == "runs.csv":
                row["counted_domains"] = join_domains(COUNTED)
            if accuracy is not None:
                row["test_accuracy"] = accuracy[policy][index]
            for domain, share in DOMAINS.items():
                row[f"energy_j:{domain}"] = energy * share
            rows.append(row)
            samples = []
            for domain_index, (domain, share) in enumerate(DOMAINS.items()):
                # rapl is read first, nvml 3 ms later on every tick: no shared timestamp
                offset = 0.003 * (domain == "nvml/gpu0") + 1e-5 * domain_index
                for k, t in enumerate(np.arange(0.0, duration_s, 0.2)):
                    value = math.nan if k == 0 else power * share
                    samples.append((float(t) + offset, domain, value, 0.0))
            folder.write_samples(run_id, sorted(samples))
    folder.write_runs(rows)
    meters: dict[str, Any] = {"requested": ["auto"], "used": ["rapl", "nvml"], "estimated": False}
    if record_counted == "experiment.json":
        meters["counted_domains"] = COUNTED
    folder.write_experiment(
        {"format_version": 1, "config": {"policies": list(energies)}, "meters": meters}
    )
    return rows


ENERGIES = {"fp32": [300.0, 306.0, 297.0, 303.0], "mixed": [240.0, 246.0, 243.0, 238.0]}


# -- §2 two meters -------------------------------------------------------------------------------


def test_report_on_two_meters_shows_a_power_figure(tmp_path: Path) -> None:
    two_meter_folder(tmp_path, ENERGIES)
    report = build_report(tmp_path)
    assert "power_trace" in {f.name for f in report.figures}, report.skipped_figures
    assert report.stats["power_trace"]["runs"] == {"fp32": 4, "mixed": 4}
    data = load(tmp_path)
    traces, info = power_traces(data, prepare(data))
    assert trace_warnings(info) == []
    # package + gpu, not the core inside the package: 100% of the run's mean power
    expected = np.mean(ENERGIES["fp32"]) / 6.0
    assert traces["fp32"]["mean_power_w"].iloc[1:-1].to_numpy() == pytest.approx(expected)


# -- §4 counted domains ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "source"),
    [
        ("runs.csv", "runs.csv counted_domains"),
        ("experiment.json", "experiment.json meters.counted_domains"),
        ("none", "guessed: the energy_j:<domain> columns that sum to energy_j"),
    ],
)
def test_counted_domains_come_from_the_record_first(
    tmp_path: Path, recorded: str, source: str
) -> None:
    two_meter_folder(tmp_path, ENERGIES, record_counted=recorded)
    data = load(tmp_path)
    assert data.counted_source == source
    assert sorted(data.counted_domains or []) == sorted(COUNTED)
    assert all(sorted(v or []) == sorted(COUNTED) for v in data.counted_by_run.values())
    report = build_report(tmp_path)
    assert report.stats["counted_domains_source"] == source
    environment = dict(report.content.environment)
    assert source in environment["counted domains"]
    guessed = [w for w in report.warnings if "counted domains of" in w]
    assert bool(guessed) == (recorded == "none")


def test_counted_domains_column_wins_over_a_sum_that_would_mislead(tmp_path: Path) -> None:
    # The runner recorded only the package: the gpu's energy was reported but not counted.
    rows = two_meter_folder(tmp_path, ENERGIES)
    for row in rows:
        row["counted_domains"] = "rapl/package-0"
        row["energy_j"] = row["energy_j:rapl/package-0"]
    ResultsFolder(tmp_path).write_runs(rows)
    data = load(tmp_path)
    assert data.counted_by_run["fp32-001"] == ["rapl/package-0"]
    traces, _ = power_traces(data, prepare(data))
    expected = 0.6 * np.mean(ENERGIES["fp32"]) / 6.0
    assert traces["fp32"]["mean_power_w"].iloc[1:-1].to_numpy() == pytest.approx(expected)


# -- §5 rows that cannot be used ------------------------------------------------------------------


def test_every_unusable_row_is_counted_and_named(tmp_path: Path) -> None:
    energies = {"fp32": [300.0, 306.0, 297.0, 303.0, 301.0], "mixed": [240.0, 246.0, 243.0, 238.0]}
    rows = two_meter_folder(tmp_path, energies)
    rows.append({**rows[-1], "run_id": "mixed-005", "energy_j": -1_000_000.0})
    rows.append({**rows[-1], "run_id": "mixed-006", "energy_j": 1e308})
    rows.append({**rows[-1], "run_id": "mixed-007", "energy_j": "abc"})
    rows.append({**rows[-1], "run_id": "mixed-008", "energy_j": "12 kJ"})
    rows.append({**rows[-1], "run_id": "mixed-009", "energy_j": 100.0, "status": "DONE"})
    rows.append({**rows[-1], "run_id": "mixed-001", "status": "done", "energy_j": 1.0})
    rows.append({**rows[-1], "run_id": "mixed-010", "status": "done", "energy_j": "nan"})
    rows.append({**rows[-1], "run_id": "mixed-011", "status": "done", "energy_j": None})
    rows[0]["duration_s"] = -5.0  # one bad value: the run stays, that value goes
    ResultsFolder(tmp_path).write_runs(rows)
    report = build_report(tmp_path)

    whole = [e for e in report.excluded if e.column is None]
    assert [(e.run_id, e.line) for e in whole] == [
        ("mixed-005", 11),
        ("mixed-006", 12),
        ("mixed-007", 13),
        ("mixed-008", 14),
        ("mixed-009", 15),
        ("mixed-001", 16),
        ("mixed-010", 17),
        ("mixed-011", 18),
    ]
    reasons = [e.reason for e in whole]
    assert "energy_j -1e+06 is not positive" in reasons[0]
    assert "energy_j 1e+308 is implausible" in reasons[1]
    assert "energy_j 'abc' is not a number in joules" in reasons[2]
    assert "energy_j '12 kJ' is not a number in joules" in reasons[3]
    assert "status 'DONE' is not one of pending, running, done, failed" in reasons[4]
    assert "repeats line 7" in reasons[5]
    assert "not finite" in reasons[6] and "is empty" in reasons[7]
    values = [e for e in report.excluded if e.column is not None]
    assert [(e.run_id, e.line, e.column) for e in values] == [("fp32-001", 2, "duration_s")]

    # the analysis used exactly the good runs, and the verdict is not "100% less"
    groups = report.stats["metrics"]["energy_j"]["groups"]
    assert groups["fp32"]["n"] == 5 and groups["mixed"]["n"] == 4
    assert report.stats["metrics"]["duration_s"]["groups"]["fp32"]["n"] == 4
    assert report.stats["verdict"][0].startswith("mixed vs fp32, energy: −19.")
    assert report.stats["runs"]["total"] == 17 and report.stats["runs"]["excluded"] == 8
    assert report.stats["runs"]["used"] + report.stats["runs"]["excluded"] == 17
    on_disk = json.loads((tmp_path / "stats.json").read_text())
    assert len(on_disk["excluded_runs"]) == 9
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert "## Runs not used" in md and "8 rows of 17 in runs.csv not used:" in md
    for run_id, line in [(e.run_id, e.line) for e in whole]:
        assert f"line {line}, run {run_id} (mixed)" in md
        assert f"line {line}, run {run_id} (mixed)" in html
    assert "line 2, run fp32-001, duration_s: duration_s -5 is not positive" in md
    assert any("8 runs cannot be used" in w for w in report.warnings)


def test_failed_unfinished_and_outlier_runs_are_named_too(tmp_path: Path) -> None:
    # 12 finished fp32 runs, one far out: the |z| > 3 rule removes it
    energies = {"fp32": [300.0 + i for i in range(13)] + [400.0], "mixed": [240.0] * 3 + [241.0]}
    rows = two_meter_folder(tmp_path, energies)
    rows[1].update(status="failed", error="MemoryError: out of memory", energy_j=None)
    rows[2].update(status="pending", energy_j=None)
    ResultsFolder(tmp_path).write_runs(rows)
    report = build_report(tmp_path)
    named = {e.run_id: (e.line, e.reason) for e in report.excluded}
    assert named["fp32-002"] == (3, "the run failed: MemoryError: out of memory")
    assert named["fp32-003"][1] == "the run has not finished (status pending)"
    assert named["fp32-014"][0] == 15 and named["fp32-014"][1].startswith("outlier")
    assert report.stats["runs"]["used"] + report.stats["runs"]["excluded"] == len(rows)


# -- §5 accuracy units ----------------------------------------------------------------------------


def test_one_percentage_among_fractions_refuses_the_column(tmp_path: Path) -> None:
    accuracy = {"fp32": [0.45, 0.46, 95.0, 0.44], "mixed": [0.44, 0.45, 0.43, 0.45]}
    two_meter_folder(tmp_path, ENERGIES, accuracy=accuracy)
    report = build_report(tmp_path)
    assert report.stats["accuracy_scale"] is None
    reason = report.stats["refused_columns"]["test_accuracy"]
    assert "mixes fractions" in reason and "fp32-003 (95)" in reason
    assert report.stats["metrics"]["test_accuracy"]["not_computed"]["comparisons"] == reason
    _energy, accuracy = report.stats["verdict"]
    assert accuracy == "Test accuracy not compared (it mixes fractions and percentages)."
    assert any("fp32-003 (95)" in w for w in report.warnings)
    odd = [e for e in report.excluded if e.column == "test_accuracy"]
    assert [(e.run_id, e.line) for e in odd] == [("fp32-003", 4)]
    assert "energy_vs_accuracy" in report.skipped_figures
    # the energy verdict is unaffected
    assert report.stats["verdict"][0].startswith("mixed vs fp32, energy: −19.")


@pytest.mark.slow
def test_accuracy_unit_is_read_from_the_whole_column(tmp_path: Path) -> None:
    accuracy = {"fp32": [45.0, 46.0, 47.0, 0.0], "mixed": [44.0, 45.0, 43.0, 45.0]}
    two_meter_folder(tmp_path, ENERGIES, accuracy=accuracy)
    report = build_report(tmp_path)
    assert report.stats["accuracy_scale"] == "percent"
    assert report.stats["refused_columns"] == {}
    # percentages are points already: the accuracy question's interval is in pp as it is
    (question,) = [q for q in report.stats["decisions"]["questions"] if q["kind"] != "difference"]
    assert question["unit"] == "pp"
    assert question["estimate"] == pytest.approx(
        np.mean(accuracy["mixed"]) - np.mean(accuracy["fp32"])
    )


# -- §4 the verdict's test and CI are one inference ----------------------------------------------


def _reads(outcome: str, kind: str, interval: tuple[float, float], lower: Any, upper: Any) -> bool:
    """Whether ``outcome`` is what the interval says, by the rules of report.decisions."""
    low, high = interval
    if kind == "difference":
        expected = "lower" if high < 0 else "higher" if low > 0 else "open"
    elif kind == "equivalence":
        inside = lower < low and high < upper
        expected = "equivalent" if inside else "beyond" if high < lower or low > upper else "open"
    elif lower is not None:
        expected = "not worse" if low > lower else "worse" if high < lower else "open"
    else:
        expected = "not worse" if high < upper else "worse" if low > upper else "open"
    return outcome == expected


values = st.lists(st.floats(0.8, 1.2), min_size=3, max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    values,
    values,
    values,
    st.lists(st.floats(0.9, 0.95), min_size=6, max_size=6),
    st.sampled_from(["test_accuracy=1pp", "test_accuracy=-1pp", "test_accuracy=2%"]),
    st.sampled_from([None, "energy_j=+5%", "energy_j=10%"]),
)
@pytest.mark.slow
def test_every_decision_agrees_with_its_interval(
    a: list[float],
    b: list[float],
    c: list[float],
    accuracy: list[float],
    accuracy_margin: str,
    energy_margin: str | None,
) -> None:
    """Every question of every policy (energy, accuracy; difference, equivalence and
    non-inferiority; pp and % margins): the decision is what its interval says, the adjusted p
    is below alpha exactly when a decision was made, and the verdict never says "not
    significant"."""
    energies = {"fp32": [1000.0 * x for x in a], "mixed": [950.0 * x for x in b]}
    energies["bf16"] = [900.0 * x for x in c]
    acc = {
        p: [accuracy[(i + k) % 6] for i in range(len(v))]
        for k, (p, v) in enumerate(energies.items())
    }
    margins = [accuracy_margin] + ([energy_margin] if energy_margin else [])
    analysis = in_memory_analysis(energies, acc, margins)
    family = analysis.family
    assert [(d.question.policy, d.question.metric) for d in family.decisions] == [
        ("mixed", "energy_j"),
        ("mixed", "test_accuracy"),
        ("bf16", "energy_j"),
        ("bf16", "test_accuracy"),
    ]
    for decision in family.decisions:
        q = decision.question
        if decision.outcome == "not tested":
            assert decision.interval is None and decision.p is None
            continue
        assert decision.interval is not None and decision.p_adjusted is not None
        assert _reads(decision.outcome, q.kind, decision.interval, q.lower_bound, q.upper_bound)
        assert (decision.p_adjusted < analysis.alpha) == decision.decided
    for line in verdict(analysis):
        assert "not significant" not in line


@settings(max_examples=40, deadline=None)
@given(values, values)
def test_one_question_shows_the_primary_tests_own_interval(a: list[float], b: list[float]) -> None:
    """With one question the family is that question: its interval is the energy comparison's
    95% CI and its decision is the primary test's at 0.05."""
    energies = {"fp32": [1000.0 * x for x in a], "mixed": [950.0 * x for x in b]}
    analysis = in_memory_analysis(energies)
    comparison = analysis.energy.against("mixed")
    assert comparison is not None
    (decision,) = analysis.family.decisions
    if comparison.relative_change_ci is None:  # no spread at all: neither test nor CI
        assert decision.outcome == "not tested"
        return
    shown = decision.shown_interval()
    assert shown == pytest.approx(comparison.relative_change_ci, rel=1e-9, abs=1e-9)
    lo, hi = comparison.relative_change_ci
    assert decision.decided == (lo > 0 or hi < 0)


def in_memory_analysis(
    energies: dict[str, list[float]],
    accuracy: dict[str, list[float]] | None = None,
    margins: list[str] | None = None,
) -> Analysis:
    """The analysis of done runs with these energies (and accuracies), without a folder."""
    rows: list[dict[str, Any]] = [
        {
            "run_id": f"{policy}-{i + 1:03d}",
            "policy": policy,
            "status": "done",
            "energy_j": e,
            **({"test_accuracy": accuracy[policy][i]} if accuracy else {}),
        }
        for policy, values in energies.items()
        for i, e in enumerate(values)
    ]
    data = ExperimentData(
        path=Path("in-memory"),
        experiment={},
        rows=rows,
        policies=list(energies),
        baseline=next(iter(energies)),
        estimated=False,
        domain_columns=[],
        counted_domains=None,
        counted_source="no finished run",
        lines=list(range(2, len(rows) + 2)),
        usable=[True] * len(rows),
    )
    # With 6 runs or fewer per policy the |z| > 3 rule cannot remove any.
    return analyse(prepare(data), margins=margins)


@pytest.mark.slow
def test_the_report_command_names_every_unused_run_on_stderr(tmp_path: Path) -> None:
    import subprocess
    import sys

    energies = {"fp32": [300.0, 306.0, 297.0, 303.0], "mixed": [240.0, 246.0, 243.0, 238.0]}
    rows = two_meter_folder(tmp_path, energies)
    rows.append({**rows[-1], "run_id": "mixed-005", "energy_j": "12 kJ"})
    rows.append({**rows[-1], "run_id": "mixed-006", "energy_j": 1e308})
    ResultsFolder(tmp_path).write_runs(rows)
    result = subprocess.run(
        [sys.executable, "-m", "greenprec", "report", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "greenprec: 2 of 10 runs not used:" in result.stderr
    assert "runs.csv line 10, run mixed-005 (mixed): energy_j '12 kJ' is not a number" in (
        result.stderr
    )
    assert "runs.csv line 11, run mixed-006 (mixed): energy_j 1e+308 is implausible" in (
        result.stderr
    )
