"""greenprec report: stats.json against scipy, outliers, degenerate folders, files, CLI."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from scipy import stats as sps
from typer.testing import CliRunner

from greenprec.cli.report import report_command
from greenprec.errors import ConfigError
from greenprec.report import build_report
from greenprec.report.analysis import prepare
from greenprec.report.build import power_traces
from greenprec.report.data import load
from greenprec.report.formatting import pvalue
from greenprec.report.prose import trace_warnings
from legacy_folder import LegacyFolder as ResultsFolder

SHARES = {"rapl/package-0": 0.75, "rapl/dram": 0.25, "rapl/core": 0.4}  # core is inside package
COUNTED_W = 0.75 + 0.25


def write_folder(
    path: Path,
    energies: dict[str, Sequence[float]],
    *,
    accuracy: dict[str, Sequence[float]] | None = None,
    duration_s: float = 20.0,
    samples: bool = True,
    failed: Sequence[str] = (),
    estimated: bool = False,
    experiment: bool = True,
    warnings: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """A results folder as the runner writes it, with exactly these energies."""
    folder = ResultsFolder(path)
    path.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    order = 0
    for policy, values in energies.items():
        for index, energy in enumerate(values):
            order += 1
            run_id = f"{policy}-{index + 1:03d}"
            row: dict[str, Any] = {
                "run_id": run_id,
                "order": order,
                "policy": policy,
                "repetition": index + 1,
                "seed": order,
            }
            if run_id in failed:
                row.update(status="failed", error="MemoryError: out of memory")
                rows.append(row)
                continue
            duration = duration_s + 0.1 * index
            row.update(
                status="done",
                duration_s=duration,
                energy_j=float(energy),
                mean_power_w=float(energy) / duration,
                meter="estimate" if estimated else "rapl",
                estimated=estimated,
            )
            if accuracy is not None:
                row["test_accuracy"] = float(accuracy[policy][index])
            for domain, share in SHARES.items():
                row[f"energy_j:{domain}"] = float(energy) * share
            rows.append(row)
            if samples:
                power = float(energy) / duration
                t = np.arange(0.0, duration, 0.2)
                folder.write_samples(
                    run_id,
                    [
                        (float(ti), domain, power * share, power * share * float(ti))
                        for ti in t
                        for domain, share in SHARES.items()
                    ],
                )
    folder.write_runs(rows)
    if experiment:
        folder.write_experiment(
            {
                "format_version": 1,
                "status": "complete",
                "config": {"policies": list(energies), "workload": "digits-cnn", "runs": 12},
                "meters": {
                    "requested": ["auto"],
                    "used": ["estimate" if estimated else "rapl"],
                    "estimated": estimated,
                },
                "warnings": list(warnings),
                "versions": {"greenprec": "test", "python": "3.11"},
                "host": {"cpu_model": "Test CPU 9000", "logical_cpus": 2, "gpus": []},
            }
        )
    return rows


def study_like(seed: int = 1, n: int = 12) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    rng = np.random.default_rng(seed)
    energies = {
        "fp32": [float(x) for x in rng.normal(32_000, 250, n)],
        "mixed": [float(x) for x in rng.normal(28_000, 250, n)],
    }
    if n > 10:
        energies["fp32"][4] = 36_000.0  # far outside: the |z| > 3 rule removes it
    accuracy = {
        "fp32": [float(x) for x in rng.normal(0.46, 0.01, n)],
        "mixed": [float(x) for x in rng.normal(0.45, 0.01, n)],
    }
    return energies, accuracy


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    path = tmp_path_factory.mktemp("study")
    energies, accuracy = study_like()
    write_folder(path, energies, accuracy=accuracy, failed=["mixed-012"])
    report = build_report(path)
    return path, report, {"energies": energies, "accuracy": accuracy}


# -- stats.json ----------------------------------------------------------------------------------


def test_stats_json_has_the_contract_keys(study: tuple[Path, Any, dict[str, Any]]) -> None:
    path, report, _ = study
    data = json.loads((path / "stats.json").read_text())
    assert data == report.stats
    # the policy compared with is the "reference"; "baseline" is the idle power measurement
    assert data["reference"] == "fp32" and "baseline" not in data
    assert {"energy_j", "duration_s", "mean_power_w", "test_accuracy"} <= set(data["metrics"])
    group_keys = {"n", "mean", "sd", "cv_pct", "shapiro_w", "shapiro_p", "outliers"}
    comparison_keys = {
        "a", "b", "welch_t", "welch_p", "student_t", "student_p", "mannwhitney_u",
        "mannwhitney_p", "cohens_d", "hedges_g", "relative_change_pct", "relative_change_ci",
        "primary_test",
    }  # fmt: skip
    for metric in ("energy_j", "duration_s", "mean_power_w", "test_accuracy"):
        entry = data["metrics"][metric]
        assert set(entry["groups"]) == {"fp32", "mixed"}
        for group in entry["groups"].values():
            assert group_keys <= set(group)
        assert len(entry["comparisons"]) == 1
        assert comparison_keys <= set(entry["comparisons"][0])
        assert entry["comparisons"][0]["a"] == "fp32" and entry["comparisons"][0]["b"] == "mixed"
    # "J per accuracy point" (mean J over mean accuracy %) had no defensible meaning: gone
    assert "energy_per_accuracy_point_j" not in data
    decisions = data["decisions"]
    assert decisions["size"] == 2 and decisions["alpha"] == 0.05
    assert [(q["metric"], q["kind"]) for q in decisions["questions"]] == [
        ("energy_j", "difference"),
        ("test_accuracy", "equivalence"),
    ]
    assert "runs_needed" in data
    # strict JSON: no NaN or Infinity tokens anywhere
    json.loads((path / "stats.json").read_text(), parse_constant=pytest.fail)


def test_numbers_agree_with_scipy(study: tuple[Path, Any, dict[str, Any]]) -> None:
    _, report, known = study
    fp32 = np.delete(np.array(known["energies"]["fp32"]), 4)  # the outlier
    mixed = np.array(known["energies"]["mixed"][:11])  # mixed-012 failed
    energy = report.stats["metrics"]["energy_j"]
    g = energy["groups"]["fp32"]
    assert g["n"] == 11
    assert g["mean"] == pytest.approx(fp32.mean())
    assert g["sd"] == pytest.approx(fp32.std(ddof=1))
    assert g["cv_pct"] == pytest.approx(100 * fp32.std(ddof=1) / fp32.mean())
    w, p = sps.shapiro(fp32)
    assert g["shapiro_w"] == pytest.approx(w) and g["shapiro_p"] == pytest.approx(p)
    c = energy["comparisons"][0]
    welch = sps.ttest_ind(mixed, fp32, equal_var=False)
    student = sps.ttest_ind(mixed, fp32, equal_var=True)
    mwu = sps.mannwhitneyu(mixed, fp32, alternative="two-sided")
    assert c["welch_t"] == pytest.approx(welch.statistic)
    assert c["welch_p"] == pytest.approx(welch.pvalue, rel=1e-6)
    assert c["student_t"] == pytest.approx(student.statistic)
    assert c["mannwhitney_u"] == pytest.approx(mwu.statistic)
    assert c["mannwhitney_p"] == pytest.approx(mwu.pvalue)
    pooled = math.sqrt((10 * fp32.var(ddof=1) + 10 * mixed.var(ddof=1)) / 20)
    assert c["cohens_d"] == pytest.approx((mixed.mean() - fp32.mean()) / pooled)
    assert c["relative_change_pct"] == pytest.approx(100 * (mixed.mean() / fp32.mean() - 1))
    lo, hi = c["relative_change_ci"]
    assert lo < c["relative_change_pct"] < hi
    # the verdict's energy decision is the same Welch log-ratio test, Holm-adjusted over the
    # family of 2 questions, with its interval at the level the decision was made
    energy = report.stats["decisions"]["questions"][0]
    assert energy["p"] == pytest.approx(c["log_ratio_p"], rel=1e-9)
    assert energy["decision_level"] == pytest.approx(0.025)
    log_ratio = math.log(mixed.mean() / fp32.mean())
    se = math.sqrt(
        fp32.var(ddof=1) / (11 * fp32.mean() ** 2) + mixed.var(ddof=1) / (11 * mixed.mean() ** 2)
    )
    half = sps.t.isf(0.0125, c["log_ratio_df"]) * se
    assert energy["interval"] == pytest.approx(
        [100 * math.expm1(log_ratio - half), 100 * math.expm1(log_ratio + half)], rel=1e-9
    )
    # runs needed: never from the observed change (issue 20); without a smallest effect of
    # interest for energy there is no figure, only the pooled CV
    planning = report.stats["runs_needed"]["comparisons"][0]
    cv = 100 * pooled / fp32.mean()
    assert planning["cv_pct"] == pytest.approx(cv)
    assert planning["runs_needed_per_policy"] is None and "achieved_power" not in planning
    assert planning["enough"] is None


def test_outlier_is_removed_from_every_metric(study: tuple[Path, Any, dict[str, Any]]) -> None:
    _, report, _ = study
    removed = report.stats["outliers"]["removed"]
    assert [r["run_id"] for r in removed] == ["fp32-005"]
    for metric in ("energy_j", "duration_s", "mean_power_w", "test_accuracy"):
        group = report.stats["metrics"][metric]["groups"]["fp32"]
        assert group["n"] == 11
        assert group["outliers"] == ["fp32-005"]
    durations = [20.0 + 0.1 * i for i in range(12) if i != 4]
    assert report.stats["metrics"]["duration_s"]["groups"]["fp32"]["mean"] == pytest.approx(
        np.mean(durations)
    )
    assert any("fp32-005" in w for w in report.warnings)


def test_failed_runs_are_listed_not_analysed(study: tuple[Path, Any, dict[str, Any]]) -> None:
    _, report, _ = study
    assert report.stats["failed_runs"] == [
        {"run_id": "mixed-012", "policy": "mixed", "error": "MemoryError: out of memory"}
    ]
    assert report.stats["metrics"]["energy_j"]["groups"]["mixed"]["n"] == 11
    assert any("mixed-012" in w and "MemoryError" in w for w in report.warnings)


@pytest.mark.slow
def test_no_outliers_keeps_every_run(tmp_path: Path) -> None:
    energies, accuracy = study_like()
    write_folder(tmp_path, energies, accuracy=accuracy)
    report = build_report(tmp_path, outliers=False)
    assert report.stats["outliers"]["applied"] is False
    assert report.stats["outliers"]["removed"] == []
    assert [r["run_id"] for r in report.stats["outliers"]["flagged"]] == ["fp32-005"]
    group = report.stats["metrics"]["energy_j"]["groups"]["fp32"]
    assert group["n"] == 12 and group["outliers"] == []
    assert group["mean"] == pytest.approx(np.mean(energies["fp32"]))


def test_verdict_reads_like_the_study(study: tuple[Path, Any, dict[str, Any]]) -> None:
    _, report, _ = study
    line, accuracy, family, used = report.stats["verdict"]
    # fp32-005 (an outlier) and mixed-012 (failed) are not used, and the verdict says so
    assert (
        used
        == "Based on 22 of 24 runs: 2 not used (1 failed, 1 outlier removed; see Runs not used)."
    )
    # one short sentence per question: estimate, interval, test, decision
    assert re.match(
        r"mixed vs fp32, energy: −1\d\.\d% \(97\.5% Holm-adjusted CI −1\d\.\d% to −\d+\.\d%; "
        r"Welch t on the log ratio, p [=<] .*\): mixed used less energy than fp32",
        line,
    ), line
    assert accuracy.startswith("mixed vs fp32, test accuracy: ")
    assert "TOST (Welch), margin ±1 pp" in accuracy and " pp " in accuracy
    assert family.startswith("The 2 questions (energy, test accuracy of mixed against fp32)")


def test_counted_domains_make_the_power_trace(tmp_path: Path) -> None:
    write_folder(tmp_path, {"fp32": [400.0, 420.0, 410.0], "mixed": [300.0, 310.0, 305.0]})
    data = load(tmp_path)
    # core sits inside the package: only package + dram add up to energy_j
    assert data.counted_domains == ["rapl/dram", "rapl/package-0"]
    traces, info = power_traces(data, prepare(data))
    assert trace_warnings(info) == []
    assert info.runs == {"fp32": 3, "mixed": 3}
    expected = np.mean([e / (20.0 + 0.1 * i) for i, e in enumerate([400.0, 420.0, 410.0])])
    assert traces["fp32"]["mean_power_w"].iloc[3] == pytest.approx(expected * COUNTED_W)


def test_report_files_are_written_and_self_contained(
    study: tuple[Path, Any, dict[str, Any]],
) -> None:
    path, report, _ = study
    names = {"energy_violin", "power_trace", "energy_vs_accuracy", "duration_violin"}
    assert {f.name for f in report.figures} == names
    for name in names:
        assert (path / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (path / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    html = (path / "report.html").read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert html.count('src="data:image/png;base64,') == 4
    md = (path / "report.md").read_text()
    for text in (
        "## Verdict",
        "| fp32 |",
        "fp32-005",
        "![Energy per run](figures/energy_violin.png)",
    ):
        assert text in md
    assert "Test CPU 9000" in md and "Test CPU 9000" in html
    assert "estimated" not in report.content.summary.headers[2]


@pytest.mark.slow
def test_reports_are_reproducible(tmp_path: Path) -> None:
    energies, accuracy = study_like(seed=3, n=5)
    write_folder(tmp_path, energies, accuracy=accuracy)
    first = build_report(tmp_path)
    svg = (tmp_path / "figures" / "energy_violin.svg").read_bytes()
    second = build_report(tmp_path)
    assert first.stats == second.stats
    assert (tmp_path / "figures" / "energy_violin.svg").read_bytes() == svg


@pytest.mark.slow
def test_estimated_meter_labels_every_energy_figure(tmp_path: Path) -> None:
    energies, accuracy = study_like(n=4)
    warning = "meter estimate is an estimate, not a measurement"
    write_folder(tmp_path, energies, accuracy=accuracy, estimated=True, warnings=[warning])
    report = build_report(tmp_path)
    assert report.stats["estimated"] is True
    energy_figures = [f for f in report.figures if f.name != "duration_violin"]
    assert energy_figures and all("estimated" in f.title for f in energy_figures)
    headers = report.content.summary.headers
    assert "energy (J) estimated" in headers and "mean power (W) estimated" in headers
    line = report.stats["verdict"][0]
    assert line.startswith("mixed vs fp32, energy (estimated): ")
    # the estimate meter's energy is CPU time times watts: the ratio is a CPU-time ratio
    assert "this ratio is essentially the ratio of the runs' CPU times" in line
    html = (tmp_path / "report.html").read_text()
    assert "Estimated energy." in html and "ESTIMATED" in html
    assert sum(warning in w for w in report.warnings) == 1


# -- figures: few runs, the power trace's end ---------------------------------------------------


def _svg_groups(path: Path) -> list[str]:
    """The kinds of artist an SVG figure holds (matplotlib names its groups after them)."""
    return re.findall(r'<g id="([A-Za-z]+)_\d+"', path.read_text())


@pytest.mark.slow
def test_few_runs_are_drawn_as_runs_with_their_mean_not_as_violins(tmp_path: Path) -> None:
    # Three runs made a violin that looked like a blob, with dots too small to count.
    energies, accuracy = study_like(seed=5, n=3)
    write_folder(tmp_path, energies, accuracy=accuracy)
    report = build_report(tmp_path)
    captions = {f.name: f.caption for f in report.figures}
    for name in ("energy_violin", "duration_violin"):
        assert captions[name].startswith("Every run with the mean and its 95% CI (t-based)")
        groups = _svg_groups(tmp_path / "figures" / f"{name}.svg")
        assert "FillBetweenPolyCollection" not in groups  # no violin body
        assert "LineCollection" in groups  # the CI bars


@pytest.mark.slow
def test_ten_runs_or_more_keep_the_violin(tmp_path: Path) -> None:
    energies, accuracy = study_like(seed=5, n=12)
    energies["mixed"] = energies["mixed"][:4]
    accuracy["mixed"] = accuracy["mixed"][:4]
    write_folder(tmp_path, energies, accuracy=accuracy)
    report = build_report(tmp_path)
    caption = next(f.caption for f in report.figures if f.name == "energy_violin")
    assert caption.startswith("Policies with 10 or more runs: violin (density) with box")
    assert "with fewer: every run with the mean and its 95% CI" in caption
    groups = _svg_groups(tmp_path / "figures" / "energy_violin.svg")
    assert groups.count("FillBetweenPolyCollection") == 1  # fp32's violin only


def _samples_with_an_exit_reading(folder: ResultsFolder, run_id: str, power_w: float) -> None:
    """Readings every 0.2 s to 2.0 s at ``power_w``, then the exit reading 0.05 s later over a
    short last interval at a fifth of it, as measure() takes one when the block ends."""
    rows = [
        (round(0.2 * i, 10), domain, power_w * share, 0.0)
        for i in range(11)
        for domain, share in SHARES.items()
    ]
    rows += [(2.05, domain, power_w * share / 5, 0.0) for domain, share in SHARES.items()]
    folder.write_samples(run_id, rows)


def test_the_power_trace_does_not_dip_at_each_runs_last_bin(tmp_path: Path) -> None:
    write_folder(
        tmp_path, {"fp32": [400.0, 400.0, 400.0], "mixed": [300.0, 300.0, 300.0]}, samples=False
    )
    folder = ResultsFolder(tmp_path)
    for policy, power in (("fp32", 20.0), ("mixed", 15.0)):
        for index in range(1, 4):
            _samples_with_an_exit_reading(folder, f"{policy}-{index:03d}", power)
    data = load(tmp_path)
    traces, _ = power_traces(data, prepare(data))
    # The bin [2.0, 2.5) held one full reading and the exit one: its mean was 60% of the
    # power, and every trace fell there. The run ends inside it: it is left out.
    for policy, power in (("fp32", 20.0), ("mixed", 15.0)):
        trace = traces[policy]
        assert trace["t_s"].tolist() == [0.0, 0.5, 1.0, 1.5]
        np.testing.assert_allclose(trace["mean_power_w"], power * COUNTED_W, rtol=1e-9)
    report = build_report(tmp_path)
    np.testing.assert_allclose(report.traces["fp32"]["mean_power_w"], 20.0 * COUNTED_W)


def test_a_run_shorter_than_one_bin_keeps_its_only_bin(tmp_path: Path) -> None:
    write_folder(tmp_path, {"fp32": [4.0, 4.0], "mixed": [3.0, 3.0]}, duration_s=0.3)
    data = load(tmp_path)
    traces, info = power_traces(data, prepare(data))
    assert info.runs == {"fp32": 2, "mixed": 2} and trace_warnings(info) == []
    assert traces["fp32"]["t_s"].tolist() == [0.0]


# -- the verdict says how many runs it rests on ------------------------------------------------


def test_the_verdict_says_when_runs_were_not_used(tmp_path: Path) -> None:
    write_folder(
        tmp_path,
        {"fp32": [10.0, 11.0, 12.0], "mixed": [8.0, 9.0, 9.5]},
        failed=["fp32-002", "fp32-003", "mixed-001", "mixed-003"],
    )
    report = build_report(tmp_path)
    line = "Based on 2 of 6 runs: 4 not used (4 failed; see Runs not used)."
    assert report.verdict[-1] == line == report.stats["verdict"][-1]
    md = (tmp_path / "report.md").read_text()
    verdict = md.split("## Verdict", 1)[1].split("##", 1)[0]
    assert f"- {line}" in verdict
    assert line in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_the_verdict_says_nothing_more_when_every_run_is_used(tmp_path: Path) -> None:
    write_folder(tmp_path, {"fp32": [10.0, 11.0, 12.0], "mixed": [8.0, 9.0, 9.5]})
    report = build_report(tmp_path)
    assert not any("Based on" in v for v in report.verdict)
    assert report.verdict[1:] == ["Test accuracy not compared (no test_accuracy values)."]


# -- units and names ---------------------------------------------------------------------------


def test_accuracy_differences_are_percentage_points_everywhere(
    study: tuple[Path, Any, dict[str, Any]],
) -> None:
    path, report, known = study
    fp32 = np.delete(np.array(known["accuracy"]["fp32"]), 4)  # the outlier
    mixed = np.array(known["accuracy"]["mixed"][:11])  # mixed-012 failed
    verdict = re.search(r"test accuracy: ([+−]\d+\.\d\d) pp", report.verdict[1])
    assert verdict is not None
    (row,) = [r for r in report.content.tests.rows if r[0] == "test accuracy (%)"]
    # "+0.6 %" (a relative change) beside the verdict's "+0.59 pp" read as two numbers of
    # points: the tests table says pp too, with Welch's interval of the difference.
    change = re.fullmatch(r"([+−]\d+\.\d\d) pp \(([+−]\d+\.\d\d) to ([+−]\d+\.\d\d) pp\)", row[2])
    assert change is not None, row[2]
    assert change.group(1) == verdict.group(1)
    diff = 100 * (mixed.mean() - fp32.mean())
    assert float(change.group(1).replace("−", "-")) == pytest.approx(diff, abs=0.006)
    ci = sps.ttest_ind(mixed, fp32, equal_var=False).confidence_interval(0.95)
    for text, bound in zip(change.groups()[1:], (ci.low, ci.high), strict=True):
        assert float(text.replace("−", "-")) == pytest.approx(100 * bound, abs=0.006)
    (effect,) = [r for r in report.content.effects.rows if r[0] == "test accuracy (%)"]
    assert effect[4] == f"{verdict.group(1)} pp"
    md = (path / "report.md").read_text()
    assert "pp (" in md and "Welch's t on the difference for test accuracy (in percentage" in md


def test_the_compared_with_policy_is_the_reference_not_the_baseline(tmp_path: Path) -> None:
    energies, accuracy = study_like(n=4)
    write_folder(tmp_path, energies, accuracy=accuracy)
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    experiment["config"]["baseline_s"] = 30.0  # the idle measurement keeps its name
    ResultsFolder(tmp_path).write_experiment(experiment)
    report = build_report(tmp_path)
    assert report.stats["reference"] == "fp32"
    assert "baseline" not in (tmp_path / "stats.json").read_text()
    assert report.content.subtitle.startswith("fp32, mixed; reference fp32;")
    assert "reference mean" in report.content.effects.headers
    for name in ("report.md", "report.html"):
        text = (tmp_path / name).read_text()
        # "baseline" is only the idle power measurement
        assert re.findall(r"\w*\W*baseline", text) == ["idle baseline"], name


@pytest.mark.slow
def test_the_mock_meter_is_simulated_not_measured(tmp_path: Path) -> None:
    energies, accuracy = study_like(n=4)
    write_folder(tmp_path, energies, accuracy=accuracy)
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    experiment["meters"]["used"] = ["mock"]
    ResultsFolder(tmp_path).write_experiment(experiment)
    report = build_report(tmp_path)
    assert ("meter", "mock — SIMULATED (not measured)") in report.content.environment
    assert "energy SIMULATED, not measured" in report.content.subtitle
    assert any(w.startswith("meter mock simulates power") for w in report.warnings)
    md = (tmp_path / "report.md").read_text()
    assert "**meter**: mock — SIMULATED (not measured)" in md and "— measured" not in md


@pytest.mark.slow
def test_a_meter_class_that_says_simulated_is_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenprec.meters.base import Meter

    class Replay(Meter):
        name = "replay"
        simulated = True

    monkeypatch.setattr("greenprec.meters.registry.meter_classes", lambda: {"replay": Replay})
    rows = write_folder(tmp_path, {"fp32": [10.0, 11.0], "mixed": [8.0, 9.0]}, experiment=False)
    for row in rows:
        row["meter"] = "rapl+replay"  # no experiment.json: the runs' meter column says it
    ResultsFolder(tmp_path).write_runs(rows)
    report = build_report(tmp_path)
    assert ("meter", "rapl, replay — SIMULATED by replay (not measured)") in (
        report.content.environment
    )


def test_a_simulated_meter_recorded_when_measuring_stays_simulated_without_its_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report reads experiment.json's meters.simulated, recorded as the meters were
    opened: a plugin meter that is not installed where the report runs is still simulated."""
    from greenprec.experiment.config import load_config
    from greenprec.experiment.runner import run_experiment
    from greenprec.meters import registry
    from greenprec.meters.mock import MockMeter

    class Replay(MockMeter):
        name = "replay"
        description = "a plugin's simulated meter"

    installed = registry.meter_classes()
    monkeypatch.setattr(registry, "meter_classes", lambda: {**installed, "replay": Replay})
    config = load_config(
        {
            "policies": ["fp32", "mixed"],
            "workload": "experiment_workloads:sleepy",
            "params": {"sleep_s": 0.01},
            "runs": 2,
            "isolation": "inline",
            "meters": ["replay"],
            "warmup_s": 0.0,
            "cooldown_s": 0.0,
        }
    )
    out = tmp_path / "exp"
    run_experiment(config, out)
    assert json.loads((out / "experiment.json").read_text())["meters"]["simulated"] == ["replay"]
    monkeypatch.undo()  # the plugin is gone: the registry no longer knows "replay"
    assert "replay" not in registry.meter_classes()
    report = build_report(out)
    assert ("meter", "replay — SIMULATED (not measured)") in report.content.environment
    assert "energy SIMULATED, not measured" in report.content.subtitle


