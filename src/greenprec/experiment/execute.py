"""Running one scheduled run: in this process (``inline``) or in a fresh Python (``process``).

A run's outcome is a plain dict: ``status`` ("done" or "failed"), ``error``, ``metrics`` and
``measurement`` (``Measurement.to_dict()``); its samples are written by whoever measured it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from greenprec.experiment.atomic import write_atomic
from greenprec.experiment.folder import ResultsFolder

Outcome = dict[str, Any]
RUNNER_PID_VARIABLE = "GREENPREC_RUNNER_PID"


def run_spec(config: Any, run: Any, meters: list[str]) -> dict[str, Any]:
    """Everything a run needs, as JSON-ready data (handed to the child process)."""
    return {
        "run_id": run.run_id,
        "policy": run.policy,
        "seed": run.seed,
        "workload": config.workload,
        "params": config.params,
        "deterministic": config.deterministic,
        "meters": meters,
        "meter_options": config.meter_options,
        "interval_s": config.interval_s,
    }


def execute_inline(spec: dict[str, Any], folder: ResultsFolder) -> Outcome:
    """Run the workload here, measure its marked phase, write its samples."""
    from greenprec.measurement import measure
    from greenprec.workloads import run_workload

    def measure_factory() -> Any:
        return measure(
            spec["meters"], interval=spec["interval_s"], meter_options=spec["meter_options"]
        )

    try:
        result = run_workload(
            spec["workload"],
            policy=spec["policy"],
            seed=spec["seed"],
            params=spec["params"],
            deterministic=spec["deterministic"],
            measure_factory=measure_factory,
        )
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # a failed run is data, not a crash of the experiment
        return {
            "status": "failed",
            "error": _one_line(error),
            "traceback": traceback.format_exc(),
        }
    measurement = result.measurement
    folder.write_samples(spec["run_id"], measurement.samples.itertuples(index=False, name=None))
    return {
        "status": "done",
        "error": None,
        "metrics": dict(result.metrics),
        "measurement": measurement.to_dict(),
    }


def execute_in_process(
    spec: dict[str, Any], folder: ResultsFolder, *, poll: Callable[[], None] | None = None
) -> Outcome:
    """Run in a fresh interpreter so no framework state leaks from run to run.

    The child's output goes to ``logs/<run_id>.log``; a child that dies without an outcome
    (killed, out of memory, a crash in native code) is a failed run with its log's last line.
    """
    work = folder.path / ".work"
    spec_file = work / f"{spec['run_id']}.spec.json"
    outcome_file = work / f"{spec['run_id']}.outcome.json"
    write_atomic(spec_file, json.dumps(spec))
    outcome_file.unlink(missing_ok=True)
    log_file = folder.path / "logs" / f"{spec['run_id']}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "greenprec.experiment.child",
        str(folder.path),
        str(spec_file),
        str(outcome_file),
    ]
    with log_file.open("wb") as log:
        env = {**os.environ, RUNNER_PID_VARIABLE: str(os.getpid())}
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while child.poll() is None:
                if poll is not None:
                    poll()
                time.sleep(0.1)
        except BaseException:
            _stop_child(child)
            raise
    if outcome_file.exists():
        outcome: Outcome = json.loads(outcome_file.read_text(encoding="utf-8"))
        outcome_file.unlink()
        spec_file.unlink(missing_ok=True)
        return outcome
    spec_file.unlink(missing_ok=True)
    return {
        "status": "failed",
        "error": f"{_exit_description(child.returncode)}; last output: {_last_line(log_file)} "
        f"(full log: {log_file})",
    }


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"run process was killed by {name}{hint}"
    return f"run process exited with code {returncode} without a result"


def _last_line(log_file: Path) -> str:
    try:
        lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines()]
    except OSError:
        return "(no log)"
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else "(no output)"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def child_main(argv: list[str]) -> int:
    """Entry of ``python -m greenprec.experiment.child FOLDER SPEC OUTCOME``."""
    folder_path, spec_path, outcome_path = argv
    _die_with_parent()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    outcome = execute_inline(spec, ResultsFolder(folder_path))
    if "traceback" in outcome:
        print(outcome["traceback"], file=sys.stderr, flush=True)
    write_atomic(Path(outcome_path), json.dumps(outcome, default=str))
    return 0


def _die_with_parent() -> None:
    """On Linux, end this run when the runner is killed, so a resumed run is not raced by it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    runner_pid = os.environ.get(RUNNER_PID_VARIABLE)
    if runner_pid is not None and os.getppid() != int(runner_pid):
        os._exit(1)  # the runner died before prctl took effect
