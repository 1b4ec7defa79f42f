"""Every sentence the report says about the numbers: the verdict, the warnings, the planning
and the outlier lines, written from the typed :class:`~greenprec.report.analysis.Analysis`.

This is the only module that turns results into sentences; stats.json (``verdict``,
``warnings``, ``runs_needed.summary``), report.md, report.html and the terminal all show the
lines :func:`write` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from greenprec.report import formatting as fmt
from greenprec.report.analysis import (
    ACCURACY,
    ENERGY,
    METRIC_BY_KEY,
    Analysis,
    Blocking,
    Drift,
    OutlierInfo,
    Planning,
    PowerTrace,
    finite,
    meters_used,
    simulated_used,
)
from greenprec.report.data import Row
from greenprec.report.decisions import HOLM, Decision, phrase
from greenprec.report.state import MachineFlag, MachineStates, Stopping, Target, Warmup
from greenprec.results.models import LookRecord, SequentialRecord

__all__ = [
    "Prose",
    "answer_text",
    "answer_verdict",
    "machine_lines",
    "runs_used",
    "target_lines",
    "trace_warnings",
    "verdict",
    "warnings",
    "write",
]

_PRIMARY_LABEL = "Welch t (log ratio)"


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
        warnings=warnings(analysis)
        + (trace_warnings(trace, _tool_without_samples(analysis)) if trace is not None else []),
        planning=_planning_lines(analysis.planning),
        outliers=_outlier_lines(analysis.outliers),
        margins=_margin_lines(analysis),
        stopping=(
            _stopping_lines(analysis.stopping, analysis.data.rows)
            if analysis.stopping is not None
            else []
        ),
        machine=machine_lines(analysis.machine) if analysis.machine is not None else [],
        targets=target_lines(analysis.targets),
    )


# -- verdict ---------------------------------------------------------------------------------------


def verdict(analysis: Analysis) -> list[str]:
    """One short sentence per question, policy by policy (:mod:`.decisions`): its estimate,
    interval, test and decision; then the family the decisions were made in, and, when the
    folder holds runs the analysis did not use, how many it rests on (:func:`runs_used`)."""
    family = analysis.family
    if not family.decisions:
        energy = analysis.energy
        reason = energy.not_computed.get("comparisons", "nothing to compare")
        lines = [f"No comparison: {reason}."]
    else:
        lines = [_decision_sentence(analysis, d) for d in family.decisions]
        lines += _accuracy_missing(analysis)
        lines += _family_lines(analysis)
        lines += _selection_lines(analysis)
    used = runs_used(analysis)
    return lines + ([used] if used else [])


def _decision_sentence(analysis: Analysis, decision: Decision) -> str:
    """ "mixed vs fp32, energy: −12.6% (95% CI −14.0% to −11.2%; Welch t on the log ratio,
    p = 0.001): lower." """
    q = decision.question
    metric = METRIC_BY_KEY.get(q.metric)
    estimated = (
        " (estimated)" if analysis.estimated and metric is not None and metric.energy else ""
    )
    head = f"{q.policy} vs {q.reference}, {q.label}{estimated}"
    if decision.outcome == "not tested":
        return f"{head}: not tested ({decision.note or 'not computed'})."
    parts = []
    interval = decision.shown_interval()
    coverage = decision.interval_coverage
    if interval is not None and coverage is not None:
        adjusted = " Holm-adjusted" if analysis.family.size > 1 else ""
        if decision.source == "sequential":
            adjusted = " repeated"
        if q.unit == "%":  # each bound a percentage: "−14.0% to −11.2%"
            bounds = " to ".join(fmt.in_unit(v, "%") for v in interval)
        else:  # the unit once, after both bounds: "−1.94 to −0.99 pp"
            bounds = " to ".join(fmt.in_unit(v, "") for v in interval) + q.unit
        parts.append(f"{fmt.coverage(coverage)}{adjusted} CI {bounds}")
    elif coverage is not None:
        parts.append("the interval could not be bounded")
    test = q.test + (f", margin {q.margin_text}" if q.margin_text else "")
    p = fmt.pvalue(decision.p)
    if analysis.family.size > 1 and decision.p_adjusted is not None:
        p += f", Holm-adjusted {fmt.pvalue(decision.p_adjusted, prefix=False)}"
    parts.append(f"{test}, {p}")
    sentence = f"{head}: {fmt.in_unit(decision.shown_estimate(), q.unit)} ({'; '.join(parts)})"
    sentence += f": {phrase(decision)}"
    if q.metric == ENERGY:
        sentence += _energy_detail(analysis, q.policy)
    return sentence + "."


