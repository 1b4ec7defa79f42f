"""What a new user hits in the Python API: the decorator form, the meters subpackage, the
fallback warning, a plugin meter whose start() fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import greenprec
from greenprec.meters.mock import MockMeter


def test_measure_decorates_without_parentheses() -> None:
    @greenprec.measure
    def train(seconds: float) -> str:
        time.sleep(seconds)
        return "trained"

    with pytest.warns(greenprec.GreenprecWarning, match="no hardware energy meter here"):
        assert train(0.05) == "trained"
    assert train.measurement.duration_s >= 0.05  # type: ignore[attr-defined]
    assert train.__name__ == "train"


def test_measure_refuses_a_meter_class_with_the_fix() -> None:
    with pytest.raises(greenprec.ConfigError, match=r"pass an instance, e.g. measure\(MockMeter"):
        greenprec.measure(MockMeter)  # type: ignore[arg-type]


def test_the_meters_subpackage_is_reachable_and_available_meters_lists_them() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import greenprec.meters.mock, greenprec; "
         "print(greenprec.meters.mock.MockMeter.name, sorted(greenprec.available_meters()))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.startswith("mock [") and "'rapl'" in out


def test_the_fallback_warning_is_short_once_per_line_and_points_at_the_caller(
    tmp_path: object,
) -> None:
    code = textwrap.dedent(
        """
        import greenprec
        for _ in range(3):
            with greenprec.measure(meter_options={"rapl.root": "/nonexistent"}):
                pass
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    lines = [line for line in result.stderr.splitlines() if "GreenprecWarning" in line]
    assert len(lines) == 1
    assert lines[0].startswith("<string>:4: GreenprecWarning: no hardware energy meter here (")
    assert len(lines[0]) < 250 and "`greenprec meters` says why" in lines[0]


def test_greenprec_measure_cli_prints_the_fallback_warning_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "greenprec", "measure", "-o", "rapl.root=/nonexistent", "--",
         sys.executable, "-c", "pass"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("no hardware energy meter here") == 1


class _BrokenStart(greenprec.Meter):
    name = "brokenstart"

    def start(self) -> None:
        raise RuntimeError("device [/dev/x] vanished")

    def read(self) -> list[greenprec.Reading]:
        return []


def test_a_meter_whose_start_raises_is_a_meter_error_naming_it() -> None:
    with (
        pytest.raises(
            greenprec.MeterError,
            match=r"meter 'brokenstart' failed to start: RuntimeError: device \[/dev/x\] vanished",
        ),
        greenprec.measure(_BrokenStart()),
    ):
        pass


_WITHOUT_TENSORFLOW = (
    "import sys; sys.modules['keras'] = None; sys.modules['tensorflow'] = None; "
    "sys.argv = ['greenprec', *sys.argv[1:]]; from greenprec.cli import main; main()"
)


def test_compare_without_the_framework_names_the_extra_before_anything_runs(
    tmp_path: object,
) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "exp"
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, "compare", "fp32", "mixed", "--quick",
         "--meter", "mock", "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        "workload: workload 'digits-cnn' needs tensorflow and keras, which are not installed: "
        "pip install 'greenprec[tensorflow]'" in result.stderr
    )
    assert "Traceback" not in result.stderr and not out.exists()


def test_workloads_lists_what_each_needs_and_whether_it_is_installed() -> None:
    import json

    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, "workloads", "--json"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    workloads = {w["name"]: w for w in json.loads(result.stdout)["workloads"]}
    digits = workloads["digits-cnn"]
    assert digits["framework"] == "keras" and digits["ready"] is False
    assert {"module": "keras", "extra": "tensorflow", "installed": False} in digits["needs"]
    table = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW, "workloads"],
        capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout  # fmt: skip
    assert "not installed: pip install 'greenprec[tensorflow]'" in table
