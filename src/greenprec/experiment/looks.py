"""The looks of an adaptive experiment: after each complete block, test its questions and stop
as soon as every one is settled (the statistics are :mod:`greenprec.sequential`'s).

A look is recorded in ``experiment.json`` (``sequential.looks``) before anything else
happens, so a resumed experiment knows the looks already made; when the experiment stops, the
runs not yet made leave the schedule and the folder is a complete experiment of that size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from greenprec.experiment.config import ExperimentConfig
from greenprec.experiment.session import Session
from greenprec.results import AnswerRecord, LookRecord, RunRecord, SequentialRecord
from greenprec.sequential import Answer, Look, Question, SequentialDesign, information, look
from greenprec.stats import DEFAULT_ACCURACY_MARGIN, Margin, parse_margin

__all__ = ["LookData", "adaptive_look", "configured_margins", "look_data", "questions"]

LookData = dict[str, dict[str, list[float]]]
"""metric -> policy -> the values of the done runs (what :func:`greenprec.sequential.look`
reads)."""


def configured_margins(config: ExperimentConfig) -> dict[str, Margin]:
    """The experiment's margins (``[margins]``), each parsed once: metric -> margin."""
    return {metric: parse_margin(f"{metric}={spec}") for metric, spec in config.margins.items()}


def adaptive_look(session: Session) -> bool:
    """After a complete block: look at the data; True when the experiment stops here.

    A look is planned after every block from the first at which each policy has ``min_runs``
    runs done, and made as soon as that block's runs have all ended, done or failed: a failed
    run does not move the look to a later block. Its information time is that of the runs
    actually done (:func:`greenprec.sequential.information`, lowered by a failed run only by
    what that run would have added), and the look after the last planned block spends all the
    alpha left, so the design spends exactly its alpha. A block that added no information (all
    its runs failed) gets no look. The look tests each question at the level the design spends
    on it and is recorded in ``experiment.json`` before anything else happens, so a resumed
    experiment knows the looks already made. When it stops, the runs not yet made are removed
    from the schedule and from ``session.runs``: the folder is then a complete experiment of
    that size.
    """
    record = session.experiment.sequential
    if record is None or record.reason is not None:
        return record is not None and record.reason is not None
    runs = list(session.runs.values())
    blocks = {run.block for run in runs if run.block is not None}
    latest = _latest_ended_block(runs, blocks)
    if latest is None or latest in record.skipped or latest in (r.block for r in record.looks):
        return False
    margins = configured_margins(session.config)
    upto = [r for r in runs if r.block is not None and r.block <= latest]
    data = look_data(margins, upto)
    policies = session.config.policies
    counts = {policy: len(data["energy_j"].get(policy, [])) for policy in policies}
    runs_per_policy = min(counts.values(), default=0)
    last_block = max(blocks)
    if runs_per_policy < record.min_runs and latest < last_block:
        return False
    time = information(counts, policies[0], record.max_runs)
    previous = record.looks[-1].information if record.looks else 0.0
    if runs_per_policy < record.min_runs or time <= previous:
        return _skip(session, record, latest, last_block, runs_per_policy)
    result = look(
        _design(record),
        runs_per_policy,
        [look_record.runs_per_policy for look_record in record.looks],
        data,
        questions(policies, margins, data),
        settled=record.looks[-1].answers if record.looks else (),
        information=[*(look_record.information for look_record in record.looks), time],
        final=latest >= last_block,
    )
    failed = sorted(r.run_id for r in upto if r.status == "failed")
    record.looks.append(_look_record(latest, runs_per_policy, result, counts, failed))
    stop = result.stop or latest >= last_block
    cut = _stop(session, record, result, latest, last_block, runs_per_policy) if stop else []
    session.store.write_experiment(session.experiment)
    session.reporter.message(
        f"look after block {latest} ({_counts_text(counts)}): "
        + (result.reason if stop else "not settled yet; going on")
    )
    for run_id in cut:
        session.store.forget_run(run_id)
        del session.runs[run_id]
    return stop


def _counts_text(counts: Mapping[str, int]) -> str:
    """The runs of a look in words: 5 runs per policy, or "fp32 4, mixed 5 runs done" when
    failed runs left them unequal."""
    values = set(counts.values())
    if len(values) == 1:
        return f"{values.pop()} runs per policy"
    return ", ".join(f"{policy} {n}" for policy, n in counts.items()) + " runs done"


def _latest_ended_block(runs: list[RunRecord], blocks: set[int]) -> int | None:
    """The latest block whose runs have all ended, when every block before it has too."""
    ended = {
        block
        for block in blocks
        if all(r.status in ("done", "failed") for r in runs if r.block == block)
    }
    latest = max(ended, default=None)
    if latest is None or any(b not in ended for b in blocks if b <= latest):
        return None
    return latest


def _skip(
    session: Session,
    record: SequentialRecord,
    latest: int,
    last_block: int,
    runs_per_policy: int,
) -> bool:
    """Failed runs: a policy has fewer than ``min_runs`` runs done, or this block added no
    information (all its runs failed; a look's boundary needs more information than the look
    before). Skip it; the next block may look."""
    record.skipped.append(latest)
    why = (
        f"a policy has fewer than {record.min_runs} runs done (min_runs)"
        if runs_per_policy < record.min_runs
        else "it added no information"
    )
    message = f"no look after block {latest}: {why}, as runs failed"
    if latest >= last_block:
        _stop_without_look(record, runs_per_policy)
        message += f"; every planned block has run: {record.reason}"
    session.store.write_experiment(session.experiment)
    session.reporter.message(message)
    return latest >= last_block


