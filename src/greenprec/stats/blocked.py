"""Blocked designs (runs on several hosts): the log ratio within blocks, and whether it
differs by block.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from greenprec.stats._common import (
    FloatArray,
    _as_1d,
    _check_probability,
    _demean,
    _labels,
    _Result,
    _t_test,
    _zero_floor,
)

__all__ = [
    "PER_POLICY_VARIANCE_REASON",
    "BlockInteraction",
    "BlockedLogRatio",
    "BlockedVariance",
    "block_interaction",
    "blocked_log_ratio",
]

# -- blocked designs ------------------------------------------------------------------------------

BlockedVariance = Literal["per_policy", "pooled"]


@dataclass(frozen=True)
class BlockedLogRatio(_Result):
    """Result of :func:`blocked_log_ratio`: ``b`` against ``a`` within blocks (hosts).

    ``log_ratio`` is β of the OLS fit ``ln(value) ~ policy + block`` (one fixed effect per
    block, on the blocks that have runs of both policies), ``se`` its standard error and ``df``
    its degrees of freedom. ``variance`` says how ``se`` was estimated: ``"per_policy"`` (each
    policy's own within-block variance, Welch–Satterthwaite ``df``) or ``"pooled"`` (one
    residual variance, ``df`` = N − H − 1: the paired t-test with one run of each policy per
    block), and ``variance_reason`` why. ``relative_change_pct`` is ``100 · (exp(β) − 1)`` and
    ``relative_change_ci_pct`` the ``1 − alpha`` interval ``100 · (exp(β ∓ t·SE) − 1)``, which
    inverts the t-test: ``p < alpha`` exactly when the interval excludes 0. ``blocks_left_out``
    lists the blocks with runs of only one policy; their ``n_left_out_a`` + ``n_left_out_b``
    runs are not in the fit.
    """

    a: str
    b: str
    n_a: int
    n_b: int
    blocks: list[Hashable]
    blocks_left_out: list[Hashable]
    n_left_out_a: int
    n_left_out_b: int
    log_ratio: float | None
    se: float | None
    df: float | None
    t: float | None
    p: float | None
    relative_change_pct: float | None
    relative_change_ci_pct: tuple[float, float] | None
    alpha: float
    significant: bool | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    variance: BlockedVariance | None = None
    variance_reason: str | None = None

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)


_BLOCKED_TEST_FIELDS = ("se", "t", "p", "relative_change_ci_pct", "significant")
PER_POLICY_VARIANCE_REASON = (
    "each policy's own within-host variance (Welch–Satterthwaite df): the policies' spreads "
    "may differ, and one pooled variance would then give intervals that are too narrow"
)


@dataclass(frozen=True)
class _Blocked:
    """Two policies' values on the blocks that ran both: what the blocked fits share."""

    n_a: int
    n_b: int
    n_all_a: int  # values (not NaN) before blocks with one policy were left out
    n_all_b: int
    blocks: list[Hashable]
    left_out: list[Hashable]
    notes: list[str]
    problem: str | None  # why nothing can be fitted
    y: FloatArray  # ln(value): the a values, then the b values
    d: FloatArray  # 1 for b
    codes: NDArray[np.intp]  # block index of each value

    @property
    def h(self) -> int:
        return len(self.blocks)


