"""Every sentence the report says about the numbers: the verdict, the warnings, the planning
and the outlier lines, written from the typed :class:`~greenprec.report.analysis.Analysis`.

This is the only module that turns results into sentences; stats.json (``verdict``,
``warnings``, ``runs_needed.summary``), report.md, report.html and the terminal all show the
lines :func:`write` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from greenprec import stats
from greenprec.report import formatting as fmt
from greenprec.report.analysis import (
    ACCURACY,
    BLOCKED_TEST,
    ENERGY,
    METRIC_BY_KEY,
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
from greenprec.report.equivalence import EquivalenceItem
from greenprec.report.state import MachineFlag, MachineStates, Stopping, Target, Warmup

PRIMARY_LABEL = "Welch t (log ratio)"
BLOCKED_LABEL = "host-blocked t (log ratio)"


@dataclass(frozen=True)
class Prose:
    """The report's sentences: one per compared policy, one per warning, one per plan."""

    verdict: list[str]
    warnings: list[str]
    planning: list[str]
    outliers: list[str]
    margins: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    machine: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


def write(analysis: Analysis, trace: PowerTrace | None = None) -> Prose:
    """All the report's sentences; the power trace's warnings come after the analysis's."""
    return Prose(
        verdict=verdict(analysis),
        warnings=warnings(analysis) + (trace_warnings(trace) if trace is not None else []),
        planning=planning_lines(analysis.planning),
        outliers=outlier_lines(analysis.outliers),
        margins=margin_lines(analysis),
        stopping=stopping_lines(analysis.stopping) if analysis.stopping is not None else [],
        machine=machine_lines(analysis.machine) if analysis.machine is not None else [],
        targets=target_lines(analysis.targets),
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
        energy_item = analysis.equivalence_of(ENERGY, b)
        if energy_item is not None:
            sentence += f", {energy_item.verdict} ({_equivalence_text(energy_item)})"
        elif _significant(comparison, alpha) is False:
            sentence += f", {energy_verdict(analysis, comparison)}"
        sentence += _accuracy_clause(analysis, b)
        for key, items in analysis.equivalence.items():
            item = analysis.equivalence_of(key, b)
            if key in (ENERGY, ACCURACY) or item is None or not items:
                continue
            label = METRIC_BY_KEY[key].label if key in METRIC_BY_KEY else key
            sentence += f"; {label} {item.verdict} ({_equivalence_text(item)})"
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


def _at(n_a: int, n_b: int) -> str:
    return f"{n_a} runs" if n_a == n_b else f"{n_a} and {n_b} runs"


def energy_verdict(analysis: Analysis, comparison: stats.CompareResult) -> str:
    """The energy comparison's answer: the margin's verdict when energy has one; else
    "different", or "inconclusive: no difference shown at n runs; about N runs per policy would
    detect a change of X%" (never "not significant", which reads as "no difference")."""
    item = analysis.equivalence_of(ENERGY, comparison.b)
    if item is not None:
        return item.verdict
    significant = _significant(comparison, analysis.alpha)
    if significant:
        return "different"
    if significant is None:
        reason = comparison.not_computed.get("primary_p", "not computed")
        return f"not tested: {reason}"
    several = len(analysis.energy.comparisons) > 1
    raw = finite(comparison.primary_p)
    holm = (
        f" after Holm's correction for {len(analysis.energy.comparisons)} comparisons"
        if several and raw is not None and raw < analysis.alpha
        else ""
    )
    head = f"inconclusive: no difference shown{holm} at {_at(comparison.n_a, comparison.n_b)}"
    plan = next((i for i in analysis.planning.items if i.comparison.b == comparison.b), None)
    change = fmt.signed(comparison.relative_change_pct, 1, "%")
    if plan is None or (plan.runs_needed_per_policy is None and plan.achieved_power is None):
        reason = next(iter(plan.not_computed.values()), "") if plan is not None else ""
        return f"{head}; the runs needed cannot be estimated" + (f" ({reason})" if reason else "")
    if plan.runs_needed_per_policy is None:
        return (
            f"{head}; no practical number of runs would detect a change of {change} with "
            f"{analysis.planning.power:.0%} power"
        )
    return (
        f"{head}; about {plan.runs_needed_per_policy} runs per policy would detect a change "
        f"of {change} ({analysis.planning.power:.0%} power)"
    )


def _equivalence_text(item: EquivalenceItem) -> str:
    """ "TOST p = 0.47, margin ±1 pp (greenprec's default …); difference p = 0.09"."""
    test = "TOST" if item.test == "tost_welch" else "non-inferiority test"
    if item.p is not None:
        parts = [f"{test} {fmt.pvalue(item.p)}, {item.margin.described}"]
    else:
        reason = next(iter(item.not_computed.values()), None) or next(
            iter(item.result.not_computed.values()) if item.result is not None else iter(()),
            "not computed",
        )
        parts = [f"{item.margin.described}; no {test}: {reason}"]
    if item.difference_p is not None:
        holm = "Holm-adjusted " if item.difference_holm else ""
        parts.append(f"difference test {holm}{fmt.pvalue(item.difference_p)}")
    return "; ".join(parts)


def _accuracy_clause(analysis: Analysis, policy: str) -> str:
    metric = analysis.metrics.get(ACCURACY)
    accuracy = metric.against(policy) if metric is not None else None
    mean_a = finite(accuracy.mean_a) if accuracy is not None else None
    mean_b = finite(accuracy.mean_b) if accuracy is not None else None
    if accuracy is not None and mean_a is not None and mean_b is not None:
        diff = accuracy_points(mean_b - mean_a, analysis.accuracy_scale)
        text = f"; test accuracy {fmt.signed(diff, 2, ' pp')}"
        item = analysis.equivalence_of(ACCURACY, policy)
        if item is not None:
            return f"{text}, {item.verdict} ({_equivalence_text(item)})"
        label = {True: "different", False: "no difference shown", None: "untested"}[
            _significant(accuracy, analysis.alpha)
        ]
        return f"{text}, {label} ({fmt.pvalue(accuracy.primary_p)})"
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
    out.extend(analysis.margin_problems)
    if analysis.machine is not None:
        out.extend(machine_warnings(analysis.machine))
    if analysis.stopping is not None and analysis.stopping.problem:
        out.append(analysis.stopping.problem)
    out.extend(target_warnings(analysis.targets))
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


# -- margins ---------------------------------------------------------------------------------------


def margin_lines(analysis: Analysis) -> list[str]:
    """What each margin is, where it came from, and what the equivalence verdicts mean."""
    if not analysis.margins:
        return []
    lines = []
    for key, use in analysis.margins.items():
        if not analysis.equivalence.get(key):
            continue
        label = METRIC_BY_KEY[key].label if key in METRIC_BY_KEY else key
        source = {
            "given": "given for this report",
            "experiment": "from the experiment's configuration",
            "default": "",
        }[use.source]
        test = "TOST" if use.margin.kind == "equivalence" else "one-sided non-inferiority test"
        lines.append(f"{label}: {use.described}" + (f", {source}" if source else "") + f"; {test}.")
    if not lines:
        return []
    level = f"{100 * (1 - 2 * analysis.alpha):g}%"
    one_sided = any(use.margin.kind == "noninferiority" for use in analysis.margins.values())
    lines.append(
        "Failing to show a difference is not evidence of no difference. Equivalence is shown "
        f"only when the {level} CI of the difference lies inside the margin (two one-sided "
        f"Welch t-tests, TOST, at α = {analysis.alpha:g})"
        + (
            '; non-inferiority ("not worse than", "not more than") only when it lies on '
            "the tolerated side of the margin's bound"
            if one_sided
            else ""
        )
        + '. Otherwise the verdict is "different" (the difference test rejects) or '
        '"inconclusive", with about how many runs per policy would settle it if the observed '
        "difference were the true one."
    )
    return lines


# -- why an adaptive experiment stopped ------------------------------------------------------------


def answer_text(answer: object) -> str:
    """One question's answer at one look, in words."""
    from greenprec.results.models import AnswerRecord

    assert isinstance(answer, AnswerRecord)
    question = f"{answer.metric} {answer.policy} vs {answer.reference} ({answer.kind})"
    p = f", {fmt.pvalue(answer.p)}" if finite(answer.p) is not None else ""
    level = f" at level {answer.level:.3g}" if finite(answer.level) is not None else ""
    if answer.settled:
        return f"{question}: settled, {answer.verdict or 'no verdict recorded'}{p}{level}"
    return f"{question}: not settled{p}{level}"


def stopping_lines(stop: Stopping) -> list[str]:
    """The method, each look, the reason it stopped and the runs stopping saved."""
    record = stop.record
    if record is None:
        return [stop.problem or "The experiment was adaptive, but its looks are not recorded."]
    lines = [
        f"Method: {record.method}, α = {record.alpha:g} over all looks, at least "
        f"{record.min_runs} and at most {record.max_runs} runs per policy."
    ]
    for look in record.looks:
        answers = "; ".join(answer_text(a) for a in look.answers) or "no question answered"
        lines.append(
            f"Look after block {look.block}: {look.runs_per_policy} runs per policy, "
            f"{100 * look.information:.0f}% of the maximum, α spent so far "
            f"{look.alpha_spent:.3g}. {answers}."
        )
    if not record.looks:
        lines.append("No look was made.")
    used = stop.runs_per_policy
    if record.reason is None:
        lines.append("The experiment has not stopped yet (no stopping reason recorded).")
    else:
        how = "stopped early" if record.stopped_early else "ran to its maximum"
        at = f" at {used} runs per policy" if used is not None else ""
        lines.append(f"It {how}{at}: {record.reason}.")
    fixed = stop.fixed_runs_per_policy
    if fixed is None or used is None:
        reason = stop.fixed_not_computed or "the runs per policy at the stop are not recorded"
        lines.append(
            "How many runs stopping saved against a fixed design of the same power cannot be "
            f"computed: {reason}."
        )
    else:
        saved = stop.saved_runs or 0
        policies = fmt.plural(stop.policies, "policy", "policies")
        if saved >= 0:
            lines.append(
                f"A fixed design of the same power needs {fixed} runs per policy: stopping at "
                f"{used} saved {fmt.plural(saved, 'run')} ({fixed - used} per policy × "
                f"{policies})."
            )
        else:
            lines.append(
                f"A fixed design of the same power needs {fixed} runs per policy: this one used "
                f"{fmt.plural(-saved, 'run')} more ({used - fixed} per policy × {policies})."
            )
    return lines


# -- machine state ---------------------------------------------------------------------------------


def _flag_text(flag: MachineFlag) -> str:
    head = f"run {flag.run_id} ({flag.policy})"
    if flag.field == "gpu_throttle_reasons":
        return f"{head}: heat or power throttled the GPU's clocks ({', '.join(flag.reasons)})"
    if flag.unit == "°C":
        diff = fmt.signed(flag.difference, 1, " °C")
    else:
        diff = fmt.signed(flag.difference, 1, "%")
    return (
        f"{head} started with {flag.what} {flag.value or 0:.4g} {flag.unit}, {diff} from the "
        f"median of all runs ({flag.median or 0:.4g} {flag.unit}): its energy may not be "
        "comparable with the others'"
    )


def machine_warnings(machine: MachineStates) -> list[str]:
    out = [_flag_text(flag) for flag in machine.flags]
    for warmup in machine.warmups:
        if warmup.settled is False:
            out.append(
                f"the automatic warm-up hit its cap{_cap(warmup)} before the power settled: "
                "the first runs may have started on a machine still warming up"
            )
    return out


def _cap(warmup: Warmup) -> str:
    return f" of {warmup.cap_s:.4g} s" if warmup.cap_s is not None else ""


def warmup_line(warmup: Warmup) -> str:
    took = f"{warmup.duration_s:.4g} s" if warmup.duration_s is not None else "an unknown time"
    criterion = f" (criterion: {warmup.criterion})" if warmup.criterion else ""
    if warmup.settled is None:
        return f"Warm-up: {took}, of fixed length."
    if warmup.settled:
        return f"Warm-up: {took}, automatic: the power settled{criterion}."
    return (
        f"Warm-up: {took}, automatic: it hit its cap{_cap(warmup)} before the power "
        f"settled{criterion}."
    )


def machine_lines(machine: MachineStates) -> list[str]:
    """The warm-up, and the runs that started unlike the others (or none)."""
    lines = [warmup_line(w) for w in machine.warmups]
    if machine.runs:
        if machine.flags:
            lines += [_flag_text(flag) + "." for flag in machine.flags]
        else:
            lines.append(
                f"Every run started within {5:g} °C and 10% of the median temperatures and "
                "clocks of all runs, without heat or power throttling."
            )
    return lines


# -- energy to a target ----------------------------------------------------------------------------


def target_lines(targets: list[Target]) -> list[str]:
    lines = []
    for target in targets:
        for policy, item in target.policies.items():
            text = (
                f"{target.name}, {policy}: {len(item.reached)} of {fmt.plural(item.runs, 'run')} "
                "reached it"
            )
            if item.energy is not None:
                text += f"; mean energy to it {fmt.num(item.energy.mean)} J"
                if item.mean_epoch is not None:
                    text += f" (epoch {fmt.num(item.mean_epoch, 2)} on average)"
            missing = [r for r in item.not_reached if r not in item.not_recorded]
            if missing:
                text += f"; did not reach it: {_ids(missing)}"
            if item.not_recorded:
                text += f"; recorded nothing for it: {_ids(item.not_recorded)}"
            lines.append(text + ".")
        for c in target.comparisons:
            head = f"{target.name}, {c.b} vs {c.a}: energy to the target"
            if c.relative_change_pct is None:
                lines.append(
                    f"{head} not compared (needs 2 runs per policy that reached it; "
                    f"{c.n_a} and {c.n_b} did)."
                )
                continue
            ci = f"95% CI {fmt.percent_ci(c.ci)}; " if c.ci is not None else ""
            lines.append(
                f"{head} {fmt.signed(c.relative_change_pct, 1, '%')} ({ci}{PRIMARY_LABEL} = "
                f"{fmt.stat(c.t)}, {fmt.pvalue(c.p)}), over the {c.n_a} and {c.n_b} runs that "
                "reached it."
            )
    return lines


def target_warnings(targets: list[Target]) -> list[str]:
    out = []
    for target in targets:
        for c in target.comparisons:
            if not c.flattering:
                continue
            mine, ref = target.policies[c.b], target.policies[c.a]
            out.append(
                f"{c.b} reached {target.name} in {len(mine.reached)} of {mine.runs} runs, less "
                f"often than {c.a} ({len(ref.reached)} of {ref.runs}): its energy to the target "
                "is flattering, since it averages only the runs that got there (a run that "
                "never got there cannot be averaged in)"
            )
    return out
