"""A made-up results folder with known effects: for tests, benchmarks and trying the report.

Part of the test kit (``greenprec.testing.synthetic``), not of the measuring library: a report
plugin's author, or anyone who wants to see ``greenprec report`` without training anything,
writes one with :func:`write_synthetic_folder` and reports on it. Its figures are made up,
and the folder says so (``source: synthetic``).

Energies follow the study's shape (FP32 about 32 kJ per run, mixed about 12% less), split
into a counted ``package`` and ``dram`` domain plus a ``core`` domain that sits inside the
package and must not be counted again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from greenprec.results import (
    SAMPLE_COLUMNS,
    ExperimentRecord,
    MetersRecord,
    ResultsStore,
    RunRecord,
    ScheduledRun,
    new_experiment_record,
)

__all__ = ["COUNTED", "DEFAULT_POLICIES", "DOMAINS", "PolicySpec", "write_synthetic_folder"]

DOMAINS = ("rapl/package-0", "rapl/dram", "rapl/core")
COUNTED = ("rapl/package-0", "rapl/dram")
_SHARE = {"rapl/package-0": 0.8, "rapl/dram": 0.2, "rapl/core": 0.5}


@dataclass(frozen=True)
class PolicySpec:
    energy_j: float
    energy_sd_j: float
    duration_s: float
    duration_sd_s: float
    accuracy: float
    accuracy_sd: float


DEFAULT_POLICIES: dict[str, PolicySpec] = {
    "fp32": PolicySpec(32_000.0, 300.0, 240.0, 3.0, 0.455, 0.01),
    "mixed": PolicySpec(28_000.0, 300.0, 215.0, 3.0, 0.445, 0.01),
}


def write_synthetic_folder(
    path: str | Path,
    *,
    runs: int = 10,
    policies: Mapping[str, PolicySpec] | None = None,
    samples_per_run: int = 1500,
    seed: int = 0,
    outlier_runs: Sequence[str] = (),
    failed_runs: Sequence[str] = (),
    estimated: bool = False,
    with_samples: bool = True,
    with_accuracy: bool = True,
) -> ResultsStore:
    """Write a results folder (through :class:`ResultsStore`) like ``greenprec compare`` would.

    Run ids are ``<policy>-<rep:03d>``. ``outlier_runs`` get 12 SDs more energy (the
    study's rule removes them once a policy has more than 10 runs); ``failed_runs`` are
    marked failed with an error and no results. ``samples_per_run`` counts rows (all domains).
    """
    specs = dict(policies or DEFAULT_POLICIES)
    rng = np.random.default_rng(seed)
    store = ResultsStore(path)
    store.path.mkdir(parents=True, exist_ok=True)
    records: list[RunRecord] = []
    # Run by run in the order they "ran", each drawing from the one generator in turn (its
    # seed, then its results, then its samples): so a seed always writes the same folder.
    for run in _scheduled_runs(specs, runs, rng):
        if run.run_id in failed_runs:
            records.append(run.failed("RuntimeError: synthetic failure"))
            continue
        finished = _finished_run(
            run,
            specs[run.policy],
            rng,
            outlier=run.run_id in outlier_runs,
            estimated=estimated,
            with_accuracy=with_accuracy,
        )
        records.append(finished)
        if with_samples:
            _write_samples(store, finished, samples_per_run, rng)
    records.sort(key=lambda r: r.order)
    experiment = _experiment_record(
        specs, records, runs=runs, seed=seed, estimated=estimated, complete=not failed_runs
    )
    store.create(experiment, records)
    return store


def _scheduled_runs(
    specs: Mapping[str, PolicySpec], runs: int, rng: np.random.Generator
) -> Iterator[RunRecord]:
    """Each policy's ``runs`` repetitions in a random order, as planned runs.

    A generator on purpose: each run's seed is drawn only when the caller asks for the run,
    after the previous run's results, the order the folder's figures have always come in.
    """
    planned: list[tuple[str, str, int]] = [
        (f"{p}-{r:03d}", p, r) for r in range(1, runs + 1) for p in specs
    ]
    order = rng.permutation(len(planned))
    for position, index in enumerate(order, start=1):
        run_id, policy, repetition = planned[int(index)]
        yield RunRecord(
            run_id=run_id,
            order=position,
            policy=policy,
            repetition=repetition,
            seed=int(rng.integers(2**31 - 1)),
        )


def _finished_run(
    run: RunRecord,
    spec: PolicySpec,
    rng: np.random.Generator,
    *,
    outlier: bool,
    estimated: bool,
    with_accuracy: bool,
) -> RunRecord:
    """``run`` finished with made-up energy, duration and (``with_accuracy``) metrics."""
    energy_j = float(rng.normal(spec.energy_j, spec.energy_sd_j))
    if outlier:
        energy_j += 12 * spec.energy_sd_j
    duration_s = float(rng.normal(spec.duration_s, spec.duration_sd_s))
    metrics: dict[str, float | str | None] = {}
    if with_accuracy:
        metrics["test_accuracy"] = float(rng.normal(spec.accuracy, spec.accuracy_sd))
        metrics["test_loss"] = float(rng.normal(1.6, 0.05))
    position = run.order
    return run.finished(
        started_at=f"2025-01-01T00:{position // 60:02d}:{position % 60:02d}+00:00",
        ended_at=f"2025-01-01T01:{position // 60:02d}:{position % 60:02d}+00:00",
        duration_s=duration_s,
        energy_j=energy_j,
        mean_power_w=energy_j / duration_s,
        meter="estimate" if estimated else "rapl",
        estimated=estimated,
        domains={domain: energy_j * _SHARE[domain] for domain in DOMAINS},
        counted_domains=list(COUNTED),
        metrics=metrics,
    )


def _experiment_record(
    specs: Mapping[str, PolicySpec],
    records: Sequence[RunRecord],
    *,
    runs: int,
    seed: int,
    estimated: bool,
    complete: bool,
) -> ExperimentRecord:
    """The experiment record of a synthetic folder: its config, schedule, meter and host."""
    used = "estimate" if estimated else "rapl"
    return new_experiment_record(
        source="synthetic",
        status="complete" if complete else "incomplete",
        config={
            "policies": list(specs),
            "protocol": "default",
            "workload": "synthetic",
            "runs": runs,
            "seed": seed,
            "warmup_s": 0.0,
            "cooldown_s": 0.0,
            "interval_s": 0.2,
        },
        schedule=[
            ScheduledRun(
                run_id=r.run_id,
                order=r.order,
                policy=r.policy,
                repetition=r.repetition,
                seed=r.seed,
            )
            for r in records
        ],
        meters=MetersRecord(requested=["auto"], used=[used], estimated=estimated),
        warnings=(
            [
                "meter estimate is an estimate, not a measurement: every energy figure of "
                "this experiment is estimated"
            ]
            if estimated
            else []
        ),
        versions={"greenprec": "synthetic", "python": "3"},
        host={
            "cpu_model": "Synthetic CPU",
            "logical_cpus": 2,
            "memory_gib": 8.0,
            "os": "Linux",
            "gpus": [],
        },
    )


def _write_samples(
    store: ResultsStore, run: RunRecord, n_rows: int, rng: np.random.Generator
) -> None:
    assert run.duration_s is not None and run.energy_j is not None
    n_times = max(2, n_rows // len(DOMAINS))
    t = np.linspace(0.0, run.duration_s, n_times)
    dt = np.diff(t, prepend=0.0)
    frames = []
    for domain in DOMAINS:
        mean_w = run.energy_j * _SHARE[domain] / run.duration_s
        # A warm-up ramp over the first 10 s, then noise: the trace has a visible shape.
        power = mean_w * (0.85 + 0.15 * np.minimum(t / 10.0, 1.0)) + rng.normal(
            0, 0.03 * mean_w, n_times
        )
        frames.append(
            pd.DataFrame(
                {"t_s": t, "domain": domain, "power_w": power, "energy_j": np.cumsum(power * dt)}
            )
        )
    samples = pd.concat(frames).sort_values("t_s", kind="stable")[list(SAMPLE_COLUMNS)]
    path = store.samples_file(run.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples.to_csv(path, index=False)
