"""Runs from several hosts: the report compares energy within hosts (each host a block).

The folders are written through ResultsStore as the cluster executor writes them: each run
names its host and that host's hardware (NodeInfo).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from greenprec.cli import app
from greenprec.report import Report, build_report
from greenprec.report.markdown import escape
from greenprec.results import (
    MetersRecord,
    NodeInfo,
    ResultsStore,
    RunRecord,
    ScheduledRun,
    new_experiment_record,
)
from greenprec.testing.synthetic import write_synthetic_folder
from test_report_typed import GOLDEN, assert_same_json, normalise

XEON = NodeInfo(
    cpu_model="Intel Xeon Gold 6338",
    logical_cpus=128,
    gpus=[{"name": "NVIDIA A100-SXM4-40GB", "driver_version": "535.104.05"}],
)
XEON_NEWER_DRIVER = NodeInfo(
    cpu_model="Intel Xeon Gold 6338",
    logical_cpus=128,
    gpus=[{"name": "NVIDIA A100-SXM4-40GB", "driver_version": "550.54.15"}],
)
EPYC = NodeInfo(cpu_model="AMD EPYC 7763", logical_cpus=256, gpus=[])

Run = tuple[str | None, str, float]  # host, policy, energy_j


def write_hosts_folder(
    path: Path,
    runs: Sequence[Run],
    *,
    nodes: Mapping[str, NodeInfo | None] | None = None,
    slurm: Mapping[str, Any] | None = None,
    policies: Sequence[str] = ("fp32", "mixed"),
) -> ResultsStore:
    """A finished results folder with exactly these runs (100 s each; power = energy / 100)."""
    store = ResultsStore(path)
    store.path.mkdir(parents=True, exist_ok=True)
    records = []
    repetitions: dict[str, int] = {}
    for order, (host, policy, energy) in enumerate(runs, start=1):
        repetitions[policy] = repetitions.get(policy, 0) + 1
        duration = 100.0
        records.append(
            RunRecord(
                run_id=f"{policy}-{repetitions[policy]:03d}",
                order=order,
                policy=policy,
                repetition=repetitions[policy],
                seed=order,
                status="done",
                duration_s=duration,
                energy_j=energy,
                mean_power_w=energy / duration,
                meter="rapl",
                estimated=False,
                domains={"rapl/package-0": energy},
                counted_domains=["rapl/package-0"],
                metrics={"test_accuracy": 0.9},
                host=host,
                node=(nodes or {}).get(host) if host is not None else None,
            )
        )
    config: dict[str, Any] = {"policies": list(policies), "workload": "synthetic", "runs": 1}
    if slurm is not None:
        config.update(executor="slurm", slurm=dict(slurm))
    experiment = new_experiment_record(
        source="greenprec compare",
        status="complete",
        config=config,
        schedule=[
            ScheduledRun(run_id=r.run_id, order=r.order, policy=r.policy, repetition=r.repetition)
            for r in records
        ],
        meters=MetersRecord(requested=["rapl"], used=["rapl"]),
        versions={"greenprec": "test", "python": "3"},
        host={"cpu_model": "Login node CPU", "logical_cpus": 2, "gpus": []},
    )
    store.create(experiment, records)
    return store


def uneven_runs(seed: int = 0) -> list[Run]:
    """Host B draws 20 % more power than host A; mixed uses 10 % less energy than fp32; host
    A ran mostly fp32, host B mostly mixed."""
    rng = np.random.default_rng(seed)
    layout = {"node-a": (1.0, 8, 2), "node-b": (1.2, 2, 8)}
    runs: list[Run] = []
    for host, (power, n_fp32, n_mixed) in layout.items():
        for policy, n, effect in (("fp32", n_fp32, 1.0), ("mixed", n_mixed, 0.9)):
            for _ in range(n):
                energy = 10_000.0 * power * effect * math.exp(rng.normal(0.0, 0.005))
                runs.append((host, policy, energy))
    return runs


@pytest.fixture(scope="module")
def uneven(tmp_path_factory: pytest.TempPathFactory) -> Report:
    path = tmp_path_factory.mktemp("uneven") / "two-hosts"
    write_hosts_folder(path, uneven_runs(), nodes={"node-a": XEON, "node-b": XEON})
    return build_report(path)


def energy_comparison(report: Report) -> dict[str, Any]:
    comparison: dict[str, Any] = report.stats["metrics"]["energy_j"]["comparisons"][0]
    return comparison


# -- the blocked analysis -------------------------------------------------------------------------


def test_two_uneven_hosts_the_blocked_comparison_finds_the_true_effect(uneven: Report) -> None:
    comparison = energy_comparison(uneven)
    assert comparison["primary_test"] == "host_blocked_log_ratio"
    lo, hi = comparison["relative_change_ci"]
    assert lo < -10.0 < hi and hi < 0
    assert comparison["relative_change_pct"] == pytest.approx(-10.0, abs=0.5)
    assert comparison["primary_p"] < 0.05
    blocked = uneven.stats["blocking"]["comparisons"][0]
    assert blocked["p"] == comparison["primary_p"]
    assert blocked["relative_change_ci_pct"] == comparison["relative_change_ci"]
    assert blocked["n_hosts"] == 2 and blocked["variance"] == "per_policy"
    # Welch–Satterthwaite df of the two policies' variances (8 and 8 df within hosts)
    assert 8 <= blocked["df"] <= 16
    (verdict, *_) = uneven.verdict
    assert verdict.startswith("mixed vs fp32, energy: \u221210.")
    assert "host-blocked t" in verdict
    assert "not significant" not in verdict


def test_two_uneven_hosts_the_unpaired_comparison_is_confounded(uneven: Report) -> None:
    comparison = energy_comparison(uneven)
    unpaired = comparison["unpaired"]
    assert unpaired["test"] == "welch_log_ratio" and unpaired["ignores"] == "host"
    # fp32 mean 1.04 × 10 kJ, mixed 0.9 × 1.16 × 10 kJ: the unpaired change is about +0.4 %
    assert unpaired["relative_change_pct"] == pytest.approx(0.4, abs=1.5)
    assert uneven.stats["blocking"]["comparisons"][0]["confounded"] is True
    (warning,) = [w for w in uneven.warnings if "confounded by host" in w]
    assert warning.startswith("mixed vs fp32: the unpaired estimate (")
    assert "which ignores hosts) lies outside the host-blocked 95% CI" in warning
    assert "node-a: fp32 8, mixed 2; node-b: fp32 2, mixed 8" in warning
    # the unpaired numbers stay in the report, labelled as ignoring hosts
    md = uneven.markdown_path.read_text()
    assert "unpaired, ignores hosts: change (95% CI)" in md
    assert "## Hosts" in md and "### Energy within hosts" in md


def test_the_blocked_numbers_are_statsmodels_ols_with_host_fixed_effects(uneven: Report) -> None:
    """β is the OLS coefficient; its variance is the sandwich with each policy's own variance
    around its (host, policy) cell means (the interaction model's residuals)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    frame = pd.DataFrame(uneven_runs(), columns=["host", "policy", "E"])
    fit = smf.ols("np.log(E) ~ C(policy) + C(host)", data=frame).fit()
    cells = smf.ols("np.log(E) ~ C(policy) * C(host)", data=frame).fit()
    blocked = uneven.stats["blocking"]["comparisons"][0]
    name = "C(policy)[T.mixed]"
    assert blocked["log_ratio"] == pytest.approx(fit.params[name], rel=1e-9)
    is_b = (frame.policy == "mixed").to_numpy()
    x = np.asarray(fit.model.exog)
    row = (np.linalg.inv(x.T @ x) @ x.T)[list(fit.params.index).index(name)]
    variance = sum(
        float((cells.resid[mask] ** 2).sum()) / (int(mask.sum()) - 2) * float(row[mask] @ row[mask])
        for mask in (~is_b, is_b)
    )
    assert blocked["se"] == pytest.approx(math.sqrt(variance), rel=1e-9)
    assert blocked["p"] == pytest.approx(
        2 * sps.t.sf(abs(fit.params[name]) / math.sqrt(variance), blocked["df"]), rel=1e-6
    )
    # the same SD for both policies: close to the pooled OLS standard error
    assert blocked["se"] == pytest.approx(fit.bse[name], rel=0.2)


def test_the_per_host_table(uneven: Report) -> None:
    hosts = uneven.stats["blocking"]["hosts"]
    assert [h["host"] for h in hosts] == ["node-a", "node-b"]
    assert uneven.stats["blocking"]["by"] == "host"
    a, b = hosts
    assert a["hardware"] == XEON.describe() and a["hardware_recorded"] is True
    assert a["policies"]["fp32"]["n"] == 8 and a["policies"]["mixed"]["n"] == 2
    assert b["policies"]["fp32"]["mean_energy_j"] == pytest.approx(12_000, rel=0.01)
    assert b["policies"]["fp32"]["mean_power_w"] == pytest.approx(120, rel=0.01)
    assert b["policies"]["mixed"]["change_vs_reference_pct"] == pytest.approx(-10, abs=1)
    assert b["policies"]["fp32"]["change_vs_reference_pct"] is None
    table = uneven.content.hosts
    assert table is not None
    assert table.headers[:4] == ["host", "hardware", "policy", "n"]
    assert table.rows[0][:4] == ["node-a", XEON.describe(), "fp32", "8"]
    assert table.rows[1][6].startswith("\u2212") and table.rows[0][6] == "reference"
    html = uneven.html_path.read_text()
    assert '<h2 id="hosts">Hosts</h2>' in html and "node-b" in html
    # the same hardware: no hardware warning
    assert not any("differ in hardware" in w for w in uneven.warnings)
    assert uneven.stats["blocking"]["hardware_differs"] is False
    assert uneven.stats["blocking"]["left_out"] == []


def test_balanced_hosts_give_the_paired_t_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    powers = [0.7, 0.9, 1.0, 1.3, 1.6, 2.0]
    runs: list[Run] = []
    for index, power in enumerate(powers):
        for policy, effect in (("fp32", 1.0), ("mixed", 0.9)):
            energy = 5_000.0 * power * effect * math.exp(rng.normal(0.0, 0.01))
            runs.append((f"host{index}", policy, energy))
    report = build_report(write_hosts_folder(tmp_path / "balanced", runs).path)
    fp32 = np.log([e for _, p, e in runs if p == "fp32"])
    mixed = np.log([e for _, p, e in runs if p == "mixed"])
    paired = sps.ttest_rel(mixed, fp32)
    blocked = report.stats["blocking"]["comparisons"][0]
    assert blocked["t"] == pytest.approx(float(paired.statistic), rel=1e-12)
    assert blocked["p"] == pytest.approx(float(paired.pvalue), rel=1e-12)
    assert blocked["df"] == 5
    comparison = energy_comparison(report)
    assert comparison["log_ratio_p"] == pytest.approx(float(paired.pvalue), rel=1e-12)
    assert comparison["log_ratio_df"] == 5.0
    # the unpaired test drowns the effect in the hosts' spread of power
    assert comparison["unpaired"]["log_ratio_p"] > 0.05 > comparison["primary_p"]
    # no node info recorded: the hosts' hardware is unknown, and the report says so
    assert {h["hardware"] for h in report.stats["blocking"]["hosts"]} == {"unknown"}
    (warning,) = [w for w in report.warnings if "differ in hardware" in w]
    assert "host0: unknown (not recorded)" in warning


# -- one host: nothing changes --------------------------------------------------------------------


def test_one_host_gives_exactly_the_report_of_before(tmp_path: Path) -> None:
    path = tmp_path / "synthetic"
    store = write_synthetic_folder(path, samples_per_run=300)
    for run in store.load().runs:
        store.write_run(run.model_copy(update={"host": "node-1", "node": XEON}))
    snapshot = store.load()
    store.write_index(snapshot.runs)
    assert {run.host for run in snapshot.runs} == {"node-1"}
    report = build_report(path)
    assert report.analysis.blocking is None
    golden = GOLDEN / "synthetic"
    assert_same_json(
        json.loads(report.stats_path.read_text()), json.loads((golden / "stats.json").read_text())
    )
    assert normalise(report.markdown_path.read_text(), path) == (golden / "report.md").read_text()
    assert normalise(report.html_path.read_text(), path) == (golden / "report.html").read_text()


def test_one_named_host_and_runs_without_a_host_change_nothing(tmp_path: Path) -> None:
    runs: list[Run] = [("node-1", "fp32", 100.0), (None, "fp32", 101.0), ("node-1", "fp32", 99.0)]
    runs += [(None, "mixed", 90.0), ("node-1", "mixed", 91.0), (None, "mixed", 89.5)]
    report = build_report(write_hosts_folder(tmp_path / "one", runs).path)
    assert report.analysis.blocking is None and "blocking" not in report.stats
    assert energy_comparison(report)["primary_test"] == "welch_log_ratio"
    assert "## Hosts" not in report.markdown_path.read_text()


# -- runs left out, warnings -----------------------------------------------------------------------


def test_a_host_with_one_policy_and_runs_without_a_host_are_named(tmp_path: Path) -> None:
    runs = uneven_runs()
    runs += [("node-c", "fp32", 11_000.0), ("node-c", "fp32", 11_100.0), (None, "mixed", 9_500.0)]
    report = build_report(write_hosts_folder(tmp_path / "left-out", runs).path)
    left_out = report.stats["blocking"]["left_out"]
    assert [(r["run_id"], r["host"]) for r in left_out] == [
        ("fp32-011", "node-c"),
        ("fp32-012", "node-c"),
        ("mixed-011", None),
    ]
    assert left_out[0]["reason"] == "host node-c ran only fp32 of fp32 and mixed"
    assert left_out[2]["reason"] == "no host recorded"
    assert report.stats["blocking"]["comparisons"][0]["blocks_left_out"] == ["node-c"]
    (warning,) = [w for w in report.warnings if "left out of the host-blocked" in w]
    assert warning == (
        "mixed vs fp32: 3 runs left out of the host-blocked comparison (host node-c ran only "
        "fp32 of fp32 and mixed: fp32-011, fp32-012; no host recorded: mixed-011); they are "
        "used everywhere else"
    )
    md = report.markdown_path.read_text()
    assert "- mixed vs fp32: run fp32-011 (fp32): host node-c ran only fp32 of fp32" in md
    assert "- mixed vs fp32: run mixed-011 (mixed): no host recorded" in md
    # still used by the unpaired comparison and the summary
    assert report.stats["metrics"]["energy_j"]["groups"]["fp32"]["n"] == 12
    assert report.stats["blocking"]["comparisons"][0]["n_a"] == 10


def test_hosts_that_differ_in_hardware_are_named(tmp_path: Path) -> None:
    runs = [*uneven_runs(), ("node-c", "fp32", 9_000.0), ("node-c", "mixed", 8_100.0)]
    nodes = {"node-a": XEON, "node-b": XEON_NEWER_DRIVER, "node-c": EPYC}
    report = build_report(write_hosts_folder(tmp_path / "hardware", runs, nodes=nodes).path)
    (warning,) = [w for w in report.warnings if "differ in hardware" in w]
    assert f"node-a: {XEON.describe()}" in warning
    assert f"node-b: {XEON_NEWER_DRIVER.describe()}" in warning
    assert "node-c: AMD EPYC 7763; no GPU" in warning
    assert "energy is compared within hosts only" in warning
    assert "not comparable" in warning
    assert report.stats["blocking"]["hardware_differs"] is True


@pytest.mark.slow
def test_shared_nodes_are_warned_about(tmp_path: Path) -> None:
    slurm = {"partition": "gpu", "exclusive": False}
    path = write_hosts_folder(tmp_path / "shared", uneven_runs(), slurm=slurm).path
    report = build_report(path)
    (warning,) = [w for w in report.warnings if "exclusive = false" in w]
    assert "shared their nodes" in warning and "whole machine" in warning
    assert "--" not in warning  # the setting, not a command-line flag
    assert report.stats["blocking"]["exclusive"] is False
    exclusive = write_hosts_folder(
        tmp_path / "exclusive", uneven_runs(), slurm={"partition": "gpu", "exclusive": True}
    )
    assert not any("exclusive" in w for w in build_report(exclusive.path).warnings)


def test_hostile_host_names_are_escaped(tmp_path: Path) -> None:
    hostile = "<script>alert(1)</script>|*x*"
    runs = [(hostile if host == "node-b" else host, p, e) for host, p, e in uneven_runs()]
    node = NodeInfo(cpu_model="<b>CPU</b> | *bold*", gpus=[{"name": "<img src=x>"}])
    report = build_report(
        write_hosts_folder(tmp_path / "hostile", runs, nodes={hostile: node}).path
    )
    md = report.markdown_path.read_text()
    assert "<script>" not in md and "<b>" not in md and "<img" not in md
    assert escape(hostile) in md and escape(node.describe()) in md
    assert "&lt;script>alert(1)&lt;/script>\\|\\*x\\*" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "script" in line]
    assert rows and all(line.count(" | ") == rows[0].count(" | ") for line in rows)
    html = report.html_path.read_text()
    assert "<script>" not in html and "<b>CPU" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|*x*" in html


