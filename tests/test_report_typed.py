"""The report's analysis is typed (issue 10): stats.json, report.md and report.html stay what
they were before the analysis became dataclasses.

The golden files under ``tests/fixtures/report-golden/`` were written by the dict-based
analysis (before the change) with ``python tests/test_report_typed.py --regenerate``; only
regenerate them for an intended change of the report's content, and say so in the commit.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from greenprec import stats
from greenprec.report import Report, build_report
from greenprec.testing.synthetic import DEFAULT_POLICIES, PolicySpec, write_synthetic_folder
from legacy_folder import LegacyFolder, join_domains

GOLDEN = Path(__file__).parent / "fixtures" / "report-golden"
DOMAINS = {"rapl/package-0": 0.6, "nvml/gpu0": 0.4, "rapl/core": 0.3}
COUNTED = ["rapl/package-0", "nvml/gpu0"]


# -- the folders ---------------------------------------------------------------------------------


def _legacy(
    path: Path,
    energies: dict[str, list[float]],
    *,
    accuracy: dict[str, list[float]] | None = None,
    samples: bool = True,
) -> list[dict[str, Any]]:
    """A 0.1-layout folder (runs.csv as the record) with exactly these runs."""
    folder = LegacyFolder(path)
    path.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for policy, values in energies.items():
        for index, energy in enumerate(values):
            run_id = f"{policy}-{index + 1:03d}"
            duration = 6.0 + 0.1 * index
            row: dict[str, Any] = {
                "run_id": run_id,
                "order": len(rows) + 1,
                "policy": policy,
                "repetition": index + 1,
                "seed": len(rows) + 1,
                "status": "done",
                "duration_s": duration,
                "energy_j": energy,
                "mean_power_w": energy / duration,
                "meter": "rapl+nvml",
                "estimated": False,
                "counted_domains": join_domains(COUNTED),
            }
            if accuracy is not None:
                row["test_accuracy"] = accuracy[policy][index]
            for domain, share in DOMAINS.items():
                row[f"energy_j:{domain}"] = energy * share
            rows.append(row)
            if samples:
                power = energy / duration
                folder.write_samples(
                    run_id,
                    [
                        (float(t), domain, power * share, 0.0)
                        for t in np.arange(0.0, duration, 0.2)
                        for domain, share in DOMAINS.items()
                    ],
                )
    folder.write_runs(rows)
    folder.write_experiment(
        {
            "format_version": 1,
            "status": "complete",
            "config": {"policies": list(energies), "workload": "digits-cnn", "runs": 4},
            "meters": {"requested": ["auto"], "used": ["rapl", "nvml"], "estimated": False},
            "versions": {"greenprec": "test", "python": "3.11"},
            "host": {"cpu_model": "Test CPU 9000", "logical_cpus": 2, "gpus": []},
        }
    )
    return rows


def _synthetic(path: Path) -> dict[str, Any]:
    write_synthetic_folder(path, samples_per_run=300)
    return {}


def _synthetic_three(path: Path, *, outliers: bool = True) -> dict[str, Any]:
    policies = {**DEFAULT_POLICIES, "bf16": PolicySpec(31_000.0, 900.0, 230.0, 3.0, 0.45, 0.01)}
    write_synthetic_folder(
        path,
        runs=12,
        policies=policies,
        samples_per_run=150,
        seed=7,
        outlier_runs=["fp32-004"],
        failed_runs=["mixed-005", "bf16-011"],
        estimated=True,
    )
    return {"outliers": outliers}


def _damaged(path: Path) -> dict[str, Any]:
    energies = {
        "fp32": [300.0 + i for i in range(13)] + [400.0],
        "mixed": [240.0, 246.0, 243.0, 238.0, 244.0],
    }
    accuracy = {
        "fp32": [45.0 + 0.1 * i for i in range(14)],
        "mixed": [44.0, 45.0, 43.0, 45.0, 44.5],
    }
    rows = _legacy(path, energies, accuracy=accuracy)
    rows[1].update(status="failed", error="MemoryError: out of memory", energy_j=None)
    rows[2].update(status="pending", energy_j=None)
    rows[3]["duration_s"] = -5.0  # one bad value: the run stays, that value goes
    rows.append({**rows[-1], "run_id": "mixed-006", "energy_j": -1_000_000.0})
    rows.append({**rows[-1], "run_id": "mixed-007", "energy_j": 1e308})
    rows.append({**rows[-1], "run_id": "mixed-008", "energy_j": "12 kJ"})
    rows.append({**rows[-1], "run_id": "mixed-009", "energy_j": 100.0, "status": "DONE"})
    rows.append({**rows[-1], "run_id": "mixed-001", "status": "done", "energy_j": 1.0})
    rows.append({**rows[-1], "run_id": "mixed-010", "status": "done", "energy_j": "nan"})
    LegacyFolder(path).write_runs(rows)
    return {}


def _damaged_kept(path: Path) -> dict[str, Any]:
    _damaged(path)
    return {"outliers": False}


def _refused_accuracy(path: Path) -> dict[str, Any]:
    energies = {"fp32": [300.0, 306.0, 297.0, 303.0], "mixed": [240.0, 246.0, 243.0, 238.0]}
    accuracy = {"fp32": [0.45, 0.46, 95.0, 0.44], "mixed": [0.44, 0.45, 0.43, 0.45]}
    _legacy(path, energies, accuracy=accuracy)
    return {}


def _one_policy(path: Path) -> dict[str, Any]:
    _legacy(path, {"fp32": [10.0, 11.0, 12.0]}, accuracy={"fp32": [0.5, 0.6, 0.55]})
    return {}


def _one_run(path: Path) -> dict[str, Any]:
    _legacy(path, {"fp32": [10.0], "mixed": [8.0]}, accuracy={"fp32": [0.5], "mixed": [0.49]})
    return {}


def _constant(path: Path) -> dict[str, Any]:
    _legacy(path, {"fp32": [10.0, 10.0, 10.0], "mixed": [8.0, 8.0, 8.0]}, samples=False)
    return {}


def _all_failed(path: Path) -> dict[str, Any]:
    rows = _legacy(path, {"fp32": [1.0, 2.0], "mixed": [1.0, 2.0]}, samples=False)
    for row in rows:
        row.update(status="failed", error="MemoryError: out of memory", energy_j=None)
    LegacyFolder(path).write_runs(rows)
    return {}


def _empty(path: Path) -> dict[str, Any]:
    path.mkdir(parents=True, exist_ok=True)
    (path / "runs.csv").write_text("run_id,policy,status\n")
    return {}


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "synthetic": _synthetic,
    "synthetic-three-estimated": _synthetic_three,
    "synthetic-three-no-outliers": lambda path: _synthetic_three(path, outliers=False),
    "damaged": _damaged,
    "damaged-no-outliers": _damaged_kept,
    "refused-accuracy": _refused_accuracy,
    "one-policy": _one_policy,
    "one-run": _one_run,
    "constant": _constant,
    "all-failed": _all_failed,
    "empty": _empty,
}


def build(name: str, path: Path) -> Report:
    options = SCENARIOS[name](path)
    return build_report(path, **options)


# -- what is compared ----------------------------------------------------------------------------


def normalise(text: str, folder: Path) -> str:
    """report.md or report.html without what differs between two builds of the same data."""
    text = text.replace(str(folder), "<folder>")
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,<png>", text)
    # experiment.json's created_at is the time the synthetic folder was written
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?", "<time>", text)
    return text


def outputs(report: Report) -> dict[str, str]:
    folder = report.folder
    return {
        "stats.json": (folder / "stats.json").read_text(),
        "report.md": normalise((folder / "report.md").read_text(), folder),
        "report.html": normalise((folder / "report.html").read_text(), folder),
    }


def assert_same_json(got: Any, want: Any, where: str = "stats.json") -> None:
    """Equal keys in the same order, equal values; floats to 1e-9 (other BLAS, other ulps)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert list(got) == list(want), f"{where}: keys {list(got)} != {list(want)}"
        for key in want:
            assert_same_json(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_json(g, w, f"{where}[{index}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)), f"{where}: {got!r} != {want!r}"
        assert type(got) is type(want), f"{where}: {got!r} != {want!r}"
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-300), f"{where}: {got} != {want}"
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_stats_json_and_report_text_are_unchanged(tmp_path: Path, name: str) -> None:
    report = build(name, tmp_path / name)
    got = outputs(report)
    want_stats = json.loads((GOLDEN / name / "stats.json").read_text())
    assert_same_json(json.loads(got["stats.json"]), want_stats)
    assert json.loads(got["stats.json"]) == report.stats
    assert got["report.md"] == (GOLDEN / name / "report.md").read_text()
    assert got["report.html"] == (GOLDEN / name / "report.html").read_text()


@pytest.mark.slow
def test_the_analysis_wraps_the_stats_results(tmp_path: Path) -> None:
    report = build("synthetic-three-estimated", tmp_path / "three")
    analysis = report.analysis
    energy = analysis.energy
    assert isinstance(energy.compared, stats.PolicyComparison)
    assert all(isinstance(c, stats.CompareResult) for c in energy.comparisons)
    assert [c.b for c in energy.comparisons] == ["mixed", "bf16"]
    group = energy.groups["fp32"]
    assert isinstance(group.description, stats.Description)
    assert isinstance(group.normality, stats.NormalityResult)
    assert group.outliers == ["fp32-004"] == analysis.outliers.removed_ids("fp32")
    assert isinstance(analysis.outliers.result, stats.OutlierResult)
    assert analysis.runs.failed == 2
    assert sorted(run.run_id for run in analysis.failed) == ["bf16-011", "mixed-005"]
    assert [item.comparison for item in analysis.planning.items] == energy.comparisons
    # stats.json is the analysis plus what build adds: the sentences, the trace, the figures
    added = {"verdict", "warnings", "power_trace", "figures", "figures_not_made"}
    assert set(report.stats) - set(analysis.to_json_dict()) == added
    assert report.stats["runs_needed"]["summary"] == report.prose.planning
    assert report.verdict == report.stats["verdict"] == report.content.verdict
    assert report.warnings == report.stats["warnings"] == report.content.warnings


def test_planning_with_one_run_per_policy_is_not_computed(tmp_path: Path) -> None:
    report = build("one-run", tmp_path / "one-run")
    (item,) = report.analysis.planning.items
    assert item.runs_needed_per_policy is None and item.enough is None
    assert set(item.not_computed.values()) == {"needs at least 2 runs per policy"}
    assert report.prose.planning[0].startswith(
        "Energy: no runs-needed figure is given, because no smallest effect of interest"
    )


def regenerate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCENARIOS:
            report = build(name, Path(tmp) / name)
            target = GOLDEN / name
            target.mkdir(parents=True, exist_ok=True)
            for file, text in outputs(report).items():
                (target / file).write_text(text)
            print(f"wrote {target}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python tests/test_report_typed.py --regenerate")
    regenerate()
