"""The report at scale, and how it reads samples files (issue #24).

Correctness, not speed (timing lives in benchmarks/analysis_scale.py): the power traces read
in batches are exactly those of reading and binning each run on its own, the files are read
together rather than one parser call per run, and a samples file that is a link, a FIFO, too
large or damaged is named (file and reason, never its content) while the report goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from greenprec.errors import ConfigError
from greenprec.report import data as report_data
from greenprec.report.analysis import prepare
from greenprec.report.build import _BIN_S, power_traces
from greenprec.report.data import load, read_samples
from greenprec.testing.synthetic import write_synthetic_folder

SECRET = "root:SECRET-HASH-do-not-print:20228:0:99999:7:::"
_COLUMNS = ["t_s", "domain", "power_w"]


def _samples(folder: Path, run_id: str) -> Path:
    return folder / "samples" / f"{run_id}.csv"


def _reference_bins(path: Path, counted: list[str] | None) -> pd.DataFrame | None:
    """One run binned the way the report always has, written out here independently: per
    counted domain the mean of its finite readings per bin, summed over the domains in bins
    every domain reaches, the run's last bin left out."""
    try:
        samples = pd.read_csv(
            path,
            usecols=_COLUMNS,
            dtype={"t_s": "float64", "domain": "category", "power_w": "float64"},
        )
    except (FileNotFoundError, ValueError):
        return None
    domain = samples["domain"].astype(str)
    wanted = list(dict.fromkeys(counted if counted is not None else domain.tolist()))
    ok = np.isfinite(samples["t_s"]) & np.isfinite(samples["power_w"])
    bins = np.floor(samples["t_s"] / _BIN_S + 1e-9)
    means = []
    for name in wanted:
        mine = ok & (domain == name)
        frame = pd.DataFrame({"bin": bins[mine].astype(np.int64), "p": samples["power_w"][mine]})
        means.append(frame.groupby("bin")["p"].mean())
    if not means:
        return pd.DataFrame({"t_s": [], "power_w": []})
    common = means[0].index
    for mean in means[1:]:
        common = common.intersection(mean.index)
    common = common.sort_values()
    total = np.zeros(len(common))
    for mean in means:
        total += mean.loc[common].to_numpy()
    out = pd.DataFrame({"t_s": common.to_numpy(dtype=np.float64) * _BIN_S, "power_w": total})
    return out.iloc[:-1] if len(out) > 1 else out


