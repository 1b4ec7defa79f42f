"""Fake Slurm commands (``squeue``, ``sacct``, ``scancel``, ``sbatch``, ``srun``) for tests
without a cluster: small Python scripts put first on PATH, the way the project fakes hardware.

Every fake reads what it should answer from one JSON file (``FakeSlurm.state``) and appends
its argv to ``calls.jsonl``, so a test both scripts Slurm and sees exactly what was asked.

The state file holds:

* ``jobs``: ``{job_id: {"state", "reason", "node", "name", "next"}}``, what squeue knows
  (``next``: the states the job moves through, one per ``squeue -j`` that reports it);
* ``accounting``: ``{job_id: "STATE|NODE"}``, what sacct knows;
* ``<command>``: ``{"fail": stderr line, "rc": n, "sleep_s": s}`` to make a command fail or
  hang (``fail`` without ``rc`` exits 1);
* ``submit_state``: the state a job sbatch accepts starts in (``PENDING``); ``next_id``.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

# srun is never called by greenprec, but submitit's SlurmExecutor refuses to start where
# `which srun` finds nothing: a contributor without Slurm installed needs it on PATH too.
COMMANDS = ("squeue", "sacct", "scancel", "sbatch", "srun")

_SCRIPT = r"""
import json, os, re, sys, time

STATE = {state!r}
CALLS = {calls!r}
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
with open(STATE) as handle:
    state = json.load(handle)
record = [name, *args]
if name == "sbatch" and args and os.path.isfile(args[-1]):
    with open(args[-1]) as handle:
        record.append(handle.read())
with open(CALLS, "a") as handle:
    handle.write(json.dumps(record) + "\n")
own = state.get(name) or {{}}
if own.get("sleep_s"):
    time.sleep(own["sleep_s"])
if own.get("fail"):
    sys.stderr.write(own["fail"] + "\n")
    sys.exit(own.get("rc", 1))
jobs = state.setdefault("jobs", {{}})


def line(job_id, job):
    reason = job.get("reason") or "None"
    return f"{{job_id}}|{{job['state']}}|{{reason}}|{{job.get('node') or ''}}"


def value(flag):
    return args[args.index(flag) + 1]


if name == "squeue":
    if "--name" in args:
        for job_id, job in jobs.items():
            if job.get("name") == value("--name"):
                print(line(job_id, job))
    else:
        known = [job_id for job_id in value("-j").split(",") if job_id in jobs]
        if not known:
            sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
            sys.exit(1)
        for job_id in known:
            print(line(job_id, jobs[job_id]))
            if jobs[job_id].get("next"):  # a scripted sequence: the next poll's state
                jobs[job_id]["state"] = jobs[job_id]["next"].pop(0)
        with open(STATE, "w") as handle:
            json.dump(state, handle)
elif name == "sacct":
    job_id = value("-j")
    row = state.get("accounting", {{}}).get(job_id)
    if row is not None:
        print(f"{{job_id}}|{{row}}")
elif name == "scancel":
    for job_id in args:
        if job_id in jobs:
            jobs[job_id]["state"] = "CANCELLED"
    with open(STATE, "w") as handle:
        json.dump(state, handle)
elif name == "sbatch":
    script = record[-1]
    found = re.search(r"^#SBATCH --job-name=(\S+)", script, re.MULTILINE)
    job_id = str(state.get("next_id", 1000))
    state["next_id"] = int(job_id) + 1
    jobs[job_id] = {{
        "state": state.get("submit_state", "PENDING"),
        "name": found.group(1) if found else None,
        "reason": state.get("submit_reason"),
        "node": state.get("submit_node"),
    }}
    with open(STATE, "w") as handle:
        json.dump(state, handle)
    print(f"Submitted batch job {{job_id}}")
"""


class FakeSlurm:
    """The fakes in ``root/bin``; ``install`` puts them first on PATH."""

    def __init__(self, root: Path, commands: tuple[str, ...] = COMMANDS) -> None:
        self.root = root
        self.bin = root / "bin"
        self.state_file = root / "slurm.json"
        self.calls_file = root / "calls.jsonl"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.state = {"jobs": {}}
        script = f"#!{sys.executable}\n" + _SCRIPT.format(
            state=str(self.state_file), calls=str(self.calls_file)
        )
        for command in commands:
            path = self.bin / command
            path.write_text(script)
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
        monkeypatch.setenv("PATH", os.pathsep.join([str(self.bin), os.environ.get("PATH", "")]))
        return self

    # -- what Slurm answers ------------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    @state.setter
    def state(self, data: dict[str, Any]) -> None:
        self.state_file.write_text(json.dumps(data))

    def update(self, **values: Any) -> None:
        self.state = {**self.state, **values}

    def job(
        self,
        job_id: str,
        state: str,
        reason: str | None = None,
        node: str | None = None,
        name: str | None = None,
        then: tuple[str, ...] = (),
    ) -> None:
        """squeue knows ``job_id`` in ``state`` from now on; with ``then``, each ``squeue -j``
        that reports the job moves it on to the next of those states."""
        data = self.state
        data["jobs"][job_id] = {
            "state": state,
            "reason": reason,
            "node": node,
            "name": name,
            "next": list(then),
        }
        self.state = data

    def forget(self, job_id: str) -> None:
        """squeue no longer knows ``job_id`` (it ended over MinJobAge ago)."""
        data = self.state
        data["jobs"].pop(job_id, None)
        self.state = data

    # -- what was asked ----------------------------------------------------------------------
    def calls(self, command: str | None = None) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        calls = [json.loads(line) for line in self.calls_file.read_text().splitlines()]
        return [call for call in calls if command is None or call[0] == command]
