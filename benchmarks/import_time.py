"""Time `import greenprec` in fresh interpreters (target: under 0.3 s on a 2-core machine).

python benchmarks/import_time.py [--repetitions 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CODE = "import time; t=time.perf_counter(); import greenprec; print(time.perf_counter()-t)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repetitions", type=int, default=10)
    args = parser.parse_args()
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(args.repetitions)
    ]
    print(
        f"import greenprec: median {statistics.median(times) * 1e3:.1f} ms, "
        f"max {max(times) * 1e3:.1f} ms over {args.repetitions} fresh interpreters"
    )


if __name__ == "__main__":
    main()