def _reference_trace(per_run: list[pd.DataFrame]) -> pd.DataFrame:
    series = [f.set_index("t_s")["power_w"] for f in per_run if len(f)]
    wide = pd.concat(series, axis=1).sort_index()
    matrix = wide.to_numpy(dtype=np.float64)
    n_runs = np.sum(~np.isnan(matrix), axis=1)
    mean = np.nanmean(matrix, axis=1)
    half = np.full(mean.shape, np.nan)
    many = n_runs >= 2
    sd = np.nanstd(matrix[many], axis=1, ddof=1)
    half[many] = scipy_stats.t.ppf(0.975, n_runs[many] - 1) * sd / np.sqrt(n_runs[many])
    return pd.DataFrame(
        {
            "t_s": wide.index.to_numpy(dtype=np.float64),
            "mean_power_w": mean,
            "ci_lo_w": mean - half,
            "ci_hi_w": mean + half,
            "n_runs": n_runs.astype(np.int64),
        }
    )


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 runs, some of whose samples files are not plain: each read another way."""
    folder = tmp_path_factory.mktemp("scale") / "results"
    write_synthetic_folder(folder, runs=60, samples_per_run=60, seed=3)
    # Damage of every kind the batch reader has to notice, spread through the batch.
    text = _samples(folder, "fp32-010").read_text()
    _samples(folder, "fp32-010").write_text(text.replace("\n", "\r\n"))  # CRLF: parsed alone
    lines = _samples(folder, "fp32-020").read_text().splitlines(keepends=True)
    _samples(folder, "fp32-020").write_text("".join([*lines[:5], "\n", *lines[5:]]))  # blank
    _samples(folder, "fp32-030").write_text("t_s,domain,power_w\n1.0,rapl/dram,not-a-number\n")
    _samples(folder, "fp32-040").unlink()  # missing
    frame = pd.read_csv(_samples(folder, "mixed-015"))
    frame[["power_w", "domain", "t_s"]].to_csv(_samples(folder, "mixed-015"), index=False)
    _samples(folder, "mixed-016").write_text("t_s,domain,power_w\n")  # header only
    return folder


def test_power_traces_at_scale_are_those_of_each_run_read_alone(big_folder: Path) -> None:
    data = load(big_folder)
    # A run that records no counted domains sums every domain its samples have.
    data.counted_by_run["mixed-007"] = None
    prepared = prepare(data)
    traces, trace = power_traces(data, prepared)
    for policy, rows in prepared.kept_by_policy().items():
        per_run = []
        for row in rows:
            run_id = str(row["run_id"])
            binned = _reference_bins(_samples(big_folder, run_id), data.counted_by_run[run_id])
            if binned is not None and len(binned):
                per_run.append(binned)
        assert trace.runs[policy] == len(per_run)
        pd.testing.assert_frame_equal(traces[policy], _reference_trace(per_run), check_exact=True)
    assert trace.missing == ["fp32-040"]
    assert list(trace.unreadable) == ["fp32-030"]
    assert "not a number" in trace.unreadable["fp32-030"]
    assert "not-a-number" not in trace.unreadable["fp32-030"]


def test_samples_are_parsed_together_not_one_parser_call_per_run(
    big_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = load(big_folder)
    prepared = prepare(data)
    calls = []
    real = pd.read_csv

    def counting(*args: object, **kwargs: object) -> pd.DataFrame:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(pd, "read_csv", counting)
    power_traces(data, prepared)
    # 118 runs with samples: one call per policy's batch, a few halvings to find the damaged
    # file, one for each file that is not plain. One call per run took 20 s at 10,000 runs.
    assert 0 < len(calls) <= 30


def test_a_linked_samples_file_is_named_and_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text(f"t_s,domain,power_w\n0.0,{SECRET},5.0\n1.0,{SECRET},5.0\n")
    link = tmp_path / "samples" / "x.csv"
    link.parent.mkdir()
    link.symlink_to(outside)
    with pytest.raises(ConfigError) as caught:
        read_samples(link)
    message = str(caught.value)
    assert str(link) in message and "symbolic link" in message
    assert "SECRET" not in message


def test_a_fifo_samples_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "x.csv"
    os.mkfifo(fifo)
    code = (
        "import sys\nfrom pathlib import Path\nfrom greenprec.errors import ConfigError\n"
        "from greenprec.report.data import read_samples\n"
        "try:\n    read_samples(Path(sys.argv[1]))\nexcept ConfigError as e:\n    print(e)\n"
    )
    # Before: the reader opened the FIFO and waited for a writer forever.
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert str(fifo) in done.stdout and "not a regular file" in done.stdout


def test_an_oversized_samples_file_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sparse = tmp_path / "huge.csv"
    with open(sparse, "wb") as handle:
        handle.truncate(report_data.MAX_SAMPLES_BYTES + 1)  # sparse: no disk, no time
    with pytest.raises(ConfigError, match="larger than"):
        read_samples(sparse)
    small = tmp_path / "small.csv"
    small.write_text("t_s,domain,power_w\n" + "0.0,rapl/dram,1.0\n" * 200)
    monkeypatch.setattr(report_data, "MAX_SAMPLES_BYTES", 1000)
    with pytest.raises(ConfigError, match=r"small\.csv.*larger than 1000 bytes"):
        read_samples(small)


def test_a_damaged_samples_file_is_named_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(f"t_s,domain,power_w\n{SECRET},rapl/dram,1.0\n")
    with pytest.raises(ConfigError) as caught:
        read_samples(path)
    assert str(path) in str(caught.value) and "not a number" in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_report_goes_on_past_linked_and_fifo_samples(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    write_synthetic_folder(folder, runs=4, samples_per_run=40, seed=2)
    secret = tmp_path / "shadow"
    secret.write_text(f"t_s,domain,power_w\n0.0,{SECRET},1.0\n")
    _samples(folder, "fp32-001").unlink()
    _samples(folder, "fp32-001").symlink_to(secret)
    _samples(folder, "mixed-002").unlink()
    os.mkfifo(_samples(folder, "mixed-002"))
    done = subprocess.run(
        [sys.executable, "-m", "greenprec", "report", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "SECRET" not in done.stdout + done.stderr
    written = json.loads((folder / "stats.json").read_text())
    assert written["power_trace"]["runs"] == {"fp32": 3, "mixed": 3}
    warnings = " ".join(written["warnings"])
    assert "fp32-001" in warnings and "symbolic link" in warnings
    assert "mixed-002" in warnings and "not a regular file" in warnings
    for name in ("report.md", "report.html", "stats.json"):
        assert "SECRET" not in (folder / name).read_text()
