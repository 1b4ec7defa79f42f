"""The report's content as tables and listings, rendered by markdown.py and html.py.

The tables read the typed :class:`~greenprec.report.analysis.Analysis`; the sentences (verdict,
warnings, planning, outliers) come from :mod:`greenprec.report.prose`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from greenprec import stats
from greenprec.report import formatting as fmt
from greenprec.report.analysis import (
    ACCURACY,
    BLOCKED_TEST,
    ENERGY,
    METRIC_BY_KEY,
    Analysis,
    accuracy_points,
    finite,
    meters_used,
    simulated_used,
)
from greenprec.report.data import ExperimentData
from greenprec.report.decisions import phrase
from greenprec.report.figures import FigureFile
from greenprec.report.prose import Prose

if TYPE_CHECKING:
    # Only the annotation: recommendation.py builds its section from this module's Table.
    from greenprec.report.recommendation import Section

__all__ = [
    "Content",
    "Table",
    "build_content",
    "summary_table",
]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    align_right: frozenset[int] = frozenset()  # column indexes holding numbers


@dataclass
class Content:
    title: str
    subtitle: str
    estimated: bool
    verdict: list[str]
    summary: Table
    summary_note: str
    tests: Table
    effects: Table
    tests_note: str
    groups: Table
    planning: list[str]
    not_used: list[str]
    not_used_values: list[str]
    outliers: list[str]
    environment: list[tuple[str, str]]
    warnings: list[str]
    figures: list[FigureFile]
    not_computed: list[str] = field(default_factory=list)
    # Runs from several hosts only (None and empty otherwise): the per-host table, the
    # host-blocked comparisons beside the unpaired ones, and the runs they leave out.
    hosts: Table | None = None
    hosts_comparisons: Table | None = None
    hosts_note: str = ""
    hosts_left_out: list[str] = field(default_factory=list)
    # Each metric with a margin: the equivalence tests, and what the margins are
    equivalence: Table | None = None
    margins: list[str] = field(default_factory=list)
    # An adaptive experiment: why it stopped, and its looks
    stopping: list[str] = field(default_factory=list)
    looks: Table | None = None
    # Runs that recorded their machine's state: the table, the warm-up and the flags
    machine: Table | None = None
    machine_lines: list[str] = field(default_factory=list)
    # Runs that recorded what else used the machine (report/load.py; set by build.py)
    load: Table | None = None
    load_lines: list[str] = field(default_factory=list)
    # Energy to a target
    targets: Table | None = None
    target_lines: list[str] = field(default_factory=list)
    # A selection (greenprec recommend): its answer, shown first, above the details
    recommendation: Section | None = None


def _label(key: str, estimated: bool) -> str:
    metric = METRIC_BY_KEY.get(key)
    if metric is None:
        return key
    unit = f" ({metric.unit})" if metric.unit else ""
    if key == ACCURACY:
        unit = " (%)"
    est = " estimated" if estimated and metric.energy else ""
    return f"{metric.label}{unit}{est}"


def _metric_value(key: str, value: float | None, scale: str | None) -> float | None:
    value = finite(value)
    return accuracy_points(value, scale) if key == ACCURACY and value is not None else value


def summary_table(analysis: Analysis) -> Table:
    """The study's Table 1: one row per policy, mean ± sd of each metric."""
    estimated = analysis.estimated
    metrics = analysis.metrics
    scale = analysis.accuracy_scale
    keys = [ENERGY, "duration_s", "mean_power_w", ACCURACY]
    headers = [
        "policy",
        "n",
        *[_label(k, estimated) for k in keys],
        "removed outliers",
    ]
    rows = []
    for policy, energy in analysis.energy.groups.items():
        cells = [policy, str(energy.description.n)]
        for key in keys:
            group = metrics[key].groups.get(policy)
            described = group.description if group is not None else None
            digits = 2 if key == ACCURACY else None
            cells.append(
                fmt.mean_sd(
                    _metric_value(key, described.mean if described else None, scale),
                    _metric_value(key, described.sd if described else None, scale),
                    digits,
                )
            )
        cells.append(", ".join(energy.outliers) or "none")
        rows.append(cells)
    return Table(headers, rows, frozenset(range(1, len(headers) - 1)))


