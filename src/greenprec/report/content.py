"""The report's content as plain tables and sentences, rendered by markdown.py and html.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from greenprec.report import formatting as fmt
from greenprec.report.analysis import ACCURACY, ENERGY, METRIC_BY_KEY, accuracy_points
from greenprec.report.data import ExperimentData
from greenprec.report.figures import FigureFile


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


def _label(key: str, estimated: bool) -> str:
    metric = METRIC_BY_KEY.get(key)
    if metric is None:
        return key
    unit = f" ({metric.unit})" if metric.unit else ""
    if key == ACCURACY:
        unit = " (%)"
    est = " estimated" if estimated and metric.energy else ""
    return f"{metric.label}{unit}{est}"


def _metric_value(key: str, value: Any, scale: str | None) -> Any:
    return accuracy_points(value, scale) if key == ACCURACY and value is not None else value


def summary_table(result: dict[str, Any]) -> Table:
    """The study's Table 1: one row per policy, mean ± sd of each metric."""
    estimated = bool(result["estimated"])
    metrics = result["metrics"]
    scale = result["accuracy_scale"]
    keys = [ENERGY, "duration_s", "mean_power_w", ACCURACY]
    headers = [
        "policy",
        "n",
        *[_label(k, estimated) for k in keys],
        "J per accuracy point" + (" estimated" if estimated else ""),
        "removed outliers",
    ]
    rows = []
    for policy, energy in metrics[ENERGY]["groups"].items():
        cells = [policy, str(energy["n"])]
        for key in keys:
            group = metrics[key]["groups"].get(policy, {})
            digits = 2 if key == ACCURACY else None
            cells.append(
                fmt.mean_sd(
                    _metric_value(key, group.get("mean"), scale),
                    _metric_value(key, group.get("sd"), scale),
                    digits,
                )
            )
        cells.append(fmt.num(result["energy_per_accuracy_point_j"].get(policy)))
        cells.append(", ".join(energy["outliers"]) or "none")
        rows.append(cells)
    return Table(headers, rows, frozenset(range(1, len(headers) - 1)))


