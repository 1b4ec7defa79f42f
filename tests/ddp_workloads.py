"""A tiny PyTorch DDP workload for tests/test_distributed_runs.py, imported by each rank that
torchrun starts (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import os
from typing import Any

from greenprec.workloads import workload


@workload(framework="torch")
def tiny_ddp(ctx: Any) -> dict[str, float]:
    """A linear model trained a few steps with DistributedDataParallel on random data.

    The process group is greenprec's (the run's child initialises it); the workload only wraps
    its model. ``fail_rank``: the rank that raises inside the measured block (a failing rank).
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    steps = int(ctx.params.get("steps", 5))
    fail_rank = int(ctx.params.get("fail_rank", -1))
    rank = dist.get_rank() if dist.is_initialized() else 0
    model: torch.nn.Module = torch.nn.Linear(8, 1)
    if dist.is_initialized():
        model = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(ctx.seed + rank)
    inputs = torch.randn(32, 8, generator=generator)
    targets = inputs.sum(dim=1, keepdim=True)
    loss = torch.zeros(())
    with ctx.measured():
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            loss.backward()  # DDP's all-reduce: every rank takes part in every step
            optimizer.step()
        if rank == fail_rank:
            raise RuntimeError(f"rank {rank} fails on purpose (pid {os.getpid()})")
    return {"test_accuracy": 0.5, "test_loss": float(loss.detach())}
