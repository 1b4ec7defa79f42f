"""CodeCarbon ``emissions.csv`` files → a greenprec results folder, so ``greenprec report``
reads them.

CodeCarbon writes one row per tracked run (``tracker.stop()``; ``flush()`` writes the run's
totals so far as another row with the same ``run_id``). Each row becomes a run: energy from the
kWh columns (``cpu_energy + gpu_energy + ram_energy = energy_consumed``), converted to joules
exactly (× 3.6e6), the policy from the group the file belongs to or from a column
(``project_name``, ``experiment_id``, ``task_name``).

What is measured and what is modelled. The file does not name how CodeCarbon obtained the
CPU power (RAPL, Power Gadget, Windows EMI, powermetrics — measured — or, without them, its
CPU-load × TDP model or a TDP constant — modelled), and RAM power is modelled in every release
(2.x: 3 W per 8 GB; 3.x: about 5 W per estimated DIMM on x86, 1.5 W on ARM; or a
``force_ram_power`` constant). Only GPU energy is always read from the hardware (NVML or AMD
SMI counters; CodeCarbon has no GPU model). A run is therefore ``estimated`` whenever its CPU
or RAM energy is above zero: greenprec never calls a figure measured that the file cannot show
was. Where the file shows the 2.x fallback's signature (a constant 42.5 W: half of the 85 W
default TDP) the import says so.

Files are read bounded (16 MiB), never through a symbolic link that leads out of the folder
the glob starts in, and every file is read and every row checked before anything is written.
A row that cannot be used is left out, counted and named with file:line and the reason; a
header that is not CodeCarbon's (missing kWh columns, unknown columns) refuses the import.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from greenprec.errors import ConfigError

# One bounded walker finds every importer's files; the EnergiBridge importer's group syntax and
# run-id rules are the import command's: CodeCarbon files follow them so both read the same way.
from greenprec.importers._files import find_files, natural_key
from greenprec.importers._staging import check_out, imported_experiment, write_staged
from greenprec.importers.energibridge import (
    Group,
    _parse_group,
    _sanitise,
    run_ids_for,
)
from greenprec.results import (
    ExperimentRecord,
    NodeInfo,
    ResultsStore,
    RunRecord,
)
from greenprec.results.files import read_bounded

__all__ = [
    "GROUP_BY_COLUMNS",
    "KWH_COLUMNS",
    "SOURCE",
    "CodeCarbonImport",
    "import_codecarbon",
]

SOURCE = "codecarbon import"
_METER = "codecarbon"
_J_PER_KWH = 3.6e6

KWH_COLUMNS = ("cpu_energy", "gpu_energy", "ram_energy", "energy_consumed")
"""The energy columns, in kWh in every CodeCarbon release; the total is the last."""
_PARTS = {"cpu_energy": "cpu", "gpu_energy": "gpu", "ram_energy": "ram"}
_REQUIRED = ("timestamp", "duration", *KWH_COLUMNS)

# The columns of each release's EmissionsData (codecarbon/output.py in 2.2.0,
# output_methods/emissions_data.py in 2.8.4 and 3.3.2), in the order CodeCarbon writes them.
_COLUMNS_2_0 = [
    "timestamp",
    "project_name",
    "run_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "on_cloud",
]
_ADDED_2_X = ["experiment_id", "pue"]  # by 2.8.4
_ADDED_3_X = [
    "water_consumed",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "wue",
]
_TASK_COLUMNS = ["task_name"]  # the task API's emissions_<experiment>_<run_id>.csv
_KNOWN = frozenset(_COLUMNS_2_0 + _ADDED_2_X + _ADDED_3_X + _TASK_COLUMNS)
_FORMS = (
    "CodeCarbon's emissions.csv: timestamp, duration (s), cpu_energy, gpu_energy, ram_energy "
    "and energy_consumed (kWh) among the columns 2.2 writes ("
    + ",".join(_COLUMNS_2_0)
    + "), with experiment_id and pue (2.8), and water_consumed, "
    "cpu/gpu/ram_utilization_percent, ram_used_gb and wue (3.x); task_name in task files"
)

GROUP_BY_COLUMNS = ("project_name", "experiment_id", "task_name")
"""Columns that can name a row's policy (``--group-by``)."""

