"""The examples in the documentation run.

Every fenced ```` ```python ```` and ```` ```bash ```` block of ``docs/**/*.md`` and ``README.md``
runs, each in a fresh temporary folder and its own process (python blocks as a script, bash
blocks with ``set -euo pipefail``), unless it says otherwise in an HTML comment right before its
fence (blank lines between are allowed; the comment is invisible on the page):

- ``<!-- not-run: REASON -->``: skipped, with REASON in pytest's skip list ("needs an NVIDIA
  GPU", "needs a Slurm cluster", "`model` stands for your own model" ...).
- ``<!-- setup: NAME [NAME ...] -->``: runs after the named set-ups below (:data:`PRELUDES`:
  code put before the block; :data:`FOLDERS`: files made in the temporary folder first).
- ``<!-- needs: MODULE [MODULE ...] -->``: skipped when a module is not installed.
- ``<!-- slow -->``: marked ``slow`` (CI runs those), as is every block whose set-up trains or
  runs an experiment (:data:`SLOW_SETUPS`); ``<!-- timeout: S -->``: its own limit.

Several directives may share one comment, each after a ``;``. Other fences (``text``, ``toml``,
``json``, ``console`` transcripts, no language) are output or configuration and never run.
README.md's first ```` ```bash ```` block is the project's own CI command (``.ci/run`` runs its
two lines) and is not run here; its other blocks get their directives from
:data:`README_DIRECTIVES`, since README.md has no comments of this kind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TIMEOUT_S = 120.0
RUNNABLE = {"python", "py", "bash", "sh", "shell"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
COMMENT = re.compile(r"<!--(.*?)-->", re.DOTALL)
DIRECTIVES = ("not-run", "setup", "needs", "slow", "timeout")
# "; " starts a new directive only before a directive's name: a reason may hold semicolons.
DIRECTIVE_SEPARATOR = re.compile(r";\s*(?=(?:" + "|".join(DIRECTIVES) + r")\b)")

# Code put before a block, by name (``<!-- setup: NAME -->``). Python only.
PRELUDES: dict[str, str] = {
    "greenprec": "import json\nimport time\n\nimport greenprec\nimport greenprec.precision\n"
    "import greenprec.workloads\n",
    # What the measure() examples measure.
    "work": "import time\n\n\ndef work():\n    time.sleep(0.05)\n",
    # Energies of two policies, as the stats and README examples name them.
    "energy-arrays": textwrap.dedent(
        """\
        import json

        import numpy as np

        rng = np.random.default_rng(0)
        fp32_j = fp32_energy_j = rng.normal(700.0, 20.0, 10)
        mixed_j = mixed_energy_j = rng.normal(610.0, 20.0, 10)
        energy_j = np.concatenate([fp32_j, mixed_j])
        policy = ["fp32"] * 10 + ["mixed"] * 10
        run_id = [f"{p}-{i:03d}" for p, i in zip(policy, list(range(1, 11)) * 2)]
        """
    ),
    # metric -> policy -> values after 4 runs of each, and the answers of an earlier look.
    "sequential-data": textwrap.dedent(
        """\
        data = {
            "energy_j": {"fp32": [700.0, 705.0, 698.0, 702.0],
                         "mixed": [610.0, 612.0, 608.0, 611.0]},
            "test_accuracy": {"fp32": [0.981, 0.979, 0.980, 0.982],
                              "mixed": [0.980, 0.981, 0.979, 0.980]},
        }

        class previous:  # the Look of the previous call: nothing settled yet
            answers = ()
        """
    ),
    # A tiny Keras model and data: what the examples call model, x and y.
    "keras-model": textwrap.dedent(
        """\
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
        import numpy as np

        x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
        y = (x.sum(axis=1) > 0).astype("float32")

        def build_model():
            model = keras.Sequential(
                [keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                 keras.layers.Dense(1, activation="sigmoid", dtype="float32")]
            )
            return model

        model = build_model()
        model.compile(optimizer="adam", loss="binary_crossentropy")
        """
    ),
}

TINY_WORKLOAD = textwrap.dedent(
    """\
    import time

    from greenprec.workloads import workload


    @workload(keras=False)
    def train(ctx):
        with ctx.measured():
            time.sleep(0.1)
        return {"test_accuracy": 0.95 + (ctx.seed % 7) / 1000, "test_loss": 0.2}
    """
)


def _results_folder(folder: Path, env: dict[str, str]) -> None:
    """``greenprec-results/20250101-120000``: 2 runs each of fp32 and mixed, mock meter."""
    (folder / "docs_tiny_workload.py").write_text(TINY_WORKLOAD)
    subprocess.run(
        [sys.executable, "-m", "greenprec", "compare", "fp32", "mixed", "--runs", "2",
         "--workload", "docs_tiny_workload:train", "--meter", "mock", "--warmup", "0",
         "--cooldown", "0", "--quiet", "--out", "greenprec-results/20250101-120000"],
        cwd=folder, env=env, check=True, capture_output=True, timeout=DEFAULT_TIMEOUT_S,
    )  # fmt: skip


def _recommend_examples(folder: Path, env: dict[str, str]) -> None:
    """examples/recommend_torch.py and recommend_keras.py, which docs/recommend.md runs."""
    for name in ("recommend_torch.py", "recommend_keras.py"):
        shutil.copy(ROOT / "examples" / name, folder / name)


# Files made in the block's folder before it runs, by name (``<!-- setup: NAME -->``).
FOLDERS = {"results-folder": _results_folder, "recommend-examples": _recommend_examples}

# Set-ups that make a block slow by themselves: "keras-model" imports TensorFlow and compiles a
# model in the block's process, "results-folder" runs an experiment in processes of its own
# (several seconds each on 2 cores). Their blocks are marked ``slow`` like ``<!-- slow -->``.
SLOW_SETUPS = {"keras-model", "results-folder"}

# README.md's blocks by their first line (README.md carries no directive comments).
README_DIRECTIVES = {
    "import greenprec": "not-run: `model.fit(...)` stands for your own training",
    "from greenprec import stats": "setup: energy-arrays",
}


@dataclass
class Block:
    path: str
    line: int
    language: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def parse_directives(comment: str) -> dict[str, str]:
    directives: dict[str, str] = {}
    for part in DIRECTIVE_SEPARATOR.split(comment):
        name, _, value = part.strip().partition(":")
        name = name.strip().lower()
        if name in DIRECTIVES:
            directives[name] = " ".join(value.split())
    return directives


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file, with the directives written before them."""
    relative = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        language = (match["info"].strip().split() or [""])[0].lower()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines):
            closing = FENCE.match(lines[index])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        index += 1
        # The HTML comments right before the fence (blank lines may come between).
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        text_before = "\n".join(lines[: before + 1])
        directives: dict[str, str] = {}
        while text_before.rstrip().endswith("-->"):
            opening = text_before.rfind("<!--")
            if opening < 0:
                break
            found = COMMENT.fullmatch(text_before[opening:].rstrip())
            if found is None:
                break
            directives = {**parse_directives(found.group(1)), **directives}
            text_before = text_before[:opening].rstrip()
        blocks.append(Block(relative, start + 1, language, "\n".join(body) + "\n", directives))
    return blocks


