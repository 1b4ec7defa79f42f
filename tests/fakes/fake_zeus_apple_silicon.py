"""A fake ``zeus_apple_silicon`` module (zeus-apple-silicon's Python API) for machines that are
not Apple silicon Macs. Install it with
``monkeypatch.setitem(sys.modules, "zeus_apple_silicon", fake)``.

Names and behaviour follow zeus-apple-silicon 1.1.0 (``bindings/energy_bindings.hpp`` and
``apple_energy/apple_energy.hpp``): ``AppleEnergyMonitor()`` subscribes to IOReport and raises
RuntimeError when it cannot; ``get_cumulative_energy()`` returns an ``AppleEnergyMetrics`` of
cumulative counters from a point fixed for the monitor's life; ``begin_window(key,
restart=False)`` / ``end_window(key)`` return the difference of two samples, and raise
RuntimeError for a key already open (without ``restart``) or never opened. Every field is
millijoules as an ``int`` (whole mJ, truncated, as the library converts each channel), or a
list of them per core or cluster, or None where the chip has no such channel.

The chip is a :class:`FakeChip`: a constant power per field, so a field's energy after ``t``
seconds is ``start + power × t``; ``clock`` gives ``t`` (tests pass their own for exact sums).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field

FIELDS = (
    "cpu_total_mj",
    "efficiency_cores_mj",
    "performance_cores_mj",
    "efficiency_cluster_mj",
    "performance_cluster_mj",
    "efficiency_core_manager_mj",
    "performance_core_manager_mj",
    "dram_mj",
    "gpu_mj",
    "gpu_sram_mj",
    "ane_mj",
)
"""AppleEnergyMetrics's fields, in the library's order."""

Power = float | list[float]


def m2_ultra_powers() -> dict[str, Power]:
    """Powers (W) shaped like an M2 Max/Ultra's channels: 4 E-cores in one cluster, 8 P-cores in
    two clusters; the CPU total is the clusters' sum plus the managers, as on the real chip."""
    return {
        "cpu_total_mj": 12.0,
        "efficiency_cores_mj": [0.25, 0.25, 0.25, 0.25],
        "performance_cores_mj": [1.0] * 8,
        "efficiency_cluster_mj": [1.5],
        "performance_cluster_mj": [5.0, 5.0],
        "efficiency_core_manager_mj": 0.1,
        "performance_core_manager_mj": 0.4,
        "dram_mj": 2.0,
        "gpu_mj": 30.0,
        "gpu_sram_mj": 1.0,
        "ane_mj": 0.5,
    }


@dataclass
class FakeChip:
    """What the fake IOReport reports: a constant power (W) per AppleEnergyMetrics field.

    A field not in ``power_w`` is None (the chip has no such channel). ``subscribe_error``: the
    monitor's constructor raises RuntimeError with it. ``vanish_after_samples`` /
    ``backwards_after_samples``: after that many samples every field is None / the counters
    drop by a kilojoule (a counter reset).
    """

    power_w: dict[str, Power] = field(default_factory=m2_ultra_powers)
    start_mj: int = 7_000_000_000  # counters run since boot: never start at zero
    clock: Callable[[], float] = time.monotonic
    subscribe_error: str | None = None
    vanish_after_samples: int | None = None
    backwards_after_samples: int | None = None
    samples: int = 0
    monitors: int = 0


class AppleEnergyMetrics:
    """zeus-apple-silicon's result struct: every field None until set."""

    cpu_total_mj: int | None
    efficiency_cores_mj: list[int] | None
    performance_cores_mj: list[int] | None
    efficiency_cluster_mj: list[int] | None
    performance_cluster_mj: list[int] | None
    efficiency_core_manager_mj: int | None
    performance_core_manager_mj: int | None
    dram_mj: int | None
    gpu_mj: int | None
    gpu_sram_mj: int | None
    ane_mj: int | None

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, None)

    def __repr__(self) -> str:
        return "\n".join(f"{name}: {getattr(self, name)}" for name in FIELDS)


def make_zeus_apple_silicon(chip: FakeChip) -> types.ModuleType:
    """A module object with zeus_apple_silicon's two classes over ``chip``."""
    module = types.ModuleType("zeus_apple_silicon")
    origin = chip.clock()

    def sample() -> dict[str, int | list[int] | None]:
        chip.samples += 1
        elapsed_s = chip.clock() - origin
        vanished = (
            chip.vanish_after_samples is not None and chip.samples > chip.vanish_after_samples
        )
        drop_mj = (
            1_000_000
            if chip.backwards_after_samples is not None
            and chip.samples > chip.backwards_after_samples
            else 0
        )

        def counter(power_w: float) -> int:
            return int(chip.start_mj + power_w * elapsed_s * 1e3) - drop_mj

        values: dict[str, int | list[int] | None] = dict.fromkeys(FIELDS)
        if vanished:
            return values
        for name, power in chip.power_w.items():
            values[name] = (
                [counter(p) for p in power] if isinstance(power, list) else counter(power)
            )
        return values

    def metrics(values: dict[str, int | list[int] | None]) -> AppleEnergyMetrics:
        result = AppleEnergyMetrics()
        for name, value in values.items():
            setattr(result, name, value)
        return result

    class AppleEnergyMonitor:
        def __init__(self) -> None:
            if chip.subscribe_error is not None:
                raise RuntimeError(chip.subscribe_error)
            chip.monitors += 1
            self._windows: dict[str, dict[str, int | list[int] | None]] = {}

        def get_cumulative_energy(self) -> AppleEnergyMetrics:
            return metrics(sample())

        def begin_window(self, key: str, restart: bool = False) -> None:
            if key in self._windows and not restart:
                raise RuntimeError("Measurement with specified key already exists.")
            self._windows[key] = sample()

        def end_window(self, key: str) -> AppleEnergyMetrics:
            if key not in self._windows:
                raise RuntimeError("No measurement with provided key had been started.")
            begin, end = self._windows.pop(key), sample()
            delta: dict[str, int | list[int] | None] = {}
            for name in FIELDS:
                before, after = begin[name], end[name]
                if isinstance(before, list) and isinstance(after, list):
                    delta[name] = [a - b for a, b in zip(after, before, strict=True)]
                elif isinstance(before, int) and isinstance(after, int):
                    delta[name] = after - before
                else:
                    delta[name] = None
            return metrics(delta)

    module.AppleEnergyMonitor = AppleEnergyMonitor  # type: ignore[attr-defined]
    module.AppleEnergyMetrics = AppleEnergyMetrics  # type: ignore[attr-defined]
    return module
