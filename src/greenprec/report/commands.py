"""Moved to :mod:`greenprec.cli.report` and :mod:`greenprec.cli.importing`."""

from greenprec.cli.importing import import_energibridge_command
from greenprec.cli.report import report_command

__all__ = ["import_energibridge_command", "report_command"]
