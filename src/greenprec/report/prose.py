"""Every sentence the report says about the numbers: the verdict, the warnings, the planning
and the outlier lines, written from the typed :class:`~greenprec.report.analysis.Analysis`.

This is the only module that turns results into sentences; stats.json (``verdict``,
``warnings``, ``runs_needed.summary``), report.md, report.html and the terminal all show the
lines :func:`write` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenprec import stats
from greenprec.report import formatting as fmt
from greenprec.report.analysis import (
    ACCURACY,
    BLOCKED_TEST,
    Analysis,
    Blocking,
    OutlierInfo,
    Planning,
    PowerTrace,
    accuracy_points,
    finite,
    meters_used,
    simulated_meters,
)

PRIMARY_LABEL = "Welch t (log ratio)"
BLOCKED_LABEL = "host-blocked t (log ratio)"


@dataclass(frozen=True)
class Prose:
    """The report's sentences: one per compared policy, one per warning, one per plan."""

    verdict: list[str]
    warnings: list[str]
    planning: list[str]
    outliers: list[str]


def write(analysis: Analysis, trace: PowerTrace | None = None) -> Prose:
    """All the report's sentences; the power trace's warnings come after the analysis's."""
    return Prose(
        verdict=verdict(analysis),
        warnings=warnings(analysis) + (trace_warnings(trace) if trace is not None else []),
        planning=planning_lines(analysis.planning),
        outliers=outlier_lines(analysis.outliers),
    )


# -- verdict ---------------------------------------------------------------------------------------


def _test_text(comparison: stats.CompareResult, several: bool) -> str:
    # The primary test is fixed in advance (stats.compare_groups): Welch's t on the log ratio,
    # the test that the CI printed beside it inverts.
    label = BLOCKED_LABEL if comparison.primary_test == BLOCKED_TEST else PRIMARY_LABEL
    text = f"{label} = {fmt.stat(comparison.log_ratio_t)}, {fmt.pvalue(comparison.primary_p)}"
    if several and finite(comparison.holm_p) is not None:
        text += f", Holm-adjusted {fmt.pvalue(comparison.holm_p)}"
    return text


def _significant(comparison: stats.CompareResult, alpha: float) -> bool | None:
    p = finite(comparison.holm_p)
    if p is None:
        p = finite(comparison.primary_p)
    return None if p is None else bool(p < alpha)


def verdict(analysis: Analysis) -> list[str]:
    """One plain-language sentence per compared policy, then, when the folder holds runs the
    analysis did not use, one saying how many it rests on (:func:`runs_used`)."""
    lines = _comparison_lines(analysis)
    used = runs_used(analysis)
    return lines + ([used] if used else [])


def runs_used(analysis: Analysis) -> str | None:
    """The verdict's line on the runs it rests on, "Based on 1 of 6 runs: 5 not used (5 failed;
    see Runs not used).", or None when every run is used.

    The count used to be only in the subtitle, in small grey text: a verdict drawn from 1 run
    of 6 read exactly like one drawn from all 6.
    """
    runs = analysis.runs
    if runs.total == 0 or runs.used >= runs.total:
        return None
    kinds = dict.fromkeys(("failed", "not finished", "outlier", "unusable"), 0)
    for entry in analysis.excluded:
        if entry.column is not None:
            continue  # a single value: the run itself is used
        if entry.reason.startswith("the run failed"):
            kind = "failed"
        elif entry.reason.startswith("the run has not finished"):
            kind = "not finished"
        elif entry.reason.startswith("outlier:"):
            kind = "outlier"
        else:
            kind = "unusable"
        kinds[kind] += 1
    parts = [
        fmt.plural(n, "outlier") + " removed" if kind == "outlier" else f"{n} {kind}"
        for kind, n in kinds.items()
        if n
    ]
    detail = ", ".join(parts) + "; " if parts else ""
    unused = runs.total - runs.used
    return (
        f"Based on {runs.used} of {fmt.plural(runs.total, 'run')}: {unused} not used "
        f"({detail}see Runs not used)."
    )