def _comparisons(analysis: Analysis) -> list[tuple[str, stats.CompareResult, bool]]:
    return [
        (key, c, len(metric.comparisons) > 1)
        for key, metric in analysis.metrics.items()
        for c in metric.comparisons
    ]


def _tests_table(analysis: Analysis) -> Table:
    """Every policy against the reference, for every metric: the metric's primary test with
    the interval that inverts it, Student's t and Mann–Whitney U beside it (unadjusted; the
    verdict's decisions are adjusted over the family)."""
    estimated = analysis.estimated
    headers = [
        "metric",
        "comparison",
        "change (95% CI)",
        "primary test: t (p)",
        "Student t (p)",
        "robustness: Mann–Whitney U (p)",
    ]
    rows = []
    for key, c, _ in _comparisons(analysis):
        if c.primary_test == "welch_difference":
            change = _difference_change(key, c, analysis.accuracy_scale)
            primary = f"Welch, difference: {_t(c.welch_t, c.primary_p)}"
        else:
            change = fmt.signed(c.relative_change_pct, 1, "%")
            if c.relative_change_ci:
                change += f" ({fmt.percent_ci(c.relative_change_ci)})"
            name = (
                "host-blocked, log ratio" if c.primary_test == BLOCKED_TEST else "Welch, log ratio"
            )
            primary = f"{name}: {_t(c.log_ratio_t, c.primary_p)}"
        rows.append(
            [
                _label(key, estimated),
                f"{c.b} vs {c.a}",
                change,
                primary,
                _t(c.student_t, c.student_p),
                _robustness(c),
            ]
        )
    return Table(headers, rows, frozenset(range(2, 6)))


def _difference_change(key: str, c: stats.CompareResult, scale: str | None) -> str:
    """A difference of means with the Welch interval that inverts the primary test: in
    percentage points for test accuracy (a relative "+1.3%" of an accuracy read as points),
    in the metric's units otherwise."""
    points = key == ACCURACY
    diff = finite(c.difference)
    if diff is None:
        return fmt.NOT_AVAILABLE

    def shown(value: float) -> str:
        if points:
            return fmt.signed(accuracy_points(value, scale), 2)
        return _signed_num(value)

    text = shown(diff) + (" pp" if points else "")
    if c.difference_ci is not None:
        lo, hi = c.difference_ci
        text += f" ({shown(lo)} to {shown(hi)}{' pp' if points else ''})"
    return text


def _robustness(c: stats.CompareResult) -> str:
    """Mann–Whitney U, and whether it could have reached the primary test's verdict at all."""
    text = _t(c.mannwhitney_u, c.mannwhitney_p)
    floor = finite(c.mannwhitney_min_p)
    if finite(c.mannwhitney_p) is not None and floor is not None and floor >= c.alpha:
        text += f"; cannot go below p = {floor:.2g} with {c.n_a} + {c.n_b} runs"
    return text


def _effects_table(analysis: Analysis) -> Table:
    """Means and standardised effect sizes (Cohen's d with its CI, Hedges' g)."""
    estimated = analysis.estimated
    scale = analysis.accuracy_scale
    headers = [
        "metric",
        "comparison",
        "reference mean",
        "mean",
        "difference",
        "Cohen's d (95% CI)",
        "Hedges' g (95% CI)",
    ]
    rows = []
    for key, c, _ in _comparisons(analysis):
        mean_a = _metric_value(key, c.mean_a, scale)
        mean_b = _metric_value(key, c.mean_b, scale)
        diff = None if mean_a is None or mean_b is None else mean_b - mean_a
        digits = 2 if key == ACCURACY else None
        rows.append(
            [
                _label(key, estimated),
                f"{c.b} vs {c.a}",
                fmt.num(mean_a, digits),
                fmt.num(mean_b, digits),
                fmt.signed(diff, 2, " pp") if key == ACCURACY else _signed_num(diff),
                _with_ci(c.cohens_d, c.cohens_d_ci),
                _with_ci(c.hedges_g, c.hedges_g_ci),
            ]
        )
    return Table(headers, rows, frozenset(range(2, 7)))


