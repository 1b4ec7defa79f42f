"""The study's outlier rule: population z-scores, per group, in one pass."""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from greenprec.errors import ConfigError
from greenprec.stats._common import BoolArray, FloatArray, _as_1d, _constant, _Result

__all__ = [
    "OutlierResult",
    "zscore_outliers",
]

# -- outliers --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OutlierResult(_Result):
    """Result of :func:`zscore_outliers`; arrays are aligned with the input values."""

    threshold: float
    n: int
    n_removed: int
    n_nan: int
    kept_mask: BoolArray
    kept: FloatArray
    z: FloatArray
    removed_ids: list[object]
    removed_values: list[float]
    removed_z: list[float]
    removed_groups: list[Hashable] | None
    nan_ids: list[object]
    not_computed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def zscore_outliers(
    values: ArrayLike,
    threshold: float = 3.0,
    ids: Sequence[object] | ArrayLike | None = None,
    groups: Sequence[Hashable] | ArrayLike | None = None,
) -> OutlierResult:
    """The study's outlier rule: drop values whose population z-score exceeds ``threshold``.

    z = (x - mean) / sd with ddof=0 (as ``scipy.stats.zscore``), per group when ``groups`` is
    given, in one pass (not iterated). NaNs are not outliers: they stay in ``kept_mask`` and are
    listed in ``nan_ids``. A group with zero variance has no outliers.
    """
    x = _as_1d(values, "values")
    if not isinstance(threshold, (int, float)) or not threshold > 0 or math.isinf(threshold):
        raise ConfigError(f"threshold must be a positive number, got {threshold!r}")
    n = x.size
    id_list = list(range(n)) if ids is None else list(np.asarray(ids, dtype=object).tolist())
    if len(id_list) != n:
        raise ConfigError(f"ids has {len(id_list)} entries but values has {n}")
    codes, uniques = _group_codes(groups, n)
    notes: list[str] = []
    z = np.full(n, np.nan)
    for code, label in enumerate(uniques):
        where = "" if groups is None else f" in group {label!r}"
        _group_z(x, np.flatnonzero(codes == code), threshold, where, z, notes)

    removed = np.abs(z) > threshold  # NaN compares False: NaNs are never removed
    nan_mask = np.isnan(x)
    n_nan = int(nan_mask.sum())
    if n_nan:
        notes.append(f"{n_nan} NaN value{'s' if n_nan != 1 else ''} kept, not tested")
    idx = np.flatnonzero(removed)
    return OutlierResult(
        threshold=float(threshold),
        n=n,
        n_removed=int(idx.size),
        n_nan=n_nan,
        kept_mask=~removed,
        kept=x[~removed],
        z=z,
        removed_ids=[id_list[i] for i in idx],
        removed_values=[float(x[i]) for i in idx],
        removed_z=[float(z[i]) for i in idx],
        removed_groups=None if groups is None else [uniques[codes[i]] for i in idx],
        nan_ids=[id_list[i] for i in np.flatnonzero(nan_mask)],
        notes=notes,
    )


def _group_codes(
    groups: Sequence[Hashable] | ArrayLike | None, n: int
) -> tuple[NDArray[np.intp], list[Hashable]]:
    """Each value's group index and the groups in order of appearance (one ``None`` group
    when there are no groups)."""
    if groups is None:
        return np.zeros(n, dtype=np.intp), [None]
    group_array = np.asarray(groups, dtype=object)
    if group_array.ndim != 1 or group_array.size != n:
        raise ConfigError(f"groups must be one label per value ({n}), got {group_array.size}")
    raw_codes, raw_uniques = pd.factorize(pd.Series(group_array), use_na_sentinel=False)
    return np.asarray(raw_codes, dtype=np.intp), list(raw_uniques)


def _group_z(
    x: FloatArray,
    members: NDArray[np.intp],
    threshold: float,
    where: str,
    z: FloatArray,
    notes: list[str],
) -> None:
    """The population z-scores of one group's finite values into ``z``; caveats into ``notes``."""
    finite = members[~np.isnan(x[members])]
    if finite.size == 0:
        return
    if _constant(x[finite]):
        # scipy would give 0/0 = NaN; no spread means no value is unusual.
        z[finite] = 0.0
        notes.append(f"zero variance{where}: nothing removed")
        return
    from scipy import stats

    with warnings.catch_warnings(record=True) as caught:
        # Nearly equal values make scipy warn about cancellation; the z-scores are still
        # the rule's, so the caveat becomes a note instead of a warning.
        warnings.simplefilter("always", RuntimeWarning)
        z[finite] = stats.zscore(x[finite], ddof=0)
    if any(issubclass(w.category, RuntimeWarning) for w in caught):
        notes.append(f"values{where} are nearly identical; z-scores are dominated by rounding")
    # With ddof=0 no |z| can exceed sqrt(n - 1) (one value apart from n - 1 equal ones), so
    # a small group cannot have outliers: at threshold 3 that is any group of 10 or fewer.
    ceiling = math.sqrt(finite.size - 1)
    if ceiling <= threshold:
        notes.append(
            f"{finite.size} values{where}: |z| cannot exceed {ceiling:.3g} <= threshold "
            f"{threshold:g}, so no value can be removed"
        )