_TDP_DEFAULT_HALF_W = 42.5
"""CodeCarbon 2.x without a CPU power interface and with an unknown CPU model: 50 % of its 85 W
default TDP (``CONSUMPTION_PERCENTAGE_CONSTANT * POWER_CONSTANT`` in external/hardware.py)."""

_SUM_TOLERANCE = 1e-6
"""Relative: the parts are summed by CodeCarbon in floating point, in another order."""

_LISTED = 10  # left-out rows named in one warning line; the rest counted


@dataclass(frozen=True)
class CodeCarbonRow:
    """One usable row of an ``emissions.csv`` file."""

    path: Path
    lineno: int
    index: int
    """1-based position among the file's data rows (run ids use it)."""
    values: dict[str, str]
    duration_s: float
    energy_j: float
    domains_j: dict[str, float]
    ended_at: datetime

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"


@dataclass(frozen=True)
class CodeCarbonImport:
    """What :func:`import_codecarbon` wrote, and what it said about it."""

    store: ResultsStore
    runs: list[RunRecord]
    counts: dict[str, int]
    warnings: list[str]
    left_out: list[str] = field(default_factory=list)
    """One entry per row left out: ``file:line: reason``."""
    notes: list[str] = field(default_factory=list)
    """How the energy was obtained (measured or modelled), per domain."""


@dataclass
class _File:
    path: Path
    rows: list[CodeCarbonRow]
    data_rows: int
    header: list[str]
    left_out: list[str]