def _blocked_data(
    values_a: ArrayLike,
    values_b: ArrayLike,
    blocks_a: Sequence[Hashable] | ArrayLike,
    blocks_b: Sequence[Hashable] | ArrayLike,
    label_a: str,
    label_b: str,
) -> _Blocked:
    notes: list[str] = []
    raw_a = _as_1d(values_a, label_a)
    raw_b = _as_1d(values_b, label_b)
    labels_a = _labels(blocks_a, "blocks_a", raw_a.size)
    labels_b = _labels(blocks_b, "blocks_b", raw_b.size)
    keep_a, keep_b = ~np.isnan(raw_a), ~np.isnan(raw_b)
    for name, keep in ((label_a, keep_a), (label_b, keep_b)):
        dropped = int((~keep).sum())
        if dropped:
            notes.append(f"dropped {dropped} NaN value{'s' if dropped != 1 else ''} from {name}")
    xa, xb = raw_a[keep_a], raw_b[keep_b]
    ba = [label for label, k in zip(labels_a, keep_a.tolist(), strict=True) if k]
    bb = [label for label, k in zip(labels_b, keep_b.tolist(), strict=True) if k]
    in_a, in_b = dict.fromkeys(ba), dict.fromkeys(bb)
    blocks = [block for block in dict.fromkeys([*ba, *bb]) if block in in_a and block in in_b]
    both = set(blocks)
    left_out = [block for block in dict.fromkeys([*ba, *bb]) if block not in both]
    use_a = np.array([label in both for label in ba], dtype=np.bool_)
    use_b = np.array([label in both for label in bb], dtype=np.bool_)
    ya_raw, yb_raw = xa[use_a], xb[use_b]
    problem: str | None = None
    if not blocks:
        problem = f"no block has runs of both {label_a} and {label_b}"
    else:
        bad = [name for name, y in ((label_a, ya_raw), (label_b, yb_raw)) if (y <= 0).any()]
        if bad:
            problem = (
                f"{' and '.join(bad)} {'has' if len(bad) == 1 else 'have'} zero or negative "
                "values; the log ratio is undefined"
            )
    position = {block: index for index, block in enumerate(blocks)}
    used_labels = [label for label in [*ba, *bb] if label in both]
    codes = np.array([position[label] for label in used_labels], dtype=np.intp)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(np.concatenate([ya_raw, yb_raw]))
    d = np.concatenate([np.zeros(ya_raw.size), np.ones(yb_raw.size)])
    return _Blocked(
        n_a=int(ya_raw.size),
        n_b=int(yb_raw.size),
        n_all_a=int(xa.size),
        n_all_b=int(xb.size),
        blocks=blocks,
        left_out=left_out,
        notes=notes,
        problem=problem,
        y=y,
        d=d,
        codes=codes,
    )


def _t_test_and_interval(
    beta: float,
    se: float,
    dof: float,
    alpha: float,
    values: _BlockedFields,
    missing: dict[str, str],
) -> None:
    """t, p and the 1 − alpha relative-change interval that inverts the test, into ``values``."""

    t_stat, p_val, half, sig = _t_test(beta, se, dof, alpha)
    values.update({"df": dof, "se": se, "t": t_stat, "p": p_val, "significant": sig})
    if beta + half >= 709.0 or beta - half >= 709.0:
        missing["relative_change_ci_pct"] = (
            "the runs vary too much for the interval to be bounded (its upper end is beyond "
            "any finite change); more runs, or a less variable metric, are needed"
        )
    else:
        values["relative_change_ci_pct"] = (
            100.0 * math.expm1(beta - half),
            100.0 * math.expm1(beta + half),
        )


