"""The recommendation of a selection folder (``greenprec recommend``): its analysis,
``recommendation.json``, the report's section at the top and the terminal table.

Folders are built synthetically: run records with known energies and times to the target, and
the selection's looks made by :func:`greenprec.stats.select_look` on those energies, as the
experiment makes them after each block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenprec.carbon import co2e_g
from greenprec.cli.recommendation import recommendation_lines, recommendation_table
from greenprec.report.recommendation import (
    Recommendation,
    describe_energy,
    human_name,
    recommendation,
    section,
)
from greenprec.results import (
    ExperimentRecord,
    JobRecord,
    PhaseRecord,
    ResultsStore,
    RunRecord,
    ScheduledRun,
    TargetRecord,
)
from greenprec.results.models import SelectionLookRecord, SelectionRecord
from greenprec.results.recommendation import (
    RecommendationRecord,
    read_recommendation,
    write_recommendation,
)
from greenprec.sequential import SequentialDesign
from greenprec.stats import SelectionLook, parse_indifference, select_look
from greenprec.stats.selection import METHOD

TARGET = 0.97


@dataclass(frozen=True)
class Arm:
    """One configuration: its policy and parameters, and per run (energy to the target in J or
    None for a run that did not reach it, time to the target in s, final accuracy)."""

    policy: str
    params: Mapping[str, int | float | str | bool]
    runs: Sequence[tuple[float | None, float, float]]

    @property
    def label(self) -> str:
        return "-".join([self.policy, *(f"{k}={v}" for k, v in self.params.items())])


def _arm(policy: str, batch: int | None, energies: Sequence[float | None], **kw: float) -> Arm:
    duration_s = kw.get("duration_s", 100.0)
    accuracy = kw.get("accuracy", 0.975)
    runs = [
        (e, duration_s * (1.0 + 0.003 * i), accuracy + 0.001 * (i % 3) if e else 0.95)
        for i, e in enumerate(energies)
    ]
    return Arm(policy, {} if batch is None else {"batch_size": batch}, runs)


def _run(
    arm: Arm, repetition: int, order: int, spec: tuple[float | None, float, float]
) -> RunRecord:
    energy_j, duration_s, accuracy = spec
    reached = energy_j is not None
    target = TargetRecord(
        metric="test_accuracy",
        value=TARGET,
        reached=reached,
        epoch=3 if reached else None,
        energy_j=energy_j,
        duration_s=duration_s if reached else None,
        final_value=accuracy,
    )
    whole_j = energy_j if energy_j is not None else 1.5 * (arm.runs[0][0] or 1000.0)
    return RunRecord(
        run_id=f"{arm.label}-{repetition:03d}",
        order=order,
        policy=arm.label,
        repetition=repetition,
        block=repetition,
        precision=arm.policy if arm.params else None,
        params=dict(arm.params),
        status="done",
        duration_s=duration_s,
        energy_j=whole_j,
        mean_power_w=whole_j / duration_s,
        metrics={"test_accuracy": accuracy},
        targets=[target],
        stopped_at_target=reached,
        epochs_run=3,
        samples_trained=30_000,
        samples_per_s=30_000 / duration_s,
        energy_per_sample_j=whole_j / 30_000,
    )


def _looks(
    arms: Sequence[Arm], design: SequentialDesign, delta: float, share: float
) -> list[SelectionLook]:
    """Every look select_look makes, block by block, until it stops."""
    looks: list[SelectionLook] = []
    earlier = None
    for n in range(design.min_runs, design.max_runs + 1):
        dropped = set() if earlier is None else _gone(earlier)
        data = {
            a.label: [r[0] for r in a.runs[: (earlier.runs if a.label in dropped else n)]]
            for a in arms
        }
        look = select_look(
            data, design, indifference=delta, earlier=earlier, min_reached_share=share
        )
        looks.append(look)
        earlier = look
        if look.stop:
            break
    return looks


def _gone(look: SelectionLook) -> set[str]:
    return {
        c.name
        for c in look.configurations
        if c.status == "dropped" or (c.final and c.status in ("never_reached", "too_few_reached"))
    }


def _runs_of(arms: Sequence[Arm], looks: Sequence[SelectionLook]) -> list[RunRecord]:
    """The runs made: each configuration's up to the look it was dropped at (or the last)."""
    made: dict[str, int] = {}
    for look in looks:
        gone = _gone(look)
        for arm in arms:
            if arm.label not in made or arm.label not in gone:
                made[arm.label] = look.runs
            if arm.label in gone and arm.label not in made:
                made[arm.label] = look.runs
    records = []
    order = 1
    for repetition in range(1, max(made.values()) + 1):
        for arm in arms:
            if repetition <= made[arm.label]:
                records.append(_run(arm, repetition, order, arm.runs[repetition - 1]))
                order += 1
    return records


