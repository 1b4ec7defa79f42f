"""The JSON value types of ``stats.json``: what every ``to_json_dict()`` of the report returns.

Its own module (importing nothing of greenprec) so that the lowest parts of the report, such as
:mod:`greenprec.report.decisions`, can name the type without importing the analysis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

Json: TypeAlias = bool | int | float | str | Sequence["Json"] | Mapping[str, "Json"] | None
JsonObject: TypeAlias = dict[str, Json]
