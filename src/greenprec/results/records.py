"""The one way an experiment record is made, whoever makes it.

``greenprec compare``, ``greenprec import`` and the synthetic folders of the test kit all call
:func:`new_experiment_record`, so every folder carries the same fields, the same schema version
and a creation time, and a new field is added in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from greenprec._version import __version__
from greenprec.results.models import (
    SCHEMA_VERSION,
    ExperimentRecord,
    ExperimentStatus,
    MetersRecord,
    ScheduledRun,
)

__all__ = ["new_experiment_record", "now_iso"]


def now_iso() -> str:
    """The current time in UTC, ISO 8601 (how every time in a results folder is written)."""
    return datetime.now(timezone.utc).isoformat()


def new_experiment_record(
    *,
    source: str,
    config: Mapping[str, Any],
    schedule: Sequence[ScheduledRun],
    meters: MetersRecord,
    status: ExperimentStatus = "running",
    warnings: Sequence[str] = (),
    precision_support: Mapping[str, Any] | None = None,
    versions: Mapping[str, str | None] | None = None,
    host: Mapping[str, Any] | None = None,
    imported: Mapping[str, Any] | None = None,
) -> ExperimentRecord:
    """A new experiment record, stamped with the schema version and the time.

    ``versions`` defaults to greenprec's own; ``host`` to unknown (an import does not know the
    machine its files came from; ``compare`` passes this machine's facts).
    """
    record = ExperimentRecord(
        schema_version=SCHEMA_VERSION,
        created_at=now_iso(),
        status=status,
        source=source,
        config=dict(config),
        schedule=list(schedule),
        meters=meters,
        precision_support=dict(precision_support) if precision_support is not None else None,
        warnings=list(warnings),
        versions=dict(versions) if versions is not None else {"greenprec": __version__},
        host=dict(host or {}),
    )
    record.imported = dict(imported) if imported is not None else None
    return record
