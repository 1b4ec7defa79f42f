"""greenprec import energibridge: files to a results folder, errors leave nothing behind, and
the published study's raw data reproduced from scratch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats as sps
from typer.testing import CliRunner

from greenprec.cli.importing import import_energibridge_command
from greenprec.errors import ConfigError
from greenprec.importers import import_energibridge
from greenprec.importers.energibridge import run_ids_for
from greenprec.report import build_report
from greenprec.results import ResultsStore, record_row

POWER = "SYSTEM_POWER (Watts)"
SEED_STUDY_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared/data/seed-study",
    Path("/work/shared/data/seed-study"),
)


def eb_csv(path: Path, powers: list[float], *, start_ms: int = 1_700_000_000_000) -> float:
    """A macOS-style EnergiBridge file; returns its energy the study's way (sum P * Delta)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["Delta,Time,CPU_USAGE_0,SYSTEM_POWER (Watts),USED_MEMORY"]
    time_ms = start_ms
    energy = 0.0
    for index, power in enumerate(powers):
        delta = 0 if index == 0 else 200
        time_ms += delta
        energy += power * delta / 1000
        lines.append(f"{delta},{time_ms},NaN,{power},123")
    path.write_text("\n".join(lines) + "\n")
    return energy


@pytest.fixture
def recordings(tmp_path: Path) -> dict[str, float]:
    """Two groups of three runs each, and metrics files keyed by the numeric part of the stem."""
    energies = {}
    for i in range(3):
        energies[f"run_{i}"] = eb_csv(
            tmp_path / "fp32" / f"run_{i}.csv", [30.0 + i, 31.0, 32.0, 30.5], start_ms=10**12 + i
        )
        energies[f"run_{10 + i}"] = eb_csv(
            tmp_path / "mixed" / f"run_{10 + i}.csv", [25.0 + i, 26.0, 25.5, 25.0],
            start_ms=10**12 + 100 + i,
        )  # fmt: skip
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "a.csv").write_text(
        "run_id,test_accuracy,test_loss,mixed_precision\n"
        + "".join(f"{i},0.{50 + i},1.{i},false\n" for i in range(3))
    )
    (metrics / "b.csv").write_text(
        "run_id,test_accuracy,test_loss,mixed_precision\n"
        + "".join(f"run_{10 + i},0.{40 + i},1.{i},true\n" for i in range(3))
    )
    return energies


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".import-" in p.name)


def groups(tmp_path: Path) -> list[str]:
    return [f"fp32={tmp_path}/fp32/*.csv", f"mixed={tmp_path}/mixed/*.csv"]


def test_import_writes_a_results_folder(tmp_path: Path, recordings: dict[str, float]) -> None:
    out = tmp_path / "out"
    result = import_energibridge(groups(tmp_path), out, metrics=f"{tmp_path}/metrics/*.csv")
    assert result.counts == {"fp32": 3, "mixed": 3}
    folder = ResultsStore(out).load()
    rows = {row["run_id"]: row for row in map(record_row, folder.runs)}
    assert set(rows) == set(recordings)
    for run_id, energy in recordings.items():
        row = rows[run_id]
        assert row["energy_j"] == pytest.approx(energy)
        assert row["energy_j:energibridge/system"] == pytest.approx(energy)
        assert row["status"] == "done" and row["meter"] == "energibridge"
        assert row["estimated"] is False
        assert row["counted_domains"] == "energibridge/system"
        assert row["duration_s"] == pytest.approx(0.6)
        assert ResultsStore(out).samples_file(run_id).exists()
    assert rows["run_1"]["policy"] == "fp32" and rows["run_1"]["test_accuracy"] == 0.51
    assert rows["run_11"]["policy"] == "mixed" and rows["run_11"]["test_accuracy"] == 0.41
    assert rows["run_11"]["mixed_precision"] == "true"
    assert [r["run_id"] for r in sorted(rows.values(), key=lambda r: r["order"])][:2] == [
        "run_0",
        "run_1",
    ]
    experiment = folder.experiment.model_dump(by_alias=True)
    assert experiment["config"]["policies"] == ["fp32", "mixed"]
    assert experiment["config"]["source"] == "energibridge import"
    assert experiment["meters"]["used"] == ["energibridge"]
    assert experiment["meters"]["estimated"] is False
    assert experiment["meters"]["counted_domains"] == ["energibridge/system"]
    samples = pd.read_csv(ResultsStore(out).samples_file("run_0"))
    assert list(samples.columns) == ["t_s", "domain", "power_w", "energy_j"]
    assert samples["energy_j"].iloc[-1] == pytest.approx(recordings["run_0"])
    assert leftovers(tmp_path) == []


