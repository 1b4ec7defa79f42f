"""greenprec import codecarbon: CodeCarbon's emissions.csv (3.x recorded here, 2.x headers by
hand) to a results folder, energies exact, modelled figures marked estimated, hostile files."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.errors import ConfigError
from greenprec.importers.codecarbon import import_codecarbon
from greenprec.report import build_report
from greenprec.results import ResultsStore, record_row

FIXTURES = Path(__file__).parent / "fixtures" / "codecarbon"
J_PER_KWH = 3.6e6


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def header_of(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[c] for c in header])
    path.write_text(buffer.getvalue())
    return path


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".import-" in p.name)


def test_recorded_files_import_with_exact_energies(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = import_codecarbon([f"fp32={FIXTURES}/fp32/*.csv", f"bf16={FIXTURES}/bf16/*.csv"], out)
    assert result.counts == {"fp32": 3, "bf16": 3}
    assert result.left_out == [] and result.warnings == []
    folder = ResultsStore(out).load()
    runs = {run.run_id: run for run in folder.runs}
    assert sorted(runs) == ["bf16-1", "bf16-2", "bf16-3", "fp32-1", "fp32-2", "fp32-3"]
    for group in ("fp32", "bf16"):
        for index, row in enumerate(rows_of(FIXTURES / group / "emissions.csv"), start=1):
            run = runs[f"{group}-{index}"]
            # Exact: kWh × 3.6e6, no rounding, no re-summing.
            assert run.energy_j == float(row["energy_consumed"]) * J_PER_KWH
            assert run.domains == {
                "codecarbon/cpu": float(row["cpu_energy"]) * J_PER_KWH,
                "codecarbon/ram": float(row["ram_energy"]) * J_PER_KWH,
            }
            assert sum(run.domains.values()) == pytest.approx(run.energy_j, rel=1e-12)
            assert run.duration_s == float(row["duration"])
            assert run.mean_power_w == pytest.approx(run.energy_j / run.duration_s)
            assert run.counted_domains == ["codecarbon/cpu", "codecarbon/ram"]
            assert run.estimated is True and run.meter == "codecarbon"
            assert run.status == "done" and run.policy == group
            assert run.node is not None and run.node.cpu_model == "AMD EPYC"
    # By hand (tests/fixtures/codecarbon/README.md): fp32 line 2 is 84.0859 J, 8.0 W of CPU.
    assert runs["fp32-1"].energy_j == pytest.approx(84.0859, abs=1e-4)
    assert runs["fp32-1"].domains["codecarbon/cpu"] / runs["fp32-1"].duration_s == (
        pytest.approx(7.983, abs=1e-3)
    )
    # Recorded one after the other: fp32's three runs, then bf16's.
    assert [r.run_id for r in sorted(runs.values(), key=lambda r: r.order)] == [
        "fp32-1", "fp32-2", "fp32-3", "bf16-1", "bf16-2", "bf16-3",
    ]  # fmt: skip
    experiment = folder.experiment.model_dump(by_alias=True)
    assert experiment["source"] == "codecarbon import"
    assert experiment["meters"]["used"] == ["codecarbon"]
    assert experiment["meters"]["estimated"] is True
    imported = experiment["import"]
    assert imported["tool"] == "CodeCarbon"
    assert imported["files"]["fp32-2"] == f"{FIXTURES}/fp32/emissions.csv:3"
    assert imported["runs"]["fp32-1"]["codecarbon_version"] == "3.3.2"
    assert any(n.startswith("codecarbon/ram: modelled") for n in result.notes)
    assert any(n.startswith("codecarbon/cpu: not shown to be measured") for n in result.notes)
    assert leftovers(tmp_path) == []


def test_codecarbon_2x_headers_read_and_the_tdp_fallback_is_named(tmp_path: Path) -> None:
    result = import_codecarbon(
        [f"v28={FIXTURES}/v2.8-handmade/*.csv", f"v22={FIXTURES}/v2.2-handmade/*.csv"],
        tmp_path / "out",
    )
    assert result.counts == {"v28": 2, "v22": 1}
    runs = {run.run_id: run for run in result.runs}
    assert runs["v2.2-handmade"].energy_j == pytest.approx(970.0, rel=1e-12)
    assert runs["v2.8-handmade-1"].energy_j == pytest.approx(485.0, rel=1e-12)
    assert runs["v2.8-handmade-2"].domains["codecarbon/cpu"] == pytest.approx(531.25, rel=1e-12)
    assert all(run.estimated for run in result.runs)
    (fallback,) = [n for n in result.notes if "42.5 W" in n]
    assert "v2.2-handmade" in fallback and "85 W default" in fallback


def test_group_by_a_column_with_a_reference(tmp_path: Path) -> None:
    result = import_codecarbon(
        [],
        tmp_path / "out",
        files=[f"{FIXTURES}/fp32/*.csv", f"{FIXTURES}/bf16/*.csv", f"{FIXTURES}/forced/*.csv"],
        group_by="project_name",
        reference="fp32",
    )
    assert list(result.counts) == ["fp32", "bf16", "forced-power"]
    assert result.counts == {"fp32": 3, "bf16": 3, "forced-power": 2}
    assert ResultsStore(tmp_path / "out").load().experiment.config["policies"] == [
        "fp32", "bf16", "forced-power",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="reference 'fp64' is no project_name value"):
        import_codecarbon(
            [], tmp_path / "o2", files=[f"{FIXTURES}/fp32/*.csv"], group_by="project_name",
            reference="fp64",
        )  # fmt: skip
    with pytest.raises(ConfigError, match="cannot group by 'cpu_model'"):
        import_codecarbon([], tmp_path / "o3", files=[f"{FIXTURES}/*/*.csv"], group_by="cpu_model")
    with pytest.raises(ConfigError, match="not both"):
        import_codecarbon(
            [f"a={FIXTURES}/fp32/*.csv"], tmp_path / "o4", files=["x"], group_by="project_name"
        )


def test_row_ids_that_meet_another_files_id_are_refused(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "fp32" / "emissions.csv", tmp_path / "a.csv")
    shutil.copy(FIXTURES / "v2.2-handmade" / "emissions.csv", tmp_path / "A-2.csv")
    with pytest.raises(
        ConfigError, match=r"run id 'a-2' would be given to both .*A-2\.csv:2 and .*a\.csv:3"
    ):
        import_codecarbon([f"p={tmp_path}/*.csv"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_one_tracker_run_in_two_files_is_refused(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "fp32" / "emissions.csv", tmp_path / "a.csv")
    shutil.copy(FIXTURES / "fp32" / "emissions.csv", tmp_path / "b.csv")
    with pytest.raises(ConfigError, match=r"a\.csv:2 and .*b\.csv:2 are the same CodeCarbon run"):
        import_codecarbon([f"a={tmp_path}/a.csv", f"b={tmp_path}/b.csv"], tmp_path / "out")


def test_machine_and_process_mode_together_is_warned(tmp_path: Path) -> None:
    result = import_codecarbon(
        [f"machine={FIXTURES}/fp32/*.csv", f"process={FIXTURES}/process/*.csv"], tmp_path / "out"
    )
    assert any("differ in tracking_mode" in w for w in result.warnings)


def test_report_reads_an_import(tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_codecarbon([f"fp32={FIXTURES}/fp32/*.csv", f"bf16={FIXTURES}/bf16/*.csv"], out)
    report = build_report(out)
    assert report.stats["reference"] == "fp32"
    assert report.stats["counted_domains"] == ["codecarbon/cpu", "codecarbon/ram"]
    text = (out / "report.md").read_text()
    assert "codecarbon — ESTIMATED" in text
    assert "energy ESTIMATED, not measured" in text or "estimated" in text
    rows = [record_row(run) for run in ResultsStore(out).load().runs]
    assert {row["energy_j:codecarbon/ram"] > 0 for row in rows} == {True}
    # CodeCarbon keeps no samples: said once, not as a missing file per run.
    assert "CodeCarbon records no power samples: there is no power trace" in report.warnings
    assert not any("no samples/<run_id>.csv" in w for w in report.warnings)


# -- hostile and damaged files ---------------------------------------------------------------


def fp32_rows() -> tuple[list[str], list[dict[str, str]]]:
    path = FIXTURES / "fp32" / "emissions.csv"
    return header_of(path), rows_of(path)


@pytest.mark.parametrize(
    ("column", "cell", "reason"),
    [
        ("cpu_energy", "nan", "cpu_energy (kWh) is NaN"),
        ("ram_energy", "-1e-06", "ram_energy (kWh) is negative"),
        ("energy_consumed", "inf", "energy_consumed (kWh) is infinite"),
        ("gpu_energy", "", "empty gpu_energy (kWh)"),
        ("duration", "0", "duration (s) is 0"),
        ("cpu_energy", "lots", "cpu_energy (kWh) is not a number"),
        ("energy_consumed", "1.0", "the parts do not add up to the total"),
        ("timestamp", "yesterday", "timestamp is not an ISO 8601 time"),
    ],
)
def test_a_bad_row_is_left_out_and_named(
    tmp_path: Path, column: str, cell: str, reason: str
) -> None:
    header, rows = fp32_rows()
    rows[1][column] = cell
    path = write_csv(tmp_path / "runs" / "emissions.csv", header, rows)
    result = import_codecarbon([f"fp32={path}"], tmp_path / "out")
    assert [r.run_id for r in result.runs] == ["emissions-1", "emissions-3"]
    assert len(result.left_out) == 1
    assert result.left_out[0].startswith(f"{path}:3: {reason}")
    assert result.warnings[0].startswith(f"1 row(s) left out: {path}:3: {reason}")
    # No cell is echoed: the reason names the column, never the value.
    assert "lots" not in result.warnings[0] and "yesterday" not in result.warnings[0]


def test_a_cut_last_row_and_flushed_rows_are_left_out(tmp_path: Path) -> None:
    header, rows = fp32_rows()
    flushed = dict(rows[0], duration="1.5", energy_consumed="1e-05", cpu_energy="3e-06",
                   ram_energy="7e-06")  # fmt: skip
    path = write_csv(tmp_path / "emissions.csv", header, [flushed, *rows])
    with open(path, "a") as handle:
        handle.write("2026-12-05T18:30:00,fp32,abc,def,3.0,1e-6")  # killed mid-write
    result = import_codecarbon([f"fp32={path}"], tmp_path / "out")
    assert [r.run_id for r in result.runs] == ["emissions-2", "emissions-3", "emissions-4"]
    assert result.left_out[0].startswith(f"{path}:6: 6 values but the header has 38 columns")
    assert result.left_out[1].startswith(f"{path}:2: the same CodeCarbon run_id as line 3")
    assert result.warnings[0].startswith("2 row(s) left out:")
    # A flushed total whose final row is damaged is no whole run: both are left out.
    rows[0]["cpu_energy"] = "nan"
    path = write_csv(tmp_path / "b.csv", header, [flushed, *rows])
    result = import_codecarbon([f"fp32={path}"], tmp_path / "out2")
    assert [r.run_id for r in result.runs] == ["b-3", "b-4"]
    assert result.left_out == [
        f"{path}:3: cpu_energy (kWh) is NaN",
        f"{path}:2: the same CodeCarbon run_id as line 3, which is left out: this earlier "
        "total (a flush()) would pass for the whole run",
    ]


def _missing_energy(tmp_path: Path) -> tuple[Path, str]:
    header, rows = fp32_rows()
    header = [c for c in header if c != "energy_consumed"]
    return write_csv(tmp_path / "a.csv", header, rows), "no energy_consumed column"


def _energy_in_joules(tmp_path: Path) -> tuple[Path, str]:
    header, rows = fp32_rows()
    for row in rows:
        row["cpu_energy (J)"] = "1"
    return (
        write_csv(tmp_path / "a.csv", [*header, "cpu_energy (J)"], rows),
        r"column\(s\) CodeCarbon does not write: 'cpu_energy \(J\)'.*units are never guessed.*"
        r"The header is 'timestamp'.*expected CodeCarbon's emissions.csv.*\(kWh\)",
    )


def _renamed_units(tmp_path: Path) -> tuple[Path, str]:
    header, rows = fp32_rows()
    header = ["energy_consumed_wh" if c == "energy_consumed" else c for c in header]
    for row in rows:
        row["energy_consumed_wh"] = row.pop("energy_consumed")
    return (
        write_csv(tmp_path / "a.csv", header, rows),
        "no energy_consumed column.*'energy_consumed_wh'",
    )


def _empty(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "a.csv"
    path.write_text("")
    return path, "empty file: no CodeCarbon header"


def _huge(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "a.csv"
    with open(path, "wb") as handle:
        handle.truncate(17 * 2**20)  # sparse: costs no disk
    return path, "larger than 16 MiB"


def _binary(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    return path, "not UTF-8 text"


def _all_rows_bad(tmp_path: Path) -> tuple[Path, str]:
    header, rows = fp32_rows()
    for row in rows:
        row["cpu_energy"] = "nan"
    return write_csv(tmp_path / "a.csv", header, rows), "no usable row for policy p; 3 row"


def _second_header(tmp_path: Path) -> tuple[Path, str]:
    header, rows = fp32_rows()
    path = write_csv(tmp_path / "a.csv", header, rows)
    with open(path, "a") as handle:
        handle.write(",".join(reversed(header)) + "\n")
    return path, "a.csv:5: a second, different header"


def _column_twice(tmp_path: Path) -> tuple[Path, str]:
    header, rows = fp32_rows()
    return write_csv(tmp_path / "a.csv", [*header, "duration"], rows), "appear twice"


@pytest.mark.parametrize(
    "case",
    [
        _missing_energy,
        _energy_in_joules,
        _renamed_units,
        _empty,
        _huge,
        _binary,
        _all_rows_bad,
        _second_header,
        _column_twice,
    ],
)
def test_a_bad_file_is_refused_in_one_line_and_writes_nothing(tmp_path: Path, case: object) -> None:
    assert callable(case)
    path, message = case(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message) as caught:
        import_codecarbon([f"p={path}"], out)
    assert "\n" not in str(caught.value)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.csv"
    secret.parent.mkdir()
    shutil.copy(FIXTURES / "fp32" / "emissions.csv", secret)
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(FIXTURES / "bf16" / "emissions.csv", runs / "a.csv")
    os.symlink(secret, runs / "b.csv")
    with pytest.raises(ConfigError, match=r"b\.csv: a symbolic link to a file outside") as caught:
        import_codecarbon([f"p={runs}/*.csv"], tmp_path / "out")
    assert "secret" not in str(caught.value)  # where it leads is not printed
    assert not (tmp_path / "out").exists()
    # A link that stays inside the folder is an ordinary file; one file is read once.
    (runs / "b.csv").unlink()
    (runs / "kept").mkdir()
    shutil.copy(FIXTURES / "fp32" / "emissions.csv", runs / "kept" / "x.csv")
    os.symlink(runs / "kept" / "x.csv", runs / "c.csv")
    assert import_codecarbon([f"p={runs}/*.csv"], tmp_path / "o1").counts == {"p": 6}
    assert import_codecarbon([f"p={runs}/**/*.csv"], tmp_path / "o2").counts == {"p": 6}
    with pytest.raises(ConfigError, match="matches both group p and group q"):
        import_codecarbon([f"p={runs}/*.csv", f"q={runs}/kept/*.csv"], tmp_path / "o3")


# -- the command line ---------------------------------------------------------------------------


def test_command(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["import", "codecarbon", "-g", f"fp32={FIXTURES}/fp32/*.csv"]
    args += ["--group", f"bf16={FIXTURES}/bf16/*.csv", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "fp32" in result.stdout and f"next: greenprec report {out}" in result.stdout
    assert "note: codecarbon/ram: modelled" in result.stdout
    by_column = CliRunner().invoke(
        app,
        ["import", "codecarbon", "--group-by", "project_name", "--files",
         f"{FIXTURES}/process/*.csv", "--files", f"{FIXTURES}/forced/*.csv",
         "--reference", "forced-power", "--out", str(tmp_path / "by")],
    )  # fmt: skip
    assert by_column.exit_code == 0, by_column.output
    assert ResultsStore(tmp_path / "by").load().experiment.config["policies"] == [
        "forced-power", "process-mode",
    ]  # fmt: skip
    neither = CliRunner().invoke(app, ["import", "codecarbon", "--out", str(tmp_path / "n")])
    assert neither.exit_code != 0 and "--group-by" in neither.output


def test_an_unknown_source_lists_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["import", "carbontracker", "x.csv"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == (
        "unknown source 'carbontracker'; greenprec import reads: energibridge, codecarbon"
    )
    process = subprocess.run(
        [sys.executable, "-m", "greenprec", "import", "carbontracker"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "greenprec: error: unknown source 'carbontracker'; greenprec import reads: "
        "energibridge, codecarbon"
    ]
