"""EnergiBridge CSV files → a greenprec results folder, so ``greenprec report`` reads them.

One run per file: run id = file stem (made of the folders that differ when stems repeat, as
in ``r1/energy.csv``, ``r2/energy.csv``), policy = the group the file's glob belongs to. Every
file is read and every metrics row matched before anything is written; the folder is then
written through :class:`greenprec.results.ResultsStore` into a temporary directory beside
``out`` and renamed into place, so a bad input never leaves a half-written folder behind.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from greenprec.errors import ConfigError
from greenprec.formats.energibridge_csv import EnergiBridgeRecording, read_energibridge_csv
from greenprec.importers._files import find_files, natural_key
from greenprec.importers._staging import check_out, imported_experiment, write_staged
from greenprec.results import (
    SAMPLE_COLUMNS,
    ExperimentRecord,
    ResultsStore,
    RunRecord,
    is_reserved,
)
from greenprec.results.files import read_bounded

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SOURCE",
    "Group",
    "ImportResult",
    "import_energibridge",
    "run_ids_for",
]

SOURCE = "energibridge import"
_METER = "energibridge"
# Metrics with columns of their own; other metric columns must not be named like greenprec's.
_METRIC_COLUMNS = {"test_accuracy", "test_loss"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass(frozen=True)
class Group:
    name: str
    pattern: str


@dataclass(frozen=True)
class ImportResult:
    store: ResultsStore
    runs: list[RunRecord]
    counts: dict[str, int]
    warnings: list[str]
    notes: list[str] = field(default_factory=list)
    """How columns were read where their label says otherwise (old EnergiBridge releases)."""


def _parse_group(spec: str) -> Group:
    """``NAME=GLOB`` → Group; ConfigError with the expected form otherwise."""
    name, sep, pattern = spec.partition("=")
    name, pattern = name.strip(), pattern.strip()
    if not sep or not name or not pattern:
        raise ConfigError(
            f"malformed group {spec[:80]!r}; write NAME=GLOB, "
            "e.g. fp32='mixed_precision_false/*.csv'",
            param="groups",
        )
    if not _NAME.match(name):
        raise ConfigError(
            f"group {spec[:80]!r}: policy name {name[:40]!r} must be letters, digits, '_', '.', "
            "'+' or '-' (it becomes a column value and a figure label)",
            param="groups",
        )
    return Group(name, pattern)


def import_energibridge(
    groups: Sequence[str | Group],
    out: str | Path,
    *,
    metrics: str | None = None,
    counter_range_j: float | Mapping[str, float] | str | None = None,
    separator: str | None = None,
    before_line: Mapping[str, int] | Mapping[Path, int] | None = None,
) -> ImportResult:
    """Read every group's files (and metrics), then write the results folder ``out``.

    ``counter_range_j`` and ``separator`` are passed to
    :func:`greenprec.formats.energibridge_csv.read_energibridge_csv` for every file (default:
    the wrap range is inferred at each drop, the separator detected from each header).
    ``before_line`` maps a file (as a path to it) to the line before which it is read: the rows
    before a line that cannot be read (a sensor that appeared mid-run raises
    :class:`greenprec.formats.energibridge_csv.NewColumnsError`, which names that line).
    """
    out = Path(out)
    parsed = [g if isinstance(g, Group) else _parse_group(g) for g in groups]
    if not parsed:
        raise ConfigError("no group given; give one NAME=GLOB per policy", param="groups")
    names = [g.name for g in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"group names must differ; given twice: {', '.join(duplicates)}", param="groups"
        )
    check_out(out)

    found: list[tuple[str, Path]] = []  # (policy, file)
    owner: dict[Path, str] = {}
    for group in parsed:
        for path in find_files(group.pattern, f"group {group.name}={group.pattern}", "groups"):
            resolved = path.resolve()
            if resolved in owner:
                raise ConfigError(
                    f"{path} matches both group {owner[resolved]} and group {group.name}; "
                    "make the globs disjoint",
                    param="groups",
                )
            owner[resolved] = group.name
            found.append((group.name, path))
    run_ids = run_ids_for([path for _, path in found])
    files: dict[str, tuple[str, Path]] = dict(zip(run_ids, found, strict=True))

    cuts = _cuts(before_line, [path for _, path in found])
    recordings = {
        run_id: read_energibridge_csv(
            path,
            counter_range_j=counter_range_j,
            separator=separator,
            before_line=cuts.get(path.resolve()),
        )
        for run_id, (_, path) in files.items()
    }
    joined, metric_files = ({}, []) if metrics is None else _read_metrics(metrics, list(files))
    runs, warnings = _runs(files, recordings, joined)
    experiment = _experiment(parsed, metrics, files, recordings, runs, metric_files, warnings)
    store = _write(out, runs, recordings, experiment)
    counts = {g.name: sum(1 for r in runs if r.policy == g.name) for g in parsed}
    return ImportResult(store, runs, counts, warnings, _notes(recordings))


def _notes(recordings: Mapping[str, EnergiBridgeRecording]) -> list[str]:
    return [note for recording in recordings.values() for note in recording.notes]


def _cuts(
    before_line: Mapping[str, int] | Mapping[Path, int] | None, paths: Sequence[Path]
) -> dict[Path, int]:
    """``before_line`` by resolved path; a file that is none of the imported ones is refused."""
    if not before_line:
        return {}
    imported = {path.resolve() for path in paths}
    cuts: dict[Path, int] = {}
    for name, line in before_line.items():
        resolved = Path(os.path.expanduser(os.fspath(name))).resolve()
        if resolved not in imported:
            raise ConfigError(
                f"{os.fspath(name)!r} is none of the files the groups match; give the path "
                "of an imported file (as the error that named its line did)",
                param="before_line",
            )
        cuts[resolved] = line
    return cuts


def _sanitise(text: str) -> str:
    """``text`` in the run-id alphabet (letters, digits, ``_.+-``), starting with a letter or
    digit: run ids name files in samples/ and label figures."""
    cleaned = _NOT_IN_NAME.sub("-", text).strip("-")
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", cleaned)
    return cleaned or "run"


def _distinct_parts(folders: list[tuple[str, ...]]) -> list[list[str]]:
    """The folder names that tell these paths apart: common leading and trailing folders
    dropped, and, when the paths are equally deep, every level at which they all agree."""
    shortest = min(len(f) for f in folders)
    lead = 0
    while lead < shortest and len({f[lead] for f in folders}) == 1:
        lead += 1
    rest = [list(f[lead:]) for f in folders]
    shortest = min(len(r) for r in rest)
    trail = 0
    while trail < shortest and len({r[len(r) - 1 - trail] for r in rest}) == 1:
        trail += 1
    rest = [r[: len(r) - trail] for r in rest]
    if len({len(r) for r in rest}) == 1:
        keep = [i for i in range(len(rest[0])) if len({r[i] for r in rest}) > 1]
        rest = [[r[i] for i in keep] for r in rest]
    return rest


def run_ids_for(paths: Sequence[Path]) -> list[str]:
    """A unique run id per file: its stem, or, where stems repeat (``r1/energy.csv``,
    ``r2/energy.csv``), the folders that differ (``r1``, ``r2``), with the stem added
    (``r1-energy``) when that alone collides with another run id.

    Ids are compared ignoring case: ``samples/<run_id>.csv`` must be distinct files on
    case-insensitive file systems (macOS, Windows) too.
    """
    ids = [_sanitise(path.stem) for path in paths]
    by_id: dict[str, list[int]] = {}
    for index, run_id in enumerate(ids):
        by_id.setdefault(run_id.casefold(), []).append(index)
    clashes = [indices for indices in by_id.values() if len(indices) > 1]
    if not clashes:
        return ids
    taken = {folded for folded, indices in by_id.items() if len(indices) == 1}
    for indices in clashes:
        stem = ids[indices[0]]
        parts = _distinct_parts([paths[i].resolve().parent.parts for i in indices])
        short = [_sanitise("-".join(p)) if p else stem for p in parts]
        long = [f"{s}-{stem}" if s != stem else stem for s in short]
        for candidate in (short, long):
            folded = [c.casefold() for c in candidate]
            if len(set(folded)) == len(folded) and not taken.intersection(folded):
                chosen = candidate
                break
        else:
            # Same folder, stems that differ only in case or in characters run ids lack:
            # number them, skipping any number another file's id already has.
            chosen, number = [], 0
            for base in long:
                number += 1
                while f"{base}-{number}".casefold() in taken:
                    number += 1
                chosen.append(f"{base}-{number}")
                taken.add(chosen[-1].casefold())
        for index, run_id in zip(indices, chosen, strict=True):
            ids[index] = run_id
            taken.add(run_id.casefold())
    return ids


# One run's metrics row: numbers, text, or None for an empty cell (RunRecord.metrics).
_Metrics = dict[str, float | str | None]


def _read_metrics(pattern: str, run_ids: list[str]) -> tuple[dict[str, _Metrics], list[str]]:
    """Metrics rows by run id; ConfigError naming file and line for any row that does not fit."""
    joined: dict[str, _Metrics] = {}
    where: dict[str, str] = {}
    paths = find_files(pattern, f"metrics {pattern}", "metrics")
    for path in paths:
        try:
            text = read_bounded(path).decode("utf-8-sig")
        except OSError as error:
            raise ConfigError(f"{path}: cannot read metrics: {error}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"{path}: metrics are not UTF-8 text; save the file as UTF-8"
            ) from None
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise ConfigError(f"{path}:1: empty metrics file: no header")
        if "run_id" not in header:
            # The header is not quoted: a file without run_id may be no metrics file at all.
            raise ConfigError(
                f"{path}:1: metrics need a 'run_id' column (matched to file stems) and "
                "columns such as test_accuracy, test_loss; none of the first line's "
                f"{len(header)} comma-separated name(s) is run_id (the line is not shown)"
            )
        for column in header:
            if column == "run_id" or column in _METRIC_COLUMNS:
                continue
            if is_reserved(column):
                raise ConfigError(
                    f"{path}:1: metrics column {column!r} would overwrite a column greenprec "
                    "fills itself; rename it"
                )
        for lineno, raw in enumerate(reader, start=2):
            record = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                raise ConfigError(f"{path}:{lineno}: more values than header columns")
            key = record.get("run_id", "")
            if not key:
                raise ConfigError(f"{path}:{lineno}: empty run_id")
            run_id = _match(key, run_ids, f"{path}:{lineno}")
            if run_id in joined:
                raise ConfigError(
                    f"{path}:{lineno}: run {run_id} already has metrics from {where[run_id]}"
                )
            values: _Metrics = {}
            for column, cell in record.items():
                if column == "run_id":
                    continue
                values[column] = _metric_value(cell, column, f"{path}:{lineno}")
            joined[run_id] = values
            where[run_id] = f"{path}:{lineno}"
    return joined, [str(p) for p in paths]


def _match(key: str, run_ids: list[str], where: str) -> str:
    if key in run_ids:
        return key
    candidates = [r for r in run_ids if r.endswith((f"_{key}", f"-{key}"))]
    if not candidates:
        raise ConfigError(
            f"{where}: run_id {key!r} matches no imported file (want a run id equal to it "
            f"or ending in _{key} or -{key}; run ids are file stems, or the folders that "
            "differ when stems repeat)"
        )
    if len(candidates) > 1:
        raise ConfigError(
            f"{where}: run_id {key!r} matches several files ({', '.join(candidates)}); "
            "use the full file stem as run_id"
        )
    return candidates[0]


def _metric_value(cell: str, column: str, where: str) -> float | str | None:
    if cell == "":
        return None
    try:
        number = float(cell)
    except ValueError:
        if column in _METRIC_COLUMNS:
            raise ConfigError(f"{where}: {column} {cell!r} is not a number") from None
        return cell
    if column in _METRIC_COLUMNS and not math.isfinite(number):
        raise ConfigError(f"{where}: {column} {cell!r} is not a finite number")
    return number


def _runs(
    files: dict[str, tuple[str, Path]],
    recordings: dict[str, EnergiBridgeRecording],
    joined: dict[str, _Metrics],
) -> tuple[list[RunRecord], list[str]]:
    # Execution order is the order the recordings started: drift over the session shows up
    # in the order column as it would for greenprec's own runs.
    ordered = sorted(files, key=lambda r: (recordings[r].started_at, natural_key(Path(r))))
    repetition: dict[str, int] = {}
    runs: list[RunRecord] = []
    warnings: list[str] = []
    for order, run_id in enumerate(ordered, start=1):
        policy, _ = files[run_id]
        recording = recordings[run_id]
        repetition[policy] = repetition.get(policy, 0) + 1
        ended = recording.started_at + timedelta(seconds=recording.duration_s)
        runs.append(
            RunRecord(
                run_id=run_id,
                order=order,
                policy=policy,
                repetition=repetition[policy],
                status="done",
                started_at=recording.started_at.isoformat(),
                ended_at=ended.isoformat(),
                duration_s=recording.duration_s,
                energy_j=recording.energy_j,
                mean_power_w=_finite(recording.mean_power_w),
                meter=_METER,
                estimated=False,
                domains=dict(recording.domains),
                counted_domains=list(recording.counted_domains),
                metrics=joined.get(run_id, {}),
            )
        )
        warnings.extend(recording.warnings)
    if joined:
        without = [r.run_id for r in runs if r.run_id not in joined]
        if without:
            warnings.append(
                f"{len(without)} run(s) have no metrics row: {', '.join(without[:10])}"
                + (" ..." if len(without) > 10 else "")
            )
    return runs, warnings


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _experiment(
    groups: list[Group],
    metrics: str | None,
    files: dict[str, tuple[str, Path]],
    recordings: dict[str, EnergiBridgeRecording],
    runs: list[RunRecord],
    metric_files: list[str],
    warnings: list[str],
) -> ExperimentRecord:
    counted = list(dict.fromkeys(d for r in recordings.values() for d in r.counted_domains))
    kinds = {tuple(r.counted_domains) for r in recordings.values()}
    if len(kinds) > 1:
        warnings.append(
            "the files do not all count the same domains (different machines or EnergiBridge "
            "versions?): " + "; ".join(", ".join(k) for k in sorted(kinds))
        )
    intervals = sorted(
        r.duration_s / (n - 1)
        for r in recordings.values()
        if (n := len(r.samples) // max(1, len(r.domains))) > 1
    )
    interval = round(intervals[len(intervals) // 2], 4) if intervals else None
    return imported_experiment(
        source=SOURCE,
        meter=_METER,
        runs=runs,
        policies=[g.name for g in groups],
        groups={g.name: g.pattern for g in groups},
        config={"metrics": metrics, "interval_s": interval},
        estimated=False,
        counted_domains=counted,
        warnings=warnings,
        imported={
            "tool": "EnergiBridge",
            "files": {run_id: str(path) for run_id, (_, path) in files.items()},
            "metrics_files": metric_files,
            "columns": sorted({c for r in recordings.values() for c in r.columns}),
            # Only when there are some: how old EnergiBridge labels were read.
            **({"notes": notes} if (notes := _notes(recordings)) else {}),
        },
    )


def _write(
    out: Path,
    runs: list[RunRecord],
    recordings: dict[str, EnergiBridgeRecording],
    experiment: ExperimentRecord,
) -> ResultsStore:
    def samples(store: ResultsStore) -> None:
        for run in runs:
            _write_samples(store.samples_file(run.run_id), recordings[run.run_id].samples)

    return write_staged(out, experiment, runs, samples)


_SAMPLE_CHUNK = 50_000
"""Sample rows formatted at once: bounded memory for files of millions of samples."""


def _write_samples(path: Path, samples: pd.DataFrame) -> None:
    """``samples/<run>.csv`` as :meth:`ResultsStore.write_samples` writes it, byte for byte
    (floats as ``repr``, NaN as an empty cell), streamed in chunks.

    The file is written straight into the staging folder, which only this import sees and
    which is renamed into place whole (``write_staged``): no temporary file per sample file is
    needed, and a 200 MB recording's millions of rows never sit in memory as one text.
    """
    import numpy as np

    quoted = {domain: _csv_cell(domain) for domain in samples["domain"].unique().tolist()}
    columns = [samples[name].to_numpy() for name in ("t_s", "power_w", "energy_j")]
    domains = samples["domain"].to_numpy(dtype=object)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8", newline="") as handle:
        handle.write(",".join(SAMPLE_COLUMNS) + "\n")
        for start in range(0, len(samples), _SAMPLE_CHUNK):
            part = slice(start, start + _SAMPLE_CHUNK)
            # A row's domains share a time (counters at Time, power columns at Time + Delta):
            # each distinct time is written out once. t_s is never -0.0, which np.unique
            # would take for 0.0 (it is Time minus the first Time, or more).
            times, row_of = np.unique(columns[0][part], return_inverse=True)
            t_s = np.array(list(map(repr, times.tolist())), dtype=object)[row_of]
            power_w, energy_j = (map(repr, column[part].tolist()) for column in columns[1:])
            cells = zip(t_s, map(quoted.__getitem__, domains[part]), power_w, energy_j, strict=True)
            text = "\n".join(map(",".join, cells)) + "\n"
            # NaN is an empty cell. Only power_w can be NaN (Time and energy are finite sums),
            # and a domain never reads "nan" (each starts with its tool's name): every ",nan,"
            # is a power.
            handle.write(text.replace(",nan,", ",,"))
        handle.flush()
        os.fsync(handle.fileno())


def _csv_cell(text: str) -> str:
    """``text`` as csv.writer writes it in a row of several cells (quoted where it must be)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["", text])
    return buffer.getvalue()[1:-1]
