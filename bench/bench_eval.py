"""Evaluation throughput of the two-tower families: encode-once (ours) vs the naive per-pair full forward.

    python bench/bench_eval.py [--backbones tiny default] [--questions 16] [--n 32]

MC-QA: ours encodes each video once (33 positions) and each candidate once (its tokens + [SEP], padding slots
trimmed), then 5 dot products;
naive re-encodes the video with every candidate as one 96-token isolated forward (the reference's procedure).
Retrieval: ours encodes N videos + N texts once and forms the N x N matrix by one matmul; naive runs one 96-token
isolated forward for every (text, video) pair. Both versions are run in the same process on the same synthetic
inputs (random features, random-length token ids) and the same model; the ratio is what matters, not the
absolute numbers (CPU contention moves both). Also checks that the two give the same scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlmbench.model import text as textmod  # noqa: E402
from vlmbench.model.vlm import VLM  # noqa: E402
from vlmbench.models.vlm import trim_text  # noqa: E402

N_CHOICES = 5


def video_vectors(vlm: VLM, video, vmask):
    """Pooled clip vectors from the isolated video half (what the suite's VLM encode_video pools)."""
    return vlm.pool_video(vlm.forward_video(video, vmask), vmask)


def text_vectors(vlm: VLM, ids, mask):
    """Pooled sentence vectors from the isolated text half (what the suite's VLM encode_text pools)."""
    return vlm.pool_text(vlm.forward_text(ids, mask), mask)


def synthetic(n_videos: int, n_texts: int, seed: int = 0):
    """Videos of 5-32 valid seconds, texts of 6-20 random word-piece ids (as MSR-VTT captions are)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 33, (n_videos,), generator=g)
    vmask = torch.arange(32)[None] < lengths[:, None]
    video = torch.randn(n_videos, 32, 512, generator=g) * vmask[..., None]
    toks = [
        torch.randint(1000, 30000, (int(k),), generator=g).tolist()
        for k in torch.randint(6, 21, (n_texts,), generator=g)
    ]
    ids, mask = textmod.pack(toks)
    return video, vmask, ids, mask


def timed(fn, repeat: int = 1):
    fn()  # warm-up (allocations, kernels)
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - t0) / repeat


def pair_scores(vlm: VLM, video, vmask, ids, mask, batch: int = 64) -> torch.Tensor:
    """Dot products of the pooled halves of full 96-token isolated forwards, one row per (video, text) pair."""
    out = []
    for s in range(0, len(ids), batch):
        v, m, i, t = video[s : s + batch], vmask[s : s + batch], ids[s : s + batch], mask[s : s + batch]
        h = vlm(v, m, i, t, mask="isolated")
        out.append((vlm.pool_video(h, m) * vlm.pool_text(h, t)).sum(-1))
    return torch.cat(out)


def bench_mcqa(vlm: VLM, n_q: int, batch: int) -> dict:
    video, vmask, ids, mask = synthetic(n_q, n_q * N_CHOICES, seed=1)

    def ours():
        v = torch.cat([video_vectors(vlm, video[s : s + batch], vmask[s : s + batch]) for s in range(0, n_q, batch)])
        t = torch.cat(
            [text_vectors(vlm, *trim_text(ids[s : s + batch], mask[s : s + batch])) for s in range(0, len(ids), batch)]
        )
        return torch.einsum("qh,qkh->qk", v, t.view(n_q, N_CHOICES, -1))

    def naive():  # each video repeated once per candidate
        rep = torch.arange(n_q).repeat_interleave(N_CHOICES)
        return pair_scores(vlm, video[rep], vmask[rep], ids, mask, batch).view(n_q, N_CHOICES)

    a, t_ours = timed(ours, repeat=3)
    b, t_naive = timed(naive)
    return dict(ours=n_q / t_ours, naive=n_q / t_naive, max_abs_diff=float((a - b).abs().max()))


def bench_retrieval(vlm: VLM, n: int, batch: int) -> dict:
    video, vmask, ids, mask = synthetic(n, n, seed=2)

    def ours():
        return text_vectors(vlm, *trim_text(ids, mask)) @ video_vectors(vlm, video, vmask).T

    def naive():  # row-major text x video, every pair through the full model
        ti, vi = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        ti, vi = ti.reshape(-1), vi.reshape(-1)
        return pair_scores(vlm, video[vi], vmask[vi], ids[ti], mask[ti], batch).view(n, n)

    a, t_ours = timed(ours, repeat=3)
    b, t_naive = timed(naive)
    return dict(ours=n * n / t_ours, naive=n * n / t_naive, max_abs_diff=float((a - b).abs().max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["tiny", "default"])
    ap.add_argument("--questions", type=int, default=16, help="MC-QA questions (x5 candidates)")
    ap.add_argument("--n", type=int, default=32, help="retrieval N (N x N pairs for the naive version)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0 = torch's default); on a shared, oversubscribed CPU use 1: two OpenMP "
        "threads that wait on a descheduled peer make small matmuls ~100x slower",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"MC-QA {args.questions} questions x {N_CHOICES}; retrieval {args.n} x {args.n}"
    )
    print(f"{'backbone':9} {'eval':10} {'ours':>12} {'naive':>12} {'speed-up':>9} {'max |diff|':>11}")
    for name in args.backbones:
        vlm = VLM.from_backbone(name, seed=0).eval()
        for what, res, unit in (
            ("MC-QA", bench_mcqa(vlm, args.questions, args.batch), "q/s"),
            ("retrieval", bench_retrieval(vlm, args.n, args.batch), "pairs/s"),
        ):
            print(
                f"{name:9} {what:10} {res['ours']:8.1f} {unit:<3} {res['naive']:8.1f} {unit:<3} "
                f"{res['ours'] / res['naive']:8.1f}x {res['max_abs_diff']:11.2e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