def _experiment(
    arms: Sequence[Arm],
    looks: Sequence[SelectionLook],
    runs: Sequence[RunRecord],
    *,
    design: SequentialDesign,
    share: float = 0.8,
    margins: Mapping[str, str] | None = None,
    grid_intensity: str | None = None,
    extra_schedule: Sequence[ScheduledRun] = (),
) -> ExperimentRecord:
    selection = SelectionRecord(
        method=METHOD,
        alpha=design.alpha,
        indifference="3%",
        min_reached_share=share,
        min_runs=design.min_runs,
        max_runs=design.max_runs,
        looks=[
            SelectionLookRecord.model_validate({**look.to_dict(), "block": look.runs})
            for look in looks
        ],
        stopped=bool(looks and looks[-1].stop),
        stopped_early=bool(looks and looks[-1].stop and looks[-1].runs < design.max_runs),
        reason=looks[-1].reason if looks else None,
    )
    config = {
        "workload": "digits",
        "policies": list(dict.fromkeys(a.policy for a in arms)),
        "configurations": [
            {"label": a.label, "policy": a.policy, "params": dict(a.params)} for a in arms
        ],
        "targets": {"test_accuracy": TARGET},
        "stop_at_target": True,
        "selection": {"indifference": "3%", "min_reached_share": share, "alpha": design.alpha},
        "margins": dict(margins or {}),
        "grid_intensity": grid_intensity,
        "runs": design.max_runs,
        "min_runs": design.min_runs,
    }
    schedule = [
        ScheduledRun(
            run_id=r.run_id,
            order=r.order,
            policy=r.policy,
            repetition=r.repetition,
            block=r.block,
            precision=r.precision,
            params=r.params,
        )
        for r in runs
    ]
    return ExperimentRecord(
        created_at="2026-12-05T12:00:00+00:00",
        status="complete",
        source="greenprec recommend",
        config=config,
        schedule=[*schedule, *extra_schedule],
        selection=selection,
    )


@dataclass
class Folder:
    experiment: ExperimentRecord
    runs: list[RunRecord]
    looks: list[SelectionLook]

    @property
    def answer(self) -> Recommendation:
        rec = recommendation(self.experiment, self.runs)
        assert rec is not None
        return rec

    def write(self, path: Path) -> ResultsStore:
        store = ResultsStore(path)
        store.create(self.experiment, self.runs)
        return store


def _folder(
    arms: Sequence[Arm],
    *,
    max_runs: int = 10,
    min_runs: int = 3,
    share: float = 0.8,
    margins: Mapping[str, str] | None = None,
    grid_intensity: str | None = None,
) -> Folder:
    design = SequentialDesign(max_runs=max_runs, min_runs=min_runs)
    looks = _looks(arms, design, parse_indifference("3%"), share)
    runs = _runs_of(arms, looks)
    experiment = _experiment(
        arms,
        looks,
        runs,
        design=design,
        share=share,
        margins=margins,
        grid_intensity=grid_intensity,
    )
    return Folder(experiment, runs, looks)


def _noisy(mean_j: float, n: int, seed: int, cv: float = 0.01) -> list[float | None]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in mean_j * np.exp(rng.normal(0.0, cv, n))]


def _one_best(**kw: object) -> Folder:
    """fp32 with batch size 64 (the reference) at 10 kJ; bf16 with batch size 256 31 % less;
    bf16 with batch size 64 in between."""
    arms = [
        _arm("fp32", 64, _noisy(10_000.0, 10, 1), duration_s=100.0),
        _arm("bf16", 256, _noisy(6_900.0, 10, 2), duration_s=90.0),
        _arm("bf16", 64, _noisy(8_500.0, 10, 3), duration_s=95.0),
    ]
    return _folder(arms, **kw)  # type: ignore[arg-type]


# -- the answer -----------------------------------------------------------------------------


