"""measure(sync=...): a window holds the device work its block launched (Zeus-style)."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Iterator

import pytest

import greenprec
from greenprec.meters.mock import MockMeter

WORK_S = 0.4


class FakeCuda:
    """Kernels that run asynchronously: launch() returns at once, synchronize() waits for them.

    Like CUDA, the work goes on whether or not anyone waits; only synchronize() makes the
    host wait for it.
    """

    def __init__(self) -> None:
        self.done = threading.Event()
        self.initialised = False
        self.syncs = 0

    def launch(self, seconds: float) -> None:
        self.initialised = True
        self.done.clear()
        threading.Timer(seconds, self.done.set).start()

    def is_initialized(self) -> bool:
        return self.initialised

    def synchronize(self) -> None:
        self.syncs += 1
        self.done.wait(10)


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCuda]:
    cuda = FakeCuda()
    module = types.ModuleType("torch")
    module.cuda = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", module)
    yield cuda
    cuda.done.wait(10)


def test_auto_sync_waits_for_the_blocks_kernels_when_cuda_is_initialised(
    fake_torch: FakeCuda,
) -> None:
    with greenprec.measure(MockMeter(power_w=100.0)) as m:
        fake_torch.launch(WORK_S)  # returns at once: the GPU is still busy
    assert m.duration_s >= WORK_S
    assert m.energy_j == pytest.approx(100.0 * m.duration_s, rel=1e-9)
    # CUDA was first initialised inside the block: only the exit reading had work to wait for.
    assert fake_torch.syncs == 1


def test_sync_none_ends_the_window_before_the_work_does(fake_torch: FakeCuda) -> None:
    with greenprec.measure(MockMeter(power_w=100.0), sync=None) as m:
        fake_torch.launch(WORK_S)
    assert m.duration_s < WORK_S / 2
    assert fake_torch.syncs == 0


def test_work_launched_before_the_block_is_not_counted_in_it(fake_torch: FakeCuda) -> None:
    fake_torch.launch(WORK_S)  # an earlier step's kernels, still running
    with greenprec.measure(MockMeter(power_w=100.0)) as m:
        pass
    assert m.duration_s < WORK_S / 2  # the entry waited for them before the window began
    assert fake_torch.syncs == 2  # before the entry reading and before the exit reading


@pytest.mark.slow
def test_no_sync_without_cuda_initialised(fake_torch: FakeCuda) -> None:
    with greenprec.measure(MockMeter()):
        pass
    assert fake_torch.syncs == 0


def test_a_callable_sync_runs_before_both_edge_readings() -> None:
    calls: list[float] = []
    with greenprec.measure(MockMeter(), sync=lambda: calls.append(time.monotonic())) as m:
        time.sleep(0.05)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.05
    assert m.duration_s >= 0.05


def test_sync_must_be_auto_none_or_callable() -> None:
    with pytest.raises(greenprec.ConfigError, match="sync must be 'auto', None or a callable"):
        greenprec.measure("mock", sync="always")


def test_the_decorator_keeps_the_sync(fake_torch: FakeCuda) -> None:
    @greenprec.measure(MockMeter(), sync=None)
    def step() -> None:
        fake_torch.launch(WORK_S)

    step()
    assert step.measurement.duration_s < WORK_S / 2  # type: ignore[attr-defined]