def all_blocks() -> list[Block]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    blocks = [block for path in files for block in extract_blocks(path)]
    readme = [b for b in blocks if b.path == "README.md" and b.language in RUNNABLE]
    for number, block in enumerate(readme):
        if number == 0 and block.language == "bash":
            block.directives = {"not-run": "the project's own set-up and tests: .ci/run runs it"}
            continue
        first = block.code.strip().splitlines()[0]
        if first in README_DIRECTIVES:
            block.directives = parse_directives(README_DIRECTIVES[first])
    return [block for block in blocks if block.language in RUNNABLE]


def _params() -> list[object]:
    params = []
    for block in all_blocks():
        marks: list[pytest.MarkDecorator] = []
        if "not-run" in block.directives:
            reason = block.directives["not-run"] or "marked not-run"
            marks.append(pytest.mark.skip(reason=f"not run: {reason}"))
        setups = set(block.directives.get("setup", "").replace(",", " ").split())
        if "slow" in block.directives or setups & SLOW_SETUPS:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


def _environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(
        [str(folder), str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    env["HOME"] = str(folder / "home")  # ~/.keras and friends stay in the temporary folder
    (folder / "home").mkdir(exist_ok=True)
    return env


@pytest.mark.parametrize("block", _params())
def test_docs_example_runs(block: Block, tmp_path: Path) -> None:
    for module in block.directives.get("needs", "").replace(",", " ").split():
        pytest.importorskip(module, reason=f"{block.id} needs {module}")
    env = _environment(tmp_path)
    prelude = ""
    for name in block.directives.get("setup", "").replace(",", " ").split():
        if name in FOLDERS:
            FOLDERS[name](tmp_path, env)
        elif name in PRELUDES and block.language in {"python", "py"}:
            prelude += PRELUDES[name] + "\n"
        else:
            pytest.fail(f"{block.id}: unknown set-up {name!r} for a {block.language} block")
    timeout_s = float(block.directives.get("timeout") or DEFAULT_TIMEOUT_S)
    if block.language in {"python", "py"}:
        script = tmp_path / "example.py"
        script.write_text(prelude + block.code, encoding="utf-8")
        command = [sys.executable, str(script)]
    else:
        script = tmp_path / "example.sh"
        script.write_text("set -euo pipefail\n" + block.code, encoding="utf-8")
        command = [shutil.which("bash") or "bash", str(script)]
    try:
        result = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id}: still running after {timeout_s:g} s:\n{block.code}")
    if result.returncode != 0:
        pytest.fail(
            f"{block.id} exited with {result.returncode}:\n{block.code}\n"
            f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
        )


def test_blocks_are_found_and_directives_are_known() -> None:
    """The extractor sees the documentation's blocks; every set-up named exists."""
    blocks = all_blocks()
    assert len(blocks) > 40
    assert {b.path for b in blocks} >= {"README.md", "docs/measure.md", "docs/meters/mock.md"}
    for block in blocks:
        for name in block.directives.get("setup", "").replace(",", " ").split():
            assert name in PRELUDES or name in FOLDERS, f"{block.id}: unknown set-up {name!r}"
        if "not-run" in block.directives:
            assert block.directives["not-run"], f"{block.id}: not-run needs a reason"


def test_the_readme_ci_block_is_never_run_here() -> None:
    first = next(b for b in all_blocks() if b.path == "README.md")
    assert first.language == "bash" and "not-run" in first.directives
