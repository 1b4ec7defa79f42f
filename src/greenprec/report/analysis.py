"""The numbers behind the report: outlier removal, per-metric statistics, planning, verdict.

Everything here ends up in ``stats.json``; the Markdown, HTML and terminal renderings only
format what this module computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from greenprec import stats
from greenprec.errors import ConfigError
from greenprec.report import formatting as fmt
from greenprec.report.data import Excluded, ExperimentData, Row, numeric

ENERGY = "energy_j"
ACCURACY = "test_accuracy"
OUTLIER_THRESHOLD = 3.0
ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    energy: bool  # an energy figure: labelled "estimated" when the meter estimated
    always: bool  # in stats.json even when no run has it


METRICS: tuple[Metric, ...] = (
    Metric("energy_j", "energy", "J", energy=True, always=True),
    Metric("net_energy_j", "net energy (above idle)", "J", energy=True, always=False),
    Metric("duration_s", "duration", "s", energy=False, always=True),
    Metric("mean_power_w", "mean power", "W", energy=True, always=True),
    Metric("test_accuracy", "test accuracy", "", energy=False, always=True),
    Metric("test_loss", "test loss", "", energy=False, always=False),
)
METRIC_BY_KEY = {metric.key: metric for metric in METRICS}


@dataclass
class Prepared:
    """The runs that enter the statistics, and why the others do not."""

    data: ExperimentData
    outliers_applied: bool
    threshold: float
    kept: list[Row]
    flagged: list[dict[str, Any]]  # what the |z| rule picks, removed or not
    removed: list[dict[str, Any]]
    accuracy_scale: Literal["fraction", "percent"] | None
    notes: list[str] = field(default_factory=list)

    def kept_by_policy(self) -> dict[str, list[Row]]:
        groups: dict[str, list[Row]] = {policy: [] for policy in self.data.policies}
        for row in self.kept:
            groups.setdefault(str(row["policy"]), []).append(row)
        return groups

    def removed_ids(self, policy: str | None = None) -> list[str]:
        return [r["run_id"] for r in self.removed if policy is None or r["policy"] == policy]

    def excluded(self) -> list[Excluded]:
        """Every row of runs.csv (or value of one) the statistics do not use, by line."""
        out = list(self.data.excluded)
        for entry in self.removed:
            out.append(
                Excluded(
                    str(entry["run_id"]),
                    self.data.line_of(str(entry["run_id"])) or 0,
                    f"outlier: energy_j {entry['energy_j']:g} J has |z| = {abs(entry['z']):.3g} "
                    f"> {self.threshold:g} within {entry['policy']} (--no-outliers keeps it)",
                    str(entry["policy"]),
                )
            )
        return sorted(out, key=lambda e: (e.line, e.column or ""))


def prepare(
    data: ExperimentData, *, outliers: bool = True, threshold: float = OUTLIER_THRESHOLD
) -> Prepared:
    """Apply the study's rule: within each policy, drop runs whose energy has |z| > 3.

    A removed run leaves every metric, not just energy: its duration and accuracy belong to
    the same disturbed run.
    """
    done = data.done
    flagged: list[dict[str, Any]] = []
    notes: list[str] = []
    if done:
        result = stats.zscore_outliers(
            numeric(done, ENERGY),
            threshold,
            ids=[str(row["run_id"]) for row in done],
            groups=[str(row["policy"]) for row in done],
        )
        notes.extend(result.notes)
        for run_id, group, value, z in zip(
            result.removed_ids,
            result.removed_groups or [],
            result.removed_values,
            result.removed_z,
            strict=True,
        ):
            flagged.append({"run_id": run_id, "policy": group, "energy_j": value, "z": z})
    flagged_ids = {entry["run_id"] for entry in flagged}
    kept = [row for row in done if not outliers or str(row["run_id"]) not in flagged_ids]
    return Prepared(
        data=data,
        outliers_applied=outliers,
        threshold=threshold,
        kept=kept,
        flagged=flagged,
        removed=flagged if outliers else [],
        accuracy_scale=data.accuracy_scale,
        notes=notes,
    )


def plain(value: Any) -> Any:
    """JSON-ready data: tuples become lists, numpy scalars numbers, NaN and infinity None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def accuracy_points(value: float | None, scale: str | None) -> float | None:
    """An accuracy (or accuracy difference) in percentage points."""
    if value is None or scale is None:
        return None
    return value * 100.0 if scale == "fraction" else value