def _policy_variances(
    data: _Blocked,
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Each policy's pooled within-block variance of ln(value), and its degrees of freedom
    (runs − blocks): the residuals of the cell-means model, policy by policy."""
    h = data.h
    out = []
    for policy in (0.0, 1.0):
        mine = data.d == policy
        residuals = _demean(data.y[mine], data.codes[mine], h)
        dof = int(mine.sum()) - h
        ss = float(np.dot(residuals, residuals))
        out.append((ss / dof if dof >= 1 else math.nan, dof))
    return out[0], out[1]


def blocked_log_ratio(
    values_a: ArrayLike,
    values_b: ArrayLike,
    blocks_a: Sequence[Hashable] | ArrayLike,
    blocks_b: Sequence[Hashable] | ArrayLike,
    *,
    alpha: float = 0.05,
    label_a: str = "a",
    label_b: str = "b",
) -> BlockedLogRatio:
    """The log ratio of ``b`` to ``a`` within blocks: OLS with block fixed effects, and a
    standard error that lets the two policies vary differently.

    The model is ``ln(value) = α_block + β · [policy is b] + ε`` fitted to the blocks that
    have at least one run of each policy (the others cannot say anything about β and are
    listed in ``blocks_left_out``). By Frisch–Waugh–Lovell, β is the slope of the
    block-demeaned log values on the block-demeaned indicator d̃, a weighted sum of the runs:

        β = Σ c_i y_i,   c_i = d̃_i / Σ d̃²

    **Per-policy variances** (``variance="per_policy"``, whenever each policy has more runs
    than blocks): ``Var(β) = σ_a² Σ_{i∈a} c_i² + σ_b² Σ_{i∈b} c_i²``, each σ² estimated by that
    policy's pooled within-block variance (df = runs − blocks), and the t-test uses the
    Welch–Satterthwaite df of those two components (Satterthwaite 1946; Welch 1947). With one
    block this is exactly Welch's t-test on the logs. It is used instead of the one residual
    variance of OLS because the policies' spreads differ (mixed precision may vary more than
    FP32): with 8 and 2 runs per host on two hosts and log SDs 0.005 / 0.05 the pooled-variance
    interval covers 61 %, HC3 (Long & Ervin 2000) with df N − H − 1 covers 91 %, and this one
    95 % (``benchmarks/host_blocked_coverage.py``).

    **Pooled** (``variance="pooled"``, when a policy has only one run per block, so its own
    variance cannot be estimated): ``SE = sqrt(RSS / df / Σ d̃²)``, ``df = N − H − 1``; with
    exactly one run of each policy per block this is the paired t-test on the per-block log
    differences (``scipy.stats.ttest_rel``), and in general statsmodels'
    ``ols("np.log(y) ~ C(policy) + C(block)")``.

    Either way ``t = β / SE``, ``p = 2 P(T_df > |t|)`` and
    ``CI = 100 · (exp(β ∓ t(1 − alpha/2; df) · SE) − 1)`` in %. NaN values are dropped with
    their labels (and counted in ``notes``); a non-positive value, df < 1, a spread that is all
    zero and an interval beyond exp's range are "not computed" with the reason.
    """
    alpha = _check_probability(alpha, "alpha")
    data = _blocked_data(values_a, values_b, blocks_a, blocks_b, label_a, label_b)
    missing: dict[str, str] = {}
    values: _BlockedFields = {}
    everything = ("log_ratio", "relative_change_pct", "df", *_BLOCKED_TEST_FIELDS)
    if data.problem is not None:
        missing.update(dict.fromkeys(everything, data.problem))
        return _blocked_result(data, label_a, label_b, alpha, values, missing, None)
    fit = _fixed_effects_fit(data)
    values["log_ratio"] = fit.beta
    change = 100.0 * math.expm1(fit.beta) if fit.beta < 709.0 else math.inf
    if math.isfinite(change):
        values["relative_change_pct"] = change
    else:
        missing["relative_change_pct"] = "the log ratio is beyond exp's range"
    (var_a, df_a), (var_b, df_b) = _policy_variances(data)
    if df_a >= 1 and df_b >= 1:
        estimate = _per_policy_se(data, fit, (var_a, df_a), (var_b, df_b))
    else:
        estimate = _pooled_se(data, fit, label_a, label_b, (df_a, df_b), values, missing)
    if estimate.problem is not None:
        missing.update(dict.fromkeys(_BLOCKED_TEST_FIELDS, estimate.problem))
    else:
        _t_test_and_interval(fit.beta, estimate.se, estimate.dof, alpha, values, missing)
    return _blocked_result(data, label_a, label_b, alpha, values, missing, estimate)


class _BlockedFields(TypedDict, total=False):
    """What :func:`blocked_log_ratio` computed so far; an absent key was not computed."""

    log_ratio: float
    relative_change_pct: float
    df: float
    se: float
    t: float
    p: float
    relative_change_ci_pct: tuple[float, float]
    significant: bool


@dataclass(frozen=True)
class _FixedEffectsFit:
    """The block-demeaned logs and indicator (Frisch–Waugh–Lovell) and the OLS slope β."""

    y_tilde: FloatArray
    d_tilde: FloatArray
    sxx: float  # Σ d̃²
    beta: float


@dataclass(frozen=True)
class _StandardError:
    """How β's standard error was estimated, and the SE and df; or why they are undefined."""

    variance: BlockedVariance
    variance_reason: str
    se: float = math.nan
    dof: float = math.nan
    problem: str | None = None


def _fixed_effects_fit(data: _Blocked) -> _FixedEffectsFit:
    y_tilde = _demean(data.y, data.codes, data.h)
    d_tilde = _demean(data.d, data.codes, data.h)
    sxx = float(np.dot(d_tilde, d_tilde))
    return _FixedEffectsFit(y_tilde, d_tilde, sxx, float(np.dot(d_tilde, y_tilde)) / sxx)


