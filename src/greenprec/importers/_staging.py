"""What every importer does last: write the results folder whole, or not at all.

The folder is written into a temporary folder beside ``out`` and renamed into place, so an
import that fails (a bad file found late, a full disk, Ctrl-C) leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from greenprec.errors import ConfigError
from greenprec.results import (
    ExperimentRecord,
    MetersRecord,
    ResultsStore,
    RunRecord,
    ScheduledRun,
    new_experiment_record,
)

__all__ = ["check_out", "imported_experiment", "write_staged"]


def imported_experiment(
    *,
    source: str,
    meter: str,
    runs: Sequence[RunRecord],
    policies: list[str],
    groups: Mapping[str, str],
    config: Mapping[str, object],
    estimated: bool,
    counted_domains: list[str],
    warnings: list[str],
    imported: Mapping[str, object],
) -> ExperimentRecord:
    """The experiment record of an import: every run scheduled as it was numbered, the tool as
    the only meter; ``config`` adds the importer's own settings after the common ones."""
    return new_experiment_record(
        source=source,
        status="complete",
        config={
            "policies": policies,
            "source": source,
            "workload": None,
            "runs": max((sum(1 for r in runs if r.policy == p) for p in policies), default=0),
            "groups": dict(groups),
            **config,
        },
        schedule=[
            ScheduledRun(run_id=r.run_id, order=r.order, policy=r.policy, repetition=r.repetition)
            for r in runs
        ],
        # counted_domains is an extra of MetersRecord here: the domains the files count.
        meters=MetersRecord.model_validate(
            {
                "requested": [meter],
                "used": [meter],
                "estimated": estimated,
                "counted_domains": counted_domains,
            }
        ),
        warnings=warnings,
        imported=imported,
    )


def check_out(out: Path) -> None:
    """``out`` may become a new results folder; ConfigError (``param="out"``) if not."""
    try:
        ResultsStore(out).check_new()
    except ConfigError as error:
        raise ConfigError(f"{error}", param="out") from None


def write_staged(
    out: Path,
    experiment: ExperimentRecord,
    runs: list[RunRecord],
    more: Callable[[ResultsStore], None] | None = None,
) -> ResultsStore:
    """Create the folder with ``experiment`` and ``runs`` (and whatever ``more`` writes into
    its store, e.g. samples) beside ``out``, then rename it into place."""
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=parent))
    except OSError as error:
        raise ConfigError(
            f"cannot create the results folder in {parent}: {error.strerror or error}",
            param="out",
        ) from None
    try:
        store = ResultsStore(staging)
        store.create(experiment, runs)
        if more is not None:
            more(store)
        from greenprec.results.files import current_umask

        # mkdtemp made the staging folder 0700; the results get the umask's mode like a mkdir.
        os.chmod(staging, 0o777 & ~current_umask())
        check_out(out)  # someone may have written there while the files were read
        try:
            os.rename(staging, out)
        except OSError as error:
            raise ConfigError(
                f"{out}: cannot move the imported folder there: {error.strerror or error}",
                param="out",
            ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    return ResultsStore(out)