def _show(text: str, limit: int = 40) -> str:
    """A header cell for a message: escaped and cut (a header is the only file content named)."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _glob_root(pattern: str) -> Path:
    """The folder a glob starts in: its leading components without wildcards."""
    expanded = os.path.expanduser(pattern)
    parts = Path(expanded).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    root = Path(*fixed) if fixed else Path(".")
    if root == Path(expanded) and not root.is_dir():
        root = root.parent
    return root


def _inside(path: Path, root: Path) -> bool:
    resolved, base = path.resolve(), root.resolve()
    return resolved == base or base in resolved.parents


def _listed(pattern: str, what: str, param: str) -> list[Path]:
    """The files a glob matches; one reached through a link leading out of its folder refused."""
    root = _glob_root(pattern)
    files = find_files(pattern, what, param)
    for path in files:
        if not _inside(path, root):
            # The target is not named: where a link leads is not the importer's to print.
            raise ConfigError(
                f"{path}: a symbolic link to a file outside {root}: refused (copy the file "
                "into the folder instead)",
                param=param,
            )
    return files


def _read_text(path: Path) -> str:
    try:
        # Bounded, regular files only: a FIFO or /dev/zero matched by a glob cannot hang it.
        data = read_bounded(path.resolve())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not UTF-8 text (CodeCarbon writes UTF-8): not an emissions.csv"
        ) from None


def _check_header(path: Path, header: list[str]) -> None:
    """Refuse a header that is not CodeCarbon's: kWh columns missing, unknown columns, repeats.

    Header cells are quoted only when the file is recognisably an emissions.csv (most of its
    required columns are there): a file that is not (a link to /etc/shadow, an environment
    dump) may hold anything, and none of it is printed.
    """
    if not header or header == [""]:
        raise ConfigError(f"{path}:1: empty file: no CodeCarbon header; expected {_FORMS}")
    missing = [c for c in _REQUIRED if c not in header]
    if 2 * len(missing) > len(_REQUIRED):
        raise ConfigError(
            f"{path}:1: no {', '.join(missing)} column(s): not a CodeCarbon emissions.csv "
            f"(its first line is not shown, as the file is none); expected {_FORMS}"
        )
    found = ", ".join(_show(c) for c in header[:40]) + (" …" if len(header) > 40 else "")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ConfigError(
            f"{path}:1: column(s) {', '.join(_show(c) for c in repeated)} appear twice in "
            f"the header: the file cannot be read (the header is {found})"
        )
    unknown = [c for c in header if c not in _KNOWN]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"no {', '.join(missing)} column(s)")
        if unknown:
            problems.append(
                f"column(s) CodeCarbon does not write: {', '.join(_show(c) for c in unknown)}"
            )
        raise ConfigError(
            f"{path}:1: {'; '.join(problems)}: units are never guessed, so the file is "
            f"refused. The header is {found}; expected {_FORMS}"
        )


def _number(cell: str, column: str, *, positive: bool) -> tuple[float | None, str | None]:
    """The cell as a finite number ≥ 0 (> 0 when ``positive``), or the reason it is not."""
    text = cell.strip()
    if text == "":
        return None, f"empty {column}"
    try:
        value = float(text)
    except ValueError:
        return None, f"{column} is not a number"
    if math.isnan(value):
        return None, f"{column} is NaN"
    if math.isinf(value):
        return None, f"{column} is infinite"
    if value < 0:
        return None, f"{column} is negative ({value:g})"
    if positive and value == 0:
        return None, f"{column} is 0"
    return value, None


def _row(
    path: Path, lineno: int, index: int, values: dict[str, str]
) -> tuple[CodeCarbonRow | None, str | None]:
    """A usable row, or the reason it is left out."""
    duration_s, problem = _number(values["duration"], "duration (s)", positive=True)
    if problem is not None:
        return None, problem
    kwh: dict[str, float] = {}
    for column in KWH_COLUMNS:
        value, problem = _number(values[column], f"{column} (kWh)", positive=False)
        if problem is not None:
            return None, problem
        assert value is not None
        kwh[column] = value
    total_kwh = kwh["energy_consumed"]
    if total_kwh == 0:
        return None, "energy_consumed is 0 kWh: the run ended before CodeCarbon measured it"
    parts_kwh = sum(kwh[c] for c in _PARTS)
    if abs(parts_kwh - total_kwh) > _SUM_TOLERANCE * total_kwh:
        return None, (
            "the parts do not add up to the total: cpu_energy + gpu_energy + ram_energy = "
            f"{parts_kwh:.6g} kWh but energy_consumed = {total_kwh:.6g} kWh"
        )
    try:
        ended_at = datetime.fromisoformat(values["timestamp"].strip())
    except ValueError:
        return None, "timestamp is not an ISO 8601 time"
    assert duration_s is not None
    return (
        CodeCarbonRow(
            path=path,
            lineno=lineno,
            index=index,
            values=values,
            duration_s=duration_s,
            energy_j=total_kwh * _J_PER_KWH,
            domains_j={f"codecarbon/{_PARTS[c]}": kwh[c] * _J_PER_KWH for c in _PARTS},
            ended_at=ended_at,
        ),
        None,
    )


def _read_file(path: Path) -> _File:
    """Every row of one ``emissions.csv``: usable ones, and those left out with their reason."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip() for cell in next(reader, [])]
        _check_header(path, header)
        rows: list[CodeCarbonRow] = []
        left_out: list[str] = []
        bad_lines: dict[str, int] = {}
        index = 0
        for cells in reader:
            lineno = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue  # a blank line is no row
            stripped = [c.strip() for c in cells]
            if set(_REQUIRED) <= set(stripped):
                if stripped == header:
                    left_out.append(f"{path}:{lineno}: the header again (files joined)")
                    continue
                # Rows after another header would be read under the wrong column names.
                raise ConfigError(
                    f"{path}:{lineno}: a second, different header: two CodeCarbon files "
                    "joined into one; split the file there"
                )
            index += 1
            if len(cells) != len(header):
                left_out.append(
                    f"{path}:{lineno}: {len(cells)} values but the header has {len(header)} "
                    "columns (a row cut short, or a damaged one)"
                )
                continue
            values = dict(zip(header, cells, strict=True))
            row, problem = _row(path, lineno, index, values)
            if row is None:
                left_out.append(f"{path}:{lineno}: {problem}")
                if run := values.get("run_id", "").strip():
                    bad_lines[run] = lineno
            else:
                rows.append(row)
    except csv.Error as error:
        raise ConfigError(f"{path}:{reader.line_num}: not a CSV row: {error}") from None
    return _File(path, _superseded(rows, bad_lines, left_out), index, header, left_out)