def _signed_num(value: float | None) -> str:
    if value is None:
        return fmt.NOT_AVAILABLE
    text = fmt.num(abs(value))
    return ("+" if value >= 0 else fmt.MINUS) + text


def _with_ci(value: float | None, ci: tuple[float, float] | None) -> str:
    text = fmt.signed(value, 2)
    if ci:
        text += f" ({fmt.signed(ci[0], 2)} to {fmt.signed(ci[1], 2)})"
    return text


def _t(statistic: float | None, p: float | None) -> str:
    if finite(statistic) is None:
        return fmt.NOT_AVAILABLE
    return f"{fmt.stat(statistic)} ({fmt.pvalue(p)})"


def _hosts_table(analysis: Analysis) -> Table | None:
    """Runs from several hosts: per host and policy, the runs used, their mean energy and
    power, and the change of mean energy against the reference on the same host."""
    blocking = analysis.blocking
    if blocking is None:
        return None
    estimated = analysis.estimated
    headers = [
        "host",
        "hardware",
        "policy",
        "n",
        f"mean {_label(ENERGY, estimated)}",
        f"mean {_label('mean_power_w', estimated).removeprefix('mean ')}",
        f"energy change vs {analysis.reference or 'reference'} (same host)",
    ]
    rows = []
    for host in blocking.hosts:
        for policy, p in host.policies.items():
            rows.append(
                [
                    host.host,
                    host.hardware,
                    policy,
                    str(p.n),
                    fmt.num(p.mean_energy_j),
                    fmt.num(p.mean_power_w),
                    "reference"
                    if policy == analysis.reference
                    else fmt.signed(p.change_vs_reference_pct, 1, "%"),
                ]
            )
    return Table(headers, rows, frozenset(range(3, 7)))


def _hosts_comparisons_table(analysis: Analysis) -> Table | None:
    """Each energy comparison within hosts (the primary test) beside the unpaired one."""
    blocking = analysis.blocking
    if blocking is None:
        return None
    level = f"{100 * (1 - analysis.alpha):g}%"
    headers = [
        "comparison",
        "hosts used",
        "runs used",
        f"within hosts: change ({level} CI)",
        "host-blocked t (df; p)",
        "variance",
        "host × policy interaction",
        f"unpaired, ignores hosts: change ({level} CI)",
        "unpaired: Welch t, log ratio (p)",
        "runs left out",
    ]
    rows = []
    for c in blocking.comparisons:
        test, unpaired = c.test, c.unpaired
        blocked_change = fmt.signed(test.relative_change_pct, 1, "%")
        if test.relative_change_ci_pct:
            blocked_change += f" ({fmt.percent_ci(test.relative_change_ci_pct)})"
        t_text = fmt.NOT_AVAILABLE
        if finite(test.t) is not None and test.df is not None:
            t_text = f"{fmt.stat(test.t)} ({test.df:.3g}; {fmt.pvalue(test.p)})"
        variance = _VARIANCE_WORDS.get(test.variance or "", fmt.NOT_AVAILABLE)
        interaction = fmt.NOT_AVAILABLE
        if c.interaction is not None and c.interaction.p is not None:
            interaction = (
                f"F({c.interaction.df_num}, {c.interaction.df_den}) = "
                f"{fmt.stat(c.interaction.f)} ({fmt.pvalue(c.interaction.p)})"
            )
        unpaired_change = fmt.signed(unpaired.relative_change_pct, 1, "%")
        if unpaired.relative_change_ci:
            unpaired_change += f" ({fmt.percent_ci(unpaired.relative_change_ci)})"
        rows.append(
            [
                f"{c.b} vs {c.a}",
                str(test.n_blocks),
                str(test.n_a + test.n_b),
                blocked_change,
                t_text,
                variance,
                interaction,
                unpaired_change,
                _t(unpaired.log_ratio_t, unpaired.log_ratio_p),
                str(len(c.left_out)),
            ]
        )
    return Table(headers, rows, frozenset({1, 2, 3, 4, 7, 8, 9}))


