"""Evaluation throughput of the two-tower families: encode-once (ours) vs the naive per-pair full forward.

    python bench/bench_eval.py [--backbones tiny default] [--questions 32] [--n 32] [--repeats 5] [--threads 1]

MC-QA, ours: the adapter's own path (vlmbench.adapters.pairs: each distinct video through the model interface's
encode_video once, each distinct candidate sentence through encode_text once, which tokenises and runs the
sentences in length-sorted groups, each trimmed to its longest; then 5 dot products per question).
Naive (the reference's procedure): every (video, candidate) pair tokenised and run as one 96-token isolated
forward, i.e. each video five times.
Retrieval: ours encodes N videos + N texts once and forms the N x N matrix by one matmul; naive runs one 96-token
isolated forward for every (text, video) pair.

Inputs are synthetic (random features of 5-32 valid seconds, sentences of 6-20 single-token words); both versions
run in the same process on the same inputs and model, interleaved, and the ratio is the median over repeats of
naive / ours measured back to back (CPU contention moves both). The answers (argmax per question) must be
identical and the scores equal to float rounding, or the script exits with an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures as fig  # noqa: E402

from vlmbench.adapters.pairs import VideoClip, batch_videos, encode_clips, encode_texts, unique  # noqa: E402
from vlmbench.model import text as textmod  # noqa: E402
from vlmbench.model.vlm import VLM  # noqa: E402
from vlmbench.models.vlm import VLMModel, trim_text  # noqa: E402

N_CHOICES = 5
MCQA_GOAL = 4.5  # issue 24: the limit is 5x (each video once instead of five times)


class MemoryStore:
    """FeatureStore stand-in over arrays in memory (what VideoClip.load asks of a store)."""

    def __init__(self, feats: dict[str, np.ndarray]):
        self.feats = feats

    def load(self, vid: str, start: int = 0, end: int | None = None) -> np.ndarray:
        return self.feats[vid][start:end]


def sentences(tokenizer, n: int, seed: int) -> list[str]:
    """n sentences of 6-20 words, each word one word piece of the vocabulary (so 7-21 slots with [SEP])."""
    words = sorted(w for w, i in tokenizer.vocab.items() if 2000 <= i < 29000 and w.isalpha() and len(w) >= 3)
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(6, 21)))) for _ in range(n)]


def videos(n: int, seed: int) -> dict[str, np.ndarray]:
    """Clips of 5-32 valid seconds of 512-d features."""
    rng = np.random.default_rng(seed)
    return {f"v{i}": rng.standard_normal((int(rng.integers(5, 33)), 512)).astype(np.float32) for i in range(n)}


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


def pair_scores(vlm: VLM, video, vmask, ids, mask, batch: int = 64) -> torch.Tensor:
    """Dot products of the pooled halves of full 96-token isolated forwards, one row per (video, text) pair."""
    out = []
    for s in range(0, len(ids), batch):
        v, m, i, t = video[s : s + batch], vmask[s : s + batch], ids[s : s + batch], mask[s : s + batch]
        h = vlm(v, m, i, t, mask="isolated")
        out.append((vlm.pool_video(h, m) * vlm.pool_text(h, t)).sum(-1))
    return torch.cat(out)


def bench_mcqa(model: VLMModel, n_q: int, batch: int, repeats: int) -> dict:
    feats = videos(n_q, seed=1)
    store = MemoryStore(feats)
    qvids = list(feats)
    cands = sentences(model.tokenizer, n_q * N_CHOICES, seed=1)  # question q: cands[5q : 5q + 5]
    dev = model.device

    def ours():  # MCQAAdapter.predict without the feature files
        vids, video_of = unique(qvids)
        texts, text_of = unique(cands)
        v = encode_clips(model, [VideoClip(x) for x in vids], store, batch, dev)
        t = encode_texts(model, texts, batch, dev)
        c = t[torch.from_numpy(text_of)].view(n_q, N_CHOICES, -1)
        return torch.einsum("qh,qkh->qk", v[torch.from_numpy(video_of)], c)

    def naive():  # each (video, candidate) pair: tokenised, one full 96-token isolated forward
        out = []
        pairs = [(q, k) for q in range(n_q) for k in range(N_CHOICES)]
        for s in range(0, len(pairs), batch):
            chunk = pairs[s : s + batch]
            video, vmask = batch_videos([feats[qvids[q]][:32] for q, _ in chunk], dev)
            ids, mask = textmod.encode(model.tokenizer, [cands[q * N_CHOICES + k] for q, k in chunk])
            out.append(pair_scores(model.vlm, video, vmask, ids.to(dev), mask.to(dev), batch))
        return torch.cat(out).view(n_q, N_CHOICES)

    a, b = ours(), naive()
    times = fig.interleaved({"naive": naive, "ours": ours}, repeats, warmup=False)
    same = bool(torch.equal(a.argmax(1), b.argmax(1)))
    return dict(
        ours=n_q / fig.median(times["ours"]),
        naive=n_q / fig.median(times["naive"]),
        ratio=fig.paired_ratio(times, "naive", "ours"),
        max_abs_diff=float((a - b).abs().max()),
        same_answers=same,
    )


def video_vectors(vlm: VLM, video, vmask):
    """Pooled clip vectors from the isolated video half (what the suite's VLM encode_video pools)."""
    return vlm.pool_video(vlm.forward_video(video, vmask), vmask)


def text_vectors(vlm: VLM, ids, mask):
    """Pooled sentence vectors from the isolated text half (what the suite's VLM encode_text pools)."""
    return vlm.pool_text(vlm.forward_text(ids, mask), mask)


def bench_retrieval(vlm: VLM, n: int, batch: int, repeats: int) -> dict:
    video, vmask, ids, mask = synthetic(n, n, seed=2)

    def ours():
        return text_vectors(vlm, *trim_text(ids, mask)) @ video_vectors(vlm, video, vmask).T

    def naive():  # row-major text x video, every pair through the full model
        ti, vi = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        ti, vi = ti.reshape(-1), vi.reshape(-1)
        return pair_scores(vlm, video[vi], vmask[vi], ids[ti], mask[ti], batch).view(n, n)

    a, b = ours(), naive()
    times = fig.interleaved({"naive": naive, "ours": ours}, repeats, warmup=False)
    return dict(
        ours=n * n / fig.median(times["ours"]),
        naive=n * n / fig.median(times["naive"]),
        ratio=fig.paired_ratio(times, "naive", "ours"),
        max_abs_diff=float((a - b).abs().max()),
        same_answers=bool(torch.equal(a.argmax(1), b.argmax(1))),
    )


def main() -> None:
    quick = fig.quick()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["tiny", "default"])
    ap.add_argument("--questions", type=int, default=16 if quick else 32, help="MC-QA questions (x5 candidates)")
    ap.add_argument("--n", type=int, default=0 if quick else 32, help="retrieval N (N x N pairs naive); 0 = skip")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3 if quick else 5)
    fig.add_args(ap)
    args = ap.parse_args()
    threads = fig.set_threads(args.threads)
    torch.set_grad_enabled(False)
    print(
        f"torch {torch.__version__}, {threads} threads, {fig.load_note()}; MC-QA {args.questions} questions x "
        f"{N_CHOICES}; retrieval {args.n} x {args.n}; median of {args.repeats} interleaved repeats"
    )
    print(f"{'backbone':9} {'eval':10} {'ours':>16} {'naive':>16} {'speed-up':>9} {'max |diff|':>11} answers")
    figures, failed = [], []
    for name in args.backbones:
        model = VLMModel(VLM.from_backbone(name, seed=0).eval())
        rows = [("MC-QA", bench_mcqa(model, args.questions, args.batch, args.repeats), "q/s")]
        if args.n:
            rows.append(("retrieval", bench_retrieval(model.vlm, args.n, args.batch, args.repeats), "pairs/s"))
        for what, res, unit in rows:
            print(
                f"{name:9} {what:10} {res['ours']:10.1f} {unit:<5} {res['naive']:10.1f} {unit:<5} "
                f"{res['ratio']:8.2f}x {res['max_abs_diff']:11.2e} {'same' if res['same_answers'] else 'DIFFER'}",
                flush=True,
            )
            if not res["same_answers"]:
                failed.append(f"{name} {what}")
            if what == "MC-QA":
                figures.append(
                    fig.figure(
                        f"mcqa_vs_naive_{name}",
                        f"MC-QA eval vs per-pair forward ({name})",
                        round(res["ratio"], 2),
                        MCQA_GOAL if name == "default" else None,
                        detail=f"{args.questions} questions, same answers, max |diff| {res['max_abs_diff']:.1e}",
                    )
                )
    fig.write("eval", figures, args.json)
    if failed:
        sys.exit(f"ERROR: answers differ from the naive form: {', '.join(failed)}")


if __name__ == "__main__":
    main()