def _superseded(
    rows: list[CodeCarbonRow], bad_lines: dict[str, int], left_out: list[str]
) -> list[CodeCarbonRow]:
    """One row per CodeCarbon run: ``flush()`` writes a run's totals so far as a row of its
    own, so the row with the longest duration holds the whole run; the others are left out,
    and so is every row of a run whose last row was left out (``bad_lines``: CodeCarbon run
    id → that row's line): an earlier total would pass for the whole run."""
    by_run: dict[str, CodeCarbonRow] = {}
    for row in rows:
        run = row.values.get("run_id", "").strip()
        if not run:
            continue
        kept = by_run.get(run)
        if kept is None or row.duration_s >= kept.duration_s:
            by_run[run] = row
    kept_rows = []
    for row in rows:
        run = row.values.get("run_id", "").strip()
        if run in bad_lines and bad_lines[run] > row.lineno:
            left_out.append(
                f"{row.where}: the same CodeCarbon run_id as line {bad_lines[run]}, which is "
                "left out: this earlier total (a flush()) would pass for the whole run"
            )
            continue
        if run and by_run[run] is not row:
            final = by_run[run]
            left_out.append(
                f"{row.where}: the same CodeCarbon run_id as line {final.lineno}, which covers "
                f"longer ({final.duration_s:.6g} s): a flush() before the end, whose energy "
                "that row includes"
            )
            continue
        kept_rows.append(row)
    return kept_rows


def _cpu_note(row: CodeCarbonRow) -> str | None:
    """What the file itself shows about the CPU figure, when it shows something."""
    energy_j = row.domains_j["codecarbon/cpu"]
    if energy_j == 0:
        return None
    power_cell = row.values.get("cpu_power", "").strip()
    try:
        power_w = float(power_cell)
    except ValueError:
        return None
    constant = math.isclose(energy_j / row.duration_s, power_w, rel_tol=0.02)
    if constant and math.isclose(power_w, _TDP_DEFAULT_HALF_W, rel_tol=1e-9):
        return "a constant 42.5 W: CodeCarbon's TDP fallback (50 % of its 85 W default), modelled"
    return None


def import_codecarbon(
    groups: Sequence[str | Group],
    out: str | Path,
    *,
    files: Sequence[str] = (),
    group_by: str | None = None,
    reference: str | None = None,
) -> CodeCarbonImport:
    """Read CodeCarbon ``emissions.csv`` files into the results folder ``out``.

    Either ``groups`` (``NAME=GLOB``: every row of the matched files is a run of policy NAME;
    the first group is the reference), or ``files`` (globs) with ``group_by`` (a column in
    :data:`GROUP_BY_COLUMNS`: each value is a policy, in the order first seen in the files as
    listed; ``reference`` names the one to put first, the reference of the report). Every file
    is read and every row checked before anything is written.
    """
    out = Path(out)
    if reference is not None and group_by is None:
        raise ConfigError(
            "the reference is the first group given: reference goes with group_by",
            param="reference",
        )
    found = _found(groups, files, group_by)
    check_out(out)
    read = {path: _read_file(path) for _, path in found}
    policy_of_file = dict((path, policy) for policy, path in found)
    file_ids = dict(zip([p for _, p in found], run_ids_for([p for _, p in found]), strict=True))

    left_out = [line for f in read.values() for line in f.left_out]
    chosen: list[tuple[str, str, CodeCarbonRow]] = []  # (run id, policy, row)
    for path, parsed in read.items():
        for row in parsed.rows:
            if group_by is None:
                policy = policy_of_file[path]
            else:
                policy, problem = _policy_from(row, group_by)
                if problem is not None:
                    left_out.append(f"{row.where}: {problem}")
                    continue
            run_id = file_ids[path] if parsed.data_rows == 1 else f"{file_ids[path]}-{row.index}"
            chosen.append((run_id, policy, row))
    _check_run_ids(chosen)
    if group_by is not None:
        _check_policy_names(chosen, group_by)
    policies = _policies(groups, chosen, group_by, reference)
    empty = [p for p in policies if not any(policy == p for _, policy, _ in chosen)]
    if empty or not chosen:
        raise ConfigError(
            f"no usable row for policy {', '.join(empty) or '(any)'}"
            + (f"; {len(left_out)} row(s) left out, the first: {left_out[0]}" if left_out else "")
        )

    runs, notes = _runs(chosen)
    warnings = _warnings(chosen, left_out)
    experiment = _experiment(groups, files, group_by, policies, chosen, runs, notes, warnings)
    store = write_staged(out, experiment, runs)
    counts = {p: sum(1 for r in runs if r.policy == p) for p in policies}
    return CodeCarbonImport(store, runs, counts, warnings, left_out, notes)


