"""Retrieval ranking (metrics.retrieval_blocks.rank_counts) beside one bare pass of its own matmul (issue 24).

    python bench/bench_retrieval.py                  # N = 20,000 (3 repeats) and 100,000 (1 repeat): `make bench`
    python bench/bench_retrieval.py --quick          # N = 4,000, 3 repeats: seconds
    python bench/bench_retrieval.py --sizes 20k --repeats 5 [--device cuda] [--no-naive]

Per N, random 768-d float32 (text, video) pairs, the default block (retrieval_blocks.BLOCK rows), in one process,
the three timed one after another in every repeat (so machine load moves all three), medians of the repeats:

  matmul   one bare blocked pass: text[a:b] @ video.T for every block, into one reused output buffer, nothing
           else: what any method that computes each score once must spend (the physical limit)
  new      rank_counts: counts both ways, top-5, the diagonal estimate, on the embeddings' device
  naive    the two-pass algorithm as it was before issue 24 (NAIVE below, copied unchanged): every block
           computed twice, top-k with a per-row Python loop; CPU only

The table gives new / matmul beside its goal (<= 1.5x) and naive / new; a line checks that new and naive give
the same counts and top-5 (bit for bit) and how many passes new made (1: the diagonal estimate held).
At N = 100,000 on 2 cores one repeat of each takes minutes (naive alone 12-20): one repeat there; the whole
default run took about 35 minutes on the project's shared 2-core VM (--no-naive: about 15).
OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE, unless set): see the comment at the imports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Before torch loads OpenMP: threads that wait for work sleep instead of spinning. On a machine whose cores are
# shared (load above the core count) a spinning thread holds the core that its partner needs, and every parallel
# op waits a scheduler slice: that penalises code of many short ops (the counts) against one long one (matmul).
# Set OMP_WAIT_POLICY yourself to measure with another policy.
WAIT_POLICY = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlmbench.metrics import MetricInputError, retrieval_blocks  # noqa: E402
from vlmbench.metrics.retrieval_blocks import BLOCK, RankCounts, rank_counts  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as fig  # noqa: E402

GOAL = 1.5
DIM = 768


# ---- NAIVE: rank_counts / rank_counts_rows / _top as of 751d2cd (before issue 24), copied, renamed naive_* -------
def naive_rank_counts(text: torch.Tensor, video: torch.Tensor, block: int | None = None, k: int = 5) -> RankCounts:
    text, video = torch.as_tensor(text), torch.as_tensor(video)
    n = len(text)
    if text.ndim != 2 or video.shape != text.shape or n == 0:
        raise MetricInputError(
            f"text and video must be non-empty (N, d) matrices of one shape, got "
            f"{tuple(text.shape)} and {tuple(video.shape)}"
        )
    return naive_rank_counts_rows(lambda a, b: text[a:b] @ video.T, n, block, k)


def _naive_blocks(n: int, block: int):
    for a in range(0, n, block):
        yield a, min(n, a + block)


def naive_rank_counts_rows(rows, n: int, block: int | None = None, k: int = 5) -> RankCounts:
    if n == 0:
        raise MetricInputError("retrieval needs at least one query")
    k, block = min(k, n), block or BLOCK
    diag = None
    t2v_gt, t2v_ge = np.empty(n, np.int64), np.empty(n, np.int64)
    top = np.empty((n, k), np.int64)
    top_scores = None
    for a, b in _naive_blocks(n, block):  # pass 1: rows, the diagonal, top-k
        s = torch.as_tensor(rows(a, b))
        if s.shape != (b - a, n):
            raise MetricInputError(f"score rows {a}-{b - 1} have shape {tuple(s.shape)}, expected {(b - a, n)}")
        if torch.isnan(s).any():
            raise MetricInputError(f"scores contain {int(torch.isnan(s).sum())} NaN values (rows {a}-{b - 1})")
        if diag is None:
            diag = torch.empty(n, dtype=s.dtype)
            top_scores = np.empty((n, k), s.numpy().dtype)
        d = s[torch.arange(b - a), torch.arange(a, b)]
        diag[a:b] = d
        t2v_gt[a:b] = (s > d[:, None]).sum(1).numpy()
        t2v_ge[a:b] = (s >= d[:, None]).sum(1).numpy()
        sn = s.numpy()
        top[a:b] = _naive_top(sn, k)
        top_scores[a:b] = np.take_along_axis(sn, top[a:b], axis=1)
    v2t_gt, v2t_ge = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for a, b in _naive_blocks(n, block):  # pass 2: columns against the diagonal
        s = torch.as_tensor(rows(a, b))
        v2t_gt += (s > diag[None, :]).sum(0).numpy()
        v2t_ge += (s >= diag[None, :]).sum(0).numpy()
    return RankCounts(t2v_gt, t2v_ge, v2t_gt, v2t_ge, top, top_scores, diag.numpy())


def _naive_top(s: np.ndarray, k: int) -> np.ndarray:
    """np.argsort(-s, kind='stable')[:, :k] without sorting whole rows."""
    kth = -np.partition(-s, k - 1, axis=1)[:, k - 1 : k]
    out = np.empty((len(s), k), np.int64)
    for i, row in enumerate(s):
        cand = np.flatnonzero(row >= kth[i])  # all above the k-th score, and every tie with it
        out[i] = cand[np.argsort(-row[cand], kind="stable")[:k]]
    return out


# ---- the bare pass and the table -----------------------------------------------------------------------------------
def bare_pass(text: torch.Tensor, video: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """The matmul of rank_counts and nothing else: the same blocks, one output buffer."""
    out = None
    for a, b in retrieval_blocks._blocks(len(text), block):
        if out is None:
            out = text[a:b] @ video.T
        else:
            torch.matmul(text[a:b], video.T, out=out[: b - a])
    return out


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def bench(n: int, repeats: int, device: str, naive: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    text = torch.randn(n, DIM, generator=g)
    video = text + 4 * torch.randn(n, DIM, generator=g)  # noisy pairs: R@1 well below 100
    text, video = text.to(device), video.to(device)
    times: dict[str, list[float]] = {"matmul": [], "new": [], "naive": []}
    new = old = None
    for _ in range(repeats):
        times["matmul"].append(timed(lambda: bare_pass(text, video), device)[0])
        t, new = timed(lambda: rank_counts(text, video), device)
        times["new"].append(t)
        if naive:
            t, old = timed(lambda: naive_rank_counts(text, video), device)
            times["naive"].append(t)
    row = {k: statistics.median(v) for k, v in times.items() if v}
    row.update(n=n, repeats=repeats, passes=new.passes)
    if old is not None:
        row["same"] = all(np.array_equal(getattr(new, f), getattr(old, f)) for f in RankCounts.KEYS)
    return row


def diagonal_bits(device: str) -> None:
    """How often the tile diagonal estimate (`_diagonal`) differs, in the last bit, from the diagonal of the blocked
    pass, on this device's BLAS, over shapes: 0 everywhere means rank_counts computes each block once."""
    print("| N | d | block | tile | estimates differing from the pass (of N) |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for n, dim, block in ((50, 32, 7), (300, 32, 64), (3000, 768, 1024), (5000, 768, 777), (20000, 768, 1024)):
        text = torch.randn(n, dim, generator=g)
        video = (text + torch.randn(n, dim, generator=g)).to(device)
        text = text.to(device)
        true = torch.cat([(text[a:b] @ video.T).diagonal(a) for a, b in retrieval_blocks._blocks(n, block)])
        for tile in (16, 64, 256):
            bad = int((retrieval_blocks._diagonal(text, video, tile) != true).sum())
            print(f"| {n:,} | {dim} | {block} | {tile} | {bad} |", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="20k,100k", help="comma-separated N (k = thousand)")
    p.add_argument("--repeats", default=None, help="repeats per size, comma-separated (default 3 below 50k, else 1)")
    p.add_argument("--quick", action="store_true", help="N = 4,000, 3 repeats")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-naive", dest="naive", action="store_false", help="skip the two-pass reference")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--bits", action="store_true", help="only: does the tile diagonal match the pass, per shape")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bits:
        return diagonal_bits(args.device)
    sizes = [4000] if args.quick else [int(float(s.lower().replace("k", "e3"))) for s in args.sizes.split(",")]
    reps = [int(r) for r in args.repeats.split(",")] if args.repeats else [3 if n < 50_000 else 1 for n in sizes]
    reps = reps * len(sizes) if len(reps) == 1 else reps
    naive = args.naive and args.device == "cpu"
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={WAIT_POLICY}, "
        f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (before)\n"
        f"{DIM}-d float32, block {BLOCK}; seconds are medians of the repeats\n",
        flush=True,
    )
    print(
        "| N | repeats | matmul pass s | rank_counts s | naive (two-pass) s | rank_counts / matmul | goal | naive / new |"
    )
    print("|---|---|---|---|---|---|---|---|")
    figures = []
    for n, r in zip(sizes, reps, strict=True):
        row = bench(n, r, args.device, naive)
        ratio = row["new"] / row["matmul"]
        figures.append(
            fig.figure(
                f"retrieval_{n}",
                f"retrieval: rank_counts / one bare matmul pass, N = {n:,}",
                ratio,
                GOAL,
                better="lower",
                detail=f"{row['new']:.2f} s vs {row['matmul']:.2f} s, median of {r}",
            )
        )
        old = f"{row['naive']:.2f}" if "naive" in row else "-"
        speed = f"{row['naive'] / row['new']:.1f}x" if "naive" in row else "-"
        ok = "met" if ratio <= GOAL else "MISSED"
        print(
            f"| {n:,} | {r} | {row['matmul']:.2f} | {row['new']:.2f} | {old} | {ratio:.2f}x | <= {GOAL}x ({ok}) "
            f"| {speed} |",
            flush=True,
        )
        if "same" in row:
            print(f"  N = {n:,}: new == naive, counts and top-5 bit for bit: {row['same']}; passes: {row['passes']}")
        else:
            print(f"  N = {n:,}: passes: {row['passes']}")
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())} (after)")
    fig.write("retrieval", figures)


if __name__ == "__main__":
    main()
