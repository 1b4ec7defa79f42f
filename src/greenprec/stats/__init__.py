"""Statistics for energy experiments: outliers, summaries, comparisons, power traces, planning.

Every function is pure: arrays or frames in, a frozen dataclass (or a frame, or a number) out.
Result dataclasses have ``to_dict()`` returning JSON-ready values (NaN and infinity become
``None``, tuples become lists). Whatever cannot be computed from the data (too few runs, zero
variance, an empty group) is ``None`` in the result, with the reason under
``not_computed[field]``; NaN inputs are dropped and counted in ``notes``. Exceptions are kept for
arguments that make no sense (``ConfigError``), never raised from inside scipy.

Conventions: ``a`` is the baseline (FP32 in the study), ``b`` the policy compared with it; every
signed statistic (t, U, Cohen's d, Hedges' g, relative change) is positive when ``b`` is larger.
Formulas and references: ``docs/stats.md``.

scipy is imported inside the functions that need it so that ``import greenprec.stats`` stays
cheap.
"""

from __future__ import annotations

# One module per part (outliers, summaries, comparisons, blocked, drift, accuracy, traces,
# planning, equivalence, selection), what they share in _common. The API page lists these names
# in the order they are imported here (mkdocs.yml: members_order: source), hence the topic order and
# no sorting. ``X as X`` keeps a name importable from here (for annotations such as
# ``stats.Primary``) without joining __all__.
# isort: off
from greenprec.stats._common import (
    FloatArray as FloatArray,
    BoolArray as BoolArray,
)
from greenprec.stats.outliers import OutlierResult, zscore_outliers
from greenprec.stats.summaries import Description, describe, NormalityResult, normality
from greenprec.stats.comparisons import (
    LogRatioTest,
    welch_log_ratio,
    CompareResult,
    PRIMARY_REASON as PRIMARY_REASON,
    DIFFERENCE_REASON as DIFFERENCE_REASON,
    Primary as Primary,
    compare_groups,
)
from greenprec.stats.blocked import (
    BlockedVariance as BlockedVariance,
    BlockedLogRatio,
    PER_POLICY_VARIANCE_REASON as PER_POLICY_VARIANCE_REASON,
    blocked_log_ratio,
    BlockInteraction,
    block_interaction,
)
from greenprec.stats.drift import RunOrderTrend, run_order_trend
from greenprec.stats.comparisons import PolicyComparison, compare_policies, holm
from greenprec.stats.accuracy import energy_per_accuracy_point, accuracy_scale
from greenprec.stats.traces import (
    BinnedRuns,
    binned_power,
    binned_power_runs,
    mean_power_trace,
    mean_power_trace_of_runs,
)
from greenprec.stats.planning import achieved_power, runs_needed
from greenprec.stats.equivalence import (
    accuracy_like,
    Margin,
    parse_margin,
    DEFAULT_ACCURACY_MARGIN,
    parse_sesoi,
    EquivalenceResult,
    tost_welch,
    NonInferiorityResult,
    noninferiority_welch,
    tost_log_ratio,
    noninferiority_log_ratio,
)
from greenprec.stats.planning import tost_power, runs_needed_equivalence
from greenprec.stats.equivalence import equivalence_verdict
from greenprec.stats.selection import (
    ConfigurationStatus,
    PairComparison,
    SelectionLook,
    parse_indifference,
    select_look,
)
# isort: on

__all__ = [
    "DEFAULT_ACCURACY_MARGIN",
    "BinnedRuns",
    "BlockInteraction",
    "BlockedLogRatio",
    "CompareResult",
    "ConfigurationStatus",
    "Description",
    "EquivalenceResult",
    "LogRatioTest",
    "Margin",
    "NonInferiorityResult",
    "NormalityResult",
    "OutlierResult",
    "PairComparison",
    "PolicyComparison",
    "RunOrderTrend",
    "SelectionLook",
    "accuracy_like",
    "accuracy_scale",
    "achieved_power",
    "binned_power",
    "binned_power_runs",
    "block_interaction",
    "blocked_log_ratio",
    "compare_groups",
    "compare_policies",
    "describe",
    "energy_per_accuracy_point",
    "equivalence_verdict",
    "holm",
    "mean_power_trace",
    "mean_power_trace_of_runs",
    "noninferiority_log_ratio",
    "noninferiority_welch",
    "normality",
    "parse_indifference",
    "parse_margin",
    "parse_sesoi",
    "run_order_trend",
    "runs_needed",
    "runs_needed_equivalence",
    "select_look",
    "tost_log_ratio",
    "tost_power",
    "tost_welch",
    "welch_log_ratio",
    "zscore_outliers",
]
