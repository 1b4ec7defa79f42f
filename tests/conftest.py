"""Shared fixtures: a clean plugin manager per test and helpers to install plugins on disk."""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from greenprec import plugins

# CI explores the same examples on every run (a red CI is then reproducible, never a new random
# example found at submission); developers keep exploring fresh ones locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# A suite started in the background (`nohup ... &`, a CI runner without job control) inherits
# SIGINT ignored, and so would every process it starts: the Ctrl-C tests would then send a
# signal nobody receives. Children get SIGINT as a terminal delivers it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# torch's compiler stack (torch._dynamo, which imports triton) segfaults when it is first
# imported in a process that has already imported TensorFlow (tensorflow-cpu 2.21, torch 2.14,
# triton 3.8). The suite imports both; importing the compiler first keeps either order safe.
# Only where torch is installed, and never inside greenprec itself. At start-up, not when a test
# first imports TensorFlow: imported under pytest's output capture, torch keeps the captured
# sys.stderr, and the worker's later tests fail with "I/O operation on closed file".
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401


# The suite runs on pytest-xdist's workers (`-n 4 --dist loadgroup` in pyproject.toml's addopts;
# `-n0` runs it in one process). Tests that share one thing outside their temporary folder run on
# one worker, one after another: every test marked `slurm` uses the one cluster that
# .ci/slurm-up.sh starts (its partition, its queue, its node's cores), and two of them at once
# would see each other's jobs.
GROUP_BY_MARKER = {"slurm": "slurm-cluster"}
# A module- or session-scoped fixture is built once per worker that needs it. The costly ones go
# to one worker with every test that uses them, so each is built once in the whole run: the seed
# study imported and reported (session), an experiment run through the CLI (`experiment`,
# `bracketed`), TensorFlow imported in the test process (`keras`), each about 5 s on 2 cores.
SESSION_FIXTURE_GROUPS = {"seed_study_reported": "seed-study"}
MODULE_FIXTURES_TO_SHARE = {"experiment", "bracketed", "keras"}


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return  # `-p no:xdist`: one process, nothing to group (and no xdist_group marker)
    for item in items:
        groups = [g for m, g in GROUP_BY_MARKER.items() if item.get_closest_marker(m) is not None]
        fixtures = getattr(item, "fixturenames", ())
        groups += [g for f, g in SESSION_FIXTURE_GROUPS.items() if f in fixtures]
        shared = sorted(MODULE_FIXTURES_TO_SHARE.intersection(fixtures))
        groups += [f"{item.path.stem}-{fixture}" for fixture in shared]
        for group in groups:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def fresh_plugin_manager() -> Iterator[None]:
    """Each test sees the plugins installed for it, and leaves none behind."""
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Write a real distribution (module + dist-info with entry points) onto sys.path."""

    def install(
        module_name: str, source: str, *, group: str = "greenprec", entry_name: str | None = None
    ) -> Path:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / f"{module_name}.py").write_text(textwrap.dedent(source))
        dist_info = site / f"{module_name}-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {module_name}\nVersion: 1.0\n"
        )
        target = module_name if entry_name is None else f"{module_name}:{entry_name}"
        (dist_info / "entry_points.txt").write_text(f"[{group}]\n{module_name} = {target}\n")
        monkeypatch.syspath_prepend(str(site))
        plugins.reset()
        return site

    return install


SEED_STUDY_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "shared/data/seed-study",
    Path("/work/shared/data/seed-study"),
)


@pytest.fixture(scope="session")
def seed_study_reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The study's raw EnergiBridge files imported and reported through the CLI with the
    ±1 pp accuracy margin: the folder and the report command's output.

    Built once for the whole run (about 5 s: 60 recordings read, a report drawn); the tests that
    use it only read the folder."""
    from typer.testing import CliRunner

    from greenprec.cli import app

    data = next((c for c in SEED_STUDY_CANDIDATES if (c / "mixed_precision_false").is_dir()), None)
    if data is None:
        pytest.skip("the study's raw data (shared/data/seed-study) is not on this machine")
    out = tmp_path_factory.mktemp("seed-study") / "study"
    args = [
        "import",
        "energibridge",
        "--group",
        f"fp32={data}/mixed_precision_false/*.csv",
        "--group",
        f"mixed={data}/mixed_precision_true/*.csv",
        "--metrics",
        f"{data}/results/*/*.csv",
        "--out",
        str(out),
    ]
    imported = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert imported.exit_code == 0, imported.output
    result = CliRunner().invoke(
        app, ["report", str(out), "--margin", "test_accuracy=1pp"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 0, result.output
    return out, result.output