def _energy_detail(analysis: Analysis, policy: str) -> str:
    """Where an energy change comes from (descriptive, not tested), and what an estimate is."""
    extras = []
    for key, noun in (("duration_s", "duration"), ("mean_power_w", "mean power")):
        metric = analysis.metrics.get(key)
        other = metric.against(policy) if metric is not None else None
        if other is not None and finite(other.relative_change_pct) is not None:
            extras.append(f"{noun} {fmt.signed(other.relative_change_pct, 1, '%')}")
    text = f"; {', '.join(extras)}" if extras else ""
    if "estimate" in meters_used(analysis.data):
        text += (
            "; the estimate meter computes energy from CPU time, so this ratio is essentially "
            "the ratio of the runs' CPU times, not a measured energy"
        )
    return text


def _accuracy_missing(analysis: Analysis) -> list[str]:
    """Why test accuracy has no question, when it has none."""
    accuracy = analysis.metrics.get(ACCURACY)
    if accuracy is None or accuracy.comparisons:
        return []
    if ACCURACY in analysis.data.refused_columns:
        return ["Test accuracy not compared (it mixes fractions and percentages)."]
    return ["Test accuracy not compared (no test_accuracy values)."]


def _selection_lines(analysis: Analysis) -> list[str]:
    """A recommendation's folder: the verdict is not its answer, and says so."""
    if not analysis.data.experiment.get("selection"):
        return []
    return [
        "This verdict compares whole runs (each ended at the target) with a fixed design's "
        "tests, not adjusted for the recommendation's looks, which chose how many runs each "
        "configuration got: read it as description. The experiment's answer, with its error "
        "guarantee, is the Recommendation above."
    ]


def _family_lines(analysis: Analysis) -> list[str]:
    family = analysis.family
    m = family.size
    if family.method != HOLM:
        stop = analysis.stopping
        early = stop is not None and stop.stopped_early
        return [
            "These are the decisions of the experiment's sequential design (its alpha split "
            "over its questions and spent over the looks), each with its repeated confidence "
            "interval, valid under the stopping rule"
            + (
                "; the experiment stopped early, so its estimates lean away from zero (an "
                "experiment stops when its estimate happens to be large)."
                if early
                else "."
            )
        ]
    if m <= 1:
        return []
    policies = list(dict.fromkeys(d.question.policy for d in family.decisions))
    metrics = list(dict.fromkeys(d.question.label for d in family.decisions))
    reference = family.decisions[0].question.reference
    return [
        f"The {m} questions ({', '.join(metrics)} of {', '.join(policies)} against "
        f"{reference}) are one family: Holm's procedure keeps the chance of any false decision "
        f"at most {analysis.alpha:g}, and each interval is at the level its decision was made."
    ]


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


# -- warnings --------------------------------------------------------------------------------------


def warnings(analysis: Analysis) -> list[str]:
    """Everything a reader must know before trusting the numbers."""
    data = analysis.data
    out = list(data.warnings)
    experiment_warnings = data.experiment.get("warnings")
    if isinstance(experiment_warnings, list):
        out.extend(str(w) for w in experiment_warnings)
    out.extend(_meter_warnings(analysis, out))
    out.extend(_run_warnings(analysis))
    out.extend(_left_out_warnings(analysis))
    out.extend(_few_runs_warnings(analysis))
    out.extend(_planning_warnings(analysis.planning))
    out.extend(analysis.margin_problems)
    if analysis.machine is not None:
        out.extend(_machine_warnings(analysis.machine))
    if analysis.stopping is not None and analysis.stopping.problem:
        out.append(analysis.stopping.problem)
    out.extend(_target_warnings(analysis.targets))
    if analysis.blocking is not None:
        out.extend(_host_warnings(analysis.blocking, analysis.alpha))
        out.extend(_interaction_warnings(analysis.blocking))
    out.extend(_drift_warnings(analysis.drift, analysis.alpha))
    out.extend(_outlier_sensitivity_lines(analysis))
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