def _comparison_lines(analysis: Analysis) -> list[str]:
    energy = analysis.energy
    comparisons = energy.comparisons
    if not comparisons:
        reason = energy.not_computed.get("comparisons", "nothing to compare")
        return [f"No comparison: {reason}."]
    several = len(comparisons) > 1
    estimated = " (estimated)" if analysis.estimated else ""
    alpha = analysis.alpha
    lines = []
    for comparison in comparisons:
        a, b = comparison.a, comparison.b
        change = finite(comparison.relative_change_pct)
        if change is None:
            reason = comparison.not_computed.get("relative_change_pct", "not computed")
            lines.append(f"{b} against {a}: energy change not computed ({reason}).")
            continue
        direction = "less" if change < 0 else "more"
        blocked = analysis.blocking.against(b) if analysis.blocking is not None else None
        within = f" within {fmt.plural(blocked.test.n_blocks, 'host')}" if blocked else ""
        parts = []
        if comparison.relative_change_ci:
            parts.append(f"95% CI {fmt.percent_ci(comparison.relative_change_ci)}")
        raw = finite(comparison.primary_p)
        if raw is not None:
            parts.append(_test_text(comparison, several))
        else:
            parts.append(f"no test: {comparison.not_computed.get('primary_p', 'not computed')}")
        sentence = (
            f"{b} used {abs(change):.1f}% {direction} energy{estimated} than {a}{within} "
            f"({'; '.join(parts)})"
        )
        if _significant(comparison, alpha) is False:
            if several and raw is not None and raw < alpha:
                # The CI is per comparison, Holm's correction is over the family: say which
                # one makes the difference rather than print a CI that seems to contradict.
                sentence += (
                    f", not significant after Holm's correction for {len(comparisons)} comparisons"
                )
            else:
                sentence += ", not significant"
        sentence += _accuracy_clause(analysis, b)
        extras = []
        for key, noun in (("duration_s", "duration"), ("mean_power_w", "mean power")):
            metric = analysis.metrics.get(key)
            other = metric.against(b) if metric is not None else None
            if other is not None and finite(other.relative_change_pct) is not None:
                extras.append(f"{noun} {fmt.signed(other.relative_change_pct, 1, '%')}")
        if extras:
            sentence += "; " + ", ".join(extras)
        lines.append(sentence + ".")
    return lines


def _accuracy_clause(analysis: Analysis, policy: str) -> str:
    metric = analysis.metrics.get(ACCURACY)
    accuracy = metric.against(policy) if metric is not None else None
    mean_a = finite(accuracy.mean_a) if accuracy is not None else None
    mean_b = finite(accuracy.mean_b) if accuracy is not None else None
    if accuracy is not None and mean_a is not None and mean_b is not None:
        diff = accuracy_points(mean_b - mean_a, analysis.accuracy_scale)
        label = {True: "significant", False: "not significant", None: "untested"}[
            _significant(accuracy, analysis.alpha)
        ]
        return (
            f"; test accuracy {fmt.signed(diff, 2, ' pp')}, {label} "
            f"({fmt.pvalue(accuracy.primary_p)})"
        )
    if ACCURACY in analysis.data.refused_columns:
        return "; test accuracy not compared (it mixes fractions and percentages)"
    return "; test accuracy not compared (no test_accuracy values)"


# -- warnings --------------------------------------------------------------------------------------