def test_one_best_is_recommended_first_with_the_saving_and_its_repeated_interval() -> None:
    folder = _one_best()
    rec = folder.answer
    assert rec.outcome == "use"
    assert rec.recommended == "bf16-batch_size=256"
    assert rec.configurations[0].label == "bf16-batch_size=256"
    assert section(rec).headline == rec.sentence
    assert rec.configurations[0].status_text == "recommended"
    assert all(r.status_text.startswith("dropped at look ") for r in rec.configurations[1:])
    assert rec.row("fp32-batch_size=64").reference
    saving = rec.saving
    assert saving is not None
    assert saving.saving_pct == pytest.approx(31.0, abs=2.0)
    assert saving.ci_low_pct is not None and saving.ci_high_pct is not None
    assert saving.ci_low_pct < saving.saving_pct < saving.ci_high_pct
    last = folder.looks[-1]
    assert saving.level == last.level
    assert saving.confidence == pytest.approx(1.0 - 2.0 * (last.level or 0.0))
    assert (
        rec.sentence.startswith("Use bf16 with batch size 256: 31")
        and "% less energy to 97 % test accuracy than fp32 with batch size 64 (" in rec.sentence
    )
    assert " CI " in rec.sentence
    assert rec.sentence.endswith("final test accuracy not worse than −1 pp.")


def test_the_saving_interval_is_the_welch_interval_on_the_logs_at_the_last_level() -> None:
    from scipy import stats as sp

    folder = _one_best()
    rec = folder.answer
    level = folder.looks[-1].level
    assert level is not None and rec.saving is not None
    a = np.log([r.targets[0].energy_j for r in folder.runs if r.policy == "fp32-batch_size=64"])
    b = np.log([r.targets[0].energy_j for r in folder.runs if r.policy == "bf16-batch_size=256"])
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = sp.t.isf(level, df) * math.sqrt(va + vb)
    diff = b.mean() - a.mean()
    assert rec.saving.ci_low_pct == pytest.approx(-100.0 * math.expm1(diff + half))
    assert rec.saving.ci_high_pct == pytest.approx(-100.0 * math.expm1(diff - half))


def test_within_the_zone_is_no_single_best() -> None:
    arms = [
        _arm("fp32", None, _noisy(10_000.0, 20, 1, 0.002)),
        _arm("bf16", None, _noisy(7_000.0, 20, 2, 0.002)),
        _arm("tf32", None, _noisy(7_020.0, 20, 3, 0.002)),
    ]
    rec = _folder(arms, max_runs=20).answer
    assert rec.outcome == "no_single_best"
    assert rec.recommended is None and rec.leader in ("bf16", "tf32")
    assert rec.sentence in (
        "No single best: bf16 and tf32 are within 3 % of each other.",
        "No single best: tf32 and bf16 are within 3 % of each other.",
    )
    statuses = {r.label: r.status_text for r in rec.configurations}
    assert "within the indifference zone" in statuses.values()
    assert rec.configurations[-1].label == "fp32"


def test_none_reached_is_no_recommendation() -> None:
    arms = [
        _arm("fp32", None, [None] * 3),
        _arm("bf16", None, [None] * 3),
    ]
    folder = _folder(arms, max_runs=3)
    rec = folder.answer
    assert rec.outcome == "none"
    assert rec.sentence == (
        "No recommendation: no configuration reached 97 % test accuracy in at least 80 % of "
        "its runs."
    )
    assert {r.status_text for r in rec.configurations} == {"never reached"}
    assert len(rec.left_out) == 6
    assert all(item.reason.startswith("did not reach 97 % test accuracy") for item in rec.left_out)
    assert rec.saving is None and rec.cost.payback_runs is None


def test_the_reference_recommended_says_so() -> None:
    arms = [
        _arm("fp32", None, _noisy(7_000.0, 10, 1)),
        _arm("bf16", None, _noisy(10_000.0, 10, 2)),
    ]
    rec = _folder(arms).answer
    assert rec.outcome == "reference"
    assert rec.sentence.startswith("Use fp32: it is the reference; every other configuration")
    assert rec.saving is None and rec.where_from is None
    assert rec.cost.saving_per_run_j is None and rec.cost.payback_runs is None