def _meter_warnings(analysis: Analysis, earlier: list[str]) -> list[str]:
    """A simulated or estimating meter (unless an ``earlier`` warning already says so)."""
    data = analysis.data
    simulated = simulated_used(data)
    if simulated:
        return [
            f"meter {', '.join(simulated)} simulates power, for tests and demos: no energy or "
            "power figure of this report is a measurement"
        ]
    if data.estimated and not any("estimate" in w for w in earlier):
        return [
            "the meter estimated energy instead of measuring it: every energy figure is estimated"
        ]
    return []


def _run_warnings(analysis: Analysis) -> list[str]:
    """Failed and unfinished runs, and the outliers removed (or kept by --no-outliers)."""
    data = analysis.data
    outliers = analysis.outliers
    out: list[str] = []
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
    return out


def _left_out_warnings(analysis: Analysis) -> list[str]:
    """The bad runs and values left out, summarised (each is listed under Runs not used)."""
    data = analysis.data
    out: list[str] = []
    # Failed and unfinished runs and outliers have their own lines; the rest of what is left
    # out is bad data, summarised here and listed one by one under "Runs not used".
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
    return out


def _few_runs_warnings(analysis: Analysis) -> list[str]:
    few = [
        f"{policy} ({group.description.n})"
        for policy, group in analysis.energy.groups.items()
        if group.description.n < 3
    ]
    if not few:
        return []
    return [
        "too few runs for normality tests and reliable comparisons: "
        + ", ".join(few)
        + "; run at least 3 per policy, ideally as many as runs_needed says"
    ]


def _shared_nodes(experiment: dict[str, object]) -> bool:
    """experiment.json says the cluster's jobs did not have their nodes to themselves."""
    config = experiment.get("config")
    slurm = config.get("slurm") if isinstance(config, dict) else None
    return isinstance(slurm, dict) and slurm.get("exclusive") is False


def _ids(run_ids: list[str]) -> str:
    return ", ".join(run_ids[:8]) + (f" and {len(run_ids) - 8} more" if len(run_ids) > 8 else "")


def _host_warnings(blocking: Blocking, alpha: float) -> list[str]:
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


def _interaction_warnings(blocking: Blocking) -> list[str]:
    """A policy whose change in energy differs between hosts: the host-blocked estimate is an
    average over hosts that disagree."""
    out = []
    for c in blocking.comparisons:
        interaction = c.interaction
        if interaction is None or not c.interacts:
            continue
        changes = "; ".join(
            f"{host}: {fmt.signed(change, 1, '%')}"
            for host, change in interaction.change_pct.items()
        )
        out.append(
            f"{c.b} vs {c.a}: the change in energy differs between hosts ({changes}; host × "
            f"policy interaction F({interaction.df_num}, {interaction.df_den}) = "
            f"{fmt.stat(interaction.f)}, {fmt.pvalue(interaction.p)}): the host-blocked "
            f"{fmt.signed(c.test.relative_change_pct, 1, '%')} is an average over hosts that "
            "disagree; read the per-host changes under Hosts"
        )
    return out


def _drift_warnings(drift: Drift | None, alpha: float) -> list[str]:
    """A trend of energy over the run order."""
    if drift is None or not drift.flagged:
        return []
    test = drift.test
    level = f"{100 * (1 - alpha):g}%"
    ci = fmt.NOT_AVAILABLE
    if test.pct_per_run_ci is not None:
        ci = " to ".join(fmt.signed(v, 2, "%") for v in test.pct_per_run_ci)
    total = drift.total_pct
    span = (
        f", {fmt.signed(total, 1, '%')} from run {drift.first} to run {drift.last}"
        if total is not None
        else ""
    )
    return [
        f"energy drifts over the run order: {fmt.signed(test.pct_per_run, 2, '%')} per run "
        f"({level} CI {ci}, {fmt.pvalue(test.p)}"
        f"{span}; OLS of log energy on the run's place in the schedule with one intercept per "
        f"{drift.within}): something changed during the experiment (a machine warming up, "
        "a background job); it widens every policy's spread, and a comparison is fair only "
        "if the policies are spread evenly over the schedule"
    ]