def warnings(analysis: Analysis) -> list[str]:
    """Everything a reader must know before trusting the numbers."""
    data = analysis.data
    outliers = analysis.outliers
    out = list(data.warnings)
    experiment_warnings = data.experiment.get("warnings")
    if isinstance(experiment_warnings, list):
        out.extend(str(w) for w in experiment_warnings)
    simulated = simulated_meters(meters_used(data))
    if simulated:
        out.append(
            f"meter {', '.join(simulated)} simulates power, for tests and demos: no energy or "
            "power figure of this report is a measurement"
        )
    elif data.estimated and not any("estimate" in w for w in out):
        out.append(
            "the meter estimated energy instead of measuring it: every energy figure is estimated"
        )
    for run in analysis.failed:
        out.append(f"run {run.run_id} ({run.policy}) failed: {run.error or '?'}")
    if data.unfinished:
        ids = ", ".join(str(row["run_id"]) for row in data.unfinished[:10])
        more = "" if len(data.unfinished) <= 10 else f" and {len(data.unfinished) - 10} more"
        out.append(
            f"{fmt.plural(len(data.unfinished), 'run')} not finished ({ids}{more}); "
            "the experiment is incomplete"
        )
    for outlier in outliers.removed:
        out.append(
            f"outlier removed: run {outlier.run_id} ({outlier.policy}), energy "
            f"{fmt.num(outlier.energy_j)} J, z = {fmt.stat(outlier.z)}; it is left out of "
            "every metric (--no-outliers keeps it)"
        )
    if not outliers.applied and outliers.flagged:
        ids = ", ".join(outlier.run_id for outlier in outliers.flagged)
        out.append(f"--no-outliers: kept run(s) with |z| > {outliers.threshold:g}: {ids}")
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
    few = [
        f"{policy} ({group.description.n})"
        for policy, group in analysis.energy.groups.items()
        if group.description.n < 3
    ]
    if few:
        out.append(
            "too few runs for normality tests and reliable comparisons: "
            + ", ".join(few)
            + "; run at least 3 per policy, ideally as many as runs_needed says"
        )
    for item in analysis.planning.items:
        if item.enough is False:
            needed = item.runs_needed_per_policy
            needed_text = f"{needed}" if needed is not None else "more than can be run"
            c = item.comparison
            out.append(
                f"{c.b} vs {c.a}: {item.runs_per_policy} runs per policy "
                f"give {fmt.num(100 * (item.achieved_power or 0), 0)}% power to detect the "
                f"observed {fmt.signed(c.relative_change_pct, 1, '%')} change; "
                f"{needed_text} runs per policy would be needed for 80%"
            )
    if analysis.blocking is not None:
        out.extend(host_warnings(analysis.blocking, analysis.alpha))
    if _shared_nodes(data.experiment):
        out.append(
            "the cluster jobs ran with exclusive = false: runs shared their nodes with other "
            "jobs, and RAPL and NVML count the whole machine, so a run's energy may include "
            "other jobs' energy"
        )
    if not data.rows:
        out.append("runs.csv has no runs")
    elif not data.done:
        out.append("no run finished: nothing to analyse")
    return out


def _shared_nodes(experiment: dict[str, object]) -> bool:
    """experiment.json says the cluster's jobs did not have their nodes to themselves."""
    config = experiment.get("config")
    slurm = config.get("slurm") if isinstance(config, dict) else None
    return isinstance(slurm, dict) and slurm.get("exclusive") is False


def _ids(run_ids: list[str]) -> str:
    return ", ".join(run_ids[:8]) + (f" and {len(run_ids) - 8} more" if len(run_ids) > 8 else "")


def host_warnings(blocking: Blocking, alpha: float) -> list[str]:
    """Runs from several hosts: hardware that differs, runs a within-host comparison cannot
    use, and unpaired comparisons that the hosts confound."""
    out = []
    if blocking.hardware_differs:
        hardware = "; ".join(
            f"{h.host}: {h.hardware if h.node is not None else 'unknown (not recorded)'}"
            for h in blocking.hosts
        )
        out.append(
            f"the hosts differ in hardware ({hardware}): energy is compared within hosts only; "
            "energies measured on different hosts are not comparable"
        )
    level = f"{100 * (1 - alpha):g}%"
    for c in blocking.comparisons:
        if c.left_out:
            by_reason: dict[str, list[str]] = {}
            for run in c.left_out:
                by_reason.setdefault(run.reason, []).append(run.run_id)
            parts = "; ".join(f"{reason}: {_ids(ids)}" for reason, ids in by_reason.items())
            out.append(
                f"{c.b} vs {c.a}: {fmt.plural(len(c.left_out), 'run')} left out of the "
                f"host-blocked comparison ({parts}); they are used everywhere else"
            )
        if c.confounded:
            ci = c.test.relative_change_ci_pct
            spread = "; ".join(
                f"{h.host}: "
                + ", ".join(
                    f"{policy} {h.policies[policy].n if policy in h.policies else 0}"
                    for policy in (c.a, c.b)
                )
                for h in blocking.hosts
            )
            out.append(
                f"{c.b} vs {c.a}: the unpaired estimate "
                f"({fmt.signed(c.unpaired.relative_change_pct, 1, '%')}, which ignores hosts) "
                "lies outside the "
                f"host-blocked {level} CI ({fmt.percent_ci(ci)}): the policies are unevenly "
                f"spread over hosts ({spread}), so the unpaired comparison is confounded by "
                "host; the verdict uses the host-blocked comparison"
            )
    return out