# -- statistics --------------------------------------------------------------------------------


def statistics(
    prepared: Prepared,
    *,
    alpha: float = ALPHA,
    power: float = POWER,
) -> dict[str, Any]:
    """Everything ``stats.json`` holds (JSON-ready)."""
    data = prepared.data
    groups = prepared.kept_by_policy()
    not_computed: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for metric in METRICS:
        values = {policy: numeric(rows, metric.key) for policy, rows in groups.items()}
        present = any(np.isfinite(v).any() for v in values.values())
        if not present and not metric.always:
            continue
        metrics[metric.key] = _metric(metric, values, prepared, present=present, alpha=alpha)

    excluded = prepared.excluded()
    per_point, per_point_missing = _energy_per_point(metrics, prepared)
    if per_point_missing:
        not_computed["energy_per_accuracy_point_j"] = per_point_missing
    planning = _runs_needed(metrics[ENERGY], alpha=alpha, power=power)
    result: dict[str, Any] = {
        "baseline": data.baseline,
        "policies": data.policies,
        "estimated": data.estimated,
        "metrics": metrics,
        "energy_per_accuracy_point_j": per_point,
        "accuracy_scale": prepared.accuracy_scale,
        "runs_needed": planning,
        "outliers": {
            "applied": prepared.outliers_applied,
            "rule": f"|z| > {prepared.threshold:g} on energy_j within each policy (z with ddof=0)",
            "removed": prepared.removed,
            "flagged": prepared.flagged,
            "notes": prepared.notes,
        },
        "runs": {
            "total": len(data.rows) + data.unreadable,
            "done": len(data.done),
            "used": len(prepared.kept),
            "failed": len(data.failed),
            "unfinished": len(data.unfinished),
            "excluded": sum(1 for e in excluded if e.column is None),
        },
        "excluded_runs": [e.to_dict() for e in excluded],
        "refused_columns": dict(data.refused_columns),
        "failed_runs": [
            {"run_id": row["run_id"], "policy": row["policy"], "error": row.get("error")}
            for row in data.failed
        ],
        "counted_domains": data.counted_domains,
        "counted_domains_source": data.counted_source,
        "alpha": alpha,
        "not_computed": not_computed,
    }
    result["verdict"] = verdict(result)
    result["warnings"] = warnings_for(prepared, result)
    return result


def _metric(
    metric: Metric,
    values: dict[str, np.ndarray[Any, np.dtype[np.float64]]],
    prepared: Prepared,
    *,
    present: bool,
    alpha: float,
) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for policy, array in values.items():
        described = stats.describe(array)
        normal = stats.normality(array, alpha)
        missing = dict(described.not_computed)
        for key in ("w", "p"):
            if key in normal.not_computed:
                missing[f"shapiro_{key}"] = normal.not_computed[key]
        groups[policy] = {
            "n": described.n,
            "mean": described.mean,
            "sd": described.sd,
            "cv_pct": described.cv_pct,
            "shapiro_w": normal.w,
            "shapiro_p": normal.p,
            "outliers": prepared.removed_ids(policy),
            "median": described.median,
            "iqr": described.iqr,
            "ci95": described.ci95,
            "n_missing": described.n_nan,
            "not_computed": missing,
            "notes": described.notes,
        }
    entry: dict[str, Any] = {
        "label": metric.label,
        "unit": metric.unit,
        "groups": plain(groups),
        "comparisons": [],
        "not_computed": {},
    }
    if not values:
        entry["not_computed"]["comparisons"] = "runs.csv has no runs"
        return entry
    refused = prepared.data.refused_columns.get(metric.key)
    if refused is not None:
        entry["not_computed"]["comparisons"] = refused
        return entry
    if not present:
        entry["not_computed"]["comparisons"] = f"no finished run reported {metric.key}"
        return entry
    baseline = prepared.data.baseline
    compared = stats.compare_policies(values, baseline, alpha=alpha)
    entry["comparisons"] = [c.to_dict() for c in compared.comparisons.values()]
    entry["not_computed"].update(compared.not_computed)
    if compared.notes:
        entry["notes"] = compared.notes
    return entry