def _p3(p: float | None) -> str:
    """A p-value with three significant figures (0.418), as the sensitivity check compares two."""
    if p is None:
        return fmt.NOT_AVAILABLE
    return f"{p:.3g}" if p >= 1e-3 else fmt.pvalue(p, prefix=False)


_TEST_NAMES = {"equivalence": "TOST", "noninferiority": "non-inferiority"}


def _outlier_sensitivity_lines(analysis: Analysis) -> list[str]:
    """Whether the verdict depends on the outlier rule: the margin questions' p (or, with
    none, the difference questions') with the flagged runs treated the other way."""
    sensitivity = analysis.outlier_sensitivity
    if sensitivity is None or not sensitivity.items:
        return []
    items = sensitivity.items
    shown = [i for i in items if i.kind != "difference"] or items
    several = len(shown) > 1
    parts = []
    for item in shown:
        name = _TEST_NAMES.get(item.kind, f"{item.label} difference test")
        if several:
            name = f"{item.policy} vs {item.reference} {item.label}: {name}"
        now, other = (
            (item.p_removed, item.p_kept) if sensitivity.applied else (item.p_kept, item.p_removed)
        )
        parts.append(f"{name} p = {_p3(other)} instead of {_p3(now)}")
    runs = ", ".join(sensitivity.run_ids)
    n = len(sensitivity.run_ids)
    if sensitivity.applied:
        head = f"Keeping the {n} removed outlier{'s' if n != 1 else ''} ({runs}) gives"
    else:
        head = (
            f"Removing the {n} outlier{'s' if n != 1 else ''} that --no-outliers kept ({runs}) "
            "would give"
        )
    changed = [i for i in items if i.changed]
    if not changed:
        tail = "the verdicts do not change" if len(items) > 1 else "the verdict does not change"
    else:
        moves = "; ".join(
            f"{i.policy} vs {i.reference} {i.label}: {i.outcome_removed} with "
            f"{'it' if n == 1 else 'them'} removed, {i.outcome_kept} with "
            f"{'it' if n == 1 else 'them'} kept"
            for i in changed
        )
        tail = f"the verdict changes ({moves})"
    return [f"{head} {'; '.join(parts)}; {tail}."]


# Importers whose source tool keeps no power samples: a folder of theirs has none by nature.
_TOOLS_WITHOUT_SAMPLES = frozenset({"CodeCarbon"})


def _tool_without_samples(analysis: Analysis) -> str | None:
    imported = analysis.data.experiment.get("import")
    tool = imported.get("tool") if isinstance(imported, dict) else None
    return tool if tool in _TOOLS_WITHOUT_SAMPLES else None


def trace_warnings(trace: PowerTrace, tool_without_samples: str | None = None) -> list[str]:
    """What the mean power trace had to leave out (``tool_without_samples``: an import from a
    tool that records no samples, said once rather than as a missing file per run)."""
    out = [f"power trace skips run {run_id}: {error}" for run_id, error in trace.unreadable.items()]
    missing = trace.missing
    if missing and tool_without_samples is not None:
        out.append(f"{tool_without_samples} records no power samples: there is no power trace")
    elif missing:
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


def _planning_warnings(planning: Planning) -> list[str]:
    """An energy comparison with fewer runs than its smallest effect of interest needs, and
    smallest effects given that are not used."""
    out = list(planning.problems)
    sesoi = planning.sesoi
    for item in planning.items:
        if item.enough is False and sesoi is not None and item.sesoi_pct is not None:
            needed = item.runs_needed_per_policy
            needed_text = f"the {needed}" if needed is not None else "the impractical number"
            c = item.comparison
            out.append(
                f"{c.b} vs {c.a}: {item.runs_per_policy} runs per policy are fewer than "
                f"{needed_text} needed to detect an energy change of "
                f"{item.sesoi_pct:.3g}% (the smallest effect of interest, "
                f"{_SESOI_SOURCE[planning.sesoi_source or 'given']}) with "
                f"{planning.power:.0%} power"
            )
    return out


