"""The measured phases around the runs: the idle baseline and the warm-up.

The local runner measures them once per session on its machine; a cluster job measures them on
its own node before its block's runs (a node's idle power is its own).
"""

from __future__ import annotations

import time

from greenprec.experiment.config import ExperimentConfig
from greenprec.results import PhaseRecord, ResultsStore


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
            busy_loop(seconds)
        else:
            time.sleep(seconds)
    store.write_samples(name, m.samples.itertuples(index=False, name=None))
    return PhaseRecord(
        samples=f"samples/{name}.csv",
        started_at=m.started_at.isoformat(),
        duration_s=m.duration_s,
        energy_j=m.energy_j,
        power_w=m.mean_power_w if m.mean_power_w == m.mean_power_w else None,
        estimated=m.estimated,
        domains=m.domains,
    )


def busy_loop(seconds: float) -> None:
    """Keep every core busy: BLAS matrix products run on all threads and release the GIL."""
    import numpy as np

    matrix = np.random.default_rng(0).random((512, 512))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        matrix = matrix @ matrix
        matrix /= float(np.abs(matrix).max())
