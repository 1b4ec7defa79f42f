"""``greenprec.results``: the results folder as one typed store.

Every producer (``greenprec compare``, a run's own process, ``greenprec import``, the test
kit's synthetic folders) writes through :class:`ResultsStore`, and every consumer
(``greenprec report``, ``greenprec runs``, ``--resume``) reads through it, so the folder's
layout is known in one place::

    experiment.json       ExperimentRecord (config, schedule, meters, host, versions)
    runs/<run_id>.json    RunRecord, one per run, written atomically by its executor
    runs.csv              index of the runs, rebuilt from the run files (for spreadsheets)
    samples/<name>.csv    t_s, domain, power_w, energy_j
    logs/<run_id>.log     a run's output

Reading checks the runs against the experiment's schedule and names every missing, damaged
or unscheduled one (:class:`Problem`). Folders written by greenprec 0.1 are read as they are.
"""

from greenprec.results.index import (
    COUNTED_SEPARATOR,
    DOMAIN_PREFIX,
    INDEX_COLUMNS,
    RESERVED_NAMES,
    is_reserved,
    record_row,
)
from greenprec.results.location import INDEX_FILE, Location
from greenprec.results.lock import FolderLock
from greenprec.results.models import (
    INTERRUPTED,
    RUN_STATUSES,
    SCHEMA_VERSION,
    AnswerRecord,
    EpochRecord,
    ExperimentRecord,
    HostEnergy,
    JobRecord,
    LookRecord,
    MachineState,
    MetersRecord,
    NodeInfo,
    PhaseRecord,
    RunRecord,
    RunStatus,
    ScheduledRun,
    SelectionLookRecord,
    SelectionRecord,
    SequentialRecord,
    Submission,
    SubmissionsRecord,
    TargetRecord,
    check_run_id,
)
from greenprec.results.records import new_experiment_record
from greenprec.results.store import (
    SAMPLE_COLUMNS,
    ExperimentExists,
    Problem,
    ResultsStore,
    Snapshot,
)

__all__ = [
    "COUNTED_SEPARATOR",
    "DOMAIN_PREFIX",
    "INDEX_COLUMNS",
    "INDEX_FILE",
    "INTERRUPTED",
    "RESERVED_NAMES",
    "RUN_STATUSES",
    "SAMPLE_COLUMNS",
    "SCHEMA_VERSION",
    "AnswerRecord",
    "EpochRecord",
    "ExperimentExists",
    "ExperimentRecord",
    "FolderLock",
    "HostEnergy",
    "JobRecord",
    "Location",
    "LookRecord",
    "MachineState",
    "MetersRecord",
    "NodeInfo",
    "PhaseRecord",
    "Problem",
    "ResultsStore",
    "RunRecord",
    "RunStatus",
    "ScheduledRun",
    "SelectionLookRecord",
    "SelectionRecord",
    "SequentialRecord",
    "Snapshot",
    "Submission",
    "SubmissionsRecord",
    "TargetRecord",
    "check_run_id",
    "is_reserved",
    "new_experiment_record",
    "record_row",
]
