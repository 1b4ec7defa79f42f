"""The recommendation in the terminal: the ranked table and the sentences under it.

``greenprec recommend`` prints :func:`print_recommendation` at its end (``greenprec report``
on a selection folder can too). Every cell and line is a ``rich.text.Text``, so a label, a
parameter value or an error in a left-out run's reason prints as it is: greenprec's consoles
have markup off (:func:`greenprec.cli._common.make_console`), where ``rich.markup.escape``
would print its backslashes, and a ``Text`` is never read as markup on any console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from greenprec.cli._common import add_column, make_table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from greenprec.report.recommendation import Recommendation
    from greenprec.results import ResultsStore

__all__ = ["print_recommendation", "recommendation_lines", "recommendation_table"]


def recommendation_table(rec: Recommendation) -> Table:
    """The ranked table: configuration, energy to the target (mean, 95 % t-interval), time to
    the target, J per sample, runs, reached k of n, final accuracy, status."""
    from rich.text import Text

    from greenprec.report.recommendation import table

    cells = table(rec)
    source = "" if rec.energy_source == "measured" else f" ({rec.energy_source.upper()})"
    out = make_table(f"Energy to {rec.target_text}{source}, ranked")
    for index, header in enumerate(cells.headers):
        add_column(out, header, right=index in cells.align_right)
    for row in cells.rows:
        out.add_row(*(Text(cell) for cell in row))
    return out


def recommendation_lines(rec: Recommendation, *, left_out: bool = True) -> list[Text]:
    """The sentence (bold) first, then where the saving comes from, the cost, the CO2e and the
    runs left out (each one named when ``left_out``)."""
    from rich.text import Text

    lines = [Text(rec.sentence, style="bold")]
    lines += [Text(line) for line in rec.summary[1:]]
    if left_out:
        lines += [
            Text(f"  {item.run_id} ({item.configuration}): {item.reason}") for item in rec.left_out
        ]
    return lines


def print_recommendation(console: Console, store: ResultsStore) -> bool:
    """Print the folder's recommendation (table, then sentences); False, printing nothing, when
    the folder made no selection."""
    from greenprec.report.recommendation import from_store

    rec = from_store(store)
    if rec is None:
        return False
    console.print(recommendation_table(rec))
    for line in recommendation_lines(rec):
        console.print(line)
    return True
