"""Hostile text in a results folder (issue 11): policy names, the folder's name, parameters,
error messages, warnings and environment values with HTML, Markdown and mathtext in them.

report.md must render them as text (no tag, heading, list, table cell, link, code span or
emphasis of their own), report.html likewise, and the figures must draw them as they are.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from markdown_it import MarkdownIt

from greenprec.report import Report, build_report
from greenprec.report.markdown import escape
from legacy_folder import LegacyFolder

# Everything a Markdown or HTML renderer acts on, with line breaks that would start a heading
# or a table row of their own.
HOSTILE = (
    "<script>alert(1)</script>\n## injected heading\n| x | y |\r\n- item `tick` *star* "
    "**bold** _under_ ~~gone~~ [link](javascript:alert(1)) ![img](x.png) $\\frac{$ "
    "&amp; &lt; <img src=x onerror=alert(2)> \\| back\\slash"
)
REFERENCE = "fp32 <b>bold</b> | a"
POLICY = "mixed\n## policy heading *x* [y](javascript:alert(3)) $\\frac{$"
FOLDER = "run <img src=x onerror=alert(4)> | *f* [g](javascript:alert(5)) `c` $\\frac{$ #\n# top"
HEADINGS = [
    "## Verdict",
    "## Summary",
    "## Tests",
    "### Equivalence and margins",
    "### Effect sizes",
    "### Per policy",
    "## Runs needed",
    "## Outliers",
    "## Runs not used",
    "## Figures",
    "### Energy per run",
    "### Mean power over time",
    "### Energy against test accuracy",
    "### Duration per run",
    "## Warnings",
    "## Environment",
]


def write_hostile_folder(path: Path) -> None:
    """A 0.1-layout folder (policy names there are free text) full of hostile values."""
    folder = LegacyFolder(path)
    path.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    for index, policy in enumerate([REFERENCE, POLICY]):
        for repetition in range(1, 5):
            run_id = f"p{index}-{repetition:03d}"  # run ids are restricted to [A-Za-z0-9_.+-]
            energy = 300.0 + 10 * index + repetition
            rows.append(
                {
                    "run_id": run_id,
                    "order": len(rows) + 1,
                    "policy": policy,
                    "repetition": repetition,
                    "seed": repetition,
                    "status": "done",
                    "duration_s": 3.0 + 0.01 * repetition,
                    "energy_j": energy,
                    "mean_power_w": energy / 3.0,
                    "meter": "rapl",
                    "estimated": False,
                    "test_accuracy": 0.9 + 0.01 * repetition + 0.005 * index,
                    "energy_j:rapl/package-0": energy,
                    "counted_domains": "rapl/package-0",
                }
            )
            folder.write_samples(
                run_id,
                [(0.2 * t, "rapl/package-0", energy / 3.0, energy / 15.0 * t) for t in range(16)],
            )
    rows[1].update(status="failed", error="RuntimeError: " + HOSTILE, energy_j=None)
    folder.write_runs(rows)
    folder.write_experiment(
        {
            "format_version": 1,
            "status": "complete",
            "created_at": "2025-01-01T00:00:00+00:00",
            "config": {
                "policies": [REFERENCE, POLICY],
                "workload": "work " + HOSTILE,
                "runs": 4,
                "params": {"lr": HOSTILE, "a|b\n## key": "v"},
            },
            "meters": {"requested": ["rapl"], "used": ["rapl"], "estimated": False},
            "warnings": ["the file says " + HOSTILE],
            "versions": {"greenprec": "test", "python": HOSTILE},
            "host": {"cpu_model": HOSTILE, "hostname": "h\n# host", "gpus": [{"name": HOSTILE}]},
        }
    )


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Report:
    path = tmp_path_factory.mktemp("hostile") / FOLDER
    write_hostile_folder(path)
    return build_report(path)


def one_line(text: str) -> str:
    """What a renderer shows of ``text``: its characters, line breaks as spaces."""
    return re.sub(r"\r\n|[\r\n]", " ", text)


# -- report.md -----------------------------------------------------------------------------------


def test_report_md_has_no_html(hostile: Report) -> None:
    md = hostile.markdown_path.read_text()
    # No "<" that could open a tag, a comment or an autolink: "<script>", "<img", "<b>" raw
    # before the fix. ("p < 0.05" keeps its "<": a space after it opens nothing.)
    assert not re.search(r"<(?!\s)", md), re.findall(r".{20}<(?!\s).{20}", md)[:3]
    assert "&lt;script>alert(1)&lt;/script>" in md


def test_report_md_headings_are_the_reports_own(hostile: Report) -> None:
    lines = hostile.markdown_path.read_text().splitlines()
    headings = [line for line in lines if line.startswith("#")]
    # "## injected heading", "## policy heading", "# top" and "# host" started lines of their
    # own before the fix
    assert headings[0].startswith("# greenprec report: run &lt;img")
    assert headings[1 : len(HEADINGS) + 1] == HEADINGS
    assert headings[len(HEADINGS) + 1 :] in ([], ["## Not computed"])
    # every other line is the report's own kind of line: nothing a value started
    for line in lines:
        assert (
            line == ""
            or line.startswith(("#", "- ", "| ", "_", "![", "> "))
            or (line[0].isupper() or line[0].isdigit())
        ), line


def _unescaped_pipes(row: str) -> int:
    """The "|" that delimit cells: those not escaped by an odd number of backslashes."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", row))