def test_an_unfinished_selection_has_no_answer_yet() -> None:
    folder = _one_best()
    selection = folder.experiment.selection
    assert selection is not None and len(selection.looks) >= 2
    first = selection.model_copy(update={"looks": selection.looks[:1], "stopped": False})
    rec = recommendation(folder.experiment.model_copy(update={"selection": first}), folder.runs)
    assert rec is not None and rec.outcome == "pending" and rec.recommended is None
    assert rec.sentence.startswith("No recommendation yet: the selection has not ended (")
    assert rec.configurations[0].status_text == "leading"
    none_yet = selection.model_copy(update={"looks": [], "stopped": False})
    rec = recommendation(folder.experiment.model_copy(update={"selection": none_yet}), [])
    assert rec is not None and rec.sentence.startswith("No recommendation yet: no look")


def test_too_few_reached_is_named_with_its_share() -> None:
    fast = _noisy(5_000.0, 10, 4)
    fast[1] = fast[4] = fast[7] = None  # 3 of 10 short of the target: 70 %, below 80 %
    arms = [
        _arm("fp32", None, _noisy(10_000.0, 10, 1)),
        _arm("bf16", None, _noisy(7_000.0, 10, 2)),
        _arm("mixed", None, fast),
    ]
    rec = _folder(arms).answer
    row = rec.row("mixed")
    assert row.status == "too_few_reached"
    assert row.status_text == f"reached in {row.reached} of {row.runs} runs (fewer than 80 %)"
    assert rec.configurations[-1].label == "mixed"


# -- final accuracy -------------------------------------------------------------------------


def test_accuracy_shown_not_worse_with_the_configured_margin() -> None:
    rec = _one_best(margins={"test_accuracy": "-0.5pp"}).answer
    (check,) = rec.accuracy
    assert check.margin == "test_accuracy=-0.5pp" and check.margin_source == "experiment"
    assert check.shown is True
    assert rec.sentence.endswith("final test accuracy not worse than −0.5 pp.")


def test_accuracy_not_shown_is_said() -> None:
    arms = [
        _arm("fp32", 64, _noisy(10_000.0, 10, 1), accuracy=0.985),
        _arm("bf16", 256, _noisy(6_900.0, 10, 2), accuracy=0.975),
    ]
    rec = _folder(arms, margins={"test_accuracy": "-0.5pp"}).answer
    (check,) = rec.accuracy
    assert check.shown is False
    assert rec.sentence.endswith("final test accuracy NOT shown within −0.5 pp of the reference's.")


# -- where the saving comes from ------------------------------------------------------------


def _study(power_change: float, time_change: float) -> Recommendation:
    """Reference 100 W over 320 s; the other changes power and time as given, exactly."""
    base_power_w, base_s = 100.0, 320.0
    power_w, time_s = base_power_w * (1 + power_change), base_s * (1 + time_change)
    jitter = [1.0, 1.01, 0.99, 1.02, 0.98, 1.0, 1.01, 0.99, 1.02, 0.98]
    ref = Arm("fp32", {}, [(base_power_w * base_s * j, base_s * j, 0.975) for j in jitter])
    new = Arm("mixed", {}, [(power_w * time_s * j, time_s * j, 0.975) for j in jitter])
    return _folder([ref, new]).answer


def test_the_study_s_saving_is_almost_all_lower_power() -> None:
    rec = _study(-0.114, -0.013)
    where = rec.where_from
    assert where is not None
    assert where.power_change_pct == pytest.approx(-11.4)
    assert where.duration_change_pct == pytest.approx(-1.3)
    assert where.energy_change_pct == pytest.approx(-12.55, abs=0.01)
    assert where.sentence.startswith(
        "The saving comes almost all from lower power: power to the target −11.4 %, "
        "time to the target −1.3 %"
    )


@settings(max_examples=40, deadline=None)
@given(
    st.floats(min_value=-0.6, max_value=0.6),
    st.floats(min_value=-0.6, max_value=0.6),
)
def test_energy_ratio_is_power_ratio_times_time_ratio(power: float, time: float) -> None:
    from greenprec.report.recommendation import _decomposition, _Group

    rng = np.random.default_rng(0)
    ref, new = _Group("a"), _Group("b")
    for group, p, t in ((ref, 100.0, 300.0), (new, 100.0 * (1 + power), 300.0 * (1 + time))):
        for _ in range(5):
            watts, seconds = p * rng.uniform(0.9, 1.1), t * rng.uniform(0.9, 1.1)
            group.energy_j.append(watts * seconds)
            group.duration_s.append(seconds)
    where = _decomposition(new, ref)
    assert where is not None
    product = (1 + where.power_change_pct / 100) * (1 + where.duration_change_pct / 100)
    assert product == pytest.approx(1 + where.energy_change_pct / 100, rel=1e-9)