_SESOI_SOURCE = {
    "given": "given for this report",
    "experiment": "from the experiment's configuration",
    "margin": "energy's margin",
}


def _planning_lines(planning: Planning) -> list[str]:
    """Runs needed, from effects stated in advance: per energy comparison for the smallest
    effect of interest, per margin question for no true difference. Never power from the
    observed effect (it only restates the p-value)."""
    lines = []
    sesoi = planning.sesoi
    level = f"{planning.power:.0%} power, α = {planning.alpha:g}"
    if sesoi is None and planning.items:
        lines.append(
            "Energy: no runs-needed figure is given, because no smallest effect of interest "
            "was stated (and energy has no margin); the observed change is not one. State the "
            "smallest change that matters, e.g. --sesoi energy_j=5% (greenprec report or "
            "compare; [sesoi] in a config file), and this section says how many runs per "
            "policy would detect it."
        )
    for item in planning.items if sesoi is not None else []:
        c = item.comparison
        head = f"{c.b} vs {c.a}, energy"
        if item.runs_needed_per_policy is None:
            reason = next(iter(item.not_computed.values()), "not computed")
            lines.append(f"{head}: runs needed not computed ({reason}).")
            continue
        source = _SESOI_SOURCE[planning.sesoi_source or "given"]
        lines.append(
            f"{head}: to detect a change of ±{item.sesoi_pct:.3g}% (the smallest "
            f"effect of interest, {source}) at the pooled CV of {fmt.num(item.cv_pct, 2)}% "
            f"seen here, about {item.runs_needed_per_policy} runs per policy are needed "
            f"(two-sided t-test, {level}); this experiment has {item.runs_per_policy}."
        )
    for plan in planning.margins:
        label = METRIC_BY_KEY[plan.metric].label if plan.metric in METRIC_BY_KEY else plan.metric
        head = f"{plan.b} vs {plan.a}, {label}"
        kind = plan.margin.margin.kind
        shown = "equivalence within" if kind == "equivalence" else "that it is"
        if plan.runs_needed_per_policy is None:
            lines.append(
                f"{head}: runs needed not computed ({plan.not_computed or 'not computed'})."
            )
            continue
        test = "TOST" if kind == "equivalence" else "non-inferiority test"
        lines.append(
            f"{head}: with no true difference, about {plan.runs_needed_per_policy} runs per "
            f"policy would show {shown} {plan.margin.text} ({test}, {level}, at the spread "
            f"seen here); this experiment has {min(plan.n_a, plan.n_b)}."
        )
    if not planning.items and not planning.margins:
        reason = planning.not_computed.get("comparisons", "nothing to compare")
        lines.append(f"Not computed: {reason}.")
    elif lines:
        lines.append(
            "These plan the next experiment from effects stated in advance, never from the "
            "effect observed: power computed from an observed effect only restates its p-value."
        )
    return lines


def _outlier_lines(info: OutlierInfo) -> list[str]:
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


def _margin_lines(analysis: Analysis) -> list[str]:
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
    one_sided = any(use.margin.kind == "noninferiority" for use in analysis.margins.values())
    lines.append(
        "Failing to show a difference is not evidence of no difference. Equivalence is shown "
        "only when the 1 − 2α′ interval of the difference (90% with one question; α′ is the "
        "level Holm's procedure decided it at) lies inside the margin (two one-sided t-tests, "
        "TOST), and a difference beyond the margin only when the interval lies wholly outside "
        "it"
        + (
            '; non-inferiority ("not worse than") only when the interval clears the margin\'s '
            'bound on the tolerated side, and "worse than" only when it lies wholly beyond it'
            if one_sided
            else ""
        )
        + ". Otherwise the decision is inconclusive; Runs needed says how many runs per policy "
        "would settle it if there were no true difference. A margin in % of the reference mean "
        "is tested on the log ratio of the means."
    )
    return lines


# -- why an adaptive experiment stopped ------------------------------------------------------------


