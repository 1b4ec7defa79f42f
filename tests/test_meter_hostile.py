"""Hostile meter plugins cannot hang, poison or crash ``greenprec measure`` (issue #24).

Each plugin is installed the way a third party ships one (a module and a dist-info with a
``greenprec`` entry point on sys.path), then met where the user meets it: ``greenprec measure --
sleep 1`` through the CLI entry, in this process and in a fresh one, and
:func:`greenprec.testing.check_meter`. The plugin's behaviour is chosen by the environment
variable ``HOSTILE_MODE``, so one plugin serves every case.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest

import greenprec
from greenprec.cli import main
from greenprec.testing import MeterContractError, check_meter

EVIL = "../../etc/\x1b[31mEVIL<script>"

PLUGIN = f"""
import os, threading, time
import greenprec

EVIL = {EVIL!r}
release = threading.Event()  # set by the tests, so no hung thread outlives them

def mode():
    return os.environ.get("HOSTILE_MODE", "")

class HostileMeter(greenprec.Meter):
    name = "hostile"
    description = "a meter plugin that misbehaves on request"
    start_timeout_s = 0.2   # what it promises; greenprec waits 2 x 0.2 + 1 s
    stop_timeout_s = 0.2

    @classmethod
    def probe(cls, **options):
        if mode() == "probe-exit":
            raise SystemExit(3)
        if mode() == "probe-reason":
            return greenprec.Probe(False, "cannot run: " + EVIL + "\\nsecond line")
        return greenprec.Probe(True, domains=[EVIL if mode() == "probe-domain" else "hostile/0"])

    def __init__(self, **options):
        if mode() == "init-exit":
            raise SystemExit(4)
        super().__init__(**options)

    def start(self):
        if mode() == "start-hangs":
            release.wait(60)
        self.t0 = time.monotonic()
        self.reads = 0

    def read(self):
        self.reads += 1
        now = self.reading_time or time.monotonic()
        if mode() == "read-domain":
            return [greenprec.Reading(EVIL, energy_j=1.0)]
        if mode() == "huge" and self.reads > 1:
            return [greenprec.Reading("hostile/0", energy_j=1e308)]
        if mode() == "huge-power" and self.reads > 1:
            return [greenprec.Reading("hostile/0", power_w=1e308)]
        if mode() == "exit" and self.reads > 1:
            raise SystemExit(3)
        if mode() == "interrupt" and self.reads > 1:
            raise KeyboardInterrupt
        return [greenprec.Reading("hostile/0", energy_j=5.0 * (now - self.t0))]

    def stop(self):
        if mode() == "stop-hangs":
            release.wait(60)

@greenprec.hookimpl
def greenprec_meters():
    return [HostileMeter]
"""


Arm = Callable[[str], Path]
"""The ``hostile`` fixture: sets the plugin's mode, returns the folder it is installed in."""


@pytest.fixture
def hostile(install_plugin, monkeypatch: pytest.MonkeyPatch) -> Iterator[Arm]:  # type: ignore[no-untyped-def]
    """Install the plugin; return a function that sets its mode and gives the site folder."""
    site: Path = install_plugin("greenprec_hostile", PLUGIN)

    def arm(mode: str) -> Path:
        monkeypatch.setenv("HOSTILE_MODE", mode)
        return site

    yield arm
    module = sys.modules.pop("greenprec_hostile", None)  # the next test imports it afresh
    if module is not None:
        module.release.set()  # the hung calls end, their helper threads with them


