"""Reading a results folder for the report: runs, policies, counted domains, power samples."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greenprec.errors import ConfigError
from greenprec.experiment.folder import DOMAIN_PREFIX, ResultsFolder, Row

# Beyond this many energy_j:<domain> columns the subset search below gets slow (2^n subsets)
# and no known meter reports that many; all domains are then counted.
_MAX_DOMAINS_SEARCHED = 12
_SAMPLE_DTYPES = {"t_s": "float64", "domain": "category", "power_w": "float64"}


@dataclass
class ExperimentData:
    """What the report needs from a results folder, read once."""

    path: Path
    experiment: dict[str, Any]
    rows: list[Row]
    policies: list[str]
    baseline: str | None
    estimated: bool
    domain_columns: list[str]
    counted_domains: list[str] | None
    counted_source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def done(self) -> list[Row]:
        return [row for row in self.rows if row.get("status") == "done"]

    @property
    def failed(self) -> list[Row]:
        return [row for row in self.rows if row.get("status") == "failed"]

    @property
    def unfinished(self) -> list[Row]:
        return [row for row in self.rows if row.get("status") in ("pending", "running")]

    def samples_path(self, run_id: str) -> Path:
        return ResultsFolder(self.path).samples_file(run_id)


def load(path: str | Path) -> ExperimentData:
    """Read ``experiment.json`` and ``runs.csv``; ConfigError when it is not a results folder."""
    folder = ResultsFolder(path)
    if not folder.path.is_dir():
        raise ConfigError(f"{folder.path} is not a directory; give a greenprec results folder")
    if not folder.exists():
        raise ConfigError(
            f"{folder.path} is not a greenprec results folder (no runs.csv or experiment.json); "
            "make one with greenprec compare --out DIR or greenprec import energibridge"
        )
    warnings: list[str] = []
    if folder.experiment_file.exists():
        experiment = folder.read_experiment()
        if not isinstance(experiment, dict):
            raise ConfigError(f"{folder.experiment_file} must hold a JSON object")
    else:
        experiment = {}
        warnings.append("no experiment.json: the environment and settings are unknown")
    rows = folder.read_runs()
    policies, baseline = _policies(experiment, rows)
    domain_columns = sorted(
        {
            key.removeprefix(DOMAIN_PREFIX)
            for row in rows
            for key in row
            if key.startswith(DOMAIN_PREFIX)
        }
    )
    meters = experiment.get("meters") if isinstance(experiment.get("meters"), dict) else {}
    assert isinstance(meters, dict)
    estimated = bool(meters.get("estimated")) or any(
        row.get("estimated") is True for row in rows if row.get("status") == "done"
    )
    done = [row for row in rows if row.get("status") == "done"]
    counted, source = counted_domains(experiment, done, domain_columns)
    return ExperimentData(
        path=folder.path,
        experiment=experiment,
        rows=rows,
        policies=policies,
        baseline=baseline,
        estimated=estimated,
        domain_columns=domain_columns,
        counted_domains=counted,
        counted_source=source,
        warnings=warnings,
    )


def _policies(experiment: dict[str, Any], rows: Sequence[Row]) -> tuple[list[str], str | None]:
    """Configured policies first (their order makes the first one the baseline), then others."""
    config = experiment.get("config")
    configured = config.get("policies") if isinstance(config, dict) else None
    names = [str(p) for p in configured] if isinstance(configured, list) else []
    seen = [str(row["policy"]) for row in rows]
    policies = list(dict.fromkeys([*names, *seen]))
    return policies, (policies[0] if policies else None)


def counted_domains(
    experiment: dict[str, Any], done: Sequence[Row], domain_columns: Sequence[str]
) -> tuple[list[str] | None, str]:
    """The domains whose energies make up ``energy_j``, and where that answer came from.

    Meters report parts that are contained in another domain (RAPL's core inside its
    package); summing those in a power trace would count the same joule twice.
    """
    meters = experiment.get("meters")
    for candidate in (
        meters.get("counted_domains") if isinstance(meters, dict) else None,
        experiment.get("counted_domains"),
    ):
        if isinstance(candidate, list) and all(isinstance(d, str) for d in candidate) and candidate:
            return list(candidate), "experiment.json"
    if not domain_columns:
        return None, "runs.csv has no energy_j:<domain> columns; every sampled domain is summed"
    totals = np.array([_number(row.get("energy_j")) for row in done])
    matrix = np.array(
        [[_number(row.get(DOMAIN_PREFIX + d)) for d in domain_columns] for row in done]
    ).reshape(len(done), len(domain_columns))
    usable = np.isfinite(totals)
    totals, matrix = totals[usable], np.nan_to_num(matrix[usable], nan=0.0)
    if totals.size == 0:
        return list(domain_columns), "no finished run to check against; every domain is summed"
    if len(domain_columns) > _MAX_DOMAINS_SEARCHED:
        return list(domain_columns), "too many domains to search; every domain is summed"
    # Largest subsets first: a domain that is always zero is harmless to include.
    for size in range(len(domain_columns), 0, -1):
        for combo in itertools.combinations(range(len(domain_columns)), size):
            sums = matrix[:, list(combo)].sum(axis=1)
            if np.allclose(sums, totals, rtol=1e-6, atol=1e-6):
                return [domain_columns[i] for i in combo], "runs.csv (domains summing to energy_j)"
    return list(domain_columns), (
        "no set of energy_j:<domain> columns sums to energy_j; every domain is summed"
    )


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    # An infinite energy or time is a broken measurement: missing, not a value to average.
    return float(value) if math.isfinite(value) else math.nan


def infinite(rows: Sequence[Row], key: str) -> list[str]:
    """Run ids whose ``key`` is infinite (reported, then treated as missing)."""
    return [
        str(row["run_id"])
        for row in rows
        if isinstance(row.get(key), float) and math.isinf(row[key])
    ]


def numeric(rows: Sequence[Row], key: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    """One column as floats; missing, non-numeric or infinite cells are NaN."""
    return np.array([_number(row.get(key)) for row in rows], dtype=np.float64)


def read_samples(path: Path) -> pd.DataFrame:
    """One run's samples (t_s, domain, power_w); ConfigError naming the file when unreadable."""
    try:
        frame = pd.read_csv(path, usecols=list(_SAMPLE_DTYPES), dtype=_SAMPLE_DTYPES, engine="c")
    except FileNotFoundError:
        raise
    except (ValueError, pd.errors.ParserError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path}: unreadable samples: {first_line}") from None
    return frame
