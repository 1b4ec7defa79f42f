"""Turning other tools' recordings into greenprec results folders."""

from greenprec.importers.energibridge import ImportResult, import_energibridge

__all__ = ["ImportResult", "import_energibridge"]