@pytest.mark.slow
def test_the_recorded_simulated_list_wins_over_the_installed_meters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenprec.meters.base import Meter

    class Replay(Meter):
        name = "replay"
        simulated = True

    monkeypatch.setattr("greenprec.meters.registry.meter_classes", lambda: {"replay": Replay})
    energies, accuracy = study_like(n=4)
    write_folder(tmp_path, energies, accuracy=accuracy)
    experiment = json.loads((tmp_path / "experiment.json").read_text())
    experiment["meters"].update(used=["rapl", "replay"], simulated=[])  # measured, it said
    ResultsFolder(tmp_path).write_experiment(experiment)
    assert ("meter", "rapl, replay — measured") in build_report(tmp_path).content.environment
    experiment["meters"]["simulated"] = ["replay"]
    ResultsFolder(tmp_path).write_experiment(experiment)
    assert ("meter", "rapl, replay — SIMULATED by replay (not measured)") in (
        build_report(tmp_path).content.environment
    )


# -- degenerate folders ----------------------------------------------------------------------------


def _not_computed_text(path: Path) -> str:
    return (path / "report.md").read_text()


def test_one_policy(tmp_path: Path) -> None:
    write_folder(tmp_path, {"fp32": [10.0, 11.0, 12.0]}, accuracy={"fp32": [0.5, 0.6, 0.55]})
    report = build_report(tmp_path)
    energy = report.stats["metrics"]["energy_j"]
    assert energy["comparisons"] == []
    assert "only one policy" in energy["not_computed"]["comparisons"]
    assert report.stats["verdict"][0].startswith("No comparison")
    assert report.stats["runs_needed"]["comparisons"] == []


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_runs_per_policy(tmp_path: Path, n: int) -> None:
    write_folder(
        tmp_path,
        {"fp32": [10.0, 12.0][:n], "mixed": [8.0, 9.0][:n]},
        accuracy={"fp32": [0.5, 0.52][:n], "mixed": [0.49, 0.5][:n]},
    )
    report = build_report(tmp_path)
    group = report.stats["metrics"]["energy_j"]["groups"]["fp32"]
    assert group["shapiro_w"] is None and "at least 3" in group["not_computed"]["shapiro_w"]
    c = report.stats["metrics"]["energy_j"]["comparisons"][0]
    assert c["primary_test"] == "welch_log_ratio"
    if n == 1:
        assert c["welch_t"] is None and "at least 2" in c["not_computed"]["welch_t"]
        assert report.stats["runs_needed"]["comparisons"][0]["runs_needed_per_policy"] is None
    else:
        assert c["welch_t"] == pytest.approx(
            sps.ttest_ind([8.0, 9.0], [10.0, 12.0], equal_var=False).statistic
        )
    assert any("too few runs" in w for w in report.warnings)
    assert "## Not computed" in _not_computed_text(tmp_path)
    # violins need spread; with one run per policy the points and boxes are still drawn
    assert "energy_violin" in {f.name for f in report.figures}