def _per_policy_se(
    data: _Blocked,
    fit: _FixedEffectsFit,
    policy_a: tuple[float, int],
    policy_b: tuple[float, int],
) -> _StandardError:
    """Var(β) from each policy's own within-block variance, with the Welch–Satterthwaite df."""
    (var_a, df_a), (var_b, df_b) = policy_a, policy_b
    weights = fit.d_tilde / fit.sxx
    u_a = var_a * float(np.dot(weights[: data.n_a], weights[: data.n_a]))
    u_b = var_b * float(np.dot(weights[data.n_a :], weights[data.n_a :]))
    if math.sqrt(max(var_a, var_b)) <= _zero_floor(data.y):
        return _StandardError(
            "per_policy",
            PER_POLICY_VARIANCE_REASON,
            problem=(
                "the runs of each policy on each host are identical: the within-host spread "
                "is zero; the test and its interval are undefined"
            ),
        )
    return _StandardError(
        "per_policy",
        PER_POLICY_VARIANCE_REASON,
        se=math.sqrt(u_a + u_b),
        dof=(u_a + u_b) ** 2 / (u_a * u_a / df_a + u_b * u_b / df_b),
    )


def _pooled_se(
    data: _Blocked,
    fit: _FixedEffectsFit,
    label_a: str,
    label_b: str,
    dofs: tuple[int, int],
    values: _BlockedFields,
    missing: dict[str, str],
) -> _StandardError:
    """β's SE from one residual variance (df = N − H − 1), for a policy with one run per block;
    the df goes into ``values`` (or why not into ``missing``) even where the SE is undefined."""
    alone = [name for name, dof_p in zip((label_a, label_b), dofs, strict=True) if dof_p < 1]
    variance_reason = (
        f"{' and '.join(alone)} {'has' if len(alone) == 1 else 'have'} one run per "
        "host, so a variance per policy cannot be estimated: one residual variance is "
        "assumed for both policies" + (" (the paired t-test)" if len(alone) == 2 else "")
    )
    y, h = data.y, data.h
    n_dof = y.size - h - 1
    if n_dof < 1:
        problem = (
            f"needs more runs than blocks + 1 ({y.size} runs in {h} "
            f"block{'s' if h != 1 else ''} leave {n_dof} residual degrees of freedom)"
        )
        missing["df"] = problem
        return _StandardError("pooled", variance_reason, problem=problem)
    residuals = fit.y_tilde - fit.beta * fit.d_tilde
    rss = float(np.dot(residuals, residuals))
    dof = float(n_dof)
    if math.sqrt(rss / n_dof) <= _zero_floor(y):
        values["df"] = dof
        problem = (
            "the residuals are zero: every block shows the same difference; the test "
            "and its interval are undefined"
        )
        return _StandardError("pooled", variance_reason, problem=problem)
    return _StandardError("pooled", variance_reason, se=math.sqrt(rss / n_dof / fit.sxx), dof=dof)


def _blocked_result(
    data: _Blocked,
    label_a: str,
    label_b: str,
    alpha: float,
    values: _BlockedFields,
    missing: dict[str, str],
    estimate: _StandardError | None,
) -> BlockedLogRatio:
    return BlockedLogRatio(
        a=label_a,
        b=label_b,
        n_a=data.n_a,
        n_b=data.n_b,
        blocks=data.blocks,
        blocks_left_out=data.left_out,
        n_left_out_a=data.n_all_a - data.n_a,
        n_left_out_b=data.n_all_b - data.n_b,
        log_ratio=values.get("log_ratio"),
        se=values.get("se"),
        df=values.get("df"),
        t=values.get("t"),
        p=values.get("p"),
        relative_change_pct=values.get("relative_change_pct"),
        relative_change_ci_pct=values.get("relative_change_ci_pct"),
        alpha=alpha,
        significant=values.get("significant"),
        not_computed=missing,
        notes=data.notes,
        variance=None if estimate is None else estimate.variance,
        variance_reason=None if estimate is None else estimate.variance_reason,
    )


@dataclass(frozen=True)
class BlockInteraction(_Result):
    """Result of :func:`block_interaction`: does the ratio of ``b`` to ``a`` differ by block?

    ``change_pct`` is each block's own relative change ``100 · (exp(mean ln b − mean ln a) − 1)``
    (the geometric means' ratio on that block). ``f``/``df_num``/``df_den``/``p`` are the F-test
    of the model with a policy × block interaction against the additive one
    ``ln(value) ~ policy + block`` (``anova_lm`` of the two statsmodels fits);
    ``significant`` is ``p < alpha``. It needs at least two blocks and two runs of each policy
    on each of them.
    """

    a: str
    b: str
    blocks: list[Hashable]
    change_pct: dict[str, float]
    f: float | None
    df_num: int | None
    df_den: int | None
    p: float | None
    alpha: float
    significant: bool | None
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def spread_pct(self) -> float | None:
        """Largest minus smallest per-block change, in percentage points."""
        changes = list(self.change_pct.values())
        return max(changes) - min(changes) if len(changes) >= 2 else None


