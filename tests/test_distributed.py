"""Measuring under torch.distributed: each host once, the job's total on every rank.

Real ``torch.distributed`` over gloo on the CPU: this file, run as a script, is the worker of
each rank (:func:`_worker`); the tests start the ranks as processes with the environment
torchrun would give them, and ``GREENPREC_HOST_ID`` puts them on simulated hosts. Each host's
measurer uses the ``mock`` meter with a power of its own, so each host's true energy is known:
``power_w * duration_s`` of its measurer's window, exactly.

The tests that start processes are marked slow (CI runs them): the four ranks of the module's
fixture, Lightning's own DDP and a Hugging Face Trainer under Accelerate, each about 15 to 30 s
on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HOST_POWER_W = {"host-a": 100.0, "host-b": 10.0}
"""The mock power of each simulated host's measurer."""
BLOCK_S = 0.2


# -- the worker: one rank --------------------------------------------------------------------
def _worker(scenario: str, out: Path) -> None:
    import torch.distributed as dist

    host = os.environ["GREENPREC_HOST_ID"]
    options = {"power_w": HOST_POWER_W[host]}
    result: dict[str, Any] = {"rank": int(os.environ["RANK"]), "host": host}
    if scenario == "trainer":
        result.update(_trainer(options, out))  # Accelerate sets the process group up itself
    else:
        dist.init_process_group("gloo")
        _measure_scenario(options, result, out)
    _leave(result, out)


def _leave(result: dict[str, Any], out: Path) -> None:
    import time

    (out / f"rank-{result['rank']}.json").write_text(json.dumps(result))
    if result["rank"] == 0:
        # Rank 0 holds the store: it stays until every rank is done with it.
        deadline = time.monotonic() + 30
        world_size = int(os.environ["WORLD_SIZE"])
        while len(list(out.glob("rank-*.json"))) < world_size and time.monotonic() < deadline:
            time.sleep(0.05)
    # os._exit: no teardown that would wait for a rank that left (gloo's destructor).
    sys.stdout.flush()
    os._exit(0)


def _measure_scenario(options: dict[str, float], result: dict[str, Any], out: Path) -> None:
    import time

    import greenprec
    from greenprec.errors import GreenprecError
    from greenprec.meters.mock import MockMeter

    class GpuMock(MockMeter):
        covers = frozenset({"gpu"})

    rank, host = result["rank"], result["host"]
    with greenprec.measure(meter="mock", meter_options=options) as m:
        time.sleep(BLOCK_S)
    result["measure"] = m.to_dict()
    result["local_meters"] = len(m._meters)

    monitor = greenprec.Monitor(meter="mock", meter_options=options).open()
    monitor.begin_window("a")
    time.sleep(BLOCK_S)
    window = monitor.end_window("a")
    _, so_far_j = monitor.measurement.energy_so_far()
    whole = monitor.close()
    result["window"] = window.to_dict()
    result["so_far_j"] = so_far_j
    result["monitor"] = whole.to_dict()

    # A measurer that cannot start (a bad option on host b) fails every rank, by name.
    bad = {"power_w": -1.0} if host == "host-b" else options
    try:
        with greenprec.measure(meter="mock", meter_options=bad):
            pass
    except GreenprecError as error:
        result["bad_start"] = f"{type(error).__name__}: {error}"

    # A GPU meter on host b, whose ranks are shown different GPUs: refused on every rank.
    os.environ["CUDA_VISIBLE_DEVICES"] = "1" if rank == 3 else "0"
    try:
        with greenprec.measure(meter=GpuMock(**options)):
            pass
    except GreenprecError as error:
        result["split_gpus"] = f"{type(error).__name__}: {error}"
    del os.environ["CUDA_VISIBLE_DEVICES"]

    # Rank 3 leaves in the middle of a window: the others give up at its end, naming it.
    os.environ["GREENPREC_DISTRIBUTED_TIMEOUT_S"] = "2"
    try:
        with greenprec.measure(meter="mock", meter_options=options):
            if rank == 3:
                _leave(result, out)
            started = time.monotonic()
    except GreenprecError as error:
        result["missing"] = f"{type(error).__name__}: {error}"
    result["missing_waited_s"] = time.monotonic() - started


