"""Time ``build_report`` on a large synthetic results folder and record its peak memory.

python benchmarks/analysis_scale.py [--runs 200] [--samples 20000] [--dir DIR] [--repeat 1]

Default: 200 runs (100 per policy) of 20,000 sample rows each, 4 M samples in all. Target:
under 20 s and under 2 GB on a 2-core machine. The folder is generated once (reused with
--dir) and every measurement runs in a fresh interpreter, so ru_maxrss is the report's own
peak, not the generator's.
"""

from __future__ import annotations

import argparse
import json
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


def generate(folder: Path, runs: int, samples: int) -> float:
    from greenprec.testing.synthetic import write_synthetic_folder

    start = time.perf_counter()
    write_synthetic_folder(folder, runs=runs // 2, samples_per_run=samples, seed=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200, help="runs in all (two policies)")
    parser.add_argument("--samples", type=int, default=20_000, help="sample rows per run")
    parser.add_argument("--dir", type=Path, default=None, help="reuse or create this folder")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="greenprec-bench-")) / "results"
    if not (folder / "runs.csv").exists():
        seconds = generate(folder, args.runs, args.samples)
        print(f"generated {args.runs} runs x {args.samples} samples in {seconds:.1f} s: {folder}")
    size_mib = sum(p.stat().st_size for p in folder.rglob("*.csv")) / 2**20
    print(f"samples on disk: {size_mib:.0f} MiB")
    for _ in range(args.repeat):
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, check=True
        )
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        verdict = "OK" if figures["build_s"] < 20 and figures["peak_rss_mib"] < 2048 else "MISSED"
        print(
            f"build_report: {figures['build_s']:.2f} s (import {figures['import_s']:.2f} s), "
            f"peak RSS {figures['peak_rss_mib']:.0f} MiB, {figures['runs_used']} runs used, "
            f"{figures['figures']} figures; target < 20 s and < 2048 MiB: {verdict}"
        )


if __name__ == "__main__":
    main()
