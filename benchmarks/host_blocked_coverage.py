"""Coverage of the host-blocked interval when the policies vary differently.

Simulates experiments whose runs come from several hosts (each host its own power level),
with a true change of −10 % and log-normal run-to-run noise whose SD differs by policy, and
prints how often each 95 % interval of the change contains −10 %:

- pooled: OLS ``ln(E) ~ policy + host`` with one residual variance (greenprec 0.2.0, and
  statsmodels' default), df N − H − 1;
- HC3: the same fit with the HC3 sandwich standard error (Long & Ervin 2000), df N − H − 1
  (statsmodels ``fit(cov_type="HC3", use_t=True)``);
- greenprec: ``stats.blocked_log_ratio`` as the report runs it — each policy's own within-host
  variance and the Welch–Satterthwaite df, or the pooled variance where a policy has one run
  per host (the paired t-test).

    python benchmarks/host_blocked_coverage.py           # 10,000 experiments per design
    python benchmarks/host_blocked_coverage.py --quick   # 2,000, a few seconds

The Monte Carlo standard error of a cell near 95 % is 0.2 points at 10,000 experiments
(0.5 at 2,000).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from greenprec import stats

CHANGE = -10.0  # the true change of b against a, in %


@dataclass(frozen=True)
class Design:
    name: str
    hosts: int
    n_a: int  # runs of a (fp32) per host
    n_b: int  # runs of b (mixed) per host
    sd_a: float  # SD of ln(energy) within a host
    sd_b: float


DESIGNS = (
    Design("unbalanced, b noisier (the issue's case)", 2, 8, 2, 0.005, 0.05),
    Design("unbalanced, a noisier", 2, 8, 2, 0.05, 0.005),
    Design("unbalanced, equal SDs", 2, 8, 2, 0.02, 0.02),
    Design("4 hosts, 5 + 2, b noisier", 4, 5, 2, 0.005, 0.05),
    Design("3 hosts, 3 + 3, b noisier", 3, 3, 3, 0.01, 0.05),
    Design("6 hosts, 1 + 1 (paired t-test)", 6, 1, 1, 0.02, 0.02),
)


def _design_matrix(d: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns: indicator of b, then one per host; rows: each host's a runs then its b runs."""
    host = np.repeat(np.arange(d.hosts), d.n_a + d.n_b)
    is_b = np.tile(np.r_[np.zeros(d.n_a), np.ones(d.n_b)], d.hosts)
    x = np.column_stack([is_b] + [(host == h).astype(float) for h in range(d.hosts)])
    return x, host, is_b.astype(bool)


def simulate(d: Design, reps: int, alpha: float, rng: np.random.Generator) -> dict[str, float]:
    x, host, is_b = _design_matrix(d)
    n = x.shape[0]
    df = n - d.hosts - 1
    power = rng.uniform(0.7, 1.5, d.hosts)
    noise = rng.normal(0.0, 1.0, (reps, n)) * np.where(is_b, d.sd_b, d.sd_a)
    y = np.log(1000.0 * power[host]) + np.where(is_b, math.log1p(CHANGE / 100.0), 0.0) + noise
    bread = np.linalg.inv(x.T @ x)
    weights = (bread @ x.T)[0]  # β = Σ weights · y
    beta = y @ weights
    fitted = y @ (x @ bread @ x.T).T
    residuals = y - fitted
    truth = math.log1p(CHANGE / 100.0)
    out: dict[str, float] = {}
    if df >= 1:
        crit = sps.t.isf(alpha / 2.0, df)
        se_pooled = np.sqrt((residuals**2).sum(axis=1) / df * bread[0, 0])
        out["pooled"] = float(np.mean(np.abs(beta - truth) <= crit * se_pooled))
        leverage = np.einsum("ij,jk,ik->i", x, bread, x)
        if leverage.max() < 1.0 - 1e-9:
            omega = residuals**2 / (1.0 - leverage) ** 2
            se_hc3 = np.sqrt(omega @ (weights**2))
            out["hc3"] = float(np.mean(np.abs(beta - truth) <= crit * se_hc3))
    covered = 0
    widths = []
    labels = host.tolist()
    labels_a = [h for h, b in zip(labels, is_b.tolist(), strict=True) if not b]
    labels_b = [h for h, b in zip(labels, is_b.tolist(), strict=True) if b]
    energy = np.exp(y)
    variance = ""
    for row in energy:
        r = stats.blocked_log_ratio(row[~is_b], row[is_b], labels_a, labels_b, alpha=alpha)
        assert r.relative_change_ci_pct is not None
        lo, hi = r.relative_change_ci_pct
        covered += lo <= CHANGE <= hi
        widths.append(hi - lo)
        variance = r.variance or ""
    out["greenprec"] = covered / reps
    out["width"] = float(np.median(widths))
    out["variance"] = {"per_policy": 1.0, "pooled": 0.0}.get(variance, math.nan)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=10_000, help="experiments per design")
    parser.add_argument("--quick", action="store_true", help="2,000 experiments per design")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    reps = 2_000 if args.quick else args.reps
    rng = np.random.default_rng(args.seed)
    level = f"{100 * (1 - args.alpha):g}%"
    print(f"coverage of the {level} interval of a {CHANGE:+g}% change, {reps} experiments each")
    print(
        "| design | hosts | runs a + b per host | log SD a / b | pooled (0.2.0) | HC3 "
        "| greenprec | greenprec's variance | greenprec's median width (points) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    start = time.perf_counter()
    for d in DESIGNS:
        cell = simulate(d, reps, args.alpha, rng)

        def pct(key: str, cell: dict[str, float] = cell) -> str:
            return f"{100 * cell[key]:.1f}%" if key in cell else "undefined"

        variance = "per policy" if cell["variance"] == 1.0 else "pooled"
        print(
            f"| {d.name} | {d.hosts} | {d.n_a} + {d.n_b} | {d.sd_a:g} / {d.sd_b:g} "
            f"| {pct('pooled')} | {pct('hc3')} | {pct('greenprec')} | {variance} "
            f"| {cell['width']:.2f} |"
        )
    print(f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