def _comparisons(result: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    return [
        (key, c, len(metric["comparisons"]) > 1)
        for key, metric in result["metrics"].items()
        for c in metric["comparisons"]
    ]


def tests_table(result: dict[str, Any]) -> Table:
    """Every policy against the baseline, for every metric: the three tests and the primary."""
    estimated = bool(result["estimated"])
    headers = [
        "metric",
        "comparison",
        "change (95% CI)",
        "primary: Welch t, log ratio (p)",
        "Welch t (p)",
        "Student t (p)",
        "robustness: Mann–Whitney U (p)",
    ]
    rows = []
    for key, c, several in _comparisons(result):
        change = fmt.signed(c["relative_change_pct"], 1, "%")
        if c["relative_change_ci"]:
            change += f" ({fmt.percent_ci(c['relative_change_ci'])})"
        primary = _t(c["log_ratio_t"], c["primary_p"])
        if several and c.get("holm_p") is not None:
            primary += f", Holm {fmt.pvalue(c['holm_p'], prefix=False)}"
        rows.append(
            [
                _label(key, estimated),
                f"{c['b']} vs {c['a']}",
                change,
                primary,
                _t(c["welch_t"], c["welch_p"]),
                _t(c["student_t"], c["student_p"]),
                _robustness(c),
            ]
        )
    return Table(headers, rows, frozenset(range(2, 7)))


def _robustness(c: dict[str, Any]) -> str:
    """Mann–Whitney U, and whether it could have reached the primary test's verdict at all."""
    text = _t(c["mannwhitney_u"], c["mannwhitney_p"])
    floor = c.get("mannwhitney_min_p")
    if c["mannwhitney_p"] is not None and floor is not None and floor >= c["alpha"]:
        text += f"; cannot go below p = {floor:.2g} with {c['n_a']} + {c['n_b']} runs"
    return text


def effects_table(result: dict[str, Any]) -> Table:
    """Means and standardised effect sizes (Cohen's d with its CI, Hedges' g)."""
    estimated = bool(result["estimated"])
    scale = result["accuracy_scale"]
    headers = [
        "metric",
        "comparison",
        "baseline mean",
        "mean",
        "difference",
        "Cohen's d (95% CI)",
        "Hedges' g (95% CI)",
    ]
    rows = []
    for key, c, _ in _comparisons(result):
        mean_a = _metric_value(key, c["mean_a"], scale)
        mean_b = _metric_value(key, c["mean_b"], scale)
        diff = None if mean_a is None or mean_b is None else mean_b - mean_a
        digits = 2 if key == ACCURACY else None
        rows.append(
            [
                _label(key, estimated),
                f"{c['b']} vs {c['a']}",
                fmt.num(mean_a, digits),
                fmt.num(mean_b, digits),
                fmt.signed(diff, 2) if digits else _signed_num(diff),
                _with_ci(c["cohens_d"], c["cohens_d_ci"]),
                _with_ci(c["hedges_g"], c["hedges_g_ci"]),
            ]
        )
    return Table(headers, rows, frozenset(range(2, 7)))


def _signed_num(value: float | None) -> str:
    if value is None:
        return fmt.NOT_AVAILABLE
    text = fmt.num(abs(value))
    return ("+" if value >= 0 else fmt.MINUS) + text


def _with_ci(value: Any, ci: Any) -> str:
    text = fmt.signed(value, 2)
    if ci:
        text += f" ({fmt.signed(ci[0], 2)} to {fmt.signed(ci[1], 2)})"
    return text


def _t(statistic: Any, p: Any) -> str:
    if statistic is None:
        return fmt.NOT_AVAILABLE
    return f"{fmt.stat(statistic)} ({fmt.pvalue(p)})"


def groups_table(result: dict[str, Any]) -> Table:
    """Per metric and policy: spread and normality (a description; they choose no test)."""
    estimated = bool(result["estimated"])
    scale = result["accuracy_scale"]
    headers = ["metric", "policy", "n", "mean ± sd", "median", "CV %", "Shapiro W", "Shapiro p"]
    rows = []
    for key, metric in result["metrics"].items():
        for policy, g in metric["groups"].items():
            rows.append(
                [
                    _label(key, estimated),
                    policy,
                    str(g["n"]),
                    fmt.mean_sd(
                        _metric_value(key, g["mean"], scale), _metric_value(key, g["sd"], scale)
                    ),
                    fmt.num(_metric_value(key, g["median"], scale)),
                    fmt.num(g["cv_pct"], 2),
                    fmt.num(g["shapiro_w"], 3),
                    fmt.pvalue(g["shapiro_p"], prefix=False),
                ]
            )
    return Table(headers, rows, frozenset(range(2, 8)))


def planning_lines(result: dict[str, Any]) -> list[str]:
    planning = result["runs_needed"]
    lines = []
    for item in planning["comparisons"]:
        head = f"{item['b']} vs {item['a']}"
        if item["runs_needed_per_policy"] is None and item["achieved_power"] is None:
            reason = next(iter(item["not_computed"].values()), "not computed")
            lines.append(f"{head}: not computed ({reason}).")
            continue
        n = min(item["n_a"], item["n_b"])
        power = item["achieved_power"]
        text = (
            f"{head}: with a pooled CV of {fmt.num(item['cv_pct'], 2)}% and the observed change "
            f"of {fmt.signed(item['relative_change_pct'], 1, '%')}, {n} runs per policy gave "
            f"{_power_text(power)} power "
            f"(two-sided t-test, α = {planning['alpha']:g}). "
        )
        needed = item["runs_needed_per_policy"]
        if needed is None:
            text += (
                f"No practical number of runs reaches {planning['power']:.0%} power "
                f"({item['not_computed'].get('runs_needed_per_policy', '')})."
            )
        elif item["enough"]:
            text += (
                f"{needed} runs per policy would have sufficed for {planning['power']:.0%} "
                f"power: the experiment had enough."
            )
        else:
            text += (
                f"{needed} runs per policy are needed for {planning['power']:.0%} power: "
                "the experiment had too few."
            )
        lines.append(text)
    if not planning["comparisons"]:
        reason = planning["not_computed"].get("comparisons", "nothing to compare")
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


def outlier_lines(result: dict[str, Any]) -> list[str]:
    info = result["outliers"]
    lines = [f"Rule: {info['rule']}, applied once, as in the study."]
    if info["applied"]:
        if info["removed"]:
            for entry in info["removed"]:
                lines.append(
                    f"Removed run {entry['run_id']} ({entry['policy']}): energy "
                    f"{fmt.num(entry['energy_j'])} J, z = {fmt.stat(entry['z'])}. It is left "
                    "out of every metric."
                )
        else:
            lines.append("No run was removed.")
    else:
        lines.append("Outlier removal is off (--no-outliers): every finished run is used.")
        for entry in info["flagged"]:
            lines.append(
                f"The rule would have removed run {entry['run_id']} ({entry['policy']}), "
                f"z = {fmt.stat(entry['z'])}."
            )
    return lines


def not_used_lines(result: dict[str, Any]) -> list[str]:
    """Every row of runs.csv the analysis does not use: line, run id and reason."""
    rows = [e for e in result["excluded_runs"] if e["column"] is None]
    if not rows:
        return []
    total = result["runs"]["total"]
    lines = [f"{fmt.plural(len(rows), 'row')} of {total} in runs.csv not used:"]
    for e in rows:
        policy = f" ({e['policy']})" if e.get("policy") else ""
        lines.append(f"{_place(e)}, run {e['run_id']}{policy}: {e['reason']}")
    return lines


def _place(entry: dict[str, Any]) -> str:
    """Where an unused run's record is: its runs.csv line, or its own run file."""
    where = entry.get("where") or "runs.csv"
    return f"line {entry['line']}" if where == "runs.csv" else str(where)


def not_used_value_lines(result: dict[str, Any]) -> list[str]:
    """Single values of runs.csv left out of a used run (or of a refused column)."""
    values = [e for e in result["excluded_runs"] if e["column"] is not None]
    return [f"{_place(e)}, run {e['run_id']}, {e['column']}: {e['reason']}" for e in values]


def environment_lines(data: ExperimentData, result: dict[str, Any]) -> list[tuple[str, str]]:
    experiment = data.experiment
    config = experiment.get("config") if isinstance(experiment.get("config"), dict) else {}
    assert isinstance(config, dict)
    meters = experiment.get("meters") if isinstance(experiment.get("meters"), dict) else {}
    assert isinstance(meters, dict)
    host = experiment.get("host") if isinstance(experiment.get("host"), dict) else {}
    assert isinstance(host, dict)
    versions = experiment.get("versions") if isinstance(experiment.get("versions"), dict) else {}
    assert isinstance(versions, dict)
    out: list[tuple[str, str]] = [("results folder", str(data.path))]
    source = experiment.get("source") or config.get("source")
    out.append(("source", str(source) if source else "greenprec compare"))
    used = meters.get("used") or sorted({str(r.get("meter")) for r in data.done if r.get("meter")})
    kind = "ESTIMATED (not measured)" if data.estimated else "measured"
    out.append(("meter", f"{', '.join(str(m) for m in used) or 'unknown'} — {kind}"))
    counted = result.get("counted_domains")
    if counted:
        out.append(
            ("counted domains", f"{', '.join(counted)} ({result['counted_domains_source']})")
        )
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
    if config.get("params"):
        out.append(
            ("workload parameters", ", ".join(f"{k}={v}" for k, v in config["params"].items()))
        )
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
            ("hardware", "not recorded (imported files do not say)" if source else "not recorded")
        )
    support = experiment.get("precision_support")
    if isinstance(support, dict) and support.get("device"):
        verdicts = []
        for key, label in (("fp16", "float16"), ("bf16", "bfloat16")):
            item = support.get(key)
            if isinstance(item, dict):
                state = "native" if item.get("native") else "EMULATED"
                verdicts.append(f"{label} {state} ({item.get('reason', '')})")
        out.append(
            (
                "precision support",
                f"{support['device']} {support.get('name', '')}: " + "; ".join(verdicts),
            )
        )
    software = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    if software:
        out.append(("software", software))
    for key, name in (("created_at", "created"), ("status", "status")):
        if experiment.get(key):
            out.append((name, str(experiment[key])))
    return out


