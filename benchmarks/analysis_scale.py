"""Time the report on a large synthetic results folder, as a library call and as a user runs it.

python benchmarks/analysis_scale.py [--preset samples|runs] [--runs N] [--samples N]
                                    [--dir DIR] [--repeat 1]

Presets (docs/benchmarks.md "Analysis at scale"):

- ``samples`` (default): 200 runs (100 per policy) of 20,000 sample rows, 4 M samples in all.
  Target: ``build_report`` under 20 s and under 2 GiB on a 2-core machine.
- ``runs``: 10,000 runs (5,000 per policy) of 150 sample rows. Target: ``greenprec report DIR``
  under 15 s on a 2-core machine.

``--runs``/``--samples`` override a preset's counts. The folder is generated once (reused with
``--dir``) and every measurement runs in a fresh interpreter, so the peak RSS is the report's
own, not the generator's: ``build_report`` through the library, then ``greenprec report DIR``
as a user runs it (a subprocess: wall time and its peak RSS). The last line is a one-line
summary to paste into the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from greenprec.report import build_report
t1 = time.perf_counter()
report = build_report(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({
    "import_s": t1 - t0,
    "build_s": t2 - t1,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "runs_used": report.stats["runs"]["used"],
    "figures": len(report.figures),
}))
"""

# preset -> (runs, samples per run, target seconds, what the target is for)
PRESETS = {
    "samples": (200, 20_000, 20.0, "build_report"),
    "runs": (10_000, 150, 15.0, "greenprec report"),
}
_TARGET_MIB = 2048


def generate(folder: Path, runs: int, samples: int) -> float:
    from greenprec.testing.synthetic import write_synthetic_folder

    start = time.perf_counter()
    write_synthetic_folder(folder, runs=runs // 2, samples_per_run=samples, seed=1)
    return time.perf_counter() - start


def library(folder: Path) -> dict[str, float]:
    """``build_report`` in a fresh interpreter: its own timing and peak RSS."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def command_line(folder: Path) -> tuple[float, float, float]:
    """``greenprec report DIR -q`` as a user runs it: wall seconds, CPU seconds (user +
    system) and the process's peak RSS (MiB); from wait4, so only this process counts. On a
    busy machine the CPU time is the better guide to the wall time on a quiet one."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "greenprec", "report", str(folder), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        assert process.stderr is not None
        sys.exit(f"greenprec report failed ({process.returncode}): {process.stderr.read()!r}")
    return wall_s, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="samples")
    parser.add_argument("--runs", type=int, default=None, help="runs in all (two policies)")
    parser.add_argument("--samples", type=int, default=None, help="sample rows per run")
    parser.add_argument("--dir", type=Path, default=None, help="reuse or create this folder")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    runs, samples, target_s, target_what = PRESETS[args.preset]
    runs = args.runs or runs
    samples = args.samples or samples
    folder = args.dir or Path(tempfile.mkdtemp(prefix="greenprec-bench-")) / "results"
    if not (folder / "runs.csv").exists():
        seconds = generate(folder, runs, samples)
        print(f"generated {runs} runs x {samples} samples in {seconds:.1f} s: {folder}")
    size_mib = sum(p.stat().st_size for p in (folder / "samples").glob("*.csv")) / 2**20
    print(f"samples on disk: {size_mib:.0f} MiB")
    for _ in range(args.repeat):
        figures = library(folder)
        cli_s, cli_cpu_s, cli_mib = command_line(folder)
        timed = figures["build_s"] if target_what == "build_report" else cli_s
        verdict = "OK" if timed < target_s and figures["peak_rss_mib"] < _TARGET_MIB else "MISSED"
        print(
            f"build_report: {figures['build_s']:.2f} s (import {figures['import_s']:.2f} s), "
            f"peak RSS {figures['peak_rss_mib']:.0f} MiB, {figures['runs_used']:.0f} runs "
            f"used, {figures['figures']:.0f} figures"
        )
        print(
            f"greenprec report DIR: {cli_s:.2f} s wall, {cli_cpu_s:.2f} s CPU, "
            f"peak RSS {cli_mib:.0f} MiB"
        )
        load = os.getloadavg()[0]
        print(
            f"SUMMARY {runs} runs x {samples} samples ({size_mib:.0f} MiB): build_report "
            f"{figures['build_s']:.1f} s, {figures['peak_rss_mib']:.0f} MiB; greenprec report "
            f"{cli_s:.1f} s ({cli_cpu_s:.1f} s CPU), {cli_mib:.0f} MiB; "
            f"target {target_what} < {target_s:g} s: {verdict}; {cpu_model()}, "
            f"{os.cpu_count()} CPUs, load {load:.1f}, "
            f"Python {platform.python_version()}"
        )


if __name__ == "__main__":
    main()
