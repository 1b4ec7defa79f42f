"""``greenprec report``: statistics, figures and a readable report from a results folder.

    from greenprec.report import build_report

    report = build_report("greenprec-results/20250101-120000")
    print(report.stats["metrics"]["energy_j"]["comparisons"][0]["relative_change_pct"])

Writes ``stats.json``, ``report.md``, ``report.html`` (self-contained) and ``figures/`` into
the folder. matplotlib is imported only while figures are drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenprec.report.build import Report, build_report

__all__ = ["Report", "build_report"]


def __getattr__(name: str) -> object:
    # `import greenprec.report` must stay light; pandas and scipy wait until
    # a report is actually built.
    if name in __all__:
        from greenprec.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'greenprec.report' has no attribute {name!r}")
