"""The pytest plugin of :mod:`greenprec.testing`: the ``meter_contract`` fixture.

Loaded by ``pytest -p greenprec.testing`` (which names this module in its ``pytest_plugins``),
by ``-p greenprec.testing.plugin``, or by ``pytest_plugins = ["greenprec.testing"]`` in a
``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import pytest

from greenprec.errors import MeterContractError
from greenprec.meters.base import Meter
from greenprec.testing.contract import MeterReport, check_meter

__all__ = ["MeterContract", "meter_contract"]


class MeterContract(Protocol):
    """The ``meter_contract`` fixture: call it with a meter class (and its options)."""

    def __call__(
        self,
        meter_class: type[Meter],
        *,
        options: Mapping[str, object] | None = None,
        run_s: float = 0.3,
        interval_s: float = 0.05,
        skip_unavailable: bool = True,
    ) -> MeterReport: ...


@pytest.fixture
def meter_contract() -> MeterContract:
    """Check a meter class against greenprec's meter contract (:func:`check_meter`).

    Fails the test with one line per broken rule. When the meter cannot run on this machine,
    the test is skipped with the probe's reason after the checks that need no hardware passed
    (``skip_unavailable=False`` returns the report instead). Returns the report.
    """

    def check(
        meter_class: type[Meter],
        *,
        options: Mapping[str, object] | None = None,
        run_s: float = 0.3,
        interval_s: float = 0.05,
        skip_unavailable: bool = True,
    ) -> MeterReport:
        __tracebackhide__ = True
        try:
            report = check_meter(meter_class, options=options, run_s=run_s, interval_s=interval_s)
        except MeterContractError as error:
            broken = str(error)
        else:
            broken = ""
        if broken:
            pytest.fail(broken, pytrace=False)  # outside the except: no chained traceback
        if skip_unavailable and not report.available:
            pytest.skip(
                f"meter {report.meter!r} is unavailable here, so only the checks that need no "
                f"hardware ran: {report.reason}"
            )
        return report

    return check