# How the host-blocked standard error was estimated (stats.BlockedLogRatio.variance).
_VARIANCE_WORDS = {
    "per_policy": "per policy (Welch–Satterthwaite df)",
    "pooled": "pooled (a policy has one run per host)",
}


def _hosts_left_out_lines(analysis: Analysis) -> list[str]:
    """Every run a host-blocked comparison leaves out, with its host and why."""
    blocking = analysis.blocking
    if blocking is None:
        return []
    return [
        f"{run.b} vs {run.a}: run {run.run_id} ({run.policy}): {run.reason}"
        for run in blocking.left_out
    ]


def _equivalence_table(analysis: Analysis) -> Table | None:
    """Every question with a margin: the margin, the difference with the interval its decision
    was made at (Holm-adjusted over the family), the test's p (raw and adjusted) and the
    decision."""
    decisions = [d for d in analysis.family.decisions if d.question.kind != "difference"]
    if not decisions:
        return None
    headers = [
        "metric",
        "comparison",
        "margin",
        "difference (CI)",
        "test (p; adjusted p)",
        "decision",
    ]
    rows = []
    for decision in decisions:
        q = decision.question
        item = analysis.equivalence_of(q.metric, q.policy)
        difference = fmt.in_unit(decision.shown_estimate(), q.unit)
        interval = decision.shown_interval()
        coverage = decision.interval_coverage
        if interval is not None and coverage is not None:
            lo, hi = (fmt.in_unit(v, q.unit) for v in interval)
            difference += f" ({fmt.coverage(coverage)} CI {lo} to {hi})"
        default = item is not None and item.margin.source == "default"
        p = fmt.pvalue(decision.p, prefix=False)
        if decision.p_adjusted is not None and analysis.family.size > 1:
            p += f"; {fmt.pvalue(decision.p_adjusted, prefix=False)}"
        rows.append(
            [
                _label(q.metric, analysis.estimated),
                f"{q.policy} vs {q.reference}",
                (q.margin_text or "") + (" (default)" if default else ""),
                difference,
                f"{q.test} ({p})",
                phrase(decision),
            ]
        )
    return Table(headers, rows, frozenset({3, 4}))


def _looks_table(analysis: Analysis) -> Table | None:
    """An adaptive experiment's looks: runs per policy, alpha spent, the nominal level of a
    difference question, and each question's answer (a carried answer with the level and
    interval it was settled at)."""
    from greenprec.report.prose import answer_text

    stop = analysis.stopping
    if stop is None or stop.record is None or not stop.record.looks:
        return None
    headers = ["block", "runs per policy", "information", "α spent", "nominal level", "answers"]
    rows = [
        [
            str(look.block),
            str(look.runs_per_policy),
            f"{100 * look.information:.0f}%",
            f"{look.alpha_spent:.3g}",
            f"{look.level:.3g}" if look.level is not None else "not recorded",
            "; ".join(answer_text(a) for a in look.answers) or "none",
        ]
        for look in stop.record.looks
    ]
    return Table(headers, rows, frozenset({0, 1, 2, 3, 4}))


