"""A test kit for meter plugins: check any :class:`greenprec.Meter` class against the contract.

    from greenprec.testing import check_meter

    report = check_meter(BoardMeter, options={"path": "/tmp/board_power_w"})
    print(report)          # the checks passed, and those skipped with their reason

:func:`check_meter` drives the meter the way greenprec does (probe, then start, read... finish,
stop, and a whole ``measure()``) and checks every rule of the contract in
:mod:`greenprec.meters.base`; a broken rule raises :class:`MeterContractError` with one line
per rule. A meter that cannot run here (no hardware, no driver) is no failure: its probe's
reason is the report's ``reason``, and the checks that need a running meter are skipped with it.

For pytest, ``pytest -p greenprec.testing`` (or ``pytest_plugins = ["greenprec.testing"]`` in a
``conftest.py``) gives the ``meter_contract`` fixture::

    def test_board_meter_keeps_the_contract(meter_contract, tmp_path):
        (tmp_path / "power_w").write_text("12.5")
        meter_contract(BoardMeter, options={"path": str(tmp_path / "power_w")})

It fails the test with the broken rules, and skips it with the probe's reason when the meter
cannot run on the machine.

:mod:`greenprec.testing.synthetic` writes made-up results folders with known effects (for
tests of report code, benchmarks, or trying ``greenprec report`` without training).

:mod:`greenprec.testing.scripted` runs real experiments whose answer is known: the ``scripted``
meter (:class:`ScriptedMeter`: a known power per configuration, ``--meter scripted -o
scripted.power_w=fp32:100,bf16:60``) and a quick workload
(``--workload greenprec.testing.scripted:training``) whose accuracy per epoch is known.
The meter is registered with the built-in ones (used only when named).

This package never imports pytest itself; the fixture lives in :mod:`greenprec.testing.plugin`,
which pytest loads through :data:`pytest_plugins`.
"""

from __future__ import annotations

from greenprec.errors import MeterContractError
from greenprec.testing.contract import CheckResult, MeterReport, check_meter

# The meter's module only: the plugin manager imports this package to register the meter, and
# greenprec.testing.scripted (the workload) imports the workload layer.
from greenprec.testing.scripted_meter import ScriptedMeter

__all__ = [
    "CheckResult",
    "MeterContractError",
    "MeterReport",
    "ScriptedMeter",
    "check_meter",
]

pytest_plugins = ["greenprec.testing.plugin"]
"""Read by pytest when this package is loaded as a plugin (``-p greenprec.testing``)."""