def test_no_samples_and_no_accuracy(tmp_path: Path) -> None:
    write_folder(tmp_path, {"fp32": [10.0, 11.0, 12.0], "mixed": [8.0, 9.0, 9.5]}, samples=False)
    report = build_report(tmp_path)
    assert set(report.skipped_figures) == {"power_trace", "energy_vs_accuracy"}
    accuracy = report.stats["metrics"]["test_accuracy"]
    assert accuracy["groups"]["fp32"]["n"] == 0
    assert "no finished run reported test_accuracy" in accuracy["not_computed"]["comparisons"]
    assert "Test accuracy not compared (no test_accuracy values)." in report.stats["verdict"]
    assert any("no samples/<run_id>.csv for 6 run(s)" in w for w in report.warnings)
    text = _not_computed_text(tmp_path)
    assert "figure power_trace:" in text


def test_every_run_failed(tmp_path: Path) -> None:
    write_folder(tmp_path, {"fp32": [1.0, 2.0], "mixed": [1.0, 2.0]},
                 failed=["fp32-001", "fp32-002", "mixed-001", "mixed-002"])  # fmt: skip
    report = build_report(tmp_path)
    assert report.figures == []
    assert report.stats["runs"]["used"] == 0
    assert any("no run finished" in w for w in report.warnings)
    assert (tmp_path / "report.html").exists()