def _margin_text(answer: object, sign: str = "") -> str:
    """The margin as given ("1 pp", "2 % of the reference mean"), with its value in the
    metric's units where that differs; a folder before 0.3 records only the latter."""
    value, unit = (
        finite(getattr(answer, "margin_value", None)),
        getattr(answer, "margin_unit", None),
    )
    own = finite(getattr(answer, "margin", None))
    if value is not None and unit in ("pp", "%"):
        text = f"{sign}{value:g} pp" if unit == "pp" else f"{sign}{value:g} % of the reference mean"
        return text + (f" ({sign}{fmt.num(own)})" if own is not None else "")
    if own is not None:
        return f"{sign}{fmt.num(own)}"
    return f"{sign}{value:g}" if value is not None else "the margin"


def answer_verdict(answer: object) -> str:
    """A recorded answer's decision in words: "different", "equivalent within ±0.01",
    "lower by more than 0.01", "not worse than −0.01", "worse than −0.01"; "open" while not
    settled. Never "different" for an equivalence or non-inferiority question."""
    from greenprec.results.models import AnswerRecord

    assert isinstance(answer, AnswerRecord)
    verdict = answer.verdict
    if not answer.settled or verdict is None:
        return "open"
    if verdict == "equivalent":
        return f"equivalent within {_margin_text(answer, '±')}"
    if verdict == "different" and answer.kind != "difference":
        # Folders before 0.3: the difference test rejected, which is no margin decision.
        return "a difference shown (recorded before greenprec 0.3; not read against the margin)"
    if verdict == "beyond margin":
        estimate = finite(answer.estimate)
        side = "higher" if estimate is not None and estimate > 0 else "lower"
        return f"{side} by more than {_margin_text(answer)}"
    if verdict in ("not worse", "worse"):
        sign = "+" if answer.margin_tolerated == 1 else "−"
        return f"{verdict} than {_margin_text(answer, sign)}"
    return verdict


def _rci(answer: object) -> str:
    from greenprec.results.models import AnswerRecord

    assert isinstance(answer, AnswerRecord)
    low, high, level = finite(answer.ci_low), finite(answer.ci_high), finite(answer.confidence)
    if low is None or high is None:
        return ""
    share = f"{fmt.coverage(level)} " if level is not None else ""
    if answer.scale == "percent":
        return f", {share}repeated CI {fmt.signed(low, 1, '%')} to {fmt.signed(high, 1, '%')}"
    value, own = finite(answer.margin_value), finite(answer.margin)
    if answer.margin_unit == "pp" and value and own:
        per_pp = own / value  # 0.01 for an accuracy recorded as a fraction, 1 in percent
        return (
            f", {share}repeated CI {fmt.signed(low / per_pp, 2, ' pp')} to "
            f"{fmt.signed(high / per_pp, 2, ' pp')}"
        )
    return f", {share}repeated CI {fmt.signed(low, 4)} to {fmt.signed(high, 4)}"


def answer_text(answer: object) -> str:
    """One question's answer at one look, in words: the decision, its p and the nominal level
    it was compared with (for an answer carried from an earlier look: the level it was settled
    at), and its repeated confidence interval."""
    from greenprec.results.models import AnswerRecord

    assert isinstance(answer, AnswerRecord)
    question = f"{answer.metric} {answer.policy} vs {answer.reference} ({answer.kind})"
    p = f", {fmt.pvalue(answer.p)}" if finite(answer.p) is not None else ""
    level = f" at level {answer.level:.3g}" if finite(answer.level) is not None else ""
    if answer.settled:
        at = f" (settled at {answer.settled_at} runs per policy)" if answer.carried else ""
        return f"{question}: settled, {answer_verdict(answer)}{p}{level}{_rci(answer)}{at}"
    return f"{question}: not settled{p}{level}{_rci(answer)}"


