"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no scripts).

Self-contained so that it can be mailed, attached to a CI run or opened offline, and so
that no external request leaks that someone is reading it.
"""

from __future__ import annotations

import base64
from html import escape

from greenprec.report.content import Content, Table

__all__ = [
    "render",
    "table",
]

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
  max-width: 1180px; margin: 2rem auto; padding: 0 1.2rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.subtitle { color: #555; margin-top: 0; }
.estimated { background: #fff4e5; border-left: 4px solid #f0a020; padding: .6rem .9rem; }
.verdict li { margin: .35rem 0; font-size: 1.02rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .86rem; }
th, td { border: 1px solid #d8d8d8; padding: .3rem .5rem; vertical-align: top; }
th { background: #f3f4f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.note { color: #555; font-size: .88rem; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(470px, 1fr));
  gap: 1rem 1.4rem; }
figure { margin: .4rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .88rem; }
.warnings li { color: #8a4b00; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.env dt { font-weight: 600; }
dl.env dd { margin: 0; }
footer { margin-top: 2.5rem; color: #777; font-size: .85rem; }
"""


def table(t: Table) -> str:
    if not t.rows:
        return '<p class="note">No rows.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = []
    for row in t.rows:
        cells = "".join(
            f'<td class="num">{escape(c)}</td>' if i in t.align_right else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _items(lines: list[str], css: str = "") -> str:
    if not lines:
        return "<p>None.</p>"
    attr = f' class="{css}"' if css else ""
    return f"<ul{attr}>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"


def render(content: Content) -> str:
    """The whole report as one self-contained HTML page (figures inlined as PNG)."""
    parts = [
        *_head(content),
        *_figures(content),
        *_tests(content),
        *_hosts(content),
        *_stopping_targets_machine(content),
        *_runs(content),
        *_closing(content),
    ]
    return "\n".join(parts) + "\n"


def _head(content: Content) -> list[str]:
    """The title, the estimate warning, the verdict and the summary."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(content.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(content.title)}</h1>",
        f'<p class="subtitle">{escape(content.subtitle)}</p>',
    ]
    if content.estimated:
        parts.append(
            '<p class="estimated"><strong>Estimated energy.</strong> The meter estimated energy '
            "instead of measuring it; every energy and power figure below is an estimate.</p>"
        )
    parts += _recommendation(content)
    parts += ["<h2>Verdict</h2>", _items(content.verdict, "verdict")]
    parts += [
        "<h2>Summary</h2>",
        table(content.summary),
        f'<p class="note">{escape(content.summary_note)}</p>',
    ]
    return parts


def _recommendation(content: Content) -> list[str]:
    """The answer of a selection, first: the sentence, the ranked table, then its parts."""
    section = content.recommendation
    if section is None:
        return []
    parts = [
        '<h2 id="recommendation">Recommendation</h2>',
        f"<p><strong>{escape(section.headline)}</strong></p>",
    ]
    if section.lines:
        parts.append(_items(list(section.lines)))
    parts += [table(section.table), f'<p class="note">{escape(section.table_note)}</p>']
    for heading, lines in section.parts:
        parts += [f"<h3>{escape(heading)}</h3>", _items(list(lines))]
    return parts


def _figures(content: Content) -> list[str]:
    parts = ["<h2>Figures</h2>"]
    if not content.figures:
        parts.append("<p>No figure could be drawn (see Not computed).</p>")
    parts.append('<div class="figures">')
    for figure in content.figures:
        data = base64.b64encode(figure.png_bytes).decode("ascii")
        parts.append(
            f'<figure id="fig-{escape(figure.name)}"><h3>{escape(figure.title)}</h3>'
            f'<img src="data:image/png;base64,{data}" alt="{escape(figure.title)}">'
            f"<figcaption>{escape(figure.caption)} Also saved as figures/{escape(figure.name)}"
            ".png and .svg.</figcaption></figure>"
        )
    parts.append("</div>")
    return parts


def _tests(content: Content) -> list[str]:
    """The tests, equivalence and margins, effect sizes and the per-policy table."""
    return [
        "<h2>Tests</h2>",
        table(content.tests),
        f'<p class="note">{escape(content.tests_note)}</p>',
        *(
            [
                '<h3 id="equivalence">Equivalence and margins</h3>',
                _items(content.margins),
                table(content.equivalence),
            ]
            if content.equivalence is not None
            else []
        ),
        "<h3>Effect sizes</h3>",
        table(content.effects),
        "<h3>Per policy</h3>",
        table(content.groups),
    ]


def _hosts(content: Content) -> list[str]:
    if content.hosts is None:
        return []
    parts = [
        '<h2 id="hosts">Hosts</h2>',
        f'<p class="note">{escape(content.hosts_note)}</p>',
        table(content.hosts),
    ]
    if content.hosts_comparisons is not None:
        parts += ["<h3>Energy within hosts</h3>", table(content.hosts_comparisons)]
    if content.hosts_left_out:
        parts += [
            "<p>Runs left out of the host-blocked comparison:</p>",
            _items(content.hosts_left_out),
        ]
    return parts


def _stopping_targets_machine(content: Content) -> list[str]:
    """The sections only some experiments have: why it stopped, energy to a target, the
    machine's state."""
    parts: list[str] = []
    if content.stopping:
        parts += ['<h2 id="stopped">Why the experiment stopped</h2>', _items(content.stopping)]
        if content.looks is not None:
            parts += ["<h3>Looks</h3>", table(content.looks)]
    if content.targets is not None:
        parts += [
            '<h2 id="targets">Energy to a target</h2>',
            table(content.targets),
            _items(content.target_lines),
        ]
    if content.machine is not None or content.machine_lines:
        parts += ['<h2 id="machine">Machine state</h2>', _items(content.machine_lines)]
        if content.machine is not None:
            parts.append(table(content.machine))
    if content.load is not None:
        parts += ['<h2 id="load">Runs measured under load</h2>', _items(content.load_lines)]
        parts.append(table(content.load))
    return parts


def _runs(content: Content) -> list[str]:
    """Runs needed, outliers, and the runs and values not used."""
    parts = ["<h2>Runs needed</h2>", _items(content.planning)]
    parts += ["<h2>Outliers</h2>", _items(content.outliers)]
    parts += ['<h2 id="not-used">Runs not used</h2>']
    if content.not_used:
        parts += [f"<p>{escape(content.not_used[0])}</p>", _items(content.not_used[1:])]
    else:
        parts.append("<p>Every row of runs.csv is used.</p>")
    if content.not_used_values:
        parts += [
            "<p>Values not used (the rest of each run is):</p>",
            _items(content.not_used_values),
        ]
    return parts


def _closing(content: Content) -> list[str]:
    """Warnings, the environment, what was not computed, and the footer."""
    parts = ["<h2>Warnings</h2>", _items(content.warnings, "warnings")]
    env = "".join(
        f"<dt>{escape(key)}</dt><dd>{escape(value)}</dd>" for key, value in content.environment
    )
    parts += ["<h2>Environment</h2>", f'<dl class="env">{env}</dl>']
    if content.not_computed:
        parts += ["<h2>Not computed</h2>", _items(content.not_computed)]
    parts += [
        "<footer>Made by greenprec report. All numbers are in stats.json beside this file."
        "</footer>",
        "</body></html>",
    ]
    return parts