# -- the command line ----------------------------------------------------------------------------


def test_the_command_line_reports_the_blocked_verdict(tmp_path: Path) -> None:
    path = write_hosts_folder(tmp_path / "cli", uneven_runs()).path
    result = CliRunner().invoke(app, ["report", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "host-blocked" in result.output
    assert "confounded by host" in result.output
    stats = json.loads((path / "stats.json").read_text())
    assert stats["metrics"]["energy_j"]["comparisons"][0]["primary_test"] == (
        "host_blocked_log_ratio"
    )


def test_hosts_that_each_ran_one_policy_compare_nothing_and_say_why(tmp_path: Path) -> None:
    runs: list[Run] = [("node-a", "fp32", 100.0 + i) for i in range(3)]
    runs += [("node-b", "mixed", 108.0 + i) for i in range(3)]
    report = build_report(write_hosts_folder(tmp_path / "apart", runs).path)
    (verdict, *_) = report.verdict
    assert verdict.startswith("mixed vs fp32, energy: not tested")
    assert "(no block has runs of both fp32 and mixed)" in verdict
    assert [r["run_id"] for r in report.stats["blocking"]["left_out"]] == [
        "fp32-001",
        "fp32-002",
        "fp32-003",
        "mixed-001",
        "mixed-002",
        "mixed-003",
    ]
    # the unpaired comparison is still shown, labelled as ignoring hosts
    assert energy_comparison(report)["unpaired"]["relative_change_pct"] == pytest.approx(800 / 101)


# -- the policies vary differently; the hosts disagree ---------------------------------------------


def heteroscedastic_runs(seed: int = 1) -> list[Run]:
    """8 fp32 runs (log SD 0.005) and 2 mixed runs (log SD 0.05) on each of two hosts."""
    rng = np.random.default_rng(seed)
    runs: list[Run] = []
    for host, power in (("node-a", 1.0), ("node-b", 1.3)):
        for policy, n, effect, sd in (("fp32", 8, 1.0, 0.005), ("mixed", 2, 0.9, 0.05)):
            for _ in range(n):
                energy = 10_000.0 * power * effect * math.exp(rng.normal(0.0, sd))
                runs.append((host, policy, energy))
    return runs


def test_policies_that_vary_differently_get_their_own_variances(tmp_path: Path) -> None:
    """0.2.0 pooled one residual variance: its interval covered 61 % in this design
    (tests/test_stats.py and benchmarks/host_blocked_coverage.py show the coverage)."""
    import pandas as pd
    import statsmodels.formula.api as smf

    runs = heteroscedastic_runs()
    report = build_report(write_hosts_folder(tmp_path / "hetero", runs).path)
    blocked = report.stats["blocking"]["comparisons"][0]
    assert blocked["variance"] == "per_policy"
    assert "Welch–Satterthwaite" in blocked["variance_reason"]
    frame = pd.DataFrame(runs, columns=["host", "policy", "E"])
    pooled = smf.ols("np.log(E) ~ C(policy) + C(host)", data=frame).fit()
    # mixed's 4 noisy runs carry the uncertainty: fewer df than the pooled fit's 17
    assert blocked["df"] < 5
    comparison = energy_comparison(report)
    assert comparison["log_ratio_df"] == blocked["df"]
    assert comparison["relative_change_ci"] == blocked["relative_change_ci_pct"]
    assert blocked["se"] > pooled.bse["C(policy)[T.mixed]"]
    table = report.content.hosts_comparisons
    assert table is not None
    assert "variance" in table.headers
    assert table.rows[0][table.headers.index("variance")] == "per policy (Welch–Satterthwaite df)"


def test_one_run_of_each_policy_per_host_says_the_variance_is_pooled(tmp_path: Path) -> None:
    runs: list[Run] = []
    for index, power in enumerate([0.8, 1.0, 1.3]):
        runs += [(f"h{index}", "fp32", 100.0 * power), (f"h{index}", "mixed", 90.0 * power + index)]
    report = build_report(write_hosts_folder(tmp_path / "pairs", runs).path)
    blocked = report.stats["blocking"]["comparisons"][0]
    assert blocked["variance"] == "pooled" and blocked["df"] == 2
    assert "(the paired t-test)" in blocked["variance_reason"]
    assert blocked["interaction"]["p"] is None  # one run per cell: no interaction test


@pytest.mark.slow
def test_hosts_that_disagree_about_the_effect_are_warned_about(tmp_path: Path) -> None:
    import pandas as pd
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(3)
    runs: list[Run] = []
    for host, power, effect in (("node-a", 1.0, 0.8), ("node-b", 1.2, 1.0)):
        for policy, factor in (("fp32", 1.0), ("mixed", effect)):
            for _ in range(4):
                energy = 10_000.0 * power * factor * math.exp(rng.normal(0.0, 0.01))
                runs.append((host, policy, energy))
    report = build_report(write_hosts_folder(tmp_path / "disagree", runs).path)
    interaction = report.stats["blocking"]["comparisons"][0]["interaction"]
    frame = pd.DataFrame(runs, columns=["host", "policy", "E"])
    additive = smf.ols("np.log(E) ~ C(policy) + C(host)", data=frame).fit()
    full = smf.ols("np.log(E) ~ C(policy) * C(host)", data=frame).fit()
    anova = sm.stats.anova_lm(additive, full)
    assert interaction["f"] == pytest.approx(float(anova["F"].iloc[1]), rel=1e-9)
    assert interaction["p"] == pytest.approx(float(anova["Pr(>F)"].iloc[1]), rel=1e-9)
    assert interaction["significant"] is True
    assert interaction["change_pct"]["node-a"] == pytest.approx(-20.0, abs=2.0)
    assert interaction["change_pct"]["node-b"] == pytest.approx(0.0, abs=2.0)
    (warning,) = [w for w in report.warnings if "differs between hosts" in w]
    assert warning.startswith("mixed vs fp32: the change in energy differs between hosts (node-a: ")
    assert "; node-b: " in warning and "host × policy interaction F(1, 12) = " in warning
    assert "average over hosts that disagree" in warning


def test_hosts_that_agree_about_the_effect_give_no_interaction_warning(uneven: Report) -> None:
    interaction = uneven.stats["blocking"]["comparisons"][0]["interaction"]
    assert interaction["p"] is not None and interaction["significant"] is False
    assert not any("differs between hosts" in w for w in uneven.warnings)
