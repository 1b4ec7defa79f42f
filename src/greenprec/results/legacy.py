"""Reading folders written by greenprec 0.1 (``format_version: 1``, no run files).

0.1 wrote ``experiment.json`` without a ``schema_version`` and kept its runs only in
``runs.csv``; :func:`upgrade_experiment` maps the first onto schema 1.0 of
:class:`~greenprec.results.models.ExperimentRecord` (the fields are the same, so nothing is
renamed), and :func:`greenprec.results.index.read_legacy_runs` reads the second strictly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LEGACY_SCHEMA_VERSION", "upgrade_experiment"]

LEGACY_SCHEMA_VERSION = "1.0"


def upgrade_experiment(data: dict[str, Any]) -> dict[str, Any]:
    """A 0.1 experiment.json as a schema-1.0 record (the input is not changed)."""
    upgraded = {key: value for key, value in data.items() if key != "format_version"}
    upgraded["schema_version"] = LEGACY_SCHEMA_VERSION
    return upgraded
