"""The fine-tuning loop shared by every adapter: Adam (0.9, 0.98), linear warm-up (122 updates in the paper)
then fairseq's polynomial decay over 1M updates (so ~constant), gradient clipping 2.0."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch

from ..runconfig import RunConfig
from .optim import adam, lr_at, set_lr


def finetune(adapter, module: torch.nn.Module, cfg: RunConfig, device: torch.device,
             on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Runs cfg.epochs epochs of adapter.train_batches; returns the loss of every update."""
    optimizer = adam(module.parameters(), cfg.lr, cfg.beta1, cfg.beta2)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    module.train()
    losses: list[float] = []
    step = 0
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, 101, epoch])
        for batch in adapter.train_batches(epoch, rng):
            torch.manual_seed(cfg.seed * 1_000_003 + step)        # dropout, reproducibly
            set_lr(optimizer, lr_at(step, cfg.lr, cfg.warmup, cfg.lr_decay_steps))
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = adapter.loss(module, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_norm)
            optimizer.step()
            losses.append(float(loss.detach()))
            if on_step:
                on_step(step, losses[-1])
            step += 1
    module.eval()
    return losses