def _energy_per_point(
    metrics: dict[str, Any], prepared: Prepared
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Mean energy over mean accuracy in percentage points, per policy (the study's Table 1)."""
    out: dict[str, float | None] = {}
    missing: dict[str, str] = {}
    energy = metrics[ENERGY]["groups"]
    accuracy = metrics[ACCURACY]["groups"]
    for policy in energy:
        mean_e, mean_a = energy[policy]["mean"], accuracy[policy]["mean"]
        out[policy] = None
        if mean_e is None:
            missing[policy] = "no energy values"
        elif ACCURACY in prepared.data.refused_columns:
            missing[policy] = prepared.data.refused_columns[ACCURACY]
        elif mean_a is None or prepared.accuracy_scale is None:
            missing[policy] = "no test_accuracy values"
        else:
            try:
                value = stats.energy_per_accuracy_point(
                    mean_e, mean_a, scale=prepared.accuracy_scale
                )
            except ConfigError as error:
                missing[policy] = str(error)
                continue
            if math.isfinite(value):
                out[policy] = value
            else:
                missing[policy] = "mean test accuracy is zero"
    return out, missing


def _runs_needed(energy: dict[str, Any], *, alpha: float, power: float) -> dict[str, Any]:
    """Runs per policy the observed effect needs, and the power the experiment had.

    The CV is the pooled SD (the one behind Cohen's d) as a percentage of the baseline mean,
    so the planning effect size is exactly the observed |d|.
    """
    out: dict[str, Any] = {
        "metric": ENERGY,
        "alpha": alpha,
        "power": power,
        "basis": "observed pooled CV and observed relative change (a post-hoc estimate)",
        "comparisons": [],
        "not_computed": {},
    }
    if not energy["comparisons"]:
        out["not_computed"]["comparisons"] = energy["not_computed"].get(
            "comparisons", "nothing to compare"
        )
    for comparison in energy["comparisons"]:
        item: dict[str, Any] = {
            "a": comparison["a"],
            "b": comparison["b"],
            "n_a": comparison["n_a"],
            "n_b": comparison["n_b"],
            "cv_pct": None,
            "relative_change_pct": comparison["relative_change_pct"],
            "runs_needed_per_policy": None,
            "achieved_power": None,
            "enough": None,
            "not_computed": {},
        }
        out["comparisons"].append(item)
        reason = _planning_reason(comparison)
        if reason:
            item["not_computed"] = dict.fromkeys(
                ("cv_pct", "runs_needed_per_policy", "achieved_power", "enough"), reason
            )
            continue
        n_a, n_b = comparison["n_a"], comparison["n_b"]
        pooled = math.sqrt(
            ((n_a - 1) * comparison["sd_a"] ** 2 + (n_b - 1) * comparison["sd_b"] ** 2)
            / (n_a + n_b - 2)
        )
        cv = 100.0 * pooled / abs(comparison["mean_a"])
        item["cv_pct"] = cv
        change = comparison["relative_change_pct"]
        if cv == 0.0:
            item["not_computed"] = dict.fromkeys(
                ("runs_needed_per_policy", "achieved_power", "enough"), "zero variance"
            )
            continue
        try:
            item["achieved_power"] = stats.achieved_power((n_a, n_b), cv, change, alpha)
        except ConfigError as error:
            item["not_computed"]["achieved_power"] = str(error)
        try:
            needed = stats.runs_needed(cv, change, alpha, power)
        except ConfigError as error:
            item["not_computed"]["runs_needed_per_policy"] = str(error)
            item["enough"] = False
            continue
        item["runs_needed_per_policy"] = needed
        item["enough"] = min(n_a, n_b) >= needed
    result: dict[str, Any] = plain(out)
    return result


def _planning_reason(comparison: dict[str, Any]) -> str | None:
    if comparison["n_a"] < 2 or comparison["n_b"] < 2:
        return "needs at least 2 runs per policy"
    if comparison["sd_a"] is None or comparison["sd_b"] is None:
        return "needs the SD of both policies"
    if not comparison["mean_a"]:
        return "the baseline mean is zero or missing"
    if not comparison["relative_change_pct"]:
        return "no observed change; no number of runs detects it"
    return None


# -- verdict and warnings ----------------------------------------------------------------------

PRIMARY_LABEL = "Welch t (log ratio)"


def _test_text(comparison: dict[str, Any], several: bool) -> str:
    # The primary test is fixed in advance (stats.compare_groups): Welch's t on the log ratio,
    # the test that the CI printed beside it inverts.
    text = (
        f"{PRIMARY_LABEL} = {fmt.stat(comparison['log_ratio_t'])}, "
        f"{fmt.pvalue(comparison['primary_p'])}"
    )
    if several and comparison.get("holm_p") is not None:
        text += f", Holm-adjusted {fmt.pvalue(comparison['holm_p'])}"
    return text


def _significant(comparison: dict[str, Any], alpha: float) -> bool | None:
    p = comparison.get("holm_p")
    if p is None:
        p = comparison.get("primary_p")
    return None if p is None else bool(p < alpha)


def verdict(result: dict[str, Any]) -> list[str]:
    """One plain-language sentence per compared policy."""
    energy = result["metrics"][ENERGY]
    comparisons = energy["comparisons"]
    if not comparisons:
        reason = energy["not_computed"].get("comparisons", "nothing to compare")
        return [f"No comparison: {reason}."]
    several = len(comparisons) > 1
    estimated = " (estimated)" if result["estimated"] else ""
    alpha = result["alpha"]
    by_b = {
        key: {c["b"]: c for c in result["metrics"][key]["comparisons"]}
        for key in (ACCURACY, "duration_s", "mean_power_w")
        if key in result["metrics"]
    }
    lines = []
    for comparison in comparisons:
        a, b = comparison["a"], comparison["b"]
        change = comparison["relative_change_pct"]
        if change is None:
            reason = comparison["not_computed"].get("relative_change_pct", "not computed")
            lines.append(f"{b} against {a}: energy change not computed ({reason}).")
            continue
        direction = "less" if change < 0 else "more"
        ci = comparison["relative_change_ci"]
        parts = []
        if ci:
            parts.append(f"95% CI {fmt.percent_ci(ci)}")
        if comparison["primary_p"] is not None:
            parts.append(_test_text(comparison, several))
        else:
            parts.append(f"no test: {comparison['not_computed'].get('primary_p', 'not computed')}")
        sentence = (
            f"{b} used {abs(change):.1f}% {direction} energy{estimated} than {a} "
            f"({'; '.join(parts)})"
        )
        significant = _significant(comparison, alpha)
        if significant is False:
            raw = comparison["primary_p"]
            if several and raw is not None and raw < alpha:
                # The CI is per comparison, Holm's correction is over the family: say which
                # one makes the difference rather than print a CI that seems to contradict.
                sentence += (
                    f", not significant after Holm's correction for {len(comparisons)} comparisons"
                )
            else:
                sentence += ", not significant"
        accuracy = by_b.get(ACCURACY, {}).get(b)
        if (
            accuracy is not None
            and accuracy["mean_a"] is not None
            and accuracy["mean_b"] is not None
        ):
            diff = accuracy_points(
                accuracy["mean_b"] - accuracy["mean_a"], result["accuracy_scale"]
            )
            sig = _significant(accuracy, alpha)
            p_text = fmt.pvalue(accuracy["primary_p"])
            label = {True: "significant", False: "not significant", None: "untested"}[sig]
            sentence += f"; test accuracy {fmt.signed(diff, 2, ' pp')}, {label} ({p_text})"
        elif ACCURACY in result.get("refused_columns", {}):
            sentence += "; test accuracy not compared (it mixes fractions and percentages)"
        else:
            sentence += "; test accuracy not compared (no test_accuracy values)"
        extras = []
        for key, noun in (("duration_s", "duration"), ("mean_power_w", "mean power")):
            other = by_b.get(key, {}).get(b)
            if other is not None and other["relative_change_pct"] is not None:
                extras.append(f"{noun} {fmt.signed(other['relative_change_pct'], 1, '%')}")
        if extras:
            sentence += "; " + ", ".join(extras)
        lines.append(sentence + ".")
    return lines


def warnings_for(prepared: Prepared, result: dict[str, Any]) -> list[str]:
    """Everything a reader must know before trusting the numbers."""
    data = prepared.data
    out = list(data.warnings)
    experiment_warnings = data.experiment.get("warnings")
    if isinstance(experiment_warnings, list):
        out.extend(str(w) for w in experiment_warnings)
    if data.estimated and not any("estimate" in w for w in out):
        out.append(
            "the meter estimated energy instead of measuring it: every energy figure is estimated"
        )
    for row in data.failed:
        out.append(f"run {row['run_id']} ({row['policy']}) failed: {row.get('error') or '?'}")
    if data.unfinished:
        ids = ", ".join(str(row["run_id"]) for row in data.unfinished[:10])
        more = "" if len(data.unfinished) <= 10 else f" and {len(data.unfinished) - 10} more"
        out.append(
            f"{fmt.plural(len(data.unfinished), 'run')} not finished ({ids}{more}); "
            "the experiment is incomplete"
        )
    for entry in prepared.removed:
        out.append(
            f"outlier removed: run {entry['run_id']} ({entry['policy']}), energy "
            f"{fmt.num(entry['energy_j'])} J, z = {fmt.stat(entry['z'])}; it is left out of "
            "every metric (--no-outliers keeps it)"
        )
    if not prepared.outliers_applied and prepared.flagged:
        ids = ", ".join(entry["run_id"] for entry in prepared.flagged)
        out.append(f"--no-outliers: kept run(s) with |z| > {prepared.threshold:g}: {ids}")
    # Failed and unfinished runs and outliers have their own lines above; the rest of what
    # is left out is bad data, summarised here and listed one by one under "Runs not used".
    invalid = [
        e
        for e in data.excluded
        if e.column is None and not e.reason.startswith(("the run failed", "the run has not"))
    ]
    if invalid:
        shown = ", ".join(f"{e.run_id} ({e.place})" for e in invalid[:8])
        more = f" and {len(invalid) - 8} more" if len(invalid) > 8 else ""
        out.append(
            f"{fmt.plural(len(invalid), 'run')} cannot be used and "
            f"{'is' if len(invalid) == 1 else 'are'} left out of the analysis: {shown}{more} "
            "(reasons under Runs not used)"
        )
    values = [e for e in data.excluded if e.column is not None]
    for column, reason in data.refused_columns.items():
        out.append(reason)
        values = [e for e in values if e.column != column]
    if values:
        shown = ", ".join(f"{e.column} of {e.run_id} ({e.place})" for e in values[:8])
        more = f" and {len(values) - 8} more" if len(values) > 8 else ""
        out.append(
            f"{fmt.plural(len(values), 'value')} cannot be used and "
            f"{'is' if len(values) == 1 else 'are'} left out: {shown}{more} (reasons under Runs "
            "not used)"
        )
    counts = {p: g["n"] for p, g in result["metrics"][ENERGY]["groups"].items()}
    few = [f"{p} ({n})" for p, n in counts.items() if n < 3]
    if few:
        out.append(
            "too few runs for normality tests and reliable comparisons: "
            + ", ".join(few)
            + "; run at least 3 per policy, ideally as many as runs_needed says"
        )
    for item in result["runs_needed"]["comparisons"]:
        if item["enough"] is False:
            needed = item["runs_needed_per_policy"]
            needed_text = f"{needed}" if needed is not None else "more than can be run"
            out.append(
                f"{item['b']} vs {item['a']}: {min(item['n_a'], item['n_b'])} runs per policy "
                f"give {fmt.num(100 * (item['achieved_power'] or 0), 0)}% power to detect the "
                f"observed {fmt.signed(item['relative_change_pct'], 1, '%')} change; "
                f"{needed_text} runs per policy would be needed for 80%"
            )
    if not data.rows:
        out.append("runs.csv has no runs")
    elif not data.done:
        out.append("no run finished: nothing to analyse")
    return out


def removed_rows(prepared: Prepared) -> Sequence[Row]:
    ids = set(prepared.removed_ids())
    return [row for row in prepared.data.done if str(row["run_id"]) in ids]
