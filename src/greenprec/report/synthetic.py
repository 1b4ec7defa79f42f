"""A made-up results folder with known effects: for tests, benchmarks and trying the report.

Energies follow the study's shape (FP32 about 32 kJ per run, mixed about 12% less), split
into a counted ``package`` and ``dram`` domain plus a ``core`` domain that sits inside the
package and must not be counted again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greenprec.experiment.folder import DOMAIN_PREFIX, SAMPLE_COLUMNS, ResultsFolder

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
) -> ResultsFolder:
    """Write experiment.json, runs.csv and samples/ like ``greenprec compare`` would.

    Run ids are ``<policy>-<rep:03d>``. ``outlier_runs`` get 12 SDs more energy (the
    study's rule removes them once a policy has more than 10 runs); ``failed_runs`` are
    marked failed with an error and no results. ``samples_per_run`` counts rows (all domains).
    """
    specs = dict(policies or DEFAULT_POLICIES)
    rng = np.random.default_rng(seed)
    folder = ResultsFolder(path)
    folder.path.mkdir(parents=True, exist_ok=True)
    schedule: list[dict[str, Any]] = [
        {"run_id": f"{p}-{r:03d}", "policy": p, "repetition": r}
        for r in range(1, runs + 1)
        for p in specs
    ]
    order = rng.permutation(len(schedule))
    rows: list[dict[str, Any]] = []
    for position, index in enumerate(order, start=1):
        entry = schedule[int(index)]
        spec = specs[entry["policy"]]
        row: dict[str, Any] = {**entry, "order": position, "seed": int(rng.integers(2**31 - 1))}
        if entry["run_id"] in failed_runs:
            row.update(status="failed", error="RuntimeError: synthetic failure")
            rows.append(row)
            continue
        energy = float(rng.normal(spec.energy_j, spec.energy_sd_j))
        if entry["run_id"] in outlier_runs:
            energy += 12 * spec.energy_sd_j
        duration = float(rng.normal(spec.duration_s, spec.duration_sd_s))
        row.update(
            status="done",
            started_at=f"2025-01-01T00:{position // 60:02d}:{position % 60:02d}+00:00",
            ended_at=f"2025-01-01T01:{position // 60:02d}:{position % 60:02d}+00:00",
            duration_s=duration,
            energy_j=energy,
            mean_power_w=energy / duration,
            meter="estimate" if estimated else "rapl",
            estimated=estimated,
            test_accuracy=float(rng.normal(spec.accuracy, spec.accuracy_sd))
            if with_accuracy
            else None,
            test_loss=float(rng.normal(1.6, 0.05)) if with_accuracy else None,
        )
        for domain in DOMAINS:
            row[DOMAIN_PREFIX + domain] = energy * _SHARE[domain]
        rows.append(row)
        if with_samples:
            _write_samples(folder, row, samples_per_run, rng)
    rows.sort(key=lambda r: r["order"])
    folder.write_runs(rows)
    folder.write_experiment(
        {
            "format_version": 1,
            "created_at": "2025-01-01T00:00:00+00:00",
            "status": "complete" if not failed_runs else "incomplete",
            "config": {
                "policies": list(specs),
                "protocol": "default",
                "workload": "synthetic",
                "runs": runs,
                "seed": seed,
                "warmup_s": 0.0,
                "cooldown_s": 0.0,
                "interval_s": 0.2,
            },
            "schedule": [
                {k: r[k] for k in ("run_id", "order", "policy", "repetition", "seed")} for r in rows
            ],
            "meters": {
                "requested": ["auto"],
                "used": ["estimate" if estimated else "rapl"],
                "estimated": estimated,
            },
            "warnings": (
                [
                    "meter estimate is an estimate, not a measurement: every energy figure of "
                    "this experiment is estimated"
                ]
                if estimated
                else []
            ),
            "baseline": None,
            "warmups": [],
            "versions": {"greenprec": "synthetic", "python": "3"},
            "host": {
                "cpu_model": "Synthetic CPU",
                "logical_cpus": 2,
                "memory_gib": 8.0,
                "os": "Linux",
                "gpus": [],
            },
        }
    )
    return folder


def _write_samples(
    folder: ResultsFolder, row: dict[str, Any], n_rows: int, rng: np.random.Generator
) -> None:
    n_times = max(2, n_rows // len(DOMAINS))
    t = np.linspace(0.0, row["duration_s"], n_times)
    dt = np.diff(t, prepend=0.0)
    frames = []
    for domain in DOMAINS:
        mean_w = row["energy_j"] * _SHARE[domain] / row["duration_s"]
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
    path = folder.samples_file(str(row["run_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    samples.to_csv(path, index=False)