def _trainer(options: dict[str, float], out: Path) -> dict[str, Any]:
    """A Hugging Face Trainer on a tiny torch model, 2 ranks on the CPU through Accelerate."""
    import torch
    from transformers import Trainer, TrainingArguments

    from greenprec.integrations.transformers import EnergyCallback

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": torch.nn.functional.mse_loss(self.layer(x), labels)}

    generator = torch.Generator().manual_seed(0)
    data = [{"x": torch.randn(4, generator=generator), "labels": torch.randn(1)} for _ in range(32)]
    args = TrainingArguments(
        output_dir=str(out / "trainer"),
        use_cpu=True,
        ddp_backend="gloo",
        per_device_train_batch_size=4,
        num_train_epochs=1,
        logging_steps=2,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    trainer = Trainer(model=Tiny(), args=args, train_dataset=data)
    energy = EnergyCallback(meter="mock", meter_options=options).attach(trainer)
    trainer.train()
    assert energy.measurement is not None
    return {
        "measure": energy.measurement.to_dict(),
        "logs_j": [entry["energy_j"] for entry in trainer.state.log_history],
    }


def _lightning(options: dict[str, float]) -> dict[str, Any]:
    """A tiny model, 2 epochs, Lightning's own DDP on the CPU (gloo)."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from greenprec.integrations.lightning import EnergyCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    energy = EnergyCallback(meter="mock", meter_options=options)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        callbacks=[energy],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), DataLoader(data, batch_size=8))
    assert energy.measurement is not None
    return {
        "measure": energy.measurement.to_dict(),
        "epochs_j": [epoch.energy_j for epoch in energy.epochs],
        "logged_j": float(trainer.callback_metrics["energy_j"]),
    }


def _lightning_main(out: Path) -> None:
    # Lightning's "ddp" launches rank 1 by running this same command again with LOCAL_RANK set;
    # both ranks are on one machine, so one host: its lowest rank measures it, once.
    import torch.distributed as dist

    os.environ["GREENPREC_HOST_ID"] = "host-a"
    result = {"rank": int(os.environ.get("LOCAL_RANK", "0")), "host": "host-a"}
    result.update(_lightning({"power_w": HOST_POWER_W["host-a"]}))
    (out / f"rank-{result['rank']}.json").write_text(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()


# -- the tests ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    src = str(Path(__file__).resolve().parent.parent / "src")
    path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}
    env.pop("GREENPREC_DISTRIBUTED_TIMEOUT_S", None)
    return env


def _launch(scenario: str, out: Path, hosts: list[str]) -> list[dict[str, Any]]:
    """Start one process per entry of ``hosts`` (its simulated host), as torchrun would."""
    port = str(_free_port())
    procs = []
    for rank, host in enumerate(hosts):
        env = _env(
            RANK=str(rank),
            WORLD_SIZE=str(len(hosts)),
            LOCAL_RANK=str(hosts[:rank].count(host)),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            GREENPREC_HOST_ID=host,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, scenario, str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [proc.communicate(timeout=120)[0] for proc in procs]
    for rank, proc in enumerate(procs):
        assert proc.returncode == 0, f"rank {rank} failed:\n{logs[rank][-3000:]}"
    return [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(len(hosts))]


@pytest.fixture(scope="module")
def four_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Four ranks on two simulated hosts: ranks 0, 1 on host a; 2, 3 on host b."""
    out = tmp_path_factory.mktemp("ranks")
    return _launch("measure", out, ["host-a", "host-a", "host-b", "host-b"])


def _host_energy_ok(host: dict[str, Any]) -> None:
    # The mock's energy is its power times its measurer's window, exactly.
    expected_j = HOST_POWER_W[host["host"]] * host["duration_s"]
    assert host["energy_j"] == pytest.approx(expected_j, rel=1e-9)


@pytest.mark.slow
def test_each_host_is_measured_once_by_its_lowest_rank(four_ranks: list[dict[str, Any]]) -> None:
    # Only the measurers open a meter.
    assert [rank["local_meters"] for rank in four_ranks] == [1, 0, 1, 0]
    hosts = four_ranks[0]["measure"]["hosts"]
    assert [(h["host"], h["ranks"]) for h in hosts] == [("host-a", [0, 1]), ("host-b", [2, 3])]
    for host in hosts:
        _host_energy_ok(host)
        assert host["duration_s"] >= BLOCK_S


@pytest.mark.slow
def test_the_total_is_the_sum_over_hosts_not_over_ranks(four_ranks: list[dict[str, Any]]) -> None:
    for rank in four_ranks:
        measured = rank["measure"]
        total_j = sum(host["energy_j"] for host in measured["hosts"])
        assert measured["energy_j"] == total_j
        assert measured["world_size"] == 4
        # Each host's power once: 110 W over the window, not 220 W (x2 ranks per host).
        assert measured["energy_j"] < sum(HOST_POWER_W.values()) * measured["duration_s"] * 1.5
        assert sum(measured["domains"][d] for d in measured["counted_domains"]) == pytest.approx(
            total_j, rel=1e-12
        )


@pytest.mark.slow
def test_every_rank_sees_the_same_total_and_hosts(four_ranks: list[dict[str, Any]]) -> None:
    first = four_ranks[0]
    for rank in four_ranks[1:]:
        assert rank["measure"]["energy_j"] == first["measure"]["energy_j"]
        assert rank["measure"]["hosts"] == first["measure"]["hosts"]
        assert rank["monitor"]["hosts"] == first["monitor"]["hosts"]
        assert rank["window"]["energy_j"] == first["window"]["energy_j"]
        assert rank["so_far_j"] == first["so_far_j"]


@pytest.mark.slow
def test_monitor_windows_hold_the_job_energy(four_ranks: list[dict[str, Any]]) -> None:
    for rank in four_ranks:
        window = rank["window"]
        # Both hosts' mock powers, each once, over the window (edges are a few ms apart).
        expected_j = sum(HOST_POWER_W.values()) * window["duration_s"]
        assert window["energy_j"] == pytest.approx(expected_j, rel=0.1)
        assert window["counted_domains"] == ["mock/cpu"]
        assert window["meters"] == ["mock"]
        whole = rank["monitor"]
        assert whole["energy_j"] >= rank["so_far_j"] >= window["energy_j"]
        for host in whole["hosts"]:
            _host_energy_ok(host)


@pytest.mark.slow
def test_a_measurer_that_cannot_start_fails_every_rank(four_ranks: list[dict[str, Any]]) -> None:
    for rank in four_ranks:
        message = rank["bad_start"]
        assert message.startswith("ConfigError")
        assert "power_w" in message
        if rank["host"] != "host-b" or rank["rank"] != 2:
            assert "rank 2 (host 'host-b') could not start its meters" in message


@pytest.mark.slow
@pytest.mark.slow
def test_a_host_whose_ranks_see_different_gpus_is_refused(
    four_ranks: list[dict[str, Any]],
) -> None:
    for rank in four_ranks:
        message = rank["split_gpus"]
        assert message.startswith("ConfigError")
        assert "the ranks of host 'host-b' are shown different GPUs" in message
        assert "rank 2: CUDA_VISIBLE_DEVICES=0, rank 3: CUDA_VISIBLE_DEVICES=1" in message


def test_a_rank_that_never_arrives_times_out_naming_it(four_ranks: list[dict[str, Any]]) -> None:
    assert "missing" not in four_ranks[3]  # it left inside the window
    for rank in four_ranks[:3]:
        message = rank["missing"]
        assert message.startswith("MeterError: rank 3 (host 'host-b') did not reach the end")
        assert "within 2 s" in message and "GREENPREC_DISTRIBUTED_TIMEOUT_S" in message
        assert "\n" not in message
        assert 2 <= rank["missing_waited_s"] < 10


def test_without_torch_distributed_nothing_changes() -> None:
    import greenprec
    from greenprec.distributed import current_group

    assert current_group() is None  # torch.distributed not initialised (maybe not imported)
    with greenprec.measure(meter="mock", meter_options={"power_w": 10.0}) as m:
        pass
    data = m.to_dict()
    assert "hosts" not in data and "world_size" not in data
    assert m.layout is None
    [host] = m.hosts
    assert host.ranks == [0] and host.energy_j == m.energy_j and host.domains == m.domains


def test_host_id_variable_overrides_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from greenprec.distributed import host_id

    monkeypatch.setenv("GREENPREC_HOST_ID", "node-7")
    assert host_id() == "node-7"
    monkeypatch.delenv("GREENPREC_HOST_ID")
    assert host_id() == socket.gethostname()


def test_ranks_of_one_host_shown_different_gpus_are_refused() -> None:
    from greenprec.distributed import Layout

    hosts = {"a": [0, 1], "b": [2, 3]}
    same = Layout(0, 4, hosts, {0: "", 1: "", 2: "CUDA_VISIBLE_DEVICES=0", 3: "x"})
    assert same.device_mismatch() is None  # host a: both see every GPU
    split = Layout(2, 4, hosts, {0: "", 1: "", 2: "CUDA_VISIBLE_DEVICES=0", 3: "x"})
    reason = split.device_mismatch()
    assert reason is not None and "host 'b'" in reason and "LOCAL_RANK" in reason
    assert split.measurers == [0, 2] and split.is_measurer and split.host == "b"


def test_a_store_that_stops_answering_is_one_meter_error_line() -> None:
    from greenprec.distributed import Group
    from greenprec.errors import MeterError

    class GoneStore:
        def set(self, key: str, value: str) -> None:
            raise RuntimeError("Connection reset by peer\n  at somewhere")

    group = Group(GoneStore(), 1, 2, timeout_s=1.0)  # type: ignore[arg-type]
    with pytest.raises(
        MeterError,
        match=r"^rank 1 lost torch.distributed's key-value store at "
        r"the end of the window \(RuntimeError: Connection reset by peer at ",
    ):
        group.exchange("the end of the window", {})


def test_job_totals_from_host_results() -> None:
    from greenprec.distributed import HostResult, job_domains, job_total_j

    def host(name: str, ranks: list[int], energy_j: float) -> HostResult:
        return HostResult(
            host=name,
            ranks=ranks,
            energy_j=energy_j,
            duration_s=1.0,
            domains={"rapl/package-0": energy_j, "rapl/core-0": energy_j / 2},
            counted_domains=["rapl/package-0"],
            meters=["rapl"],
            estimated=False,
        )

    hosts = [host("a", [0, 1], 30.0), host("b", [2, 3], 12.0)]
    assert job_total_j(hosts) == 42.0
    assert job_domains(hosts) == {"rapl/package-0": 42.0, "rapl/core-0": 21.0}


@pytest.mark.slow
def test_lightning_ddp_logs_the_job_total_on_every_rank(tmp_path: Path) -> None:
    pytest.importorskip("lightning.pytorch", reason="needs lightning")
    proc = subprocess.run(
        [sys.executable, __file__, "lightning-main", str(tmp_path)],
        env=_env(MASTER_PORT=str(_free_port())),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    for rank in ranks:
        [host] = rank["measure"]["hosts"]
        assert host["ranks"] == [0, 1]
        _host_energy_ok(host)  # one host, measured once: 100 W, not 200 W
        assert rank["measure"]["energy_j"] == host["energy_j"]
        assert rank["logged_j"] == pytest.approx(rank["epochs_j"][-1], rel=1e-6)
        assert all(math.isfinite(j) and j > 0 for j in rank["epochs_j"])
    assert ranks[0]["measure"]["energy_j"] == ranks[1]["measure"]["energy_j"]
    assert ranks[0]["epochs_j"] == ranks[1]["epochs_j"]


@pytest.mark.slow
def test_hugging_face_trainer_under_accelerate_logs_the_job_total(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs transformers")
    pytest.importorskip("accelerate", reason="needs accelerate")
    ranks = _launch("trainer", tmp_path, ["host-a", "host-b"])
    for rank in ranks:
        hosts = rank["measure"]["hosts"]
        assert [(h["host"], h["ranks"]) for h in hosts] == [("host-a", [0]), ("host-b", [1])]
        for host in hosts:
            _host_energy_ok(host)
        assert rank["measure"]["energy_j"] == sum(h["energy_j"] for h in hosts)
        assert len(rank["logs_j"]) >= 3 and all(j > 0 for j in rank["logs_j"])
    assert ranks[0]["logs_j"] == ranks[1]["logs_j"]  # every process logs the job's figures
    assert ranks[0]["measure"] == ranks[1]["measure"] | {
        "started_at": ranks[0]["measure"]["started_at"],
        "ended_at": ranks[0]["measure"]["ended_at"],
    }


if __name__ == "__main__":
    if sys.argv[1] == "lightning-main":
        _lightning_main(Path(sys.argv[2]))
    else:
        _worker(sys.argv[1], Path(sys.argv[2]))
