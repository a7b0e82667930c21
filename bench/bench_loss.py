"""The vocabulary losses: blocked linear_cross_entropy (ours) vs the materialised logits (the reference's layout).

    python bench/bench_loss.py [--hidden 64,384] [--repeats 7]

Naive: the masked token loss as the reference writes it (losses/nce.py MTM): per row kind, the [target,
negatives, vocabulary] logits concatenated, the two blocks concatenated again, one F.cross_entropy.
Ours: vlmbench.model.losses.masked_token_loss, which goes through linear_cross_entropy. Shapes are a ci-preset
pre-training step (about 250 masked frames, 400 masked tokens, 500 negatives, 30,522 words); both run forward +
backward on the same inputs in the same process, and the table gives medians of the repeats and their ratio
(CPU contention moves both). Also checks that the two agree (loss and gradients).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlmbench.model.losses import masked_token_loss  # noqa: E402

VOCAB = 30522


def naive(h_video, video_targets, h_text, text_targets, negatives, vocab):
    pos = (h_video * video_targets).sum(-1, keepdim=True)
    rows = [
        torch.cat([pos, h_video @ negatives.T, h_video @ vocab.T], 1),
        torch.cat([h_text @ vocab.T, h_text @ negatives.T, h_text.new_zeros(len(h_text), 1)], 1),
    ]
    targets = torch.cat([torch.zeros(len(h_video), dtype=torch.long), text_targets])
    return F.cross_entropy(torch.cat(rows), targets)


def inputs(hidden: int, seed: int, videos=250, texts=400, negatives=500):
    g = torch.Generator().manual_seed(seed)
    leaf = lambda *s: (torch.randn(*s, generator=g) * 0.3).requires_grad_()  # noqa: E731
    return [
        leaf(videos, hidden),
        leaf(videos, hidden),
        leaf(texts, hidden),
        torch.randint(0, VOCAB, (texts,), generator=g),
        leaf(negatives, hidden),
        leaf(VOCAB, hidden),
    ]


def timed(fn, args) -> float:
    for a in args:
        a.grad = None
    t = time.perf_counter()
    fn(*args).backward()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", default="64,384", help="hidden sizes: 64 = the tiny backbone, 384 = MiniLM")
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    print(f"{torch.get_num_threads()} threads; forward + backward, median of {a.repeats}")
    print(f"{'hidden':>6} {'naive s':>9} {'ours s':>9} {'speed-up':>9} {'max |d grad|':>13}")
    for hidden in map(int, a.hidden.split(",")):
        x = inputs(hidden, 0)
        grads = []
        for fn in (naive, masked_token_loss):
            loss = fn(*x)
            grads.append(torch.autograd.grad(loss, [x[i] for i in (0, 1, 2, 4, 5)]))
        diff = max(float((g1 - g2).abs().max()) for g1, g2 in zip(*grads))
        t_naive, t_ours = [], []
        for _ in range(a.repeats):  # interleaved, so drift in machine load hits both alike
            t_naive.append(timed(naive, x))
            t_ours.append(timed(masked_token_loss, x))
        mn, mo = statistics.median(t_naive), statistics.median(t_ours)
        print(f"{hidden:6d} {mn:9.3f} {mo:9.3f} {mn / mo:8.2f}x {diff:13.2e}")


if __name__ == "__main__":
    main()
