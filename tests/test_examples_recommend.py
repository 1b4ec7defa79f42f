"""The `greenprec recommend` tutorial's workloads (examples/recommend_torch.py and
examples/recommend_keras.py) and the page that explains them (docs/recommend.md).

- The workloads check their params and declare their metrics without importing a framework, so
  `recommend` refuses a typo or an unreachable target before anything runs.
- Through `greenprec compare --target ... --stop-at-target`, each trains until the target and
  stops there.
- The page's before/after diffs are the examples' own lines, in order, and the page's blocks
  that import an example run here, with the examples copied into the block's folder (the docs
  test runs each block in an empty folder, so it marks them not-run and points here).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from greenprec.errors import ConfigError
from greenprec.experiment.candidates import candidates, check_workload_accepts, parse_vary
from greenprec.workloads import STANDARD_METRICS, recorded_metrics, target_problems
from test_docs_examples import Block, extract_blocks

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PAGE = ROOT / "docs" / "recommend.md"
EXAMPLE_FILES = {"recommend_torch": "torch", "recommend_keras": "tensorflow"}
"""Each example module, and the framework it trains with."""
"""What a page block's not-run reason says when this module runs it."""
# One OpenMP thread in child Pythons: on the 2-core machines the suite runs on, PyTorch's
# threads spin-wait for cores other processes hold (see test_workloads_torch.py).
CHILD_ENV = {"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def load_example(name: str) -> ModuleType:
    """An example module, imported from its file (the examples folder is no package)."""
    spec = importlib.util.spec_from_file_location(f"gp_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=sorted(EXAMPLE_FILES))
def example(request: pytest.FixtureRequest) -> ModuleType:
    return load_example(str(request.param))


# --- checked before anything runs, with no framework imported ------------------------------


def test_the_examples_import_no_framework() -> None:
    """recommend imports the workload to check it: that must not cost TensorFlow or PyTorch."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(EXAMPLES)!r})\n"
        "import recommend_keras, recommend_torch\n"
        "recommend_torch.train.check_params({'batch_size': 32})\n"
        "recommend_keras.train.check_params({'batch_size': 32})\n"
        "loaded = {'torch', 'tensorflow', 'keras', 'sklearn'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_examples_declare_the_standard_metrics(example: ModuleType) -> None:
    assert recorded_metrics(example.train) == STANDARD_METRICS
    assert example.train.framework == EXAMPLE_FILES[example.NAME.split(":")[0]].replace(
        "tensorflow", "keras"
    )


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ({"accuracy": 0.95}, "did you mean test_accuracy=0.95?"),
        ({"test_accuracy": 95.0}, "for 95 % write test_accuracy=0.95"),
        ({"test_loss": -1.0}, "test_loss is 0 or more"),
    ],
)
def test_an_unreachable_target_is_refused(
    example: ModuleType, targets: dict[str, float], expected: str
) -> None:
    problems, notes = target_problems(targets, example.train, example.NAME)
    assert len(problems) == 1 and expected in problems[0] and not notes


def test_a_reachable_target_passes(example: ModuleType) -> None:
    assert target_problems({"test_accuracy": 0.95}, example.train, example.NAME) == ([], [])


def test_params_default_to_the_script_settings(example: ModuleType) -> None:
    settings = example.train.check_params({})
    assert settings == example.Settings()
    given = example.train.check_params(
        {"batch_size": 256, "learning_rate": 3e-3, "epochs": 12, "hidden": None}
    )
    assert (given.batch_size, given.learning_rate, given.epochs) == (256, 3e-3, 12)
    assert given.hidden == example.Settings.hidden  # None: not given, as compare passes it
    assert example.train.check_params({"learning_rate": 1})  # an int learning rate is a number


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"batchsize": 32}, "has no param 'batchsize' (known: batch_size, learning_rate"),
        ({"batch_size": 0}, "batch_size must be a whole number, 1 or more, got 0"),
        ({"batch_size": 32.5}, "batch_size must be a whole number, 1 or more, got 32.5"),
        ({"batch_size": True}, "batch_size must be a whole number, 1 or more, got True"),
        ({"epochs": "ten"}, "epochs must be a whole number, 1 or more, got 'ten'"),
        ({"learning_rate": 0}, "learning_rate must be a number above 0, got 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a number above 0, got nan"),
        ({"learning_rate": False}, "learning_rate must be a number above 0, got False"),
    ],
)
def test_bad_params_are_refused_in_one_line(
    example: ModuleType, params: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        example.train.check_params(params)
    message = str(error.value)
    assert expected in message and "\n" not in message and message.startswith(example.NAME)


def test_only_the_torch_example_takes_a_device() -> None:
    assert load_example("recommend_torch").train.check_params({"device": "cpu"})
    with pytest.raises(ConfigError, match="has no param 'device'"):
        load_example("recommend_keras").train.check_params({"device": "cpu"})


def test_recommend_checks_every_candidate_with_check_params(example: ModuleType) -> None:
    """What recommend does with --vary before the first run: each candidate checked."""
    good = candidates(("fp32", "bf16"), parse_vary(["batch_size=32,128"]))
    assert check_workload_accepts(example.train, good, {"epochs": 30})
    bad = candidates(("fp32",), parse_vary(["batch_size=32,0"]))
    with pytest.raises(ConfigError, match=r"^candidate fp32-batch_size=0: .*batch_size must be"):
        check_workload_accepts(example.train, bad)


# --- through compare: trained until the target, then stopped --------------------------------


def compare_to_target(
    workload: str, out: Path, *, policies: tuple[str, ...]
) -> list[dict[str, Any]]:
    """`greenprec compare` on an example, each run in its own process (as recommend runs it),
    stopping at 90 % test accuracy; the run records."""
    command = [
        sys.executable, "-m", "greenprec", "compare", *policies, "--workload", workload,
        "--runs", "1", "--meter", "mock", "--warmup", "0", "--cooldown", "0",
        "--epochs", "40", "--param", "batch_size=32",
        "--target", "test_accuracy=0.9", "--stop-at-target", "--quiet", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, **CHILD_ENV, "PYTHONPATH": str(EXAMPLES)}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted((out / "runs").glob("*.json"))]


def check_stopped_at_target(records: list[dict[str, Any]], policies: tuple[str, ...]) -> None:
    assert sorted(record["policy"] for record in records) == sorted(policies)
    for record in records:
        assert record["status"] == "done", record.get("error")
        (target,) = record["targets"]
        assert target["reached"] and target["metric"] == "test_accuracy"
        epochs_run = record["epochs_run"]
        assert record["stopped_at_target"] and target["epoch"] == epochs_run < 40
        # Trained no further than the target: the final accuracy is the epoch's that reached it.
        assert record["metrics"]["epochs"] == epochs_run
        assert target["final_value"] == pytest.approx(record["metrics"]["test_accuracy"])
        assert record["metrics"]["test_accuracy"] >= 0.9
        assert record["samples_trained"] == 1347 * epochs_run  # the digits training split


@pytest.mark.slow
@pytest.mark.torch
def test_the_torch_example_stops_at_its_target_through_compare(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    policies = ("fp32", "bf16")
    records = compare_to_target("recommend_torch:train", tmp_path / "exp", policies=policies)
    check_stopped_at_target(records, policies)
    assert {record["framework"]["name"] for record in records} == {"torch"}


@pytest.mark.slow
@pytest.mark.tensorflow
def test_the_keras_example_stops_at_its_target_through_compare(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("sklearn")
    policies = ("fp32", "bf16")
    records = compare_to_target("recommend_keras:train", tmp_path / "exp", policies=policies)
    check_stopped_at_target(records, policies)
    assert {record["framework"]["name"] for record in records} == {"keras"}


# --- the page ---------------------------------------------------------------------------------


def page_blocks() -> list[Block]:
    return extract_blocks(PAGE)


def code_lines(text: str) -> list[str]:
    """Lines without trailing blanks, blank lines left out (the page may drop a blank's spaces)."""
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def in_order(wanted: list[str], lines: list[str]) -> list[str]:
    """The lines of ``wanted`` not found in ``lines`` in this order (a subsequence)."""
    remaining = iter(lines)
    return [line for line in wanted if not any(line == candidate for candidate in remaining)]


def diff_sides(diff: str) -> tuple[list[str], list[str]]:
    """The before and after sides of a page diff (``@@`` separators and the ``...`` lines that
    stand for a part shown elsewhere left out)."""
    before: list[str] = []
    after: list[str] = []
    for line in diff.splitlines():
        if line.startswith("@@"):
            continue
        sign, code = line[:1], line[1:].rstrip()
        if not code.strip() or code.strip().startswith("..."):
            continue
        if sign in {" ", "-"}:
            before.append(code)
        if sign in {" ", "+"}:
            after.append(code)
    return before, after


def test_the_page_diffs_are_the_examples() -> None:
    """Each diff's + and context lines are the example file's, in order; its - and context
    lines are the script shown before it. A change to an example fails here until the page
    shows it too."""
    blocks = page_blocks()
    diffs = [(i, block) for i, block in enumerate(blocks) if block.language == "diff"]
    assert len(diffs) == 2
    for index, diff in diffs:
        script = next(b for b in reversed(blocks[:index]) if b.language == "python")
        name = next(name for name in EXAMPLE_FILES if f'NAME = "{name}:train"' in diff.code)
        before, after = diff_sides(diff.code)
        example = code_lines((EXAMPLES / f"{name}.py").read_text())
        assert not in_order(after, example), f"{diff.id}: not in examples/{name}.py"
        assert not in_order(before, code_lines(script.code)), f"{diff.id}: not in {script.id}"


def test_the_page_shows_the_settings_function_as_it_is() -> None:
    shown = next(b for b in page_blocks() if b.code.startswith("def settings("))
    source = code_lines((EXAMPLES / "recommend_torch.py").read_text())
    lines = code_lines(shown.code)
    start = source.index(lines[0])
    # The page leaves out the docstring: the rest is the example's function, line for line.
    body = [line for line in source[start:] if line.strip()]
    without_docstring = [body[0], *body[3:]]
    assert without_docstring[: len(lines)] == lines


def test_the_page_config_file_is_one_recommend_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's TOML block, planned as `greenprec recommend --config` plans it: every setting
    known, the example's params accepted, the [recommend] table read (nothing runs)."""
    from greenprec.experiment.recommend import RecommendRequest, plan_recommendation

    (toml,) = [b for b in page_blocks() if b.language == "toml"]
    config_file = tmp_path / "recommend.toml"
    config_file.write_text(toml.code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    plan = plan_recommendation(RecommendRequest(), {}, config_file)
    labels = [candidate.label for candidate in plan.candidates]
    assert labels == [
        "fp32-batch_size=32",
        "fp32-batch_size=128",
        "bf16-batch_size=32",
        "bf16-batch_size=128",
    ]
    config = plan.config
    assert config.workload == "recommend_torch:train" and config.targets == {"test_accuracy": 0.95}
    assert (config.runs, config.min_runs, config.params["epochs"]) == (10, 3, 30)
    assert config.grid_intensity == "350g/kWh" and config.stop_at_target
    assert config.selection is not None and config.selection.indifference == "3%"


def test_the_page_runs_its_example_blocks_in_the_docs_test() -> None:
    """The blocks that import an example are run by tests/test_docs_examples.py, with the
    examples copied into their folder (its ``recommend-examples`` set-up)."""
    needing = [b for b in page_blocks() if any(name in b.code for name in EXAMPLE_FILES)]
    needing = [
        b
        for b in needing
        if b.language in {"python", "py", "bash", "sh", "shell"} and "not-run" not in b.directives
    ]
    assert len(needing) >= 5
    for block in needing:
        assert "recommend-examples" in block.directives.get("setup", ""), block.id