def test_report_md_tables_keep_their_columns(hostile: Report) -> None:
    md = hostile.markdown_path.read_text()
    blocks = re.findall(r"(?:^\|.*\n)+", md, flags=re.MULTILINE)
    assert len(blocks) == 5  # summary, tests, equivalence, effect sizes, per policy
    for block in blocks:
        rows = block.splitlines()
        width = _unescaped_pipes(rows[0])
        assert all(_unescaped_pipes(row) == width for row in rows), block
    # and as a renderer reads them: every body row has as many cells as the header
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    cells = 0
    counts: list[int] = []
    for token in tokens:
        if token.type == "tr_open":
            cells = 0
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            counts.append(cells)
    # tests and equivalence tables have 6 columns; summary, effect sizes, per policy 7 or 8
    assert counts and set(counts) <= {6, 7, 8}
    summary = [row for row in blocks[0].splitlines()[2:]]
    assert len(summary) == 2 and summary[1].startswith("| mixed \\#\\# policy heading")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _rendered(md: str) -> _Tags:
    parser = _Tags()
    parser.feed(MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md))
    return parser


def test_report_md_renders_the_values_as_text(hostile: Report) -> None:
    parser = _rendered(hostile.markdown_path.read_text())
    names = [tag for tag, _ in parser.tags]
    # The report's own markup only: one emphasised subtitle, bold environment keys, four
    # figures and their SVG links, one code span (stats.json). Before the fix the values
    # added links, images, code, emphasis and strikethrough of their own.
    assert "script" not in names and "b" not in names and "s" not in names
    assert names.count("em") == 1
    assert names.count("code") == 1
    assert [attrs["src"] for tag, attrs in parser.tags if tag == "img"] == [
        f"figures/{name}.png"
        for name in ("energy_violin", "power_trace", "energy_vs_accuracy", "duration_violin")
    ]
    assert all(
        attrs["href"] == f"figures/{Path(str(attrs['href'])).name}"
        for tag, attrs in parser.tags
        if tag == "a"
    )
    environment = [line for line in hostile.content.environment]
    assert names.count("strong") == len(environment)
    # escaped, not dropped: each value reads as it was written, line breaks as spaces
    text = "".join(parser.text)
    for value in (one_line(HOSTILE), one_line(REFERENCE), one_line(POLICY), one_line(FOLDER)):
        assert value in text
    assert f"the run failed: RuntimeError: {one_line(HOSTILE)}" in text
    assert "a|b ## key=v" in text and "h # host" in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("fp32_001 energy_j", "fp32_001 energy_j"),  # "_" inside a word emphasises nothing
        ("_x_ *y* `z` ~w~ $m$", "\\_x\\_ \\*y\\* \\`z\\` \\~w\\~ \\$m\\$"),
        ("a\\|b", "a\\\\\\|b"),  # the value's own backslash cannot undo the pipe's escape
        ("p < 0.05, <b>", "p < 0.05, &lt;b>"),
        ("&amp;", "&amp;amp;"),
        ("one\ntwo\r\nthree\u2028four", "one two three four"),
        ("bell\x07 esc\x1b[31m", "bell\\\\x07 esc\\\\x1b\\[31m"),
    ],
)
def test_escape(text: str, shown: str) -> None:
    assert escape(text) == shown
    rendered = _rendered(f"- {escape(text)}")
    assert [tag for tag, _ in rendered.tags] == ["ul", "li"]


# -- report.html ---------------------------------------------------------------------------------


def test_report_html_escapes_the_same_values(hostile: Report) -> None:
    page = hostile.html_path.read_text()
    parser = _Tags()
    parser.feed(page)
    names = {tag for tag, _ in parser.tags}
    assert names <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "ul", "li",
        "div", "table", "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption",
        "strong", "dl", "dt", "dd", "footer",
    }  # fmt: skip
    assert not any(key.startswith("on") for _, attrs in parser.tags for key in attrs)
    assert all(
        str(attrs["src"]).startswith("data:image/png;base64,")
        for tag, attrs in parser.tags
        if tag == "img"
    )
    text = "".join(parser.text)
    for value in (HOSTILE, REFERENCE, POLICY, FOLDER):
        # HTML keeps line breaks as they are (a browser shows them as spaces); runs.csv and
        # JSON give back "\r\n" as "\n"
        assert value.replace("\r\n", "\n") in text
    assert html.escape("<script>alert(1)</script>") in page


# -- figures -------------------------------------------------------------------------------------


def test_figures_draw_dollar_signs_as_text(hostile: Report) -> None:
    # "$\frac{$" in a policy name made matplotlib's mathtext raise ValueError: no report at all
    assert [f.name for f in hostile.figures] == [
        "energy_violin",
        "power_trace",
        "energy_vs_accuracy",
        "duration_violin",
    ]
    svg = (hostile.folder / "figures" / "energy_violin.svg").read_text()
    assert "$\\frac{$" in svg  # the tick label, drawn as it is (and named in a comment)


def test_a_matplotlibrc_with_usetex_does_not_reach_user_text(tmp_path: Path) -> None:
    # With text.usetex on (a user's matplotlibrc), every label went to LaTeX: "$\frac{$"
    # and "<b>" are not LaTeX, and without a LaTeX install nothing could be drawn.
    path = tmp_path / "usetex"
    write_hostile_folder(path)
    with matplotlib.rc_context({"text.usetex": True}):
        report = build_report(path)
    assert len(report.figures) == 4 and report.skipped_figures == {}
