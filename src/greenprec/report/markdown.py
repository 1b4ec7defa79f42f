"""report.md: the report as Markdown, figures linked from figures/."""

from __future__ import annotations

from pathlib import Path

from greenprec.report.content import Content, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(t: Table) -> str:
    if not t.rows:
        return "_No rows._\n"
    align = ["---:" if i in t.align_right else "---" for i in range(len(t.headers))]
    lines = [
        "| " + " | ".join(_cell(h) for h in t.headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def render(content: Content, folder: Path) -> str:
    out = [f"# {content.title}", "", f"_{content.subtitle}_", ""]
    if content.estimated:
        out += [
            "> **Estimated energy.** The meter estimated energy instead of measuring it; every "
            "energy and power figure below is an estimate.",
            "",
        ]
    out += ["## Verdict", ""]
    out += [f"- {line}" for line in content.verdict]
    out += ["", "## Summary", "", table(content.summary), content.summary_note, ""]
    out += ["## Tests", "", table(content.tests), content.tests_note, ""]
    out += ["### Effect sizes", "", table(content.effects)]
    out += ["### Per policy", "", table(content.groups)]
    out += ["## Runs needed", ""]
    out += [f"- {line}" for line in content.planning]
    out += ["", "## Outliers", ""]
    out += [f"- {line}" for line in content.outliers]
    out += ["", "## Runs not used", ""]
    if content.not_used:
        out += [content.not_used[0], ""]
        out += [f"- {line}" for line in content.not_used[1:]]
    else:
        out += ["Every row of runs.csv is used."]
    if content.not_used_values:
        out += ["", "Values not used (the rest of each run is):", ""]
        out += [f"- {line}" for line in content.not_used_values]
    out += ["", "## Figures", ""]
    if not content.figures:
        out += ["No figure could be drawn (see Not computed).", ""]
    for figure in content.figures:
        png = figure.png.relative_to(folder).as_posix()
        svg = figure.svg.relative_to(folder).as_posix()
        out += [
            f"### {figure.title}",
            "",
            f"![{figure.title}]({png})",
            "",
            f"{figure.caption} ([SVG]({svg}))",
            "",
        ]
    out += ["## Warnings", ""]
    out += [f"- {line}" for line in content.warnings] or ["None."]
    out += ["", "## Environment", ""]
    out += [f"- **{key}**: {value}" for key, value in content.environment]
    if content.not_computed:
        out += ["", "## Not computed", ""]
        out += [f"- {line}" for line in content.not_computed]
    out += ["", "All numbers are in `stats.json`.", ""]
    return "\n".join(out)