def trace_warnings(trace: PowerTrace) -> list[str]:
    """What the mean power trace had to leave out."""
    out = [f"power trace skips run {run_id}: {error}" for run_id, error in trace.unreadable.items()]
    missing = trace.missing
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        out.append(
            f"no samples/<run_id>.csv for {len(missing)} run(s) used ({shown}): "
            "the power trace leaves them out"
        )
    no_counted = [
        f"{run_id}: {', '.join(counted or ['any domain'])}"
        for run_id, counted in trace.no_counted.items()
    ]
    if no_counted:
        more = f"; and {len(no_counted) - 8} more" if len(no_counted) > 8 else ""
        out.append(
            f"the samples of {len(no_counted)} run(s) have no {trace.bin_s:g} s bin with a "
            f"reading of every counted domain ({'; '.join(no_counted[:8])}{more}): the power "
            "trace leaves them out"
        )
    return out


# -- runs needed and outliers ----------------------------------------------------------------------


def planning_lines(planning: Planning) -> list[str]:
    """Per energy comparison: the power the experiment had and the runs 80% power needs."""
    lines = []
    for item in planning.items:
        c = item.comparison
        head = f"{c.b} vs {c.a}"
        if item.runs_needed_per_policy is None and item.achieved_power is None:
            reason = next(iter(item.not_computed.values()), "not computed")
            lines.append(f"{head}: not computed ({reason}).")
            continue
        text = (
            f"{head}: with a pooled CV of {fmt.num(item.cv_pct, 2)}% and the observed change "
            f"of {fmt.signed(c.relative_change_pct, 1, '%')}, {item.runs_per_policy} runs per "
            f"policy gave {_power_text(item.achieved_power)} power "
            f"(two-sided t-test, α = {planning.alpha:g}). "
        )
        needed = item.runs_needed_per_policy
        if needed is None:
            text += (
                f"No practical number of runs reaches {planning.power:.0%} power "
                f"({item.not_computed.get('runs_needed_per_policy', '')})."
            )
        elif item.enough:
            text += (
                f"{needed} runs per policy would have sufficed for {planning.power:.0%} "
                f"power: the experiment had enough."
            )
        else:
            text += (
                f"{needed} runs per policy are needed for {planning.power:.0%} power: "
                "the experiment had too few."
            )
        lines.append(text)
    if not planning.items:
        reason = planning.not_computed.get("comparisons", "nothing to compare")
        lines.append(f"Not computed: {reason}.")
    else:
        lines.append(
            "This is a post-hoc estimate from the observed effect; use it to plan the next "
            "experiment, not to reinterpret this one."
        )
    return lines


def _power_text(power: float | None) -> str:
    if power is None:
        return fmt.NOT_AVAILABLE
    return "> 99.9%" if power > 0.999 else f"{100 * power:.1f}%"


def outlier_lines(info: OutlierInfo) -> list[str]:
    """The rule, and each run it removed (or, with --no-outliers, would have removed)."""
    lines = [f"Rule: {info.rule}, applied once, as in the study."]
    if info.applied:
        if info.removed:
            for outlier in info.removed:
                lines.append(
                    f"Removed run {outlier.run_id} ({outlier.policy}): energy "
                    f"{fmt.num(outlier.energy_j)} J, z = {fmt.stat(outlier.z)}. It is left "
                    "out of every metric."
                )
        else:
            lines.append("No run was removed.")
    else:
        lines.append("Outlier removal is off (--no-outliers): every finished run is used.")
        for outlier in info.flagged:
            lines.append(
                f"The rule would have removed run {outlier.run_id} ({outlier.policy}), "
                f"z = {fmt.stat(outlier.z)}."
            )
    return lines
