"""Drift over the run order: a machine warming up or a background job makes every later run
use more energy. The report fits log energy on the run's place in the schedule (one intercept
per policy, one common slope) and warns when the slope is not zero.

0.2.0 recorded each run's ``order`` but never looked at it: a folder whose energy rises 1 % per
run was reported without a word.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from greenprec import stats
from greenprec.cli import app
from greenprec.report import build_report
from greenprec.results import ResultsStore
from greenprec.testing.synthetic import write_synthetic_folder


def drifting_folder(path: Path, pct_per_run: float, *, seed: int = 0) -> ResultsStore:
    """The synthetic folder with every run's energy (and its domains) multiplied by
    (1 + pct_per_run/100) ** (order − 1)."""
    store = write_synthetic_folder(path, samples_per_run=60, seed=seed)
    runs = []
    for run in store.load().runs:
        factor = (1.0 + pct_per_run / 100.0) ** (run.order - 1)
        if run.energy_j is not None:
            run = run.model_copy(
                update={
                    "energy_j": run.energy_j * factor,
                    "mean_power_w": (run.mean_power_w or 0.0) * factor,
                    "domains": {k: v * factor for k, v in (run.domains or {}).items()},
                }
            )
            store.write_run(run)
        runs.append(run)
    store.write_index(runs)
    return store


@pytest.mark.slow
def test_energy_rising_one_percent_per_run_is_flagged(tmp_path: Path) -> None:
    path = drifting_folder(tmp_path / "warming", 1.0).path
    result = CliRunner().invoke(app, ["report", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    saved = json.loads((path / "stats.json").read_text())
    drift = saved["drift"]
    assert drift["flagged"] is True and drift["significant"] is True
    assert drift["model"] == "log(energy_j) ~ policy + order"
    assert drift["pct_per_run"] == pytest.approx(1.0, abs=0.15)
    lo, hi = drift["pct_per_run_ci"]
    assert lo <= drift["pct_per_run"] <= hi and lo > 0
    assert drift["p"] < 1e-6
    assert (drift["first_order"], drift["last_order"], drift["n"]) == (1, 20, 20)
    (warning,) = [w for w in saved["warnings"] if "drifts over the run order" in w]
    assert warning.startswith("energy drifts over the run order: +1.0")
    assert "% per run (95% CI +" in warning and ("p = " in warning or "p < " in warning)
    assert "from run 1 to run 20" in warning
    assert "drifts over the run order" in result.output
    assert "drifts over the run order" in (path / "report.md").read_text()


def test_flat_energy_is_not_flagged(tmp_path: Path) -> None:
    report = build_report(drifting_folder(tmp_path / "flat", 0.0).path)
    drift = report.stats["drift"]
    assert drift["flagged"] is False and drift["p"] > 0.05
    assert not any("drift" in w for w in report.warnings)


@pytest.mark.slow
def test_a_falling_trend_is_flagged_too(tmp_path: Path) -> None:
    report = build_report(drifting_folder(tmp_path / "cooling", -0.5).path)
    drift = report.stats["drift"]
    assert drift["flagged"] is True
    assert drift["pct_per_run"] == pytest.approx(-0.5, abs=0.15)
    (warning,) = [w for w in report.warnings if "drifts over the run order" in w]
    assert warning.startswith("energy drifts over the run order: \u22120.")


def test_run_order_trend_is_statsmodels_ols_with_a_policy_intercept() -> None:
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(7)
    order = rng.permutation(24) + 1
    policy = np.array(["fp32", "mixed", "bf16"] * 8)
    base = {"fp32": 100.0, "mixed": 88.0, "bf16": 80.0}
    energy = np.array([base[p] for p in policy]) * np.exp(0.004 * order + rng.normal(0, 0.01, 24))
    r = stats.run_order_trend(energy, order, list(policy), alpha=0.1)
    frame = pd.DataFrame({"E": energy, "order": order, "policy": policy})
    fit = smf.ols("np.log(E) ~ C(policy) + order", data=frame).fit()
    assert r.slope == pytest.approx(fit.params["order"], rel=1e-10)
    assert r.se == pytest.approx(fit.bse["order"], rel=1e-10)
    assert r.df == fit.df_resid == 24 - 3 - 1
    assert r.p == pytest.approx(fit.pvalues["order"], rel=1e-8)
    lo, hi = fit.conf_int(alpha=0.1).loc["order"]
    assert r.pct_per_run_ci == pytest.approx((100 * math.expm1(lo), 100 * math.expm1(hi)))
    assert r.pct_per_run == pytest.approx(100 * math.expm1(fit.params["order"]))
    assert (r.p < 0.1) == r.significant
    assert json.dumps(r.to_dict())


def test_run_order_trend_says_what_it_cannot_compute() -> None:
    few = stats.run_order_trend([1.0, 2.0], [1, 2], ["a", "b"])
    assert few.p is None and "degrees of freedom" in few.not_computed["p"]
    negative = stats.run_order_trend([1.0, -2.0, 3.0, 4.0], [1, 2, 3, 4], ["a"] * 4)
    assert "zero or negative" in negative.not_computed["slope"]
    still = stats.run_order_trend([1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2], ["a", "a", "b", "b"])
    assert "does not vary" in still.not_computed["slope"]
    nan = stats.run_order_trend([1.0, math.nan, 1.1, 1.2, 1.0], [1, 2, 3, 4, 5], ["a"] * 5)
    assert nan.n == 4 and nan.notes == ["dropped 1 run with no value or order"]