def _measure_in_process(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``greenprec measure -m hostile -- sleep 1`` through the console entry, in this process:
    its exit code and what it wrote (stdout, then stderr)."""
    argv = ["greenprec", "measure", "-m", "hostile", "--", "sleep", "1"]
    with mock.patch.object(sys, "argv", argv), pytest.raises(SystemExit) as exited:
        main()
    written = capsys.readouterr()
    code = exited.value.code
    return code if isinstance(code, int) else 1, written.out + written.err


def _measure_in_subprocess(site: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOSTILE_MODE": mode,
        "PYTHONPATH": os.pathsep.join([str(site), *sys.path]),
    }
    return subprocess.run(
        [sys.executable, "-m", "greenprec", "measure", "-m", "hostile", "--", "sleep", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


# -- 1. domain names ---------------------------------------------------------------------------
def test_builtin_domain_names_all_have_the_allowed_form() -> None:
    from greenprec.meters.base import domain_problem

    names = [
        "rapl/package-0",
        "rapl/dram-0",
        "rapl/core-0",
        "rapl/psys",
        "rapl/package-0@intel-rapl:0:1",
        "nvml/gpu-0",
        "amdsmi/gpu-1",
        "apple/cpu",
        "apple/cpu.e-core-3",
        "apple/gpu",
        "energibridge/package",
        "energibridge/cpu-power",
        "energibridge/gpu-0",
        "energibridge/core-12",
        "estimate/cpu",
        "mock/cpu",
        "scripted/node",
    ]
    assert [name for name in names if domain_problem(name) is not None] == []


@pytest.mark.parametrize(
    "name", [EVIL, "", "hostile/", "/etc/passwd", "x/a b", "x/a,b", "x/a\nb", "x/" + "a" * 200]
)
def test_a_bad_domain_name_is_named_escaped(name: str) -> None:
    from greenprec.meters.base import domain_problem

    problem = domain_problem(name)
    assert problem is not None
    assert "\x1b" not in problem and "\n" not in problem
    assert "'<meter>/<part>'" in problem


def test_a_plugin_reading_a_hostile_domain_fails_measure_with_the_name_escaped(
    hostile: Arm, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile("read-domain")
    code, output = _measure_in_process(capsys)
    assert code == 1, output
    assert "\x1b" not in output and "<script>" not in output.replace("\\x1b[31mEVIL<script>", "")
    assert "meter 'hostile' gave a reading whose domain '../../etc/\\x1b[31mEVIL<script>'" in output
    assert "'<meter>/<part>'" in output


def test_a_plugin_announcing_a_hostile_domain_is_unavailable_with_the_name_escaped(
    hostile: Arm,
) -> None:
    site = hostile("probe-domain")
    done = _measure_in_subprocess(site, "probe-domain")
    assert done.returncode == 2, done.stderr  # as for every meter that cannot run
    assert "\x1b" not in done.stdout + done.stderr
    assert "meter 'hostile' is unavailable" in done.stderr
    assert "'../../etc/\\x1b[31mEVIL<script>' is not a domain name" in done.stderr


def test_a_plugin_probe_reason_reaches_no_terminal_raw(
    hostile: Arm, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile("probe-reason")
    with mock.patch.object(sys, "argv", ["greenprec", "meters"]), pytest.raises(SystemExit) as done:
        main()
    shown = capsys.readouterr()
    assert done.value.code in (0, None)
    assert "cannot run: ../../etc/?[31mEVIL<script>?second line" in " ".join(shown.out.split())
    assert "\x1b" not in shown.out + shown.err
    code, output = _measure_in_process(capsys)
    assert code == 2 and "\x1b" not in output and "?[31mEVIL" in output


@pytest.mark.parametrize(
    ("mode", "code", "said"),
    [
        ("probe-exit", 2, "probe raised SystemExit(3)"),
        ("init-exit", 1, "meter 'hostile' raised SystemExit(4) as it was created"),
    ],
)
def test_a_plugin_exiting_in_probe_or_init_is_named_not_the_command_exit(
    hostile: Arm, capsys: pytest.CaptureFixture[str], mode: str, code: int, said: str
) -> None:
    hostile(mode)
    got, output = _measure_in_process(capsys)
    assert (got, said in output) == (code, True), output


# -- 2. start() and stop() are bounded ---------------------------------------------------------
def test_a_plugin_whose_start_hangs_fails_measure_naming_the_call(
    hostile: Arm, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile("start-hangs")
    began = time.monotonic()
    code, output = _measure_in_process(capsys)
    assert time.monotonic() - began < 10
    assert code == 1, output
    assert "meter 'hostile' did not answer start() within 1.4 s" in " ".join(output.split())


def test_a_plugin_whose_stop_hangs_keeps_the_figures_and_says_so(hostile: Arm) -> None:
    hostile("stop-hangs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with greenprec.measure("hostile") as measured:
            time.sleep(0.05)
    assert measured.energy_j > 0
    said = [str(w.message) for w in caught]
    assert any("'hostile' did not return from stop() within 1.4 s" in text for text in said), said


# -- 4. implausible readings -------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["huge", "huge-power"])
def test_an_implausible_reading_is_a_named_meter_error_not_a_number(
    hostile: Arm, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile(mode)
    code, output = _measure_in_process(capsys)
    flat = " ".join(output.split())
    assert code == 1, output
    assert "meter 'hostile' reported hostile/0" in flat
    assert "is implausible (more than 1e+" in flat
    assert "0" * 30 not in output  # never the 309-digit number


# -- 5. a meter's exceptions of any kind ---------------------------------------------------------
def test_a_plugin_raising_systemexit_in_read_is_a_meter_error_not_the_commands_code(
    hostile: Arm,
) -> None:
    site = hostile("exit")
    done = _measure_in_subprocess(site, "exit")
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "meter 'hostile' raised SystemExit(3) in read()" in " ".join(done.stderr.split())


def test_a_plugin_raising_keyboardinterrupt_in_read_is_a_meter_error(
    hostile: Arm, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile("interrupt")
    code, output = _measure_in_process(capsys)
    assert code == 1, output
    assert "meter 'hostile' raised KeyboardInterrupt() in read()" in " ".join(output.split())


def test_a_real_ctrl_c_still_stops_measure(hostile: Arm, tmp_path: Path) -> None:
    site = hostile("")
    env = {**os.environ, "HOSTILE_MODE": "", "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    running = tmp_path / "running"
    command = f"touch {running}; sleep 30"
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "measure", "-m", "hostile", "--", "sh", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not running.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the meter started, and the command with it
        os.killpg(process.pid, signal.SIGINT)  # as the terminal sends Ctrl-C: to the group
        _out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err


# -- 3. the test kit bounds every call -----------------------------------------------------------
class _Kit(greenprec.Meter):
    name = "kit"
    description = "a meter for the kit's bounds"
    start_timeout_s = 0.2
    stop_timeout_s = 0.2
    release = threading.Event()
    hang = ""

    @classmethod
    def probe(cls, **options: object) -> greenprec.Probe:
        return greenprec.Probe(True, domains=["kit/0"])

    def start(self) -> None:
        if self.hang == "start":
            self.release.wait(60)
        self.t0 = time.monotonic()

    def read(self) -> list[greenprec.Reading]:
        if self.hang == "read":
            self.release.wait(60)
        if self.hang == "none":
            return None  # type: ignore[return-value]
        if self.hang == "exit":
            raise SystemExit(3)
        return [greenprec.Reading("kit/0", energy_j=time.monotonic() - getattr(self, "t0", 0))]


@pytest.mark.parametrize(
    ("hang", "expected"),
    [
        ("start", "start() did not return within 1.4 s"),
        ("read", "read() did not return within"),
        ("none", "read() returned None, not a list of greenprec.Reading"),
        ("exit", "read() raised SystemExit: 3"),
    ],
)
def test_check_meter_reports_a_hanging_or_broken_call_as_a_contract_failure(
    hang: str, expected: str
) -> None:
    release = threading.Event()
    meter: type[_Kit] = type(f"Kit_{hang}", (_Kit,), {"hang": hang, "release": release})
    began = time.monotonic()
    try:
        with pytest.raises(MeterContractError) as raised:
            check_meter(meter, run_s=0.1, interval_s=0.02)
    finally:
        release.set()
    assert time.monotonic() - began < 30
    assert expected in str(raised.value), str(raised.value)
