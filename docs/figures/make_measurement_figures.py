"""Draw the two pictures of docs/how-it-measures.md into docs/figures/ (SVG and PNG).

    python3 docs/figures/make_measurement_figures.py

1. ``measurement_window``: one ``measure()`` window (src/greenprec/measurement.py): greenprec's
   start-up before the window, the device sync and the entry reading, the sampler's periodic
   readings, the sync and the exit reading (``finish()``); a counter domain (differences, a
   wrap corrected as in src/greenprec/counters.py) beside a power domain (trapezoids); which
   domains add up to ``energy_j`` (``in_total``) and why ``auto`` never picks two meters that
   cover the same hardware (``covers``).
2. ``experiment_protocol``: ``greenprec compare`` (src/greenprec/experiment/runner.py): the
   seeded schedule, baseline, warm-up (fixed, or until the power settles), each run in a fresh
   process with its measured window, cool-downs; and the blocks of ``--executor slurm``.

The numbers drawn are illustrative (a made-up package counter and GPU power); the schedules are
the real ones: ``make_schedule`` and ``make_blocked_schedule`` with seed 42.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyBboxPatch, Rectangle

from greenprec.experiment.schedule import make_blocked_schedule, make_schedule

HERE = Path(__file__).resolve().parent
COLOURS = {"fp32": "#3b6fb6", "mixed": "#e07b24"}
GREY, DARK, GREEN, RED = "#9aa0a6", "#2b2b2b", "#2e7d32", "#c62828"
plt.rcParams.update(
    {
        "font.size": 10,
        "font.family": "DejaVu Sans",
        "svg.hashsalt": "greenprec",  # the same SVG on every run
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def _save(fig: plt.Figure, name: str) -> None:
    fig.savefig(HERE / f"{name}.svg", metadata={"Date": None})
    fig.savefig(HERE / f"{name}.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {HERE / name}.svg and .png")


def _band(
    ax: plt.Axes,
    x0: float,
    x1: float,
    y: float,
    h: float,
    text: str,
    colour: str,
    *,
    text_colour: str = "white",
    size: float = 9,
    hatch: str | None = None,
) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x0, y),
            x1 - x0,
            h,
            boxstyle="round,pad=0,rounding_size=0.06",
            facecolor=colour,
            edgecolor="white" if hatch is None else colour,
            linewidth=1,
            hatch=hatch,
            alpha=0.95 if hatch is None else 0.35,
        )
    )
    if text:
        ax.text(
            (x0 + x1) / 2,
            y + h / 2,
            text,
            ha="center",
            va="center",
            color=text_colour,
            fontsize=size,
        )


def measurement_window() -> None:
    interval = 0.2  # measure(interval=0.2)
    entry, exit_ = 0.0, 1.87  # the entry and exit readings, seconds since entry
    ticks = np.arange(interval, exit_, interval)  # the sampler thread's readings
    t = np.concatenate([[entry], ticks, [exit_]])

    fig = plt.figure(figsize=(12, 8.6))
    grid = fig.add_gridspec(
        3, 2, height_ratios=[1.05, 1.6, 1.35], width_ratios=[3.1, 1], hspace=0.42, wspace=0.06
    )
    lane = fig.add_subplot(grid[0, 0])
    counter = fig.add_subplot(grid[1, 0], sharex=lane)
    power = fig.add_subplot(grid[2, 0], sharex=lane)
    table = fig.add_subplot(grid[:, 1])
    fig.suptitle(
        "One measure() window: what is read, when, and what adds up to energy_j",
        fontsize=13,
        x=0.02,
        ha="left",
        y=0.975,
    )

    # -- the lane: who does what, and when -------------------------------------------------
    lane.set_ylim(0, 4.0)
    lane.set_xlim(-0.95, 2.55)
    lane.set_yticks([])
    lane.spines["left"].set_visible(False)
    _band(lane, -0.93, -0.45, 2.0, 0.9, "start-up: probe\nmeters, plugins", GREY, size=7)
    _band(lane, -0.43, -0.2, 2.0, 0.9, "meters\nstart()", "#607d8b", size=7)
    _band(lane, -0.18, -0.02, 2.0, 0.9, "sync", "#8e24aa", size=7.5)
    _band(lane, entry, exit_, 2.0, 0.9, "your block runs (with measure(): ...)", GREEN, size=10)
    _band(lane, exit_ + 0.02, exit_ + 0.18, 2.0, 0.9, "sync", "#8e24aa", size=7.5)
    _band(lane, exit_ + 0.2, exit_ + 0.62, 2.0, 0.9, "meters stop(),\nhooks", GREY, size=7)
    lane.text(-0.93, 1.55, "not in the window", fontsize=8, color=GREY)
    lane.text(exit_ + 0.2, 1.55, "not in the window", fontsize=8, color=GREY)
    for x in ticks:
        lane.plot([x, x], [0.35, 1.25], color=DARK, lw=1)
        lane.plot(x, 0.8, "o", color=DARK, ms=5)
    for x, label in (
        (entry, "entry reading\n(t = 0: read())"),
        (exit_, "exit reading\n(finish(): t = duration_s)"),
    ):
        lane.plot([x, x], [0.2, 3.35], color=RED, lw=2)
        lane.plot(x, 0.8, "s", color=RED, ms=7)
        lane.text(
            x + (0.03 if x == entry else -0.03),
            3.95,
            label,
            color=RED,
            fontsize=8.5,
            ha="left" if x == entry else "right",
            va="top",
        )
    lane.annotate(
        "",
        xy=(ticks[0], 1.45),
        xytext=(ticks[1], 1.45),
        arrowprops={"arrowstyle": "<->", "color": DARK},
    )
    lane.text((ticks[0] + ticks[1]) / 2, 1.52, "interval", ha="center", fontsize=8)
    lane.text(
        ticks[len(ticks) // 2],
        0.05,
        "the sampler thread's periodic readings (read())",
        ha="center",
        fontsize=8.5,
    )
    lane.set_title(
        "The edges are readings taken at the block's entry and exit; a device sync "
        "(CUDA, TF GPU) before each\nputs kernels launched before the block outside it "
        "and the block's own kernels inside it.",
        fontsize=9,
        loc="left",
    )

    # -- a counter domain ------------------------------------------------------------------
    rng = np.random.default_rng(7)
    steps_j = 3.0 + rng.normal(0, 0.25, len(t) - 1)  # ~15 W package, J per 0.2 s
    steps_j *= np.diff(t) / interval
    true_j = np.concatenate([[0.0], np.cumsum(steps_j)])
    origin_j, range_j = 16.0, 34.0  # a counter near its wrap range (a tiny one, to be seen)
    raw_j = (origin_j + true_j) % range_j
    wrap = int(np.argmax(np.diff(raw_j) < 0)) + 1
    counter.plot(t[:wrap], raw_j[:wrap], ":", color=GREY, lw=1)
    counter.plot(t[wrap:], raw_j[wrap:], ":", color=GREY, lw=1)
    counter.plot(t, raw_j, "o", color=GREY, ms=4, label="raw counter (energy_uj / 1e6)")
    counter.plot(
        t,
        origin_j + true_j,
        "-o",
        color=COLOURS["fp32"],
        ms=4,
        lw=1.5,
        label="after the wrap correction",
    )
    counter.axhline(range_j, color=GREY, ls=":", lw=1)
    counter.text(
        -0.9,
        range_j - 0.8,
        "wrap range (max_energy_range_uj; drawn tiny,\nreal ones are 2^32 units: ≥ 32,768 J)",
        fontsize=8,
        color=GREY,
        va="top",
    )
    counter.annotate(
        "a drop: a wrap only if plausible: range − previous + value,\nat a power close to "
        "the neighbouring steps' (else the\nmeasurement fails; it never guesses)",
        xy=(t[wrap], raw_j[wrap]),
        xytext=(0.03, 1.5),
        fontsize=7.5,
        arrowprops={"arrowstyle": "->", "color": DARK},
    )
    counter.annotate(
        "",
        xy=(exit_ + 0.05, origin_j + true_j[-1]),
        xytext=(exit_ + 0.05, origin_j),
        arrowprops={"arrowstyle": "<->", "color": COLOURS["fp32"], "lw": 1.5},
    )
    counter.text(
        exit_ + 0.09,
        origin_j + true_j[-1] / 2,
        f"last − entry\n= {true_j[-1]:.1f} J",
        color=COLOURS["fp32"],
        fontsize=9,
        va="center",
    )
    counter.axhline(origin_j, color=COLOURS["fp32"], ls="--", lw=0.8)
    counter.set_ylim(0, origin_j + true_j[-1] + 8)
    counter.set_ylabel("joules")
    counter.set_title(
        "A counter domain (rapl/package-0: Reading(energy_j=...)): energy is the "
        "difference of readings; the readings\nin between catch every wrap "
        "and give the power trace (ΔE / Δt).",
        fontsize=9,
        loc="left",
    )
    counter.legend(loc="upper left", fontsize=8, frameon=False)

    # -- a power domain --------------------------------------------------------------------
    fine = np.linspace(0, exit_, 400)
    watts = 60 + 150 * (1 - np.exp(-fine / 0.25)) + 12 * np.sin(fine * 9)
    read_w = np.interp(t, fine, watts)
    power.plot(fine, watts, color=GREY, lw=1, label="the real power (unknown)")
    power.fill_between(
        t,
        read_w,
        color=COLOURS["mixed"],
        alpha=0.25,
        step=None,
        label="trapezoids between readings",
    )
    power.plot(
        t, read_w, "-o", color=COLOURS["mixed"], ms=4, lw=1.2, label="power readings (power_w)"
    )
    area = float(np.sum(np.diff(t) * (read_w[1:] + read_w[:-1]) / 2))
    power.text(
        exit_ / 2,
        35,
        f"energy = Σ (t₂ − t₁)(P₁ + P₂)/2 = {area:.0f} J",
        ha="center",
        fontsize=9,
        color=DARK,
    )
    power.set_ylim(0, 260)
    power.set_ylabel("watts")
    power.set_xlabel("seconds since the entry reading")
    power.set_title(
        "A power domain (nvml/gpu-0 without its energy counter: "
        "Reading(power_w=...)): integrated from entry to exit.",
        fontsize=9,
        loc="left",
    )
    power.legend(loc="upper left", fontsize=8, frameon=False, ncol=1)

    # -- which domains count -----------------------------------------------------------------
    table.axis("off")
    table.set_xlim(0, 1)
    table.set_ylim(0, 1)
    rows = [
        ("rapl/package-0", True, "CPU package"),
        ("rapl/core-0", False, "inside the package"),
        ("rapl/uncore-0", False, "inside the package"),
        ("rapl/dram-0", True, "memory"),
        ("nvml/gpu-0", True, "GPU board"),
    ]
    table.text(0.02, 0.985, "Domains of one window", fontsize=11, weight="bold", va="top")
    table.text(
        0.02,
        0.945,
        "m.domains holds them all;\nenergy_j adds the in_total ones:",
        fontsize=9,
        va="top",
    )
    y = 0.86
    for name, counted, what in rows:
        mark, colour = ("✓", GREEN) if counted else ("—", GREY)
        table.text(0.04, y, mark, color=colour, fontsize=13, va="center", weight="bold")
        table.text(
            0.14,
            y,
            name,
            fontsize=9.5,
            va="center",
            family="DejaVu Sans Mono",
            color=DARK if counted else GREY,
        )
        table.text(
            0.14,
            y - 0.028,
            what + ("" if counted else ": in_total=False"),
            fontsize=8,
            va="center",
            color=GREY,
        )
        y -= 0.065
    table.text(
        0.04,
        y + 0.01,
        "energy_j = package + dram + gpu\n(m.counted_domains): each joule once",
        fontsize=9,
        va="top",
        color=GREEN,
    )
    table.add_patch(
        Rectangle((0.01, y - 0.06), 0.98, 0.96 - y + 0.055, fill=False, edgecolor=GREY, lw=0.8)
    )
    y -= 0.11
    table.text(0.02, y, "Meters and covers", fontsize=11, weight="bold", va="top")
    table.text(
        0.02,
        y - 0.04,
        "Each meter says what hardware it\nsees: rapl covers {cpu, dram}, nvml\n"
        '{gpu}, energibridge {cpu, dram,\ngpu, system}. meter="auto" takes\n'
        "every available meter except one\nthat overlaps a meter already\ntaken, "
        "so no joule is counted by\ntwo meters; with none, the CPU-time\nestimate "
        "(estimated=True).",
        fontsize=8.5,
        va="top",
        linespacing=1.25,
    )
    y -= 0.33
    table.text(0.02, y, "Edge readings", fontsize=11, weight="bold", va="top")
    table.text(
        0.02,
        y - 0.04,
        "duration_s: entry to exit reading\n(monotonic clock). Each meter's\n"
        "readings are stamped with the clock\nread just before that meter.\n"
        "mean_power_w = energy_j / duration_s.",
        fontsize=8.5,
        va="top",
        linespacing=1.25,
    )
    _save(fig, "measurement_window")


def experiment_protocol() -> None:
    schedule = make_schedule(["fp32", "mixed"], 3, 42)
    blocked = make_blocked_schedule(["fp32", "mixed"], 3, 42)

    fig, (top, runbox, cluster) = plt.subplots(
        3, 1, figsize=(12, 8.4), gridspec_kw={"height_ratios": [1.25, 1.05, 1.15], "hspace": 0.5}
    )
    fig.suptitle(
        "greenprec compare fp32 mixed --runs 3 --baseline 60 --warmup 60 "
        "--cooldown 30: the protocol on a timeline",
        fontsize=12.5,
        x=0.02,
        ha="left",
        y=0.975,
    )

    # -- the driver's timeline ---------------------------------------------------------------
    top.set_xlim(-8, 236)
    top.set_ylim(0, 3)
    top.set_yticks([])
    top.spines["left"].set_visible(False)
    x = 0.0
    _band(top, x, x + 14, 1.0, 1.0, "lock,\nschedule", GREY, size=8)
    x += 15
    _band(top, x, x + 26, 1.0, 1.0, "baseline\n(idle, measured)", "#607d8b", size=8)
    top.text(x + 13, 2.1, "→ baseline power,\nnet_energy_j", ha="center", va="bottom", fontsize=7.5)
    x += 27
    _band(top, x, x + 30, 1.0, 1.0, "warm-up\n(busy loop)", "#8d6e63", size=8)
    top.text(
        x + 15,
        0.55,
        "fixed, or --warmup auto:\nuntil 3 windows within 2 %",
        ha="center",
        va="top",
        fontsize=7.5,
    )
    x += 31
    run_w, cool_w = 16.0, 6.5
    for index, run in enumerate(schedule):
        if index:
            _band(top, x, x + cool_w, 1.0, 1.0, "", "#b0bec5")
            top.text(x + cool_w / 2, 2.1, "cool-\ndown", ha="center", fontsize=6.5, color=GREY)
            x += cool_w + 0.5
        _band(top, x, x + run_w, 1.0, 1.0, run.run_id, COLOURS[run.policy], size=8)
        top.text(x + run_w / 2, 0.55, f"order {run.order}", ha="center", va="top", fontsize=7)
        x += run_w + 0.5
    top.annotate("", xy=(x, 0.05), xytext=(-6, 0.05), arrowprops={"arrowstyle": "->", "lw": 1})
    top.text(x + 1, 0.05, "time", ha="left", va="center", fontsize=8)
    top.set_title(
        "The driver (one process, holds DIR/.greenprec.lock): baseline and warm-up "
        "once, then the runs in the seeded order\n(Python's random with seed 42 shuffles "
        "every (policy, repetition) pair, so drift cannot line up with one policy).",
        fontsize=9,
        loc="left",
    )

    # -- one run, zoomed ----------------------------------------------------------------------
    runbox.set_xlim(-8, 236)
    runbox.set_ylim(0, 3)
    runbox.set_yticks([])
    runbox.spines["left"].set_visible(False)
    runbox.add_patch(
        Rectangle(
            (0, 0.55), 226, 1.9, facecolor="#f3f6fa", edgecolor=COLOURS["fp32"], lw=1.2, ls="--"
        )
    )
    runbox.text(
        2,
        2.3,
        "a fresh Python process per run (experiment/child.py → execute_run)",
        fontsize=8.5,
        color=COLOURS["fp32"],
        va="top",
    )
    parts = [
        (30, "start Python,\nimport, spec", GREY, "white"),
        (22, "runs/<id>.json\n= running", "#90a4ae", "white"),
        (22, "idle before\n(optional)", "#607d8b", "white"),
        (30, "build model,\nload data", GREY, "white"),
        (58, "ctx.measured(): measure()\nthe measured window", GREEN, "white"),
        (22, "evaluate", GREY, "white"),
        (36, "samples/<id>.csv,\nruns/<id>.json = done", "#90a4ae", "white"),
    ]
    x = 1.0
    for width, label, colour, text_colour in parts:
        _band(
            runbox, x, x + width - 0.8, 0.8, 1.1, label, colour, size=7.5, text_colour=text_colour
        )
        x += width
    runbox.text(
        113,
        0.35,
        "only the green part is the run's energy_j; the workload calls ctx.measured() exactly once",
        ha="center",
        fontsize=8,
        color=GREEN,
    )
    runbox.set_title(
        "Inside one run: nothing of start-up, model building or evaluation is "
        "measured; a crash leaves the run 'failed' (or resumable),\nnot the "
        "experiment.",
        fontsize=9,
        loc="left",
    )

    # -- --executor slurm: blocks ------------------------------------------------------------
    cluster.set_xlim(-8, 236)
    cluster.set_ylim(0, 3.4)
    cluster.set_yticks([])
    cluster.spines["left"].set_visible(False)
    blocks: dict[int, list[str]] = {}
    policies: dict[str, str] = {}
    for run in blocked:
        blocks.setdefault(run.repetition, []).append(run.run_id)
        policies[run.run_id] = run.policy
    for row, (block, run_ids) in enumerate(sorted(blocks.items())):
        y = 2.35 - row * 1.0
        x0 = 6.0 + row * 9
        cluster.text(
            x0 - 1,
            y + 0.35,
            f"job {block}\nnode {'ABC'[row]}",
            ha="right",
            va="center",
            fontsize=7.5,
        )
        x = x0
        _band(cluster, x, x + 22, y, 0.7, "baseline", "#607d8b", size=7.5)
        x += 23
        _band(cluster, x, x + 24, y, 0.7, "warm-up", "#8d6e63", size=7.5)
        x += 25
        for index, run_id in enumerate(run_ids):
            if index:
                _band(cluster, x, x + cool_w, y, 0.7, "", "#b0bec5")
                x += cool_w + 0.5
            _band(cluster, x, x + run_w, y, 0.7, run_id, COLOURS[policies[run_id]], size=7.5)
            x += run_w + 0.5
    cluster.text(
        150,
        1.95,
        "block k = repetition k of every policy,\nin its own seeded "
        "order, on one node:\nthe report compares policies within\nhosts "
        "(log(energy_j) ~ policy + host)",
        fontsize=8.2,
        va="center",
    )
    cluster.set_title(
        "--executor slurm: one job per block; each job has its own baseline and "
        "warm-up, and every run still gets its own process.",
        fontsize=9,
        loc="left",
    )
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    cluster.legend(handles, list(COLOURS), loc="lower right", fontsize=8, frameon=False, ncol=2)
    for ax in (top, runbox, cluster):
        ax.set_xticks([])
        ax.spines["bottom"].set_visible(False)
    _save(fig, "experiment_protocol")


if __name__ == "__main__":
    measurement_window()
    experiment_protocol()
