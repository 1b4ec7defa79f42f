"""The measured phases around the runs: the idle baseline and the warm-up.

The local runner measures them once per session on its machine; a cluster job measures them on
its own node before its block's runs (a node's idle power is its own).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

from greenprec.experiment.config import ExperimentConfig
from greenprec.results import PhaseRecord, ResultsStore

__all__ = ["SETTLE_WINDOWS", "measure_phase", "warm_up", "warm_up_until_stable"]

if TYPE_CHECKING:
    from greenprec.measurement import Measurement


def measure_phase(
    store: ResultsStore,
    config: ExperimentConfig,
    meters: list[str],
    name: str,
    seconds: float,
    *,
    busy: bool,
) -> PhaseRecord:
    """Measure ``seconds`` of idling (``busy=False``) or of every core busy; its samples go to
    ``samples/<name>.csv``."""
    from greenprec.measurement import measure

    with measure(meters, interval=config.interval_s, meter_options=config.meter_options) as m:
        if busy:
            _busy_loop(seconds)
        else:
            time.sleep(seconds)
    return _record(store, name, m)


def _record(
    store: ResultsStore,
    name: str,
    m: Measurement,
    *,
    settled: bool | None = None,
    criterion: str | None = None,
) -> PhaseRecord:
    """The phase's samples written to ``samples/<name>.csv``, and its record."""
    store.write_samples(name, m.samples.itertuples(index=False, name=None))
    return PhaseRecord(
        samples=f"samples/{name}.csv",
        started_at=m.started_at.isoformat(),
        duration_s=m.duration_s,
        energy_j=m.energy_j,
        power_w=m.mean_power_w if m.mean_power_w == m.mean_power_w else None,
        estimated=m.estimated,
        domains=m.domains,
        settled=settled,
        criterion=criterion,
    )


SETTLE_WINDOWS = 3
"""An automatic warm-up looks at this many consecutive windows of power."""
_SETTLE_TOLERANCE_PCT = 2.0
"""...and stops when each is within this many percent of their mean."""


def _settle_window_s(cap_s: float, interval_s: float) -> float:
    """The window of an automatic warm-up: a tenth of the cap, between 5 samples and 10 s."""
    return min(10.0, max(5 * interval_s, cap_s / 10))


def warm_up_until_stable(
    store: ResultsStore,
    config: ExperimentConfig,
    meters: list[str],
    name: str,
    *,
    cap_s: float,
) -> PhaseRecord:
    """Keep every core busy until the measured power settles, or ``cap_s`` at most.

    Settled: the mean power of each of the last :data:`SETTLE_WINDOWS` windows lies within
    :data:`_SETTLE_TOLERANCE_PCT` % of their mean (a machine still heating up draws more, or
    less as it throttles, from window to window). The record says which ended it.
    """
    from greenprec.measurement import measure

    window_s = _settle_window_s(cap_s, config.interval_s)
    criterion = (
        f"the mean power of each of the last {SETTLE_WINDOWS} windows of {window_s:g} s within "
        f"{_SETTLE_TOLERANCE_PCT:g} % of their mean, {cap_s:g} s at most"
    )
    settled = False
    with measure(meters, interval=config.interval_s, meter_options=config.meter_options) as m:
        marks = [(0.0, 0.0)]
        start = time.monotonic()
        while (left := cap_s - (time.monotonic() - start)) > 0:
            _busy_loop(min(window_s, left))
            marks.append(m.energy_so_far())
            powers = [
                (e2 - e1) / (t2 - t1) for (t1, e1), (t2, e2) in itertools.pairwise(marks) if t2 > t1
            ]
            last = powers[-SETTLE_WINDOWS:]
            if len(last) == SETTLE_WINDOWS:
                mean = sum(last) / len(last)
                tolerance = abs(mean) * _SETTLE_TOLERANCE_PCT / 100
                if all(abs(power - mean) <= tolerance for power in last):
                    settled = True
                    break
    return _record(store, name, m, settled=settled, criterion=criterion)


def warm_up(
    store: ResultsStore, config: ExperimentConfig, meters: list[str], name: str
) -> PhaseRecord:
    """The experiment's warm-up: of fixed length, or until the power settles (``warmup_auto``)."""
    if config.warmup_auto:
        return warm_up_until_stable(store, config, meters, name, cap_s=config.warmup_s)
    return measure_phase(store, config, meters, name, config.warmup_s, busy=True)


def _busy_loop(seconds: float) -> None:
    """Keep every core busy: BLAS matrix products run on all threads and release the GIL."""
    import numpy as np

    matrix = np.random.default_rng(0).random((512, 512))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        matrix = matrix @ matrix
        matrix /= float(np.abs(matrix).max())