def _machine_table(analysis: Analysis) -> Table | None:
    """Per run: the machine's state as it started, and the idle power just before it."""
    machine = analysis.machine
    if machine is None or not machine.runs:
        return None
    headers = [
        "run",
        "policy",
        "CPU temperature (°C)",
        "CPU frequency (MHz)",
        "GPU temperature (°C)",
        "GPU SM clock (MHz)",
        "GPU power limit (W)",
        "GPU throttle reasons",
        "idle power before the run (W)",
    ]
    flagged = {flag.run_id for flag in machine.flags}
    rows = []
    for run in machine.runs:
        name = (
            run.run_id
            + ("" if run.used else " (outlier)")
            + (" ⚠" if run.run_id in flagged else "")
        )
        reasons = ", ".join(run.start.gpu_throttle_reasons) if run.start else ""
        rows.append(
            [
                name,
                run.policy,
                fmt.num(run.value("cpu_temp_c"), 1),
                fmt.num(run.value("cpu_freq_mhz"), 0),
                fmt.num(run.value("gpu_temp_c"), 1),
                fmt.num(run.value("gpu_sm_clock_mhz"), 0),
                fmt.num(run.value("gpu_power_limit_w"), 0),
                reasons or "none",
                fmt.num(run.idle_power_w, 1),
            ]
        )
    return Table(headers, rows, frozenset({2, 3, 4, 5, 6, 8}))


def _targets_table(analysis: Analysis) -> Table | None:
    """Per target and policy: runs that reached it, mean energy and epoch to it."""
    if not analysis.targets:
        return None
    headers = [
        "target",
        "policy",
        "reached",
        "mean energy to target (J)" + (" estimated" if analysis.estimated else ""),
        "mean epoch",
        "not reached",
    ]
    rows = []
    for target in analysis.targets:
        for policy, item in target.policies.items():
            rows.append(
                [
                    target.name,
                    policy,
                    f"{len(item.reached)} of {item.runs}",
                    fmt.mean_sd(
                        item.energy.mean if item.energy else None,
                        item.energy.sd if item.energy else None,
                    ),
                    fmt.num(item.mean_epoch, 2),
                    ", ".join(item.not_reached) or "none",
                ]
            )
    return Table(headers, rows, frozenset({2, 3, 4}))


def _groups_table(analysis: Analysis) -> Table:
    """Per metric and policy: spread and normality (a description; they choose no test)."""
    estimated = analysis.estimated
    scale = analysis.accuracy_scale
    headers = ["metric", "policy", "n", "mean ± sd", "median", "CV %", "Shapiro W", "Shapiro p"]
    rows = []
    for key, metric in analysis.metrics.items():
        for policy, g in metric.groups.items():
            d = g.description
            rows.append(
                [
                    _label(key, estimated),
                    policy,
                    str(d.n),
                    fmt.mean_sd(_metric_value(key, d.mean, scale), _metric_value(key, d.sd, scale)),
                    fmt.num(_metric_value(key, d.median, scale)),
                    fmt.num(d.cv_pct, 2),
                    fmt.num(g.normality.w, 3),
                    fmt.pvalue(g.normality.p, prefix=False),
                ]
            )
    return Table(headers, rows, frozenset(range(2, 8)))


def _not_used_lines(analysis: Analysis) -> list[str]:
    """Every row of runs.csv the analysis does not use: line, run id and reason."""
    rows = [e for e in analysis.excluded if e.column is None]
    if not rows:
        return []
    lines = [f"{fmt.plural(len(rows), 'row')} of {analysis.runs.total} in runs.csv not used:"]
    for e in rows:
        policy = f" ({e.policy})" if e.policy else ""
        lines.append(f"{e.place}, run {e.run_id}{policy}: {e.reason}")
    return lines


def _not_used_value_lines(analysis: Analysis) -> list[str]:
    """Single values of runs.csv left out of a used run (or of a refused column)."""
    values = [e for e in analysis.excluded if e.column is not None]
    return [f"{e.place}, run {e.run_id}, {e.column}: {e.reason}" for e in values]


def _environment_lines(data: ExperimentData) -> list[tuple[str, str]]:
    """The environment section: where the results are, the meter, the configuration, the
    hardware, precision support and software versions, as (name, value) pairs."""
    experiment = data.experiment
    config = _section(experiment, "config")
    host = _section(experiment, "host")
    versions = _section(experiment, "versions")
    out: list[tuple[str, str]] = [("results folder", str(data.path))]
    source = experiment.get("source") or config.get("source")
    out.append(("source", str(source) if source else "greenprec compare"))
    out.extend(_meter_lines(data))
    out.extend(_config_lines(config))
    out.extend(_host_lines(host, imported=bool(source)))
    out.extend(_precision_support_lines(experiment.get("precision_support")))
    software = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    if software:
        out.append(("software", software))
    for key, name in (("created_at", "created"), ("status", "status")):
        if experiment.get(key):
            out.append((name, str(experiment[key])))
    return out