def _found(
    groups: Sequence[str | Group], files: Sequence[str], group_by: str | None
) -> list[tuple[str, Path]]:
    """(group name or "", file) for every file to read; ConfigError for a wrong combination."""
    if group_by is not None:
        if groups:
            raise ConfigError(
                "give either groups (NAME=GLOB) or group_by with files, not both",
                param="group_by",
            )
        if group_by not in GROUP_BY_COLUMNS:
            raise ConfigError(
                f"cannot group by {_show(group_by)}; choose one of {', '.join(GROUP_BY_COLUMNS)}",
                param="group_by",
            )
        if not files:
            raise ConfigError("group_by needs files: one or more globs", param="files")
        listed = [("", p) for pattern in files for p in _listed(pattern, pattern, "files")]
    else:
        if files:
            raise ConfigError(
                "files are grouped by a column: give group_by too (or use groups NAME=GLOB)",
                param="files",
            )
        parsed = [g if isinstance(g, Group) else _parse_group(g) for g in groups]
        if not parsed:
            raise ConfigError(
                "no group given; give one NAME=GLOB per policy, or group_by a column",
                param="groups",
            )
        names = [g.name for g in parsed]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"group names must differ; given twice: {', '.join(twice)}", param="groups"
            )
        listed = [
            (g.name, p)
            for g in parsed
            for p in _listed(g.pattern, f"group {g.name}={g.pattern}", "groups")
        ]
    owner: dict[Path, str] = {}
    unique: list[tuple[str, Path]] = []
    for name, path in listed:
        resolved = path.resolve()
        if resolved in owner:
            if owner[resolved] == name:
                continue  # one file reached twice (two globs, a link) in one group: read once
            raise ConfigError(
                f"{path} matches both group {owner[resolved]} and group {name}; "
                "make the globs disjoint",
                param="groups",
            )
        owner[resolved] = name
        unique.append((name, path))
    return unique


def _policy_from(row: CodeCarbonRow, column: str) -> tuple[str, str | None]:
    if column not in row.values:
        return "", f"no {column} column to group by"
    value = row.values[column].strip()
    if not value:
        return "", f"empty {column}: no policy to put the run in"
    return _sanitise(value), None


def _check_run_ids(chosen: list[tuple[str, str, CodeCarbonRow]]) -> None:
    """Row ids ``<file id>-<n>`` may meet another file's id (``a.csv``'s second row and a
    one-row ``a-2.csv``); compared ignoring case, as ``samples/<run_id>.csv`` would be."""
    where: dict[str, CodeCarbonRow] = {}
    tracked: dict[str, CodeCarbonRow] = {}
    for run_id, _, row in chosen:
        other = where.setdefault(run_id.casefold(), row)
        if other is not row:
            raise ConfigError(
                f"run id {run_id!r} would be given to both {other.where} and {row.where}; "
                "rename one of the files"
            )
        # One tracker run in two files (a copy, a backup matched too) would count twice.
        codecarbon_run = row.values.get("run_id", "").strip()
        if codecarbon_run:
            first = tracked.setdefault(codecarbon_run, row)
            if first is not row:
                raise ConfigError(
                    f"{first.where} and {row.where} are the same CodeCarbon run (the same "
                    "run_id): a file copied or matched twice? Leave one out"
                )


