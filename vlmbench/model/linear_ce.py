"""Cross-entropy over a linear layer's outputs without keeping the (rows x classes) logit matrix.

Every loss over the vocabulary (the masked token loss, MFM-MLM's MLM term, captioning's LM head) scores each
row against ~30k word embeddings. Materialised, that matrix, its concatenations and its softmax dominate a
small model's step on a CPU: memory traffic, not arithmetic. Here the logits are made a block of rows at a
time, turned into their own gradient in place while the block is still in cache, and only the (rows x H),
(classes x H) and bias gradients are kept (the approach of Liger-Kernel's fused linear cross-entropy). The
value and gradients equal F.cross_entropy(h @ weight.T + bias, target) up to float rounding (tests/test_linear_ce).
"""

from __future__ import annotations

import torch

EXTRA = -1  # a target naming the extra column, not a weight row
# Logit elements per block: ~16 MB of float32 on a CPU (cache-sized work, few Python steps); on a GPU the
# whole matrix up to 1 GB (one kernel per step matters more there than traffic).
BLOCK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 28}


class _LinearCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, extra, target):
        need = ctx.needs_input_grad[:4]
        rows, classes = h.shape[0], weight.shape[0]
        step = max(1, BLOCK_ELEMENTS.get(h.device.type, BLOCK_ELEMENTS["cpu"]) // (classes + 1))
        grads = [
            torch.empty_like(h) if need[0] else None,
            torch.zeros_like(weight) if need[1] else None,
            torch.zeros_like(bias) if need[2] else None,
            torch.empty_like(extra) if need[3] else None,
        ]
        total = h.new_zeros(())
        for s in range(0, rows, step):
            hb, t = h[s : s + step], target[s : s + step]
            z = hb @ weight.T if bias is None else torch.addmm(bias, hb, weight.T)
            z = z.to(h.dtype)  # under bf16 autocast the matmul is bf16; the softmax stays in float32
            in_w = t != EXTRA
            picked = z.gather(1, t.clamp(min=0)[:, None]).squeeze(1)
            top = z.amax(1)
            if extra is not None:
                eb = extra[s : s + step]
                picked = torch.where(in_w, picked, eb)
                top = torch.maximum(top, eb)
            z.sub_(top[:, None]).exp_()
            norm = z.sum(1)
            if extra is not None:
                p_extra = (eb - top).exp()
                norm += p_extra
            total += (norm.log() + top - picked).sum()
            if not any(need):
                continue
            z.div_(norm[:, None])  # softmax, then minus the one-hot target:
            hit = in_w.nonzero().squeeze(1)
            z[hit, t[hit]] -= 1  # d(sum of row losses)/d logits
            if grads[0] is not None:
                grads[0][s : s + step] = z @ weight
            if grads[1] is not None:
                grads[1].addmm_(z.T, hb)
            if grads[2] is not None:
                grads[2] += z.sum(0)
            if grads[3] is not None:
                grads[3][s : s + step] = p_extra / norm - (~in_w).to(z.dtype)
        ctx.rows = rows
        ctx.save_for_backward(*(g if g is not None else h.new_empty(0) for g in grads))
        ctx.has = [g is not None for g in grads]
        return total / rows

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, upstream):
        scale = upstream / ctx.rows
        return (*(g * scale if has else None for g, has in zip(ctx.saved_tensors, ctx.has)), None)


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over rows i of CE(logits_i, target_i), logits_i = [h_i @ weight.T + bias, extra_i].
    h (M,H), weight (C,H), bias (C,) or None, extra (M,) one more logit per row or None; target (M,) in
    [0, C), or EXTRA for the extra column. Computed in float32 (float64 stays float64)."""
    if not h.shape[0]:
        return weight.sum() * 0.0
    if extra is None and bool((target == EXTRA).any()):
        raise ValueError("a target names the extra column, but no extra logits were given")
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
    cast = lambda x: None if x is None else x.to(dtype)  # noqa: E731
    return _LinearCE.apply(cast(h), cast(weight), cast(bias), cast(extra), target)