def _section(experiment: Mapping[str, object], key: str) -> dict[str, object]:
    """One table of experiment.json (config, host, versions); empty where it is not one."""
    value = experiment.get(key)
    return value if isinstance(value, dict) else {}


def _meter_lines(data: ExperimentData) -> list[tuple[str, str]]:
    """The meter, whether it measured, estimated or simulated, and the domains counted."""
    used = meters_used(data)
    simulated = simulated_used(data)
    if simulated:
        # The mock makes its power up: calling its figures "measured" misled readers.
        by = "" if simulated == used else f" by {', '.join(simulated)}"
        kind = f"SIMULATED{by} (not measured)"
    elif data.estimated:
        kind = "ESTIMATED (not measured)"
    else:
        kind = "measured"
    out = [("meter", f"{', '.join(used) or 'unknown'} — {kind}")]
    counted = data.counted_domains
    if counted:
        out.append(("counted domains", f"{', '.join(counted)} ({data.counted_source})"))
    return out


def _config_lines(config: Mapping[str, object]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, name in (
        ("workload", "workload"),
        ("runs", "runs per policy (configured)"),
        ("seed", "seed"),
        ("warmup_s", "warm-up (s)"),
        ("cooldown_s", "cool-down (s)"),
        ("baseline_s", "idle baseline (s)"),
        ("interval_s", "sampling interval (s)"),
        ("isolation", "isolation"),
    ):
        value = config.get(key)
        if value not in (None, ""):
            out.append((name, f"{value:.4g}" if isinstance(value, float) else str(value)))
    params = config.get("params")
    if isinstance(params, dict) and params:
        out.append(("workload parameters", ", ".join(f"{k}={v}" for k, v in params.items())))
    return out


def _host_lines(host: Mapping[str, object], *, imported: bool) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, name in (
        ("cpu_model", "CPU"),
        ("logical_cpus", "logical CPUs"),
        ("memory_gib", "memory (GiB)"),
        ("os", "OS"),
        ("hostname", "host"),
    ):
        if host.get(key) not in (None, ""):
            out.append((name, str(host[key])))
    gpus = host.get("gpus")
    if isinstance(gpus, list) and gpus:
        names = [str(g.get("name", g)) if isinstance(g, dict) else str(g) for g in gpus]
        out.append(("GPUs", ", ".join(names)))
    elif "gpus" in host:
        out.append(("GPUs", "none found"))
    if not host:
        out.append(
            ("hardware", "not recorded (imported files do not say)" if imported else "not recorded")
        )
    return out


def _precision_support_lines(support: object) -> list[tuple[str, str]]:
    """Whether the device runs float16 and bfloat16 natively, as measured before the runs."""
    if not (isinstance(support, dict) and support.get("device")):
        return []
    verdicts = []
    for key, label in (("fp16", "float16"), ("bf16", "bfloat16")):
        item = support.get(key)
        if isinstance(item, dict):
            state = "native" if item.get("native") else "EMULATED"
            verdicts.append(f"{label} {state} ({item.get('reason', '')})")
    return [
        (
            "precision support",
            f"{support['device']} {support.get('name', '')}: " + "; ".join(verdicts),
        )
    ]


def _not_computed_lines(analysis: Analysis, skipped_figures: Mapping[str, str]) -> list[str]:
    """Every "not computed" reason, fields with the same reason merged on one line."""
    lines: list[str] = []
    for key, metric in analysis.metrics.items():
        for policy, group in metric.groups.items():
            lines.extend(_merge(f"{key}, {policy}", group.not_computed))
        lines.extend(_merge(key, metric.not_computed))
        for c in metric.comparisons:
            lines.extend(_merge(f"{key}, {c.b} vs {c.a}", c.not_computed))
    for name, reason in skipped_figures.items():
        lines.append(f"figure {name}: {reason}")
    return lines


def _merge(where: str, missing: Mapping[str, str]) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for name, reason in missing.items():
        by_reason.setdefault(str(reason), []).append(name)
    return [f"{where}: {', '.join(names)} — {reason}" for reason, names in by_reason.items()]


def build_content(
    analysis: Analysis,
    prose: Prose,
    figures: Sequence[FigureFile],
    skipped_figures: Mapping[str, str],
) -> Content:
    """The report's tables, sentences and listings, for markdown.py and html.py."""
    data = analysis.data
    estimated = analysis.estimated
    policies = ", ".join(data.policies) or "no policies"
    subtitle = (
        f"{policies}; reference {analysis.reference or '—'}; "
        f"{analysis.runs.used} of {analysis.runs.total} runs used"
    )
    if simulated_used(data):
        subtitle += "; energy SIMULATED, not measured"
    elif estimated:
        subtitle += "; energy ESTIMATED, not measured"
    summary_note = "Mean ± SD over the runs used (finished, outliers removed)."
    tests_note = (
        "Signed statistics are policy − reference: negative means less. Each metric's primary "
        "test is fixed before the data by its scale: Welch's t on the log ratio of the means "
        "for energy, duration and power (the change CI inverts it: delta-method SE, "
        "Welch–Satterthwaite df), Welch's t on the difference for test accuracy (in percentage "
        "points, pp) and loss (the difference CI inverts it); the p-value is below "
        f"{analysis.alpha:g} exactly when the CI excludes 0. These p-values and CIs are "
        "unadjusted, one metric at a time; the verdict's decisions are adjusted over the "
        "family of questions and show their own intervals. Mann–Whitney U is a robustness "
        "check, not the verdict."
    )
    hosts_note = ""
    if analysis.blocking is not None:
        n_hosts = len(analysis.blocking.hosts)
        tests_note += (
            f" The runs came from {n_hosts} hosts: for energy the primary test is the "
            "host-blocked one (OLS of log energy on the policy with one fixed effect per host), "
            "and its change and CI are within hosts; the Welch, Student and Mann–Whitney "
            "columns and the effect sizes are unpaired and ignore the hosts."
        )
        hosts_note = (
            f"The runs came from {n_hosts} hosts. Each host is a block: energy is compared "
            "within hosts (OLS of log energy on the policy with one fixed effect per host, "
            "on the hosts that ran both policies), so a host that draws more power than "
            "another does not count as an effect of the policy. The unpaired comparison "
            "ignores the hosts and is confounded by them when the policies are spread "
            "unevenly. Means per host are over the runs used."
        )
    return Content(
        title=f"greenprec report: {data.path.name}",
        subtitle=subtitle,
        estimated=estimated,
        verdict=list(prose.verdict),
        summary=summary_table(analysis),
        summary_note=summary_note,
        tests=_tests_table(analysis),
        effects=_effects_table(analysis),
        tests_note=tests_note,
        groups=_groups_table(analysis),
        planning=list(prose.planning),
        not_used=_not_used_lines(analysis),
        not_used_values=_not_used_value_lines(analysis),
        outliers=list(prose.outliers),
        environment=_environment_lines(data),
        warnings=list(prose.warnings),
        figures=list(figures),
        not_computed=_not_computed_lines(analysis, skipped_figures),
        hosts=_hosts_table(analysis),
        hosts_comparisons=_hosts_comparisons_table(analysis),
        hosts_note=hosts_note,
        hosts_left_out=_hosts_left_out_lines(analysis),
        equivalence=_equivalence_table(analysis),
        margins=list(prose.margins),
        stopping=list(prose.stopping),
        looks=_looks_table(analysis),
        machine=_machine_table(analysis),
        machine_lines=list(prose.machine),
        targets=_targets_table(analysis),
        target_lines=list(prose.targets),
    )