def _stopping_lines(stop: Stopping, rows: list[Row]) -> list[str]:
    """The method, each look, how the experiment ended (the rule, the maximum, or failed runs
    short of it), what changed after its last look (runs failed, or run again), the
    intervals' meaning and bias, and the runs stopping early saved (only when the rule
    stopped it). ``rows``: every run of the folder as it is now (runs.csv)."""
    record = stop.record
    if record is None:
        return [stop.problem or "The experiment was adaptive, but its looks are not recorded."]
    questions = len(record.looks[-1].answers) if record.looks else 0
    share = record.looks[-1].alpha_share if record.looks else None
    split = (
        f", {fmt.plural(questions, 'question')} in the family, α' = {share:.3g} each"
        if share is not None and questions
        else ""
    )
    lines = [
        f"Method: {record.method}, α = {record.alpha:g} over all looks{split}; at least "
        f"{record.min_runs} and at most {record.max_runs} runs per policy."
    ]
    lines += [_look_line(look, record) for look in record.looks]
    if record.skipped:
        blocks = ", ".join(str(b) for b in record.skipped)
        lines.append(
            f"No look after block {blocks}: failed runs left a policy short of min_runs, or "
            "added no information."
        )
    if not record.looks:
        lines.append("No look was made.")
    lines += _ending_lines(stop, rows)
    if record.stopped_early:
        lines.append(_savings(stop))
    intervals = any(finite(a.ci_low) is not None for look in record.looks for a in look.answers)
    if intervals:
        lines.append(
            "The intervals are repeated confidence intervals (Jennison & Turnbull 2000, ch. 9), "
            "valid whatever the stopping rule; the decisions are read off them."
        )
    if record.stopped_early:
        lines.append(
            "An estimate from a design that stopped early is biased away from zero (it stopped "
            "because the estimate was large): read the interval, not the point estimate."
        )
    return lines


def _counts(by_policy: dict[str, int], runs_per_policy: int) -> str:
    """The runs in words: 5 runs per policy, or "fp32 4 and mixed 5 runs" when failed runs
    left them unequal."""
    if len(set(by_policy.values())) <= 1:
        return fmt.plural(runs_per_policy, "run") + " per policy"
    return _listed([f"{policy} {n}" for policy, n in by_policy.items()]) + " runs"


def _listed(items: list[str]) -> str:
    return ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]


def _look_line(look: LookRecord, record: SequentialRecord) -> str:
    answers = "; ".join(answer_text(a) for a in look.answers) or "no question answered"
    level = f", nominal level {look.level:.3g}" if finite(look.level) is not None else ""
    failed = f" ({_listed(look.failed)} failed)" if look.failed else ""
    last = look.alpha_spent >= record.alpha and look.information < 1.0
    rest = ", the last planned look, which spent all the α left" if last else ""
    return (
        f"Look after block {look.block}: {_counts(look.runs_by_policy, look.runs_per_policy)}"
        f"{failed}, {100 * look.information:.0f}% of the maximum{rest}, α spent so far "
        f"{look.alpha_spent:.3g}{level}. {answers}."
    )