def _check_policy_names(chosen: list[tuple[str, str, CodeCarbonRow]], column: str) -> None:
    """Two values that become one policy name ("fp 32", "fp-32") would merge two policies."""
    raw: dict[str, set[str]] = {}
    for _, policy, row in chosen:
        raw.setdefault(policy, set()).add(row.values[column].strip())
    merged = {p: sorted(v) for p, v in raw.items() if len(v) > 1}
    if merged:
        policy, values = next(iter(merged.items()))
        raise ConfigError(
            f"{column} values {', '.join(_show(v) for v in values[:4])} all become policy "
            f"{policy!r} (policy names keep to letters, digits and _ . + -); rename them, or "
            "group by glob instead",
            param="group_by",
        )


def _policies(
    groups: Sequence[str | Group],
    chosen: list[tuple[str, str, CodeCarbonRow]],
    group_by: str | None,
    reference: str | None,
) -> list[str]:
    if group_by is None:
        return [(g if isinstance(g, Group) else _parse_group(g)).name for g in groups]
    seen = list(dict.fromkeys(policy for _, policy, _ in chosen))
    if reference is None:
        return seen
    reference = _sanitise(reference.strip())  # as the column's values were
    if reference not in seen:
        raise ConfigError(
            f"reference {_show(reference)} is no {group_by} value of the imported rows; "
            f"they are {', '.join(seen[:10])}",
            param="reference",
        )
    return [reference, *(p for p in seen if p != reference)]


def _started(row: CodeCarbonRow) -> datetime:
    # CodeCarbon stamps the row when the tracker stops: the run began `duration` before.
    return row.ended_at - timedelta(seconds=row.duration_s)


def _runs(chosen: list[tuple[str, str, CodeCarbonRow]]) -> tuple[list[RunRecord], list[str]]:
    """The run records, in the order the runs started; the notes on how energy was obtained."""
    ordered = sorted(
        chosen,
        key=lambda item: (
            _started(item[2]).replace(tzinfo=None),
            natural_key(item[2].path),
            item[2].lineno,
        ),
    )
    # A domain is kept where any run has energy in it: a CPU-only import shows no 0 J GPU.
    present = [
        d
        for d in ("codecarbon/cpu", "codecarbon/gpu", "codecarbon/ram")
        if any(row.domains_j[d] > 0 for _, _, row in chosen)
    ]
    repetition: dict[str, int] = {}
    runs: list[RunRecord] = []
    cpu_notes: dict[str, list[str]] = {}
    for order, (run_id, policy, row) in enumerate(ordered, start=1):
        repetition[policy] = repetition.get(policy, 0) + 1
        domains = {d: row.domains_j[d] for d in present}
        # CPU and RAM energy are never shown to be measured (module docstring); GPU always is.
        estimated = row.domains_j["codecarbon/cpu"] > 0 or row.domains_j["codecarbon/ram"] > 0
        note = _cpu_note(row)
        if note is not None:
            cpu_notes.setdefault(note, []).append(run_id)
        runs.append(
            RunRecord(
                run_id=run_id,
                order=order,
                policy=policy,
                repetition=repetition[policy],
                status="done",
                started_at=_started(row).isoformat(),
                ended_at=row.ended_at.isoformat(),
                duration_s=row.duration_s,
                energy_j=row.energy_j,
                mean_power_w=row.energy_j / row.duration_s,
                meter=_METER,
                estimated=estimated,
                domains=domains,
                counted_domains=list(present),
                node=_node(row),
            )
        )
    notes = _domain_notes(present)
    for note, ids in cpu_notes.items():
        notes.append(f"codecarbon/cpu of {_some(ids)}: {note}")
    return runs, notes


def _node(row: CodeCarbonRow) -> NodeInfo | None:
    cpu_model = row.values.get("cpu_model", "").strip()
    gpu_model = row.values.get("gpu_model", "").strip()
    if not cpu_model and not gpu_model:
        return None
    # gpu_model is CodeCarbon's "<count> x <name>" for all GPUs, as one text.
    return NodeInfo(cpu_model=cpu_model or None, gpus=[{"name": gpu_model}] if gpu_model else [])