def block_interaction(
    values_a: ArrayLike,
    values_b: ArrayLike,
    blocks_a: Sequence[Hashable] | ArrayLike,
    blocks_b: Sequence[Hashable] | ArrayLike,
    *,
    alpha: float = 0.05,
    label_a: str = "a",
    label_b: str = "b",
) -> BlockInteraction:
    """The policy × block interaction of ``ln(value)``: F = ((RSS_add − RSS_full) / (H − 1)) /
    (RSS_full / (N − 2H)), where RSS_full is the spread of each (block, policy) cell around its
    own mean and RSS_add the residuals of ``ln(value) ~ policy + block`` (blocks that ran only one
    policy are left out, as in :func:`blocked_log_ratio`)."""
    alpha = _check_probability(alpha, "alpha")
    data = _blocked_data(values_a, values_b, blocks_a, blocks_b, label_a, label_b)
    missing: dict[str, str] = {}
    changes: dict[str, float] = {}
    values: _InteractionFields = {}

    def result() -> BlockInteraction:
        return BlockInteraction(
            a=label_a,
            b=label_b,
            blocks=data.blocks,
            change_pct=changes,
            f=values.get("f"),
            df_num=values.get("df_num"),
            df_den=values.get("df_den"),
            p=values.get("p"),
            alpha=alpha,
            significant=values.get("significant"),
            not_computed=missing,
            notes=data.notes,
        )

    test_fields = ("f", "df_num", "df_den", "p", "significant")
    if data.problem is not None:
        missing.update(dict.fromkeys(("change_pct", *test_fields), data.problem))
        return result()
    h = data.h
    cells = data.codes * 2 + data.d.astype(np.intp)
    counts = np.bincount(cells, minlength=2 * h)
    means = np.bincount(cells, weights=data.y, minlength=2 * h) / np.maximum(counts, 1)
    for index, block in enumerate(data.blocks):
        log_change = float(means[2 * index + 1] - means[2 * index])
        changes[str(block)] = 100.0 * math.expm1(log_change) if log_change < 709.0 else math.inf
    if h < 2:
        missing.update(dict.fromkeys(test_fields, "needs at least two blocks with both policies"))
    elif int(counts.min()) < 2:
        missing.update(
            dict.fromkeys(
                test_fields,
                f"needs at least 2 runs of each of {label_a} and {label_b} on every block",
            )
        )
    else:
        _interaction_f_test(data, cells, means, alpha, values, missing)
    return result()


class _InteractionFields(TypedDict, total=False):
    """What :func:`block_interaction` computed; an absent key was not computed."""

    f: float
    df_num: int
    df_den: int
    p: float
    significant: bool


def _interaction_f_test(
    data: _Blocked,
    cells: NDArray[np.intp],
    means: FloatArray,
    alpha: float,
    values: _InteractionFields,
    missing: dict[str, str],
) -> None:
    """The F-test of the interaction model (one mean per block and policy cell) against the
    additive one, into ``values``; why not into ``missing``."""
    h = data.h
    full = data.y - means[cells]
    rss_full = float(np.dot(full, full))
    fit = _fixed_effects_fit(data)
    additive = fit.y_tilde - fit.beta * fit.d_tilde
    rss_add = float(np.dot(additive, additive))
    df_num, df_den = h - 1, int(data.y.size) - 2 * h
    if math.sqrt(rss_full / df_den) <= _zero_floor(data.y):
        missing.update(
            dict.fromkeys(
                ("f", "p", "significant"),
                "the runs of each policy on each block are identical: the F-test is undefined",
            )
        )
        values.update({"df_num": df_num, "df_den": df_den})
        return
    from scipy import stats

    f_stat = max(rss_add - rss_full, 0.0) / df_num / (rss_full / df_den)
    p_val = float(stats.f.sf(f_stat, df_num, df_den))
    values.update(
        {"f": f_stat, "df_num": df_num, "df_den": df_den, "p": p_val, "significant": p_val < alpha}
    )
