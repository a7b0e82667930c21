"""Adam (fairseq defaults: betas (0.9, 0.98), eps 1e-8, no weight decay) and fairseq's polynomial_decay schedule."""

from __future__ import annotations

import torch


def adam(
    params, lr: float, beta1: float = 0.9, beta2: float = 0.98, eps: float = 1e-8, weight_decay: float = 0.0
) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, foreach=False)


def lr_at(step: int, lr: float, warmup: int, decay_steps: int, end_lr: float = 0.0, power: float = 1.0) -> float:
    """Linear warm-up to lr over `warmup` updates, then polynomial decay to end_lr at `decay_steps`.

    `step` is the 0-based index of the update about to happen (fairseq counts from 1, hence step + 1)."""
    n = step + 1
    if warmup > 0 and n <= warmup:
        return lr * n / warmup
    if n >= decay_steps:
        return end_lr
    remaining = 1 - (n - warmup) / max(1, decay_steps - warmup)
    return (lr - end_lr) * remaining**power + end_lr


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
