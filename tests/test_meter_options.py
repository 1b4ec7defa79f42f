"""Meter options as pydantic models: one line per problem, the same from every door.

A bad option gives the same one-line ConfigError whether it comes from Python
(``RaplMeter(...)``, ``measure(meter_options=...)``), from ``-o KEY=VALUE`` on the command line
or from a TOML config; a meter written before models (no ``Options``) gets a model made from
its ``__init__`` keywords and goes the same way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ConfigDict, Field, ValidationError
from typer.testing import CliRunner

import greenprec
from greenprec import ConfigError, plugins
from greenprec.cli import app
from greenprec.experiment.config import load_config
from greenprec.meters.base import Meter, Probe, Reading
from greenprec.meters.mock import MockMeter
from greenprec.meters.options import Flag, MeterOptions, PositiveNumber
from greenprec.meters.rapl import RaplMeter
from greenprec.meters.rapl.options import RaplOptions
from greenprec.meters.registry import (
    OptionDoc,
    get_meter_class,
    option_docs,
    options_for,
    resolve,
)

runner = CliRunner()

PREFER_PSYS = "rapl option prefer_psys must be true or false (or 1/0, yes/no), got 'maybe'"
MOCK_POWER = "mock power_w must be a number of watts, got 'abc'"
MOCK_UNKNOWN = "meter 'mock' takes no option 'colour' (it takes: power_w, domain)"
RAPL_UNKNOWN = "meter 'rapl' takes no option 'colour' (it takes: root, prefer_psys)"


def _error(action: Callable[[], object]) -> str:
    with pytest.raises(ConfigError) as caught:
        action()
    return str(caught.value)


def _measure(meter: str, options: dict[str, Any]) -> str:
    return _error(lambda: greenprec.measure(meter, meter_options=options).start())


def _cli_measure(meter: str, option: str) -> str:
    result = runner.invoke(
        app, ["measure", "--meter", meter, "-o", option, "--", sys.executable, "-c", "pass"]
    )
    assert isinstance(result.exception, ConfigError), result.output
    return str(result.exception)


def _cli_meters_reason(meter: str, option: str) -> str:
    """`greenprec meters` shows a meter's bad option as the reason it cannot be used."""
    result = runner.invoke(app, ["meters", "--json", "-o", option])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)["meters"]}
    assert rows[meter]["available"] is False
    return str(rows[meter]["reason"])


def _toml(tmp_path: Path, meter: str, key: str, value: str) -> str:
    """The line ``load_config`` gives for a TOML file's meter_options (it resolves the meters
    up front, as the runner will)."""
    path = tmp_path / "experiment.toml"
    path.write_text(
        f'policies = ["fp32"]\nmeters = ["{meter}"]\nmeter_options = {{"{key}" = "{value}"}}\n'
    )
    lines = _error(lambda: load_config(None, path)).splitlines()
    assert len(lines) == 1, lines
    return lines[0].removeprefix("meters: ")


# -- the same line from every door ---------------------------------------------------------
def test_a_bad_value_is_the_same_line_from_python_cli_and_toml(tmp_path: Path) -> None:
    assert _error(lambda: RaplMeter(prefer_psys="maybe")) == PREFER_PSYS
    assert _error(lambda: RaplMeter.probe(prefer_psys="maybe")) == PREFER_PSYS
    assert _measure("rapl", {"prefer_psys": "maybe"}) == PREFER_PSYS
    assert _measure("rapl", {"rapl.prefer_psys": "maybe"}) == PREFER_PSYS
    assert _cli_measure("rapl", "rapl.prefer_psys=maybe") == PREFER_PSYS
    assert _cli_meters_reason("rapl", "rapl.prefer_psys=maybe") == PREFER_PSYS
    assert _toml(tmp_path, "rapl", "rapl.prefer_psys", "maybe") == PREFER_PSYS

    assert _error(lambda: MockMeter(power_w="abc")) == MOCK_POWER
    assert _measure("mock", {"power_w": "abc"}) == MOCK_POWER
    assert _cli_measure("mock", "power_w=abc") == MOCK_POWER
    assert _toml(tmp_path, "mock", "mock.power_w", "abc") == MOCK_POWER
    # The mock's probe validates through its model too, so `greenprec meters` and the
    # probe before every measure() refuse what creating the meter would refuse.
    assert _error(lambda: MockMeter.probe(power_w="abc")) == MOCK_POWER
    assert _cli_meters_reason("mock", "mock.power_w=abc") == MOCK_POWER


