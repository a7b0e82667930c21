"""The fine-tuning loop shared by every adapter: Adam (0.9, 0.98), linear warm-up (122 updates in the paper)
then fairseq's polynomial decay over 1M updates (so ~constant), gradient clipping 2.0.

Checkpoint selection (cfg.select):
- final (default, vlmbench's headline): the model after the last epoch.
- best-of-epochs (the reference's protocol): after every epoch the model is scored on the TEST split and the
  best epoch's weights are kept. Retrieval and MC-QA: the highest first headline metric (R@1 / accuracy; MMPT's
  predict.py over every checkpoint); COIN, CrossTask and captioning: the lowest fine-tuning loss on the test
  split (fairseq's checkpoint_best.pt, whose "valid" subset is the test split). The result says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch

from .. import config as cfgmod
from ..config import RunConfig
from .optim import adam, lr_at, set_lr
from .tracking import Tracker

SELECTED_NOTE = "selected on the test split, as the reference does"


def finetune(
    adapter,
    module: torch.nn.Module,
    cfg: RunConfig,
    device: torch.device,
    on_step: Callable[[int, float], None] | None = None,
    tracker: Tracker | None = None,
) -> list[float]:
    """Runs cfg.epochs epochs of adapter.train_batches; returns the loss of every update. With
    select=best-of-epochs the module ends with the best epoch's weights (adapter.selection says which)."""
    optimizer = adam(module.parameters(), cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    best_of = getattr(cfg, "select", "final") == "best-of-epochs"
    module.train()
    losses: list[float] = []
    history: list[float] = []
    best: tuple[float, int, dict] | None = None
    step = 0
    ranks = int(getattr(cfg, "virtual_ranks", 1))
    for epoch in range(cfg.epochs):
        rng = np.random.default_rng([cfg.seed, 101, epoch])
        for group in _groups(adapter.train_batches(epoch, rng), ranks):
            torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout, reproducibly
            lr = lr_at(step, cfg.lr, cfg.warmup, cfg.lr_decay_steps)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            # One update over `ranks` batches as DDP runs them on `ranks` GPUs: each batch's loss on its own (its
            # own in-batch negatives), gradients averaged; the logged loss is their mean. ranks=1: one batch.
            total = 0.0
            for batch in group:
                with autocast:
                    loss = adapter.loss(module, batch)
                (loss / len(group)).backward() if len(group) > 1 else loss.backward()
                total += float(loss.detach())
            loss = torch.tensor(total / len(group))
            grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_norm)
            optimizer.step()
            losses.append(float(loss.detach()))
            if tracker is not None:
                tracker.scalars(
                    step, **{"finetune/loss": losses[-1], "finetune/lr": lr, "finetune/grad_norm": grad_norm}
                )
            if on_step:
                on_step(step, losses[-1])
            step += 1
        if best_of:
            value, what, higher = epoch_score(adapter, module, cfg, autocast)
            history.append(value)
            if tracker is not None:
                tracker.scalars(step, **{"finetune/epoch_selection_value": value})
            key = value if higher else -value
            if best is None or key > best[0]:
                best = (key, epoch, {k: v.detach().clone() for k, v in module.state_dict().items()})
            module.train()
    if best is not None:
        module.load_state_dict(best[2])
        adapter.selection = {"epoch": best[1] + 1, "by": what, "per_epoch": history}
        adapter.loaded.counts["selected_epoch"] = best[1] + 1
        adapter.say(
            f"select=best-of-epochs: epoch {best[1] + 1} of {cfg.epochs} by {what} "
            f"({', '.join(f'{v:.4g}' for v in history)}), {SELECTED_NOTE}"
        )
    module.eval()
    return losses


def _groups(batches, n: int):
    """Consecutive groups of n batches (the last may be shorter): one update each."""
    group = []
    for b in batches:
        group.append(b)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def epoch_score(adapter, module: torch.nn.Module, cfg: RunConfig, autocast=nullcontext()) -> tuple[float, str, bool]:
    """(value, what it is, higher is better) of the current weights on the test split."""
    module.eval()
    with torch.no_grad():
        batches = adapter.test_loss_batches() if hasattr(adapter, "test_loss_batches") else None
        if batches is not None:
            total, n = 0.0, 0
            for batch in batches:
                with autocast:
                    total += float(adapter.loss(module, batch))
                n += 1
            return (total / n if n else math.nan), "test-split fine-tuning loss (lowest)", False
        preds = adapter.predict(module)
        metrics, _ = adapter.score(preds, cfgmod.to_dict(cfg))
        name = adapter.spec.metrics[0]
        return float(metrics[name]), f"test {name} (highest)", True