def _ending_lines(stop: Stopping, rows: list[Row]) -> list[str]:
    """How the experiment ended, from the record and the runs as they are now: stopped by the
    rule, run to its planned maximum, ended short of it with failed runs, or not ended; then
    what changed after the last look."""
    record = stop.record
    assert record is not None
    last = record.looks[-1] if record.looks else None
    failed_now = [str(r["run_id"]) for r in rows if r.get("status") == "failed"]
    used = stop.runs_per_policy
    if record.reason is None:
        done: dict[str, int] = {}
        for row in rows:
            if row.get("status") == "done":
                done[str(row["policy"])] = done.get(str(row["policy"]), 0) + 1
        ended = (
            "The experiment has not stopped yet (no stopping reason recorded: interrupted, or "
            f"still running), with {_counts(done, min(done.values(), default=0))} done of "
            f"the planned maximum of {record.max_runs} runs per policy"
        )
        if failed_now:
            ended += f"; failed so far: {_listed(failed_now)}"
        return [ended + "; resuming it goes on with its looks."]
    maximum = f"the planned maximum of {record.max_runs} runs per policy"
    if record.stopped_early and last is not None:
        head = f"The stopping rule stopped it early, after block {last.block} at {used} runs per "
        head += f"policy of {maximum}"
    elif used is not None and used >= record.max_runs:
        head = f"It ran to {maximum}"
    else:
        failed = last.failed if last is not None and last.failed else failed_now
        head = f"It ended when every planned block had run, short of {maximum}"
        if last is not None:
            head += f" ({_counts(last.runs_by_policy, last.runs_per_policy)} at the last look)"
        head += f": {_listed(failed)} failed" if failed else ": runs failed"
    lines = [f"{head}. {_capital(record.reason)}."]
    if last is not None:
        rerun = [run for run in last.failed if run not in failed_now]
        if rerun:
            lines.append(
                f"After the last look, {_listed(rerun)} {'was' if len(rerun) == 1 else 'were'} "
                "run again and now done: the tables use every done run, but the design's "
                "answers are those of its looks, made before, and are not tested again (its α "
                "is spent)."
            )
    return lines


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _savings(stop: Stopping) -> str:
    """What stopping early saved: the planned runs never made (the blocks after the stop),
    and against the fixed design of the same power for the question that drove the stop; or
    why the latter is not given. Only for an experiment the rule stopped."""
    record = stop.record
    assert record is not None and record.looks
    block = record.looks[-1].block
    policies = fmt.plural(stop.policies, "policy", "policies")
    cut = max(0, record.max_runs - block)
    planned = (
        f"Stopping after block {block} of {record.max_runs} left "
        f"{fmt.plural(cut * stop.policies, 'planned run')} unmade ({cut} per policy × "
        f"{policies})"
    )
    used = stop.runs_per_policy
    fixed, driver = stop.fixed_runs_per_policy, stop.driver
    if fixed is None or used is None or driver is None:
        reason = stop.fixed_not_computed or "the runs per policy at the stop are not recorded"
        return (
            f"{planned}. How many runs it saved against a fixed design of the same power "
            f"cannot be computed: {reason}."
        )
    question = f"{driver.metric} {driver.policy} vs {driver.reference} ({driver.kind})"
    saved = stop.saved_runs or 0
    head = (
        f"{planned}. The question that stopped it was {question}; a fixed design with the same "
        f"power for it needs {fixed} runs per policy"
    )
    if saved > 0:
        return (
            f"{head}: stopping at {used} saved {fmt.plural(saved, 'run')} against it "
            f"({fixed - used} per policy × {policies})."
        )
    return f"{head}: stopping at {used} saved none against it."


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


def _machine_warnings(machine: MachineStates) -> list[str]:
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


def _warmup_line(warmup: Warmup) -> str:
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
    lines = [_warmup_line(w) for w in machine.warmups]
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
                f"{head} {fmt.signed(c.relative_change_pct, 1, '%')} ({ci}{_PRIMARY_LABEL} = "
                f"{fmt.stat(c.t)}, {fmt.pvalue(c.p)}), over the {c.n_a} and {c.n_b} runs that "
                "reached it."
            )
    return lines


def _target_warnings(targets: list[Target]) -> list[str]:
    out = []
    for target in targets:
        if target.reached_by_none:
            out.append(_unreached_target_line(target))
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


def _unreached_target_line(target: Target) -> str:
    """Why no run reached a target, likely, and what to change: "no run reached
    test_accuracy ≥ 0.99: the runs trained 3 epochs (protocol quick) and the best test_accuracy
    any run reached was 0.975 (mixed-003, epoch 3); train longer (--epochs more than 3) or set a
    target the runs reach (e.g. --target test_accuracy=0.975)"."""
    head = f"no run reached {target.name}"
    best = target.best
    if best is None or best.value is None:
        return (
            f"{head}: no run recorded {target.metric} after an epoch, so none could reach it; "
            "the workload must report its test metrics after each epoch (ctx.epoch_end, see "
            f"docs/workloads.md) under the name {target.metric}"
        )
    trained = best.epochs_param if best.epochs_param is not None else best.epochs
    why = []
    if trained is not None:
        preset = f" (protocol {best.protocol})" if best.protocol else ""
        why.append(f"the runs trained {fmt.plural(trained, 'epoch')}{preset}")
    why.append(
        f"the best {target.metric} any run reached was {best.value:.4g} ({best.run_id}, epoch "
        f"{best.epoch})"
    )
    longer = f"--epochs more than {trained}" if trained is not None else "--epochs"
    return (
        f"{head}: {', and '.join(why)}; train longer ({longer}) or set a target the runs "
        f"reach (e.g. --target {target.metric}={best.value:.4g})"
    )