def test_an_unknown_option_is_one_line_naming_what_the_meter_takes(tmp_path: Path) -> None:
    assert _error(lambda: MockMeter(colour="red")) == MOCK_UNKNOWN
    assert _measure("mock", {"colour": "red"}) == MOCK_UNKNOWN
    assert _cli_measure("mock", "colour=red") == MOCK_UNKNOWN
    assert _cli_meters_reason("mock", "mock.colour=red") == MOCK_UNKNOWN
    assert _toml(tmp_path, "mock", "mock.colour", "red") == MOCK_UNKNOWN
    # Python-only options (rapl's reader and clock) are not offered to command-line users.
    assert _error(lambda: RaplMeter(colour="red")) == RAPL_UNKNOWN
    assert _cli_meters_reason("rapl", "rapl.colour=red") == RAPL_UNKNOWN


def test_several_unknown_options_are_named_together() -> None:
    message = _error(lambda: MockMeter(colour="red", size=3, power_w="abc"))
    assert message.startswith("meter 'mock' takes no option 'colour', 'size' (it takes: ")


def test_auto_sends_plain_options_only_to_meters_whose_model_has_them() -> None:
    given = {"power_w": "5", "root": "/x", "prefer_psys": "on", "rapl.colour": "red"}
    assert options_for(MockMeter, given) == {"power_w": "5"}
    # A scoped key always reaches its meter, so a misspelt one is refused, not dropped.
    assert options_for(RaplMeter, given) == {"root": "/x", "prefer_psys": "on", "colour": "red"}


# -- the models -----------------------------------------------------------------------------
def test_built_in_meters_name_their_model_and_validate_through_it() -> None:
    assert RaplMeter.Options == "greenprec.meters.rapl.options:RaplOptions"  # imported on first use
    assert RaplMeter.options_model() is RaplOptions
    meter = RaplMeter(root=Path("/somewhere"), prefer_psys="on")
    assert meter.options == RaplOptions(root="/somewhere", prefer_psys=True)
    assert (meter.root, meter.prefer_psys) == ("/somewhere", True)
    with pytest.raises(ValidationError):
        meter.options.root = "/elsewhere"  # type: ignore[misc]  # frozen: set once, at creation


def test_a_model_used_directly_names_its_meter_from_its_title() -> None:
    with pytest.raises(ValidationError, match="rapl option prefer_psys must be true or false"):
        RaplOptions(prefer_psys="maybe")


def test_no_message_spans_lines_or_floods_the_terminal() -> None:
    class Counted(MeterOptions):
        model_config = ConfigDict(title="counted")
        count: int = 1

    message = _error(lambda: Counted.parse({"count": "x" * 5000}))
    assert message.startswith("counted option count must be a valid integer")
    assert message.endswith("…") and "\n" not in message and len(message) < 200


def test_option_docs_give_every_option_its_default_and_meaning() -> None:
    docs = {doc.name: doc for doc in option_docs(RaplMeter)}
    assert list(docs) == ["root", "prefer_psys", "reader", "clock"]
    assert docs["root"].default == "/sys/class/powercap"
    assert docs["prefer_psys"].default is False
    assert docs["reader"].python_only and not docs["root"].python_only
    for name in ("rapl", "nvml", "energibridge", "estimate", "mock"):
        for doc in option_docs(get_meter_class(name)):
            assert doc.description and "\n" not in doc.description, (name, doc)
            json.dumps(doc.default)  # what `greenprec meters --json` can print


# -- third-party meters -----------------------------------------------------------------------
class _BoardOptions(MeterOptions):
    model_config = ConfigDict(title="board")

    gain: PositiveNumber = Field(1.0, description="multiplies the 7 W")
    enabled: Flag = Field(True, description="read the board at all")


class _ModelBoard(Meter):
    """A plugin meter that declares a model and no __init__ at all."""

    name = "modelboard"
    Options = _BoardOptions

    def read(self) -> list[Reading]:
        assert isinstance(self.options, _BoardOptions)
        return [Reading("modelboard/0", power_w=7.0 * self.options.gain)]


class _LegacyBoard(Meter):
    """A plugin meter written before models: options are its __init__ keywords."""

    name = "legacyboard"
    auto = True
    covers = frozenset({"legacyboard"})

    def __init__(self, gain: str = "1") -> None:
        self.gain = float(gain)

    @classmethod
    def probe(cls, **options: Any) -> Probe:
        return Probe(True, domains=["legacyboard/0"])

    def read(self) -> list[Reading]:
        return [Reading("legacyboard/0", power_w=7.0 * self.gain)]


class _Plugin:
    @greenprec.hookimpl
    def greenprec_meters(self) -> list[type[Meter]]:
        return [_ModelBoard, _LegacyBoard]