# -- cost, payback, CO2e ----------------------------------------------------------------------


def test_payback_is_the_experiment_energy_over_the_saving_per_run() -> None:
    folder = _one_best()
    folder.experiment.baseline = PhaseRecord(energy_j=1_234.0, duration_s=10.0)
    folder.experiment.warmups = [PhaseRecord(energy_j=500.0), PhaseRecord(energy_j=700.0)]
    failed = folder.runs[0].model_copy(
        update={
            "run_id": "fp32-batch_size=64-099",
            "status": "failed",
            "energy_j": 321.0,
            "error": "out of memory",
            "targets": [],
        }
    )
    job = JobRecord(
        job_id="77",
        block=1,
        host="n1",
        started_at="2026-12-05T12:00:00+00:00",
        baseline=PhaseRecord(power_w=10.0, duration_s=5.0),
    )
    runs = [*folder.runs, failed]
    rec = recommendation(folder.experiment, runs, [job])
    assert rec is not None
    total = sum(r.energy_j or 0.0 for r in runs) + 1_234.0 + 1_200.0 + 50.0
    assert rec.cost.experiment_energy_j == pytest.approx(total)
    items = {item.what: item for item in rec.cost.items}
    assert items[f"{len(runs)} runs ({len(runs) - 1} done, 1 failed)"].count == len(runs)
    assert items["2 warm-ups"].energy_j == 1_200.0 and items["2 warm-ups"].count == 2
    assert items["1 idle baseline"].energy_j == 1_234.0
    assert items["1 Slurm job's idle baseline"].energy_j == 50.0
    ref = [r.targets[0].energy_j for r in folder.runs if r.policy == "fp32-batch_size=64"]
    new = [r.targets[0].energy_j for r in folder.runs if r.policy == "bf16-batch_size=256"]
    saving = float(np.mean(ref) - np.mean(new))  # type: ignore[arg-type]
    assert rec.cost.saving_per_run_j == pytest.approx(saving)
    assert rec.cost.payback_runs == math.ceil(total / saving)
    assert f"pays back after {rec.cost.payback_runs} training runs" in " ".join(rec.summary)
    failed_out = [item for item in rec.left_out if item.run_id == "fp32-batch_size=64-099"]
    assert failed_out and failed_out[0].reason == "failed: out of memory"


def test_co2e_is_a_labelled_conversion() -> None:
    rec = _one_best(grid_intensity="350g/kWh").answer
    cost = rec.cost
    assert cost.grid_intensity_g_per_kwh == 350.0
    assert cost.experiment_co2e_g == pytest.approx(co2e_g(cost.experiment_energy_j, 350.0))
    assert cost.saving_per_run_co2e_g == pytest.approx(
        cost.experiment_energy_j
        / 3.6e6
        * 350.0
        * (cost.saving_per_run_j or 0)
        / cost.experiment_energy_j
    )
    assert cost.co2e_label == "converted at 350 g CO2e/kWh, not measured"
    assert any("converted at 350 g CO2e/kWh, not measured" in line for line in rec.summary)
    assert _one_best().answer.cost.experiment_co2e_g is None


def test_every_run_left_out_is_named() -> None:
    bf16 = _noisy(6_900.0, 10, 2)
    bf16[0] = None
    arms = [_arm("fp32", None, _noisy(10_000.0, 10, 1)), _arm("bf16", None, bf16)]
    folder = _folder(arms)
    pending = ScheduledRun(run_id="bf16-999", order=999, policy="bf16", repetition=99)
    folder.experiment.schedule.append(pending)
    runs = [*folder.runs, RunRecord.planned(pending)]
    rec = recommendation(folder.experiment, runs)
    assert rec is not None
    assert [(i.run_id, i.configuration) for i in rec.left_out] == [("bf16-001", "bf16")]
    assert rec.left_out[0].reason == "did not reach 97 % test accuracy (final test accuracy 0.95)"
    assert rec.not_run == 1
    assert rec.row("bf16").reached == rec.row("bf16").runs - 1


