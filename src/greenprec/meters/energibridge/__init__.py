"""``energibridge``: energy from the EnergiBridge command-line tool, run beside the block.

EnergiBridge (https://github.com/tdurieux/EnergiBridge) reads RAPL registers through
``/dev/cpu/*/msr`` on Linux and Windows, the SMC power sensors on macOS, and with ``-g`` the
power of NVIDIA GPUs. It samples while a command runs, so the meter runs it for the duration
of the block::

    energibridge -o TMP/energibridge.csv -i INTERVAL_MS [-g] sleep 1000000

and stops it with SIGINT when the block ends, which makes EnergiBridge write a last row and exit.

Timing. EnergiBridge writes each row to the file as it samples (unbuffered), so :meth:`read`
parses the complete rows written so far; the figures seen during the block lag by up to one
sampling interval. The block's last stretch is only on disk after SIGINT, so the meter
overrides :meth:`Meter.finish`: it notes the block's end, stops EnergiBridge, reads its last
rows and returns the energy of exactly the window from the block's first reading to its end.
Rows are stamped with the wall-clock time of their sample (``Time``) and cover the ``Delta``
ms after it, so the window is cut inside the first and last rows: a counter is interpolated
between its samples, a power column counts only the part of a row inside the window.

:meth:`start` waits for EnergiBridge's first row (it takes a few hundred ms to start), so that
the block is measured from its first instant.

Processes. EnergiBridge runs in a session and process group of its own, the probe's trial run
too. When it fails or dies it leaves its command running (the placeholder ``sleep``, which
would live on under init for 11 days), so every way out (an exit before the first row or
mid-block, a normal stop, a kill after the stop timeout, a trial run that fails or hangs, the
meter's garbage collection) SIGKILLs the whole group, whatever EnergiBridge's own state.

Counting: the CSV becomes domains with the one reader, :mod:`greenprec.formats.energibridge_csv`
(``energibridge/package``, ``energibridge/system`` ...), with its total rule: system power
alone when present, else CPU + DRAM + GPUs; parts inside the package are reported, not added.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import weakref
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar, cast

from greenprec.errors import ConfigError, GreenprecWarning, MeterError, MeterUnavailable
from greenprec.formats.energibridge_csv import EnergiBridgeStream, read_energibridge_csv
from greenprec.hookspecs import hookimpl
from greenprec.meters.base import Meter, Probe, Reading

if TYPE_CHECKING:
    from greenprec.meters.energibridge.options import EnergiBridgeOptions

__all__ = ["ENV_EXECUTABLE", "EnergiBridgeMeter", "greenprec_meters"]

ENV_EXECUTABLE = "GREENPREC_ENERGIBRIDGE"
_INSTALL_HINT = (
    "download a release from https://github.com/tdurieux/EnergiBridge/releases (or build it "
    "with cargo), then put `energibridge` on PATH, set GREENPREC_ENERGIBRIDGE=/path/to/it, or "
    "pass -o energibridge.executable=PATH"
)
_MSR_PERMISSION_HINT = (
    "EnergiBridge cannot read the CPU's RAPL registers (/dev/cpu/*/msr: permission denied). "
    "Grant access: sudo modprobe msr; sudo chgrp -R msr /dev/cpu/*/msr; sudo chmod g+r "
    "/dev/cpu/*/msr (and add yourself to group msr); sudo setcap cap_sys_rawio=ep "
    "$(command -v energibridge); or run as root. On Linux the rapl meter needs no MSR access"
)
_MSR_MISSING_HINT = (
    "EnergiBridge cannot open /dev/cpu/*/msr: the msr driver is not loaded; run "
    "`sudo modprobe msr` (and see the permissions in docs/meters/energibridge.md)"
)
_MSR_UNSUPPORTED_HINT = (
    "EnergiBridge failed reading a RAPL register this CPU does not have (it reads PKG, PP0, "
    "PP1 and DRAM on Intel, core and package on AMD); use the rapl meter on Linux"
)

_POLL_S = 0.01
_PROBE_RUN_S = 0.1  # EnergiBridge still writes 2-3 rows: start-up sampling precedes it
_STDERR_TAIL = 1200
_FAILED_PROBE_TTL_S = 30.0


class EnergiBridgeMeter(Meter):
    """Energy from EnergiBridge run as a child process for the block (see the module docstring)."""

    name = "energibridge"
    estimated = False
    auto = True
    auto_order = 30
    # "gpu" too: with -g it reads NVIDIA GPUs and on macOS its system power contains the GPU,
    # so auto never pairs it with nvml (a ClassVar cannot depend on the gpu option).
    covers = frozenset({"cpu", "dram", "system", "gpu"})
    description = "CPU/DRAM (Linux, Windows), system (macOS) and -g GPU power via EnergiBridge"

    _probe_cache: ClassVar[dict[tuple[str, int, int, bool], tuple[float, Probe]]] = {}

    # By path, not by class: importing the options would import pydantic, and the plugin
    # manager imports this module to register the meter (see energibridge/options.py).
    Options = "greenprec.meters.energibridge.options:EnergiBridgeOptions"

    def __init__(self, **options: object) -> None:
        """Options: ``executable``, ``gpu``, ``keep_csv``, ``interval_ms``, ``counter_range_j``,
        ``stop_timeout_s``, ``start_timeout_s`` (see
        :class:`~greenprec.meters.energibridge.options.EnergiBridgeOptions`)."""
        super().__init__(**options)
        valid = cast("EnergiBridgeOptions", self.options)
        self.executable = valid.executable
        self.gpu = valid.gpu
        self.keep_csv = None if valid.keep_csv is None else Path(valid.keep_csv)
        self.interval_ms = valid.interval_ms
        self.counter_range_j = valid.counter_range_j
        self.stop_timeout_s = valid.stop_timeout_s
        self.start_timeout_s = valid.start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], EnergiBridgeMeter] | None = (
            None
        )
        self._tmpdir: Path | None = None
        self._csv: Path | None = None
        self._stdout: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stream: EnergiBridgeStream | None = None
        self._offset = 0
        self._pending = b""
        self._lineno = 0
        self._window_start_ms: float | None = None
        self._command: list[str] = []

    # -- the contract ----------------------------------------------------------------------
    @classmethod
    def probe(cls, **options: object) -> Probe:
        meter = cls(**options)  # bad options are the user's to fix: ConfigError propagates
        if sys.platform == "win32":
            return Probe(
                False,
                "the energibridge meter stops EnergiBridge with SIGINT, which Windows lacks; "
                "run energibridge yourself and read its CSV with `greenprec import energibridge`",
            )
        try:
            executable = meter._resolve()
        except MeterUnavailable as error:
            return Probe(False, str(error))
        # The trial run costs a few hundred ms and auto probes at every measure(): remember
        # a success for this very file, a failure briefly (permissions can be fixed meanwhile).
        stat = os.stat(executable)
        key = (executable, stat.st_mtime_ns, stat.st_size, meter.gpu)
        cached = cls._probe_cache.get(key)
        if cached is not None and (cached[1].available or time.monotonic() < cached[0]):
            return cached[1]
        result = meter._trial_run(executable)
        cls._probe_cache[key] = (time.monotonic() + _FAILED_PROBE_TTL_S, result)
        return result

    def start(self) -> None:
        if self._process is not None:
            # A second EnergiBridge would replace the first, whose process group would then
            # outlive stop() (found by greenprec.testing's "second start" check).
            raise MeterError(
                "this energibridge meter is already running; stop() it before starting again"
            )
        executable = self._resolve()
        self._tmpdir = Path(tempfile.mkdtemp(prefix="greenprec-energibridge-"))
        self._csv = self._tmpdir / "energibridge.csv"
        self._stream = EnergiBridgeStream(str(self._csv), counter_range_j=self.counter_range_j)
        self._offset, self._pending, self._lineno = 0, b"", 0
        self._window_start_ms = None
        self._command = self._arguments(executable, self._csv, self.interval_ms) + _placeholder(
            1_000_000
        )
        try:
            self._stdout = open(self._tmpdir / "stdout.txt", "wb")  # noqa: SIM115 - closed in stop
            self._stderr = open(self._tmpdir / "stderr.txt", "wb")  # noqa: SIM115
            # Its own session: a Ctrl-C in the terminal must reach Python (which then stops the
            # block and EnergiBridge cleanly), and a kill must reach EnergiBridge's child too.
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
                start_new_session=True,
            )
        except OSError as error:
            self.stop()
            raise MeterError(f"cannot start EnergiBridge ({executable}): {error}") from None
        self._finalizer = weakref.finalize(self, _kill_group, self._process)
        try:
            self._wait_for_first_row()
        except BaseException:
            self.stop()
            raise

    def read(self) -> list[Reading]:
        now_ms = time.time() * 1e3
        if self._window_start_ms is None:
            self._window_start_ms = now_ms
        self._consume()
        process = self._require_process()
        if process.poll() is not None:
            _kill_group(process)  # what it started is still running: not a moment longer
            self._consume(final=True)
            raise MeterError(self._exited("before the block ended"))
        return self._readings(now_ms)

    def finish(self) -> list[Reading]:
        end_ms = time.time() * 1e3
        if self._window_start_ms is None:
            self._window_start_ms = end_ms
        process = self._require_process()
        if process.poll() is not None:
            _kill_group(process)
            self._consume(final=True)
            raise MeterError(self._exited("before the block ended"))
        killed = self._interrupt(process)
        # EnergiBridge stops its command on SIGINT; anything of the group left is killed.
        _kill_group(process)
        self._consume(final=not killed)
        stream = self._require_stream()
        if killed:
            warnings.warn(
                f"EnergiBridge did not stop within {self.stop_timeout_s:g} s of SIGINT and "
                "was killed; the energy counts its rows up to then (a row it was writing is "
                "dropped)",
                GreenprecWarning,
                stacklevel=2,
            )
        gap_ms = end_ms - stream.covered_until_ms()
        if gap_ms > 3 * self.interval_ms + 500:
            raise MeterError(
                f"EnergiBridge's samples end {gap_ms / 1e3:.1f} s before the block did: the "
                "energy of that stretch is unknown (keep_csv=PATH keeps its file to inspect)"
            )
        if gap_ms > self.interval_ms:
            warnings.warn(
                f"EnergiBridge's samples end {gap_ms / 1e3:.3f} s before the block did; that "
                "stretch is not counted",
                GreenprecWarning,
                stacklevel=2,
            )
        # What the reader corrected or refused (wraps, glitches counted as 0 J, columns outside
        # the total that misbehaved) is said here too, as for an imported file: never silent.
        for line in stream.warnings():
            warnings.warn(f"EnergiBridge: {line}", GreenprecWarning, stacklevel=2)
        return self._readings(end_ms)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            # Even when EnergiBridge has exited: its command may not have.
            _kill_group(process)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        for handle in (self._stdout, self._stderr):
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        self._stdout = self._stderr = None
        if self.keep_csv is not None and self._csv is not None and self._csv.exists():
            try:
                self.keep_csv.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self._csv, self.keep_csv)
            except OSError as error:
                warnings.warn(
                    f"could not keep EnergiBridge's CSV at {self.keep_csv}: {error}",
                    GreenprecWarning,
                    stacklevel=2,
                )
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- running EnergiBridge --------------------------------------------------------------
    def _resolve(self) -> str:
        """The executable's absolute path, or MeterUnavailable saying how to install it."""
        if self.executable is not None:
            wanted, origin = self.executable, "option executable"
        elif os.environ.get(ENV_EXECUTABLE):
            wanted, origin = os.environ[ENV_EXECUTABLE], ENV_EXECUTABLE
        else:
            found = shutil.which("energibridge")
            if found is None:
                raise MeterUnavailable(f"no `energibridge` on PATH: {_INSTALL_HINT}")
            return os.path.abspath(found)
        found = shutil.which(wanted)
        if found is None:
            why = "is not executable" if os.path.exists(wanted) else "does not exist"
            raise MeterUnavailable(f"EnergiBridge {wanted!r} ({origin}) {why}: {_INSTALL_HINT}")
        return os.path.abspath(found)

    def _arguments(self, executable: str, csv: Path, interval_ms: int) -> list[str]:
        command = [executable, "-o", str(csv), "-i", str(interval_ms)]
        if self.gpu:
            command.append("-g")
        return command

    def _trial_run(self, executable: str) -> Probe:
        """Run EnergiBridge for a fraction of a second and report the domains it gives."""
        with tempfile.TemporaryDirectory(prefix="greenprec-energibridge-probe-") as tmp:
            csv = Path(tmp) / "probe.csv"
            command = self._arguments(executable, csv, 100) + _placeholder(_PROBE_RUN_S)
            limit_s = self.start_timeout_s + _PROBE_RUN_S
            # Its stderr goes to a file, not a pipe: a leftover child holding a pipe open
            # would make reading it wait for that child.
            with open(Path(tmp) / "stderr.txt", "w+b") as stderr_file:
                try:
                    process = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr_file,
                        start_new_session=True,  # a group of its own, to kill as one
                    )
                except OSError as error:
                    return Probe(False, f"cannot run EnergiBridge ({executable}): {error}")
                try:
                    returncode = process.wait(timeout=limit_s)
                except subprocess.TimeoutExpired:
                    return Probe(
                        False,
                        f"EnergiBridge ({executable}) did not finish a {_PROBE_RUN_S} s trial "
                        f"run within {limit_s:g} s",
                    )
                finally:
                    _kill_group(process)
                stderr_file.seek(0)
                stderr = stderr_file.read().decode("utf-8", "replace")
            if returncode != 0:
                return Probe(
                    False,
                    f"EnergiBridge ({executable}) failed a trial run with code "
                    f"{returncode}: {_explain(stderr)}",
                )
            try:
                recording = read_energibridge_csv(csv, counter_range_j=self.counter_range_j)
            except ConfigError as error:
                hint = _diagnose(stderr)
                return Probe(
                    False,
                    f"EnergiBridge ran but its CSV is unusable: {error}"
                    + (f"; {hint}" if hint else ""),
                )
            return Probe(True, domains=list(recording.domains))

    def _wait_for_first_row(self) -> None:
        process = self._require_process()
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            self._consume()
            if self._require_stream().rows > 0:
                return
            if process.poll() is not None:
                _kill_group(process)
                self._consume(final=True)
                raise MeterError(self._exited("before its first sample"))
            if time.monotonic() > deadline:
                raise MeterError(
                    f"EnergiBridge wrote no sample within {self.start_timeout_s:g} s "
                    f"(command: {' '.join(self._command)}); raise start_timeout_s if the "
                    "machine is slow" + self._stderr_suffix()
                )
            time.sleep(_POLL_S)

    def _interrupt(self, process: subprocess.Popen[bytes]) -> bool:
        """SIGINT EnergiBridge so it writes its last row; kill it after the timeout.

        Returns whether it had to be killed. Only EnergiBridge gets SIGINT: it then kills its
        placeholder child itself, as it does on Ctrl-C.
        """
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=self.stop_timeout_s)
            return False
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return True

    def _consume(self, *, final: bool = False) -> None:
        """Parse the complete rows EnergiBridge has appended since the last call.

        ``final``: it has exited, so a last line without a newline is a row too.
        """
        stream = self._require_stream()
        assert self._csv is not None
        try:
            with open(self._csv, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return  # EnergiBridge creates the file only after its start-up sampling
        except OSError as error:
            raise MeterError(f"cannot read EnergiBridge's CSV {self._csv}: {error}") from None
        self._offset += len(chunk)
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if final and self._pending.strip():
            lines.append(self._pending)
            self._pending = b""
        try:
            for raw in lines:
                self._lineno += 1
                stream.feed(raw.decode("utf-8", "replace"), self._lineno)
        except ConfigError as error:
            keep = "" if self.keep_csv else " (keep the file with -o energibridge.keep_csv=PATH)"
            raise MeterError(f"EnergiBridge wrote a malformed CSV: {error}{keep}") from None

    def _readings(self, t_ms: float) -> list[Reading]:
        stream = self._require_stream()
        assert self._window_start_ms is not None
        start = stream.energy_at(self._window_start_ms)
        now = stream.energy_at(t_ms)
        counted = set(stream.counted_domains)
        return [
            Reading(
                domain, energy_j=max(0.0, now[domain] - start[domain]), in_total=domain in counted
            )
            for domain in stream.domains
        ]

    def _exited(self, when: str) -> str:
        process = self._require_process()
        return (
            f"EnergiBridge exited with code {process.returncode} {when} "
            f"(command: {' '.join(self._command)})" + self._stderr_suffix()
        )

    def _stderr_suffix(self) -> str:
        text = ""
        if self._tmpdir is not None:
            with contextlib.suppress(OSError):
                if self._stderr is not None:
                    self._stderr.flush()
                text = (self._tmpdir / "stderr.txt").read_text("utf-8", "replace")
        return f": {_explain(text)}" if text.strip() else ": it printed nothing on stderr"

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise MeterError("the energibridge meter is not running (start() first)")
        return self._process

    def _require_stream(self) -> EnergiBridgeStream:
        if self._stream is None:
            raise MeterError("the energibridge meter is not running (start() first)")
        return self._stream


def _placeholder(seconds: float) -> list[str]:
    """A command that just waits: EnergiBridge samples for as long as its command runs."""
    sleep = shutil.which("sleep")
    if sleep is not None:
        return [sleep, f"{seconds:g}" if seconds < 1e6 else str(int(seconds))]
    return [sys.executable, "-c", f"import time; time.sleep({seconds!r})"]


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL EnergiBridge's whole process group, whatever EnergiBridge's state, then reap it.

    The group is EnergiBridge's pid (it was started in a session of its own). It outlives
    EnergiBridge while its command runs, and Linux does not reuse a pid that is still a group
    id, so the signal reaches that command, never a stranger. Once the group is empty the
    call is a no-op (ProcessLookupError); it is made right when an exit is seen, and again
    when the meter stops, long before pids could wrap around to this one.
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # nothing of the group is left
    except (OSError, AttributeError):  # AttributeError: no killpg on Windows
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def _diagnose(stderr: str) -> str | None:
    """A fix for the failures EnergiBridge reports as Rust panics, when one is recognised."""
    if re.search(r"PermissionDenied|os error 13|code: 13\b", stderr):
        return _MSR_PERMISSION_HINT
    if re.search(r"NotFound|os error 2\b|code: 2\b", stderr) and sys.platform != "darwin":
        return _MSR_MISSING_HINT
    if re.search(r"failed to read|os error 5\b|code: 5\b", stderr):
        return _MSR_UNSUPPORTED_HINT
    return None


def _explain(stderr: str) -> str:
    tail = " | ".join(line.strip() for line in stderr.strip().splitlines() if line.strip())
    if len(tail) > _STDERR_TAIL:
        tail = "…" + tail[-_STDERR_TAIL:]
    hint = _diagnose(stderr)
    return f"{hint}. stderr: {tail}" if hint else f"stderr: {tail or '(empty)'}"


@hookimpl
def greenprec_meters() -> list[type[Meter]]:
    return [EnergiBridgeMeter]