def not_computed_lines(result: dict[str, Any], skipped_figures: dict[str, str]) -> list[str]:
    """Every "not computed" reason, fields with the same reason merged on one line."""
    lines: list[str] = []
    for key, metric in result["metrics"].items():
        for policy, group in metric["groups"].items():
            lines.extend(_merge(f"{key}, {policy}", group.get("not_computed", {})))
        lines.extend(_merge(key, metric.get("not_computed", {})))
        for c in metric["comparisons"]:
            lines.extend(_merge(f"{key}, {c['b']} vs {c['a']}", c.get("not_computed", {})))
    for policy, reason in result["not_computed"].get("energy_per_accuracy_point_j", {}).items():
        lines.append(f"J per accuracy point, {policy}: {reason}")
    for name, reason in skipped_figures.items():
        lines.append(f"figure {name}: {reason}")
    return lines


def _merge(where: str, missing: dict[str, Any]) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for name, reason in missing.items():
        by_reason.setdefault(str(reason), []).append(name)
    return [f"{where}: {', '.join(names)} — {reason}" for reason, names in by_reason.items()]


def build_content(
    data: ExperimentData,
    result: dict[str, Any],
    figures: Sequence[FigureFile],
    skipped_figures: dict[str, str],
) -> Content:
    estimated = bool(result["estimated"])
    policies = ", ".join(result["policies"]) or "no policies"
    subtitle = (
        f"{policies}; baseline {result['baseline'] or '—'}; "
        f"{result['runs']['used']} of {result['runs']['total']} runs used"
    )
    if estimated:
        subtitle += "; energy ESTIMATED, not measured"
    summary_note = (
        "Mean ± SD over the runs used (finished, outliers removed). J per accuracy point is mean "
        "energy over mean test accuracy in percentage points."
    )
    tests_note = (
        "Signed statistics are policy − baseline: negative means less. The primary test, fixed "
        "before the data, is Welch's t on the log ratio of the means; the change CI inverts "
        "that same test (delta-method SE, Welch–Satterthwaite df), so the p-value is below "
        f"{result['alpha']:g} exactly when the CI excludes 0. Mann–Whitney U is a robustness "
        "check, not the verdict."
    )
    return Content(
        title=f"greenprec report: {data.path.name}",
        subtitle=subtitle,
        estimated=estimated,
        verdict=list(result["verdict"]),
        summary=summary_table(result),
        summary_note=summary_note,
        tests=tests_table(result),
        effects=effects_table(result),
        tests_note=tests_note,
        groups=groups_table(result),
        planning=planning_lines(result),
        not_used=not_used_lines(result),
        not_used_values=not_used_value_lines(result),
        outliers=outlier_lines(result),
        environment=environment_lines(data, result),
        warnings=list(result["warnings"]),
        figures=list(figures),
        not_computed=not_computed_lines(result, skipped_figures),
    )
