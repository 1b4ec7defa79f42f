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
# Only where torch is installed, and never inside greenprec itself.
with contextlib.suppress(ImportError):
    import torch._dynamo  # noqa: F401


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
