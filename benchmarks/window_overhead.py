"""Cost of one measurement window: a new measure() per window, against a window of a Monitor.

    python benchmarks/window_overhead.py [--windows 200] [--repetitions 5]

Before greenprec.Monitor, each callback epoch was its own ``measure()``: the meters resolved
and started, a sampling thread started, and both stopped again at the window's end. A monitor
starts them once; a window is then two synchronised readings of the meters. For each meter,
prints the median milliseconds per empty window of each way (interleaved repetitions), and
the threads alive during the monitor's windows. Target: under 1 ms per window, no thread per
window.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import greenprec

METERS = ("mock", "estimate")


def per_window_measure(meter: str, windows: int) -> float:
    """Seconds per window when every window is its own measure()."""
    start = time.perf_counter()
    for _ in range(windows):
        with greenprec.measure(meter):
            pass
    return (time.perf_counter() - start) / windows


def per_window_monitor(meter: str, windows: int) -> tuple[float, int, int]:
    """Seconds per window of one open Monitor, and the threads alive before and after them."""
    with greenprec.Monitor(meter) as monitor:
        monitor.begin_window("run")  # the windows sit inside a run window, as in a callback
        threads_before = threading.active_count()
        start = time.perf_counter()
        for index in range(windows):
            monitor.begin_window(f"epoch-{index}")
            monitor.end_window(f"epoch-{index}")
        seconds = (time.perf_counter() - start) / windows
        threads_after = threading.active_count()
        monitor.end_window("run")
    return seconds, threads_before, threads_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()
    for meter in METERS:  # warm up: plugin manager, meter modules, option models
        per_window_measure(meter, 3)
        per_window_monitor(meter, 3)
    print(
        f"ms per empty window, median of {args.repetitions} interleaved repetitions "
        f"of {args.windows} windows"
    )
    print(f"{'meter':<10} {'measure() per window':>22} {'Monitor window':>16} {'threads':>9}")
    for meter in METERS:
        before: list[float] = []
        after: list[float] = []
        threads = ""
        for _ in range(args.repetitions):
            before.append(per_window_measure(meter, args.windows))
            seconds, threads_before, threads_after = per_window_monitor(meter, args.windows)
            after.append(seconds)
            threads = f"{threads_before}->{threads_after}"
        print(
            f"{meter:<10} {statistics.median(before) * 1e3:>20.3f} ms "
            f"{statistics.median(after) * 1e3:>13.3f} ms {threads:>9}"
        )


if __name__ == "__main__":
    main()