def test_a_plugin_meter_with_a_model_gets_the_same_checks_without_writing_init() -> None:
    plugins.register(_Plugin(), name="boards")
    (meter,) = resolve("modelboard", {"gain": "2", "enabled": "off"})
    assert meter.options == _BoardOptions(gain=2.0, enabled=False)
    with pytest.raises(ConfigError, match=r"^modelboard option gain must be a positive number"):
        resolve("modelboard", {"gain": "-1"})
    assert _measure("modelboard", {"colour": "red"}) == (
        "meter 'modelboard' takes no option 'colour' (it takes: gain, enabled)"
    )
    assert option_docs(_ModelBoard)[0] == OptionDoc("gain", 1.0, "multiplies the 7 W")


def test_a_plugin_meter_without_a_model_keeps_its_init_keywords() -> None:
    plugins.register(_Plugin(), name="boards")
    model = _LegacyBoard.options_model()  # made from its __init__, once
    assert model is _LegacyBoard.options_model() and list(model.model_fields) == ["gain"]
    (meter,) = resolve("legacyboard", {"gain": "3"})
    assert isinstance(meter, _LegacyBoard) and meter.gain == 3.0
    # In auto, a plain option reaches it only when its __init__ takes that keyword.
    given = {"gain": "2", "power_w": "5", "legacyboard.other": "x"}
    assert options_for(_LegacyBoard, given) == {"gain": "2", "other": "x"}
    # The same line as a meter with a model, from the model made from its keywords.
    assert _measure("legacyboard", {"colour": "red"}) == (
        "meter 'legacyboard' takes no option 'colour' (it takes: gain)"
    )
    assert option_docs(_LegacyBoard) == [OptionDoc("gain", "1", "")]


class _Scripted(Meter):
    """A meter written before models, with a required keyword and one it ignores."""

    name = "scripted"

    def __init__(self, values: list[float], kind: str = "energy_j", _seed: int = 0) -> None:
        self.values, self.kind = values, kind

    def read(self) -> list[Reading]:
        return [Reading("scripted/0", energy_j=self.values[0])]


class _Keywords(Meter):
    """A meter written before models that takes any option as ``**options``."""

    name = "keywords"

    def __init__(self, **options: object) -> None:
        super().__init__()
        self.given = options


def test_a_model_made_from_init_lists_requires_and_refuses_like_any_model() -> None:
    from greenprec.meters.registry import accepted_options, create

    assert accepted_options(_Scripted) == {"values", "kind"}  # _seed is no option
    assert option_docs(_Scripted) == [
        OptionDoc("values", None, ""),
        OptionDoc("kind", "energy_j", ""),
    ]
    assert _error(lambda: create(_Scripted, {"kind": "power_w"})) == (
        "meter 'scripted' needs option values"
    )
    made = create(_Scripted, {"values": [1.0, 2.0]})
    assert isinstance(made, _Scripted) and made.values == [1.0, 2.0]  # passed as given
    # **options takes any name: every plain option reaches it, none is refused.
    assert accepted_options(_Keywords) is None
    assert options_for(_Keywords, {"power_w": "5"}) == {"power_w": "5"}
    keywords = create(_Keywords, {"anything": 1})
    assert isinstance(keywords, _Keywords) and keywords.given == {"anything": 1}
    assert option_docs(_Keywords) == []


def test_a_meter_without_init_or_model_takes_no_option() -> None:
    class Bare(Meter):
        name = "bare"

    assert Bare().options == Bare.options_model()()
    assert _error(lambda: Bare(colour="red")) == (
        "meter 'bare' takes no option 'colour' (it takes none)"
    )


def test_a_meter_without_a_model_imports_pydantic_only_when_its_options_are_checked() -> None:
    code = textwrap.dedent(
        """
        import sys
        import greenprec
        from greenprec.meters.registry import create, meter_classes, options_for

        class Board(greenprec.Meter):
            name = "board"
            def __init__(self, gain="1"):
                self.gain = float(gain)

        meter_classes()
        before = "pydantic" in sys.modules
        board = create(Board, options_for(Board, {"gain": "2", "power_w": "5"}))
        print(before, "pydantic" in sys.modules, board.gain)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "2.0"]


def test_a_wrong_options_attribute_is_named_on_first_use() -> None:
    class Broken(Meter):
        name = "broken"
        Options = "greenprec.meters.rapl:RaplMeter"  # a meter, not an options model

    with pytest.raises(TypeError, match="'broken': Options must be a MeterOptions subclass"):
        Broken()


def test_meters_json_lists_each_meters_options() -> None:
    from typer.testing import CliRunner

    from greenprec.cli import app

    result = CliRunner().invoke(app, ["meters", "--json"])
    assert result.exit_code == 0, result.output
    meters = {m["name"]: m for m in json.loads(result.stdout)["meters"]}
    rapl = {o["name"]: o for o in meters["rapl"]["options"]}
    assert rapl["root"]["default"] == "/sys/class/powercap" and not rapl["root"]["python_only"]
    assert rapl["reader"]["python_only"]
    assert [o["name"] for o in meters["mock"]["options"]] == ["power_w", "domain"]