def test_empty_runs_csv_and_no_experiment_json(tmp_path: Path) -> None:
    (tmp_path / "runs.csv").write_text("run_id,policy,status\n")
    report = build_report(tmp_path)
    assert report.stats["reference"] is None
    assert report.stats["metrics"]["energy_j"]["groups"] == {}
    assert any("no experiment.json" in w for w in report.warnings)


def test_not_a_results_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a greenprec results folder"):
        build_report(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        build_report(tmp_path / "missing")
    (tmp_path / "experiment.json").write_text("{not json")
    (tmp_path / "runs.csv").write_text("run_id,policy,status\n")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_report(tmp_path)


# -- command ---------------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report_command)

    @app.command("noop")
    def _noop() -> None:  # a second command makes typer keep "report" as a subcommand
        pass

    return app


@pytest.mark.slow
def test_command_prints_the_summary(tmp_path: Path) -> None:
    energies, accuracy = study_like(n=4)
    write_folder(tmp_path, energies, accuracy=accuracy)
    result = CliRunner().invoke(_app(), ["report", str(tmp_path)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "fp32" in result.stdout and "mixed" in result.stdout
    assert "energy (J)" in result.stdout
    assert "less energy than fp32" in result.stdout
    assert f"wrote {tmp_path / 'report.html'}" in result.stdout
    result = CliRunner().invoke(_app(), ["report", str(tmp_path), "--no-outliers", "-q"])
    assert result.exit_code == 0 and "energy (J)" not in result.stdout


def test_command_on_a_plain_folder_is_a_config_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["report", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)
    assert "\n" not in str(result.exception)


# -- formatting and import cost --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0876, "p = 0.09"),
        (0.004321, "p = 0.004"),
        (2.34e-5, "p = 2.3e-5"),
        (3e-71, "p < 1e-70"),
        (1e-80, "p < 1e-79"),
        (0.0, "p < 1e-300"),
        (None, "p not computed"),
        (0.999, "p = 1.00"),
    ],
)
def test_pvalue_format(p: float | None, text: str) -> None:
    assert pvalue(p) == text


def test_import_greenprec_report_does_not_import_matplotlib() -> None:
    code = "import sys, greenprec.report; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_broken_cells_and_samples_are_warnings_not_crashes(tmp_path: Path) -> None:
    rows = write_folder(tmp_path, {"fp32": [10.0, 11.0, 12.0], "mixed": [8.0, 9.0, 9.5]})
    rows[1]["energy_j"] = float("inf")
    ResultsFolder(tmp_path).write_runs(rows)
    (tmp_path / "samples" / "fp32-003.csv").write_text("this,is\nnot,samples\n")
    (tmp_path / "samples" / "mixed-001.csv").write_text(
        "t_s,domain,power_w,energy_j\n0.0,gpu/0,5.0,0.0\n0.2,gpu/0,5.0,1.0\n"
    )
    report = build_report(tmp_path)
    assert report.stats["metrics"]["energy_j"]["groups"]["fp32"]["n"] == 2
    assert any("fp32-002 (line 3)" in w and "left out" in w for w in report.warnings)
    assert [(e.run_id, e.line) for e in report.excluded] == [("fp32-002", 3)]
    assert "energy_j inf is not finite" in report.excluded[0].reason
    assert any("skips run fp32-003" in w and "fp32-003.csv" in w for w in report.warnings)
    assert any(
        "no 0.5 s bin with a reading of every counted domain (mixed-001: " in w
        for w in report.warnings
    )
    # fp32-002 (infinite energy) is left out of the whole analysis, its power trace included
    assert report.stats["power_trace"]["runs"] == {"fp32": 1, "mixed": 2}


def test_importing_the_commands_stays_light() -> None:
    code = (
        "import sys, greenprec.cli.report, greenprec.cli.importing\n"
        "print(sorted({'pandas', 'scipy', 'matplotlib', 'numpy'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