def _domain_notes(present: list[str]) -> list[str]:
    text = {
        "codecarbon/cpu": (
            "codecarbon/cpu: not shown to be measured: the file does not say whether "
            "CodeCarbon read RAPL (or Power Gadget, Windows EMI, powermetrics) or modelled the "
            "CPU from its load and a TDP table (its fallback without them): counted as estimated"
        ),
        "codecarbon/gpu": (
            "codecarbon/gpu: measured (NVML or AMD SMI energy counters; CodeCarbon models no GPU)"
        ),
        "codecarbon/ram": (
            "codecarbon/ram: modelled: CodeCarbon estimates RAM power from its size (3 W per "
            "8 GB in 2.x, about 5 W per estimated DIMM on x86 in 3.x) or takes force_ram_power"
        ),
    }
    return [text[d] for d in present]


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _warnings(chosen: list[tuple[str, str, CodeCarbonRow]], left_out: list[str]) -> list[str]:
    warnings: list[str] = []
    if left_out:
        shown = "; ".join(left_out[:_LISTED])
        more = f"; and {len(left_out) - _LISTED} more" if len(left_out) > _LISTED else ""
        warnings.append(f"{len(left_out)} row(s) left out: {shown}{more}")
    pues = sorted({row.values.get("pue", "").strip() or "1" for _, _, row in chosen}, key=str)
    scaled = [p for p in pues if _float_or(p, 1.0) != 1.0]
    if scaled:
        warnings.append(
            f"pue {', '.join(pues)}: CodeCarbon multiplied every energy by the PUE, so the "
            "figures include the data centre's overhead; greenprec keeps them as the files "
            "give them"
            + (" (and the runs differ in PUE: compare within one)" if len(pues) > 1 else "")
        )
    modes: dict[str, set[str]] = {}
    for _, policy, row in chosen:
        modes.setdefault(policy, set()).add(row.values.get("tracking_mode", "").strip() or "?")
    all_modes = {m for ms in modes.values() for m in ms}
    if len(all_modes) > 1:
        listed = "; ".join(f"{p}: {', '.join(sorted(ms))}" for p, ms in modes.items())
        warnings.append(
            "the runs differ in tracking_mode (machine counts the whole machine, process only "
            f"the tracked process): {listed}"
        )
    hardware = {
        (row.values.get("cpu_model", "").strip(), row.values.get("gpu_model", "").strip())
        for _, _, row in chosen
    }
    if len(hardware) > 1:
        warnings.append(
            f"the runs come from {len(hardware)} different machines (cpu_model, gpu_model): "
            "compare runs of one machine"
        )
    return warnings


def _float_or(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def _experiment(
    groups: Sequence[str | Group],
    files: Sequence[str],
    group_by: str | None,
    policies: list[str],
    chosen: list[tuple[str, str, CodeCarbonRow]],
    runs: list[RunRecord],
    notes: list[str],
    warnings: list[str],
) -> ExperimentRecord:
    by_id = {run_id: row for run_id, _, row in chosen}
    parsed = [g if isinstance(g, Group) else _parse_group(g) for g in groups]
    return imported_experiment(
        source=SOURCE,
        meter=_METER,
        runs=runs,
        policies=policies,
        groups={g.name: g.pattern for g in parsed},
        config={"files": list(files), "group_by": group_by},
        estimated=any(r.estimated for r in runs),
        counted_domains=list(dict.fromkeys(d for r in runs for d in r.counted_domains)),
        warnings=warnings,
        imported={
            "tool": "CodeCarbon",
            # file:line of each run's row, and what CodeCarbon called the run.
            "files": {run_id: row.where for run_id, row in by_id.items()},
            "runs": {
                run_id: {
                    key: row.values[key].strip()
                    for key in (
                        "run_id",
                        "project_name",
                        "experiment_id",
                        "task_name",
                        "tracking_mode",
                        "codecarbon_version",
                        "cpu_count",
                        "ram_total_size",
                        "pue",
                    )
                    if key in row.values
                }
                for run_id, row in by_id.items()
            },
            "columns": sorted({c for _, _, row in chosen for c in row.values}),
            "notes": notes,
        },
    )
