"""Time each run spends outside its measured window: process start, imports, data, bookkeeping.

    python benchmarks/runner_overhead.py [--runs 3] [--isolation process] [--policy fp32]

Runs `greenprec compare POLICY --quick --runs N --meter mock --cooldown 0 --jsonl` and, from
the progress events, takes each run's wall time (training phase start to run record) minus its
measured window (`duration_s`). Prints per-run figures and the share of the experiment's wall
time that was not measured training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--policy", default="fp32")
    parser.add_argument("--isolation", default="process", choices=["process", "inline"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "exp"
        command = [
            sys.executable, "-m", "greenprec", "compare", args.policy, "--quick",
            "--runs", str(args.runs), "--meter", "mock", "--cooldown", "0",
            "--isolation", args.isolation, "--out", str(out), "--jsonl",
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        total_s = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"compare failed ({result.returncode}):\n{result.stderr[-2000:]}")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    phase_start: dict[str, float] = {}
    overheads, windows = [], []
    for event in events:
        if event["event"] == "phase" and event["phase"] == "training":
            phase_start[event["run_id"]] = event["time"]
        elif event["event"] == "run" and event["status"] == "done":
            wall_s = event["time"] - phase_start[event["run_id"]]
            overheads.append(wall_s - event["duration_s"])
            windows.append(event["duration_s"])
            print(
                f"{event['run_id']}: wall {wall_s:.2f} s, measured {event['duration_s']:.2f} s, "
                f"outside the window {wall_s - event['duration_s']:.2f} s"
            )
    measured_s = sum(windows)
    print(
        f"median per run outside the measured window: {statistics.median(overheads):.2f} s "
        f"({args.isolation} isolation)"
    )
    print(
        f"experiment wall time {total_s:.1f} s, of which measured training {measured_s:.1f} s "
        f"({100 * measured_s / total_s:.0f}%); the rest is start-up, imports, data and "
        "bookkeeping"
    )


if __name__ == "__main__":
    main()