def test_report_reads_an_import(tmp_path: Path, recordings: dict[str, float]) -> None:
    out = tmp_path / "out"
    import_energibridge(groups(tmp_path), out, metrics=f"{tmp_path}/metrics/*.csv")
    report = build_report(out)
    assert report.stats["reference"] == "fp32"
    assert report.stats["counted_domains"] == ["energibridge/system"]
    assert report.stats["power_trace"]["runs"] == {"fp32": 3, "mixed": 3}
    assert "energibridge — measured" in (out / "report.md").read_text()


def test_an_empty_out_directory_is_fine(tmp_path: Path, recordings: dict[str, float]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    import_energibridge(groups(tmp_path), out)
    assert ResultsStore(out).exists()


ErrorCase = Callable[[Path], tuple[list[str], str | None, str]]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _no_delta(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "fp32" / "run_9.csv", "Time,SYSTEM_POWER (Watts)\n1,2\n")
    return groups(tmp), None, r"run_9\.csv:1: no 'Delta' column"


def _non_numeric(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "mixed" / "run_19.csv", f"Delta,Time,{POWER}\n0,1000,20\n200,1200,oops\n")
    return groups(tmp), None, r"run_19\.csv:3: non-numeric value 'oops'"


def _empty(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "fp32" / "run_8.csv", "")
    return groups(tmp), None, r"run_8\.csv:1: empty file"


def _glob_matches_nothing(tmp: Path) -> tuple[list[str], str | None, str]:
    return [*groups(tmp), f"bf16={tmp}/bf16/*.csv"], None, r"group bf16=.*matches no file"


def _metrics_row_given_twice(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "metrics" / "c.csv", "run_id,test_accuracy\n1,0.5\n")
    # files are read in order a, b, c: a.csv already gave run_1 its metrics
    return groups(tmp), f"{tmp}/metrics/*.csv", r"c\.csv:2: run run_1 already has metrics"


def _metrics_unknown_run(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "m" / "only.csv", "run_id,test_accuracy\n0,0.5\n77,0.4\n")
    return groups(tmp), f"{tmp}/m/*.csv", r"only\.csv:3: run_id '77' matches no imported file"


def _metrics_bad_accuracy(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "m" / "bad.csv", "run_id,test_accuracy\n0,high\n")
    return groups(tmp), f"{tmp}/m/*.csv", r"bad\.csv:2: test_accuracy 'high' is not a number"


def _metrics_without_run_id(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(tmp / "m" / "x.csv", "id,test_accuracy\n0,0.5\n")
    return groups(tmp), f"{tmp}/m/*.csv", r"x\.csv:1: metrics need a 'run_id' column"


def _bad_group(tmp: Path) -> tuple[list[str], str | None, str]:
    return ["fp32"], None, r"malformed group 'fp32'; write NAME=GLOB"


def _same_group_twice(tmp: Path) -> tuple[list[str], str | None, str]:
    return [groups(tmp)[0], groups(tmp)[0]], None, "names must differ"


def _one_row(tmp: Path) -> tuple[list[str], str | None, str]:
    eb_csv(tmp / "mixed" / "run_17.csv", [25.0])
    return groups(tmp), None, r"run_17\.csv:2: only one sample: no energy can be measured"


def _column_twice(tmp: Path) -> tuple[list[str], str | None, str]:
    _write(
        tmp / "fp32" / "run_7.csv", f"Delta,Time,{POWER},{POWER}\n0,1,10,1000\n200,201,10,1000\n"
    )
    return groups(tmp), None, r"run_7\.csv:1: column 'SYSTEM_POWER \(Watts\)' appears twice"


@pytest.mark.parametrize(
    "case",
    [
        _no_delta,
        _non_numeric,
        _empty,
        _glob_matches_nothing,
        _metrics_row_given_twice,
        _metrics_unknown_run,
        _metrics_bad_accuracy,
        _metrics_without_run_id,
        _bad_group,
        _same_group_twice,
        _one_row,
        _column_twice,
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, recordings: dict[str, float], case: ErrorCase
) -> None:
    spec, metrics, message = case(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message) as caught:
        import_energibridge(spec, out, metrics=metrics or f"{tmp_path}/metrics/*.csv")
    assert "\n" not in str(caught.value)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_out_that_is_already_a_results_folder_is_refused(
    tmp_path: Path, recordings: dict[str, float]
) -> None:
    out = tmp_path / "out"
    import_energibridge(groups(tmp_path), out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ConfigError, match="already holds a greenprec experiment"):
        import_energibridge(groups(tmp_path), out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        import_energibridge(groups(tmp_path), tmp_path / "full")
    assert leftovers(tmp_path) == []


def test_a_failure_while_writing_removes_the_staging_folder(
    tmp_path: Path, recordings: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ResultsStore, runs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ResultsStore, "write_index", broken)
    with pytest.raises(OSError, match="disk full"):
        import_energibridge(groups(tmp_path), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def _app() -> typer.Typer:
    app = typer.Typer()
    sub = typer.Typer()
    sub.command("energibridge")(import_energibridge_command)
    app.add_typer(sub, name="import")
    return app


def test_command(tmp_path: Path, recordings: dict[str, float]) -> None:
    out = tmp_path / "out"
    args = ["import", "energibridge", "--group", groups(tmp_path)[0], "-g", groups(tmp_path)[1]]
    args += ["--metrics", f"{tmp_path}/metrics/*.csv", "--out", str(out)]
    result = CliRunner().invoke(_app(), args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "fp32" in result.stdout and f"next: greenprec report {out}" in result.stdout
    again = CliRunner().invoke(_app(), args)
    assert isinstance(again.exception, ConfigError)


def test_repeated_stems_get_run_ids_from_the_folders_that_differ(tmp_path: Path) -> None:
    # How many users keep their runs: r1/energy.csv, r2/energy.csv. Before, the import
    # refused them ("two files give run id 'energy'").
    energies = {}
    for policy, offset in (("baseline", 0.0), ("tuned", -5.0)):
        for rep in ("r1", "r2"):
            path = tmp_path / "runs" / policy / rep / "energy.csv"
            energies[f"{policy}-{rep}"] = (eb_csv(path, [30.0 + offset, 31.0 + offset]), path)
    _write(tmp_path / "m.csv", "run_id,test_accuracy\nbaseline-r1,0.5\ntuned-r2,0.6\n")
    out = tmp_path / "out"
    result = import_energibridge(
        [f"baseline={tmp_path}/runs/baseline/*/energy.csv", f"tuned={tmp_path}/runs/tuned/*/*.csv"],
        out,
        metrics=str(tmp_path / "m.csv"),
    )
    rows = {
        row["run_id"]: row for row in [record_row(run) for run in ResultsStore(out).load().runs]
    }
    assert set(rows) == set(energies)
    for run_id, (energy, _) in energies.items():
        assert rows[run_id]["energy_j"] == pytest.approx(energy)
        assert ResultsStore(out).samples_file(run_id).exists()
    assert rows["baseline-r1"]["test_accuracy"] == 0.5 and rows["tuned-r2"]["test_accuracy"] == 0.6
    files = ResultsStore(out).load().experiment.imported["files"]
    assert files == {run_id: str(path) for run_id, (_, path) in energies.items()}
    assert result.counts == {"baseline": 2, "tuned": 2}


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["a/r1/energy.csv", "a/r2/energy.csv"], ["r1", "r2"]),
        (["a/r1/energy.csv", "a/r2/energy.csv", "b/r1.csv"], ["r1-energy", "r2-energy", "r1"]),
        (
            [
                "o/answer only/he/r1/energy.csv",
                "o/base/he/r1/energy.csv",
                "o/think/he/r2/energy.csv",
            ],
            ["answer-only-r1", "base-r1", "think-r2"],
        ),
        (["x/run_2.csv", "x/run_10.csv"], ["run_2", "run_10"]),
        (["x/run 1.csv", "x/run-1.csv", "x/Run-1.csv"], ["run-1-1", "run-1-2", "run-1-3"]),
    ],
)
def test_run_ids_from_paths(tmp_path: Path, paths: list[str], expected: list[str]) -> None:
    assert run_ids_for([tmp_path / p for p in paths]) == expected


def test_command_takes_ranges_per_column_and_a_separator(tmp_path: Path) -> None:
    header = "Delta;Time;CPU_ENERGY (J);CORE0_ENERGY (J)"
    for run, start in (("a", 2_939_243.0), ("b", 2_927_038.0)):
        rows = [f"{0 if k == 0 else 200};{1_000_000 + 200 * k};{start + 5 * k};{10 + k}"
                for k in range(4)]  # fmt: skip
        _write(tmp_path / "amd" / f"{run}.csv", "\n".join([header, *rows]) + "\n")
    base = ["import", "energibridge", "-g", f"amd={tmp_path}/amd/*.csv"]
    # One number for all: the AMD files' megajoule values exceed the old advice of 65536.
    wrong = CliRunner().invoke(_app(), [*base, "--counter-range-j", "65536", "--out", "x"])
    assert isinstance(wrong.exception, ConfigError)
    assert "exceeds counter_range_j=65536" in str(wrong.exception)
    out = tmp_path / "out"
    args = [*base, "--counter-range-j", "CPU_ENERGY (J)=4294967296"]
    args += ["--counter-range-j", "65536", "--separator", ";", "--out", str(out)]
    result = CliRunner().invoke(_app(), args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    rows = [record_row(run) for run in ResultsStore(out).load().runs]
    assert [row["energy_j"] for row in rows] == pytest.approx([15.0, 15.0])
    bad_separator = [*base, "--separator", ",", "--out", str(tmp_path / "y")]
    refused = CliRunner().invoke(_app(), bad_separator)
    assert isinstance(refused.exception, ConfigError)


def test_command_prints_each_files_warnings(tmp_path: Path) -> None:
    values = [262_100.0, 262_110.0, 262_120.0, 262_130.0, 262_140.0, 6.0, 16.0, 26.0, 36.0]
    lines = ["Delta,Time,PACKAGE_ENERGY (J)"]
    lines += [f"{0 if k == 0 else 200},{1_000_000 + 200 * k},{v}" for k, v in enumerate(values)]
    _write(tmp_path / "intel" / "[wrap].csv", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    args = ["import", "energibridge", "-g", f"intel={tmp_path}/intel", "--out", str(out)]
    result = CliRunner().invoke(_app(), args, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "[wrap].csv:7: 1 wrap-around(s) of counted column 'PACKAGE_ENERGY (J)'" in result.stderr
    (row,) = [record_row(run) for run in ResultsStore(out).load().runs]
    assert row["energy_j"] == pytest.approx(80.0)
    assert row["run_id"] == "wrap"
    warnings = ResultsStore(out).load().experiment.warnings
    assert any("wrap-around(s) of counted column" in w for w in warnings)


# -- the published study ---------------------------------------------------------------------------


def seed_study() -> Path:
    for candidate in SEED_STUDY_CANDIDATES:
        if (candidate / "mixed_precision_false").is_dir():
            return candidate
    pytest.skip("the study's raw data (shared/data/seed-study) is not on this machine")


def study_energy_j(path: Path) -> float:
    """The study's own formula: sum(SYSTEM_POWER * Delta), Delta in ms, so / 1000 for J."""
    frame = pd.read_csv(path, usecols=["Delta", POWER])
    return float((frame[POWER] * frame["Delta"]).sum() / 1000)


@pytest.fixture(scope="module")
def imported_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    data = seed_study()
    out = tmp_path_factory.mktemp("seed") / "study"
    import_energibridge(
        [
            f"fp32={data}/mixed_precision_false/*.csv",
            f"mixed={data}/mixed_precision_true/*.csv",
        ],
        out,
        metrics=f"{data}/results/*/*.csv",
    )
    build_report(out)
    return data, out


@pytest.mark.slow
def test_seed_study_reproduced_independently(imported_study: tuple[Path, Path]) -> None:
    data, out = imported_study
    stats = json.loads((out / "stats.json").read_text())
    energy = {
        policy: {p.stem: study_energy_j(p) for p in (data / folder).glob("*.csv")}
        for policy, folder in (("fp32", "mixed_precision_false"), ("mixed", "mixed_precision_true"))
    }
    assert len(energy["fp32"]) == 30 and len(energy["mixed"]) == 30
    # the study's outlier rule, computed here without greenprec: |z| > 3 per group, ddof = 0
    removed = []
    kept = {}
    for policy, by_run in energy.items():
        ids = sorted(by_run)
        values = np.array([by_run[i] for i in ids])
        z = sps.zscore(values)
        removed += [ids[k] for k in np.flatnonzero(np.abs(z) > 3)]
        kept[policy] = values[np.abs(z) <= 3]
    assert len(removed) == 1, "the study removed exactly one FP32 run"
    assert removed[0] in energy["fp32"]
    assert [r["run_id"] for r in stats["outliers"]["removed"]] == removed
    assert stats["metrics"]["energy_j"]["groups"]["fp32"]["outliers"] == removed
    groups = stats["metrics"]["energy_j"]["groups"]
    assert groups["fp32"]["n"] == 29 and groups["mixed"]["n"] == 30
    assert groups["fp32"]["mean"] == pytest.approx(kept["fp32"].mean(), rel=1e-9)
    assert groups["mixed"]["mean"] == pytest.approx(kept["mixed"].mean(), rel=1e-9)
    # the paper's "3.2e7 J" are millijoules: about 32 kJ and 28 kJ per run
    assert 30_000 < groups["fp32"]["mean"] < 34_000
    assert 26_000 < groups["mixed"]["mean"] < 30_000
    welch = sps.ttest_ind(kept["mixed"], kept["fp32"], equal_var=False)
    comparison = stats["metrics"]["energy_j"]["comparisons"][0]
    assert comparison["welch_t"] == pytest.approx(welch.statistic, rel=1e-9)
    assert comparison["welch_p"] == pytest.approx(welch.pvalue, rel=1e-6, abs=1e-300)
    change = 100 * (kept["mixed"].mean() / kept["fp32"].mean() - 1)
    assert comparison["relative_change_pct"] == pytest.approx(change)
    assert comparison["relative_change_pct"] == pytest.approx(-12.6, abs=0.15)
    # accuracy: about one point lower with mixed precision, not significant
    accuracy = stats["metrics"]["test_accuracy"]
    assert accuracy["groups"]["fp32"]["n"] == 29 and accuracy["groups"]["mixed"]["n"] == 30
    diff_pp = 100 * (accuracy["groups"]["mixed"]["mean"] - accuracy["groups"]["fp32"]["mean"])
    assert -2.0 < diff_pp < 0.0
    assert accuracy["comparisons"][0]["primary_p"] > 0.05
    assert stats["verdict"][0].startswith("mixed vs fp32, energy: −12.6% (")
    assert stats["verdict"][0].endswith(
        "mixed used less energy than fp32; duration −1.3%, mean power −11.4%."
    )
    for name in ("energy_violin", "power_trace", "energy_vs_accuracy", "duration_violin"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert stats["power_trace"]["runs"] == {"fp32": 29, "mixed": 30}