def test_no_selection_no_recommendation() -> None:
    folder = _one_best()
    plain = folder.experiment.model_copy(update={"selection": None})
    assert recommendation(plain, folder.runs) is None


def test_names_and_energies_in_words() -> None:
    assert human_name("bf16", {"batch_size": 256, "learning_rate": 0.001}) == (
        "bf16 with batch size 256 and learning rate 0.001"
    )
    assert human_name("fp32", {}) == "fp32"
    assert describe_energy(512.0) == "512 J"
    assert describe_energy(12_345.0) == "12.3 kJ (0.00343 kWh)"


# -- recommendation.json, the report, the terminal ------------------------------------------


def test_recommendation_json_round_trips(tmp_path: Path) -> None:
    rec = _one_best(grid_intensity="350g/kWh").answer
    store = ResultsStore(tmp_path)
    record = rec.to_record()
    assert RecommendationRecord.model_validate_json(record.model_dump_json()) == record
    write_recommendation(store, record)
    assert read_recommendation(store) == record
    assert record.model_dump(mode="json") == rec.to_json_dict()
    assert read_recommendation(ResultsStore(tmp_path / "none")) is None


def test_a_damaged_recommendation_json_is_one_line(tmp_path: Path) -> None:
    from greenprec.errors import ConfigError

    (tmp_path / "recommendation.json").write_text(
        '{"schema_version": "2.0", "outcome": 3}', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"recommendation\.json is damaged"):
        read_recommendation(ResultsStore(tmp_path))


def _hostile() -> Folder:
    """A parameter value with Markdown, HTML and rich markup in it (a label is filesystem-safe,
    but the name in sentences shows the value as given)."""
    folder = _one_best()
    config = dict(folder.experiment.config)
    configurations = [dict(c) for c in config["configurations"]]
    configurations[1]["params"] = {"batch_size": "<b>*256*</b> [red]x[/red] | #"}
    config["configurations"] = configurations
    folder.experiment.config = config
    return folder


def test_the_report_starts_with_the_recommendation_and_writes_its_json(tmp_path: Path) -> None:
    from greenprec.report import build_report

    folder = _hostile()
    store = folder.write(tmp_path / "folder")
    report = build_report(store.path)
    assert report.recommendation is not None
    markdown = report.markdown_path.read_text(encoding="utf-8")
    assert markdown.index("## Recommendation") < markdown.index("## Verdict")
    assert markdown.index("## Recommendation") < markdown.index("## Summary")
    assert "### What the answer cost" in markdown and "### Looks" in markdown
    assert "<b>" not in markdown and "&lt;b>" in markdown
    assert r"\*256\*" in markdown and r"\[red\]" in markdown and r"\| \#" in markdown
    html = report.html_path.read_text(encoding="utf-8")
    assert html.index('<h2 id="recommendation">') < html.index("<h2>Verdict</h2>")
    assert "<b>*256*</b>" not in html and "&lt;b&gt;*256*&lt;/b&gt;" in html
    on_disk = read_recommendation(store)
    assert on_disk == report.recommendation.to_record()
    assert on_disk is not None and on_disk.recommended == "bf16-batch_size=256"


def test_a_report_without_selection_writes_no_recommendation(tmp_path: Path) -> None:
    from greenprec.report import build_report
    from greenprec.testing.synthetic import write_synthetic_folder

    store = write_synthetic_folder(tmp_path / "plain", runs=3, samples_per_run=30)
    report = build_report(store.path)
    assert report.recommendation is None
    assert "## Recommendation" not in report.markdown_path.read_text(encoding="utf-8")
    assert not (store.path / "recommendation.json").exists()


def test_the_terminal_prints_every_text_as_it_is(tmp_path: Path) -> None:
    from rich.console import Console

    from greenprec.cli.recommendation import print_recommendation

    folder = _hostile()
    rec = folder.answer
    for markup in (True, False):
        console = Console(record=True, width=250, markup=markup)
        console.print(recommendation_table(rec))
        for line in recommendation_lines(rec):
            console.print(line)
        text = console.export_text()
        assert "<b>*256*</b> [red]x[/red] | #" in text
        assert rec.sentence in text
    console = Console(record=True, width=250, markup=False)
    assert print_recommendation(console, folder.write(tmp_path / "f"))
    assert "Energy to 97 % test accuracy, ranked" in console.export_text()
