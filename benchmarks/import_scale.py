"""Time ``greenprec import energibridge`` on one large EnergiBridge CSV and record its peak memory.

python benchmarks/import_scale.py [--mb 200] [--dir DIR] [--repeat 1]

The CSV is made from a real recording (../shared/data/energibridge-real/llm-comparison/
control_trial-001.csv: Linux, Intel with an NVIDIA GPU, 55 columns: Delta, Time,
PACKAGE/DRAM/PP0/PP1_ENERGY (J), GPU0_POWER (mWatts), CPU_FREQUENCY_0..19, CPU_USAGE_0..19,
memory and GPU columns): its rows are replayed in a loop until the file holds ``--mb`` MB, with
Time running on and each energy counter continuing from where it was by the step the recording
took, wrapping at Intel's 262144 J as EnergiBridge's counters do. The default 200 MB is
516,423 rows (29 hours at EnergiBridge's 200 ms), eight wrap-arounds of the package counter
included.

The import runs as a user runs it, ``greenprec import energibridge -g fp32=FILE --out DIR``, in
a fresh process; its wall time, CPU time (user + system: the figure to compare on a shared
machine) and peak RSS (``ru_maxrss`` of the child) are printed. Target: under 8 s and under
500 MiB. Figures: docs/benchmarks.md, "Importing a 200 MB EnergiBridge CSV".
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEMPLATE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "energibridge-real"
    / "llm-comparison"
    / "control_trial-001.csv"
)
INTEL_RANGE_J = 262144.0  # 2**32 RAPL units of 2**-14 J: where EnergiBridge's Intel counters wrap


def generate(path: Path, megabytes: float, template: Path = TEMPLATE) -> int:
    """Write an EnergiBridge CSV of about ``megabytes`` MB replaying ``template``; rows written."""
    rows = list(csv.reader(io.StringIO(template.read_text(encoding="utf-8"))))
    header, data = rows[0], rows[1:]
    time_at, delta_at = header.index("Time"), header.index("Delta")
    counters = [i for i, name in enumerate(header) if name.endswith("_ENERGY (J)")]
    # The step each counter took from one row to the next (a wrap in the template unwrapped).
    steps = {
        i: [(float(b[i]) - float(a[i])) % INTEL_RANGE_J for a, b in itertools.pairwise(data)]
        for i in counters
    }
    value = {i: float(data[0][i]) for i in counters}
    time_ms = int(float(data[0][time_at]))
    target = megabytes * 1e6
    written = 0
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(header) + "\n")
        written += len(header) + 1
        while written < target:
            k = count % (len(data) - 1)
            row = list(data[k + 1])
            delta = 0 if count == 0 else int(float(row[delta_at]) or 200)
            time_ms += delta
            row[delta_at] = str(delta)
            row[time_at] = str(time_ms)
            for i in counters:
                if count:
                    value[i] = (value[i] + steps[i][k]) % INTEL_RANGE_J
                row[i] = repr(value[i])
            line = ",".join(row) + "\n"
            handle.write(line)
            written += len(line)
            count += 1
    return count


def measure(csv_path: Path, out: Path) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one
    ``greenprec import energibridge`` process. CPU time is the figure to compare on a shared
    machine, where wall time depends on what else runs."""
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "greenprec",
        "import",
        "energibridge",
        "-g",
        f"fp32={csv_path}",
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest child's).
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the import failed with exit code {child.returncode}: {command}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=float, default=200.0, help="size of the CSV in MB")
    parser.add_argument("--dir", type=Path, default=None, help="reuse or create the CSV here")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="greenprec-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"energibridge-{args.mb:g}mb.csv"
    if not csv_path.exists():
        start = time.perf_counter()
        rows = generate(csv_path, args.mb)
        seconds = time.perf_counter() - start
        print(f"generated {rows:,} rows in {seconds:.1f} s: {csv_path}")
    print(f"CSV on disk: {csv_path.stat().st_size / 1e6:.0f} MB")
    for _ in range(args.repeat):
        seconds, cpu_s, peak_mib = measure(csv_path, folder / "results")
        verdict = "OK" if seconds < 8 and peak_mib < 500 else "MISSED"
        print(
            f"greenprec import energibridge: {seconds:.2f} s ({cpu_s:.2f} s CPU), peak RSS "
            f"{peak_mib:.0f} MiB; target < 8 s and < 500 MiB: {verdict}"
        )


if __name__ == "__main__":
    main()
