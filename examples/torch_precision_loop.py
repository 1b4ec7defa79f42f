"""A plain PyTorch training loop under each greenprec precision policy: the three-line change.

    python examples/torch_precision_loop.py

A few seconds on a CPU (CUDA is used when PyTorch sees a GPU). The loop is the one in
docs/precision.md; the lines marked 1, 2 and 3 are all that greenprec changes in it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import greenprec.precision


def blobs(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """2048 points in 20 dimensions around 4 random centres: a problem a tiny MLP learns."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 20, generator=generator) * 2
    labels = torch.randint(0, 4, (2048,), generator=generator)
    points = centres[labels] + torch.randn(2048, 20, generator=generator)
    return points.to(device), labels.to(device)


def train(policy: str, device: str) -> float:
    torch.manual_seed(0)
    x, y = blobs(device)
    model = torch.nn.Sequential(
        torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    with greenprec.precision.torch_policy(policy, device) as precision:  # 1: the policy
        for _epoch in range(5):
            for start in range(0, len(x), 128):
                xb, yb = x[start : start + 128], y[start : start + 128]
                optimizer.zero_grad()
                with precision.autocast():  # 2: the forward pass and the loss
                    loss = F.cross_entropy(model(xb), yb)
                precision.backward_step(loss, optimizer)  # 3: was loss.backward(); optimizer.step()

    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


if __name__ == "__main__":
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in ("fp32", "tf32", "mixed", "bf16"):
        print(f"{name} accuracy {train(name, device):.3f}")
