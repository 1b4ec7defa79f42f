"""report.md: the report as Markdown, figures linked from figures/.

Every piece of text that goes into report.md passes through :func:`escape`: policy names, run
ids, the folder's name, parameters, error messages, warnings that quote files and environment
values all come from users, workloads or files, and most of the report's sentences embed one of
them. Escaping whole lines (greenprec's own words included) is what makes that safe without
tracking which part of a sentence came from where; a Markdown renderer shows the same words.
"""

from __future__ import annotations

import re
from pathlib import Path

from greenprec.report.content import Content, Table
from greenprec.report.recommendation import Section

__all__ = [
    "escape",
    "render",
    "table",
]

# What a CommonMark or GitHub renderer ends a line at (\r, \n) and what other tools do (\v,
# \f, NEL, the Unicode line and paragraph separators): a value spanning lines could start a
# heading, a list or a table row of its own.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# Other control characters (escape sequences, NUL) are shown, not passed to a terminal that
# prints report.md.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
# Inline Markdown, escaped with a backslash: code (`), emphasis (*), GitHub strikethrough (~)
# and math ($), links and images ([ ] — "(" and "!" only act next to a bracket), table cells
# (|), heading marks (#, which also close an ATX heading), and the backslash itself so that a
# value's own \ cannot undo the escape that follows it. Text never starts a line (every line
# begins with greenprec's own "- ", "| " or heading), so the block-level marks (-, +, >, 1.)
# need no escape.
_BACKSLASHED = frozenset("\\`*~$[]|#")
# "_" emphasises only at a word's edge in CommonMark: energy_j and fp32_001 stay as they are.
_UNDERSCORE_AT_EDGE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# HTML as entities rather than backslash escapes (not every renderer honours \<): "&" always,
# "<" where it could open a tag, a comment or an autolink, that is unless a space follows it
# ("p < 1e-15" stays readable). A lone ">" opens nothing.
_TAG_OPEN = re.compile(r"<(?!\s)")


def escape(text: object) -> str:
    """``text`` as Markdown that renders as exactly these characters, on one line."""
    out = _LINE_BREAK.sub(" ", str(text))
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", out)
    out = "".join(f"\\{ch}" if ch in _BACKSLASHED else ch for ch in out)
    out = _UNDERSCORE_AT_EDGE.sub(r"\\_", out)
    return _TAG_OPEN.sub("&lt;", out.replace("&", "&amp;"))


def table(t: Table) -> str:
    if not t.rows:
        return "_No rows._\n"
    align = ["---:" if i in t.align_right else "---" for i in range(len(t.headers))]
    lines = [
        "| " + " | ".join(escape(h) for h in t.headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def _items(lines: list[str]) -> list[str]:
    return [f"- {escape(line)}" for line in lines]


def _recommendation(section: Section | None) -> list[str]:
    """The answer of a selection, first: the sentence, the ranked table, then its parts."""
    if section is None:
        return []
    out = ["## Recommendation", "", f"**{escape(section.headline)}**", ""]
    if section.lines:
        out += [*_items(list(section.lines)), ""]
    out += [table(section.table), escape(section.table_note), ""]
    for heading, lines in section.parts:
        out += [f"### {escape(heading)}", "", *_items(list(lines)), ""]
    return out


def _machine(content: Content) -> list[str]:
    """The machine's state as the runs started, and the runs measured under load."""
    out: list[str] = []
    if content.machine is not None or content.machine_lines:
        out += ["## Machine state", ""]
        out += _items(content.machine_lines)
        out += [""]
        if content.machine is not None:
            out += [table(content.machine)]
    if content.load is not None:
        out += ["## Runs measured under load", ""]
        out += _items(content.load_lines)
        out += ["", table(content.load)]
    return out


def render(content: Content, folder: Path) -> str:
    out = [f"# {escape(content.title)}", "", f"_{escape(content.subtitle)}_", ""]
    if content.estimated:
        out += [
            "> **Estimated energy.** The meter estimated energy instead of measuring it; every "
            "energy and power figure below is an estimate.",
            "",
        ]
    out += [*_recommendation(content.recommendation), "## Verdict", ""]
    out += _items(content.verdict)
    out += ["", "## Summary", "", table(content.summary), escape(content.summary_note), ""]
    out += ["## Tests", "", table(content.tests), escape(content.tests_note), ""]
    if content.equivalence is not None:
        out += ["### Equivalence and margins", ""]
        out += _items(content.margins)
        out += ["", table(content.equivalence)]
    out += ["### Effect sizes", "", table(content.effects)]
    out += ["### Per policy", "", table(content.groups)]
    if content.hosts is not None:
        out += ["## Hosts", "", escape(content.hosts_note), "", table(content.hosts)]
        if content.hosts_comparisons is not None:
            out += ["### Energy within hosts", "", table(content.hosts_comparisons)]
        if content.hosts_left_out:
            out += ["Runs left out of the host-blocked comparison:", ""]
            out += _items(content.hosts_left_out)
            out += [""]
    if content.stopping:
        out += ["## Why the experiment stopped", ""]
        out += _items(content.stopping)
        out += [""]
        if content.looks is not None:
            out += ["### Looks", "", table(content.looks)]
    if content.targets is not None:
        out += ["## Energy to a target", "", table(content.targets)]
        out += _items(content.target_lines)
        out += [""]
    out += _machine(content)
    out += ["## Runs needed", ""]
    out += _items(content.planning)
    out += ["", "## Outliers", ""]
    out += _items(content.outliers)
    out += ["", "## Runs not used", ""]
    if content.not_used:
        out += [escape(content.not_used[0]), ""]
        out += _items(content.not_used[1:])
    else:
        out += ["Every row of runs.csv is used."]
    if content.not_used_values:
        out += ["", "Values not used (the rest of each run is):", ""]
        out += _items(content.not_used_values)
    out += ["", "## Figures", ""]
    if not content.figures:
        out += ["No figure could be drawn (see Not computed).", ""]
    for figure in content.figures:
        # The file names are greenprec's own (figures/<name>.png), never a user's text.
        png = figure.png.relative_to(folder).as_posix()
        svg = figure.svg.relative_to(folder).as_posix()
        title = escape(figure.title)
        out += [
            f"### {title}",
            "",
            f"![{title}]({png})",
            "",
            f"{escape(figure.caption)} ([SVG]({svg}))",
            "",
        ]
    out += ["## Warnings", ""]
    out += _items(content.warnings) or ["None."]
    out += ["", "## Environment", ""]
    out += [f"- **{escape(key)}**: {escape(value)}" for key, value in content.environment]
    if content.not_computed:
        out += ["", "## Not computed", ""]
        out += _items(content.not_computed)
    out += ["", "All numbers are in `stats.json`.", ""]
    return "\n".join(out)
