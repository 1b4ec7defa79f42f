"""Overhead of measure(): a fixed numpy workload bare and inside measure(), interleaved.

    python benchmarks/overhead.py [--repetitions 15]

Prints the median slowdown ratio per (meter, interval) and the cost of entering and leaving
a block. Target: under 1% at the default 0.2 s interval.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import greenprec


def workload() -> float:
    """About 1.5 s of CPU-bound numpy on two cores: repeated 600x600 matrix products (several
    sampling intervals, so the figure is the cost of sampling, not of entering a block)."""
    rng = np.random.default_rng(0)
    a = rng.random((600, 600))
    total = 0.0
    for _ in range(400):
        a = a @ a
        a /= np.abs(a).max()
        total += float(a[0, 0])
    return total


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repetitions", type=int, default=15)
    args = parser.parse_args()
    configs = [(meter, interval) for meter in ("estimate", "mock") for interval in (0.2, 0.01)]
    ratios: dict[tuple[str, float], list[float]] = {config: [] for config in configs}
    workload()  # warm caches and BLAS threads
    for _ in range(args.repetitions):
        for meter, interval in configs:
            bare_s = timed(workload)

            def inside(meter: str = meter, interval: float = interval) -> None:
                with greenprec.measure(meter, interval=interval):
                    workload()

            ratios[(meter, interval)].append(timed(inside) / bare_s)

    print(f"median slowdown over {args.repetitions} interleaved repetitions (1.000 = none)")
    for (meter, interval), values in ratios.items():
        median = statistics.median(values)
        print(
            f"  {meter:9s} interval {interval:5.2f} s: {median:.4f}  ({(median - 1) * 100:+.2f}%)"
        )

    for meter in ("estimate", "mock"):
        enter_ms, exit_ms = [], []
        for _ in range(50):
            m = greenprec.measure(meter)
            t0 = time.perf_counter()
            m.start()
            t1 = time.perf_counter()
            m.stop()
            enter_ms.append((t1 - t0) * 1e3)
            exit_ms.append((time.perf_counter() - t1) * 1e3)
        print(
            f"  {meter:9s} enter {statistics.median(enter_ms):.2f} ms, "
            f"exit {statistics.median(exit_ms):.2f} ms (median of 50)"
        )


if __name__ == "__main__":
    main()