def _design(record: SequentialRecord) -> SequentialDesign:
    """The design the experiment was started with, as ``experiment.json`` records it."""
    return SequentialDesign(
        alpha=record.alpha,
        max_runs=record.max_runs,
        min_runs=record.min_runs,
        spending="pocock" if "pocock" in record.method.lower() else "obrien-fleming",
    )


def _look_record(
    block: int,
    runs_per_policy: int,
    result: Look,
    counts: Mapping[str, int],
    failed: list[str],
) -> LookRecord:
    return LookRecord(
        block=block,
        runs_per_policy=runs_per_policy,
        runs_by_policy=dict(counts),
        failed=failed,
        information=result.information,
        alpha_spent=result.alpha_spent,
        level=result.level,
        alpha_share=result.alpha_share,
        answers=[_answer_record(answer) for answer in result.answers],
    )


def _answer_record(answer: Answer) -> AnswerRecord:
    return AnswerRecord(
        metric=answer.metric,
        policy=answer.policy,
        reference=answer.reference,
        kind=answer.kind,
        settled=answer.settled,
        verdict=answer.verdict,
        p=answer.p,
        level=answer.level,
        margin=answer.margin_abs,
        margin_value=answer.margin_value,
        margin_unit=answer.margin_unit,
        margin_tolerated=answer.margin_tolerated,
        estimate=answer.estimate,
        ci_low=answer.ci_low,
        ci_high=answer.ci_high,
        confidence=answer.confidence,
        scale=answer.scale,
        settled_at=answer.settled_at,
        carried=answer.carried,
    )


def _stop(
    session: Session,
    record: SequentialRecord,
    result: Look,
    latest: int,
    last_block: int,
    runs_per_policy: int,
) -> list[str]:
    """Record why the experiment stops after block ``latest``; the runs it cuts (those of
    later blocks), already out of the schedule. The reason is the look's (the questions); the
    report says from the runs whether the rule, the maximum or failed runs ended it."""
    record.reason = result.reason
    record.runs_per_policy = runs_per_policy
    record.stopped_early = result.settled and latest < last_block
    cut = [r.run_id for r in session.runs.values() if r.block is not None and r.block > latest]
    experiment = session.experiment
    experiment.schedule = [p for p in experiment.schedule if p.run_id not in cut]
    return cut


def _stop_without_look(record: SequentialRecord, runs_per_policy: int) -> None:
    """The last block added nothing to look at: the last look's answers stand."""
    last = record.looks[-1] if record.looks else None
    record.runs_per_policy = last.runs_per_policy if last is not None else runs_per_policy
    record.stopped_early = False
    if last is None:
        record.reason = (
            "every planned block has run, but not every policy reached "
            f"{record.min_runs} done runs (min_runs): no look was made and no question is "
            "answered"
        )
        return
    still = [f"{a.metric} {a.policy} vs {a.reference}" for a in last.answers if not a.settled]
    record.reason = (
        f"every planned block has run; failed runs left {last.runs_per_policy} runs per policy "
        f"at the last look (fewer than the maximum of {record.max_runs}), whose answers stand"
        + (": " + " and ".join(still) + " still open" if still else "")
    )


def look_data(margins: Mapping[str, Margin], runs: Iterable[RunRecord]) -> LookData:
    """metric -> policy -> values of the done runs: energy, and each metric with a margin
    (test accuracy, with its default margin, when the runs report it and no margin is set)."""
    runs = list(runs)
    metrics = ["energy_j", *_margin_metrics(margins, runs)]
    data: LookData = {metric: {} for metric in metrics}
    for run in runs:
        if run.status != "done" or run.energy_j is None:
            continue
        for metric in metrics:
            value = run.energy_j if metric == "energy_j" else run.metrics.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                data[metric].setdefault(run.policy, []).append(float(value))
    return data


def _margin_metrics(margins: Mapping[str, Margin], runs: list[RunRecord]) -> list[str]:
    metrics = [metric for metric in margins if metric != "energy_j"]
    default = DEFAULT_ACCURACY_MARGIN.metric
    if default not in margins and any(default in run.metrics for run in runs):
        metrics.append(default)
    return metrics


def questions(policies: list[str], margins: Mapping[str, Margin], data: LookData) -> list[Question]:
    """What the experiment asks of each policy against the reference (the first policy): is
    its energy different, and is each metric with a margin equivalent (or not worse)?"""
    reference, *others = policies
    asked = []
    for policy in others:
        energy = margins.get("energy_j")
        if energy is not None:
            asked.append(Question("energy_j", reference, policy, energy.kind, margin=energy))
        else:
            asked.append(Question("energy_j", reference, policy, "difference", log_scale=True))
        for metric in data:
            if metric == "energy_j":
                continue
            margin = margins.get(metric, DEFAULT_ACCURACY_MARGIN)
            asked.append(Question(metric, reference, policy, margin.kind, margin=margin))
    return asked
