"""Decoding and scoring speed for captioning.

    python bench/bench_decode.py [--clips 16] [--repeats 3] [--threads 1] [--checkpoint DIR] [--pairs 3305]

1. Beam-5 decoding (<= 21 new tokens) of the same clips with the same model, KV-cached (`generate`) vs full
   recomputation of the 96-position sequence every step (`decode_full`, how the reference decodes). The outputs
   must be identical (a mismatch exits with an error); the two are run interleaved, and the speed-up is the
   median over repeats of full / cached measured back to back (goal of issue 24: >= 20x).
2. Scoring time of caption_metrics (BLEU, METEOR, ROUGE-L, CIDEr) on N synthetic hypothesis/reference pairs
   (3,305 by default, the size of a YouCook2 validation run; 0 = skip, the default under run_all --quick).

Model: --checkpoint, else the cached toy pre-trained checkpoint of the default backbone if there is one, else the
default (MiniLM) backbone with a fresh head. Clips: the toy YouCook2 validation clips (written once, ~1 s).
No timed assertions: the numbers are printed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures as fig  # noqa: E402

from vlmbench.data import (
    toy,  # noqa: E402
    youcook2,  # noqa: E402
)
from vlmbench.data.features import FeatureStore  # noqa: E402
from vlmbench.metrics.captioning import caption_metrics  # noqa: E402
from vlmbench.model.generate import decode_full, generate  # noqa: E402
from vlmbench.model.layout import MAX_VIDEO_LEN  # noqa: E402
from vlmbench.model.vlm import VLM  # noqa: E402


def load_model(checkpoint: str | None) -> tuple[VLM, str]:
    if checkpoint:
        return VLM.load(checkpoint), checkpoint
    cached = toy.toy_root() / "checkpoints" / "pretrain-toy-default" / "model"
    if (cached / "model.safetensors").is_file():
        return VLM.load(cached), f"toy checkpoint {cached}"
    return VLM.from_backbone("default", seed=0), "default backbone, no pre-training"


def toy_clips(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = toy.ensure_dataset("youcook2", say=lambda s: None)
    anns = youcook2.load_annotations(root / "youcookii_annotations_trainval.json")
    clips = youcook2.caption_clips(anns, youcook2.load_split_list(root / "val_list.txt"))[:n]
    store = FeatureStore(root / "features")
    video = torch.zeros(len(clips), MAX_VIDEO_LEN, 512)
    vmask = torch.zeros(len(clips), MAX_VIDEO_LEN, dtype=torch.bool)
    for i, c in enumerate(clips):
        rows = store.load(c.vid, c.start, min(c.end, c.start + MAX_VIDEO_LEN))
        video[i, : len(rows)] = torch.from_numpy(rows)
        vmask[i, : len(rows)] = True
    return video, vmask


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


BEAM_GOAL = 20.0  # issue 24: KV-cached beam >= 20x the full recomputation


def bench_decoding(model: VLM, video: torch.Tensor, vmask: torch.Tensor, repeats: int) -> dict:
    kw = dict(decode="beam", beam=5, max_new_tokens=21, length_penalty=1.0)
    generate(model, video[:2], vmask[:2], **kw)  # warm-up (first-call allocations)
    outs: dict[str, list] = {}
    run = {
        "full": lambda: outs.__setitem__("full", decode_full(model, video, vmask, **kw)),
        "cached": lambda: outs.__setitem__("cached", generate(model, video, vmask, **kw)),
    }
    times = fig.interleaved(run, repeats, warmup=False)
    cached, full = outs["cached"], outs["full"]
    if cached != full:
        bad = [i for i, (a, b) in enumerate(zip(cached, full)) if a != b]
        sys.exit(
            f"ERROR: cached and full decoding differ on {len(bad)} of {len(full)} clips (first: clip {bad[0]}: "
            f"{cached[bad[0]]} vs {full[bad[0]]})"
        )
    lengths = [len(c) for c in cached]
    ratio = fig.paired_ratio(times, "full", "cached")
    print(
        f"beam-5 decoding of {len(cached)} clips (mean {np.mean(lengths):.1f} tokens, max {max(lengths)}), "
        f"identical outputs; median of {repeats} interleaved repeats, {fig.load_note()}"
    )
    print(f"  KV cache:           {fig.median(times['cached']):7.2f} s")
    print(f"  full recomputation: {fig.median(times['full']):7.2f} s")
    print(f"  speed-up:           {ratio:7.1f}x")
    return fig.figure(
        "beam_kv_vs_full",
        "beam-5 decoding: KV cache vs full recomputation",
        round(ratio, 2),
        BEAM_GOAL,
        detail=f"{len(cached)} clips, identical tokens",
    )


def synthetic_pairs(n: int, seed: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    rng = np.random.default_rng(seed)
    words = toy.ACTIONS + toy.OBJECTS + ["the", "a", "and", "into", "with", "pan", "bowl", "pot", "it"]

    def sentence() -> str:
        return " ".join(rng.choice(words, size=int(rng.integers(3, 12))))

    hyps, refs = {}, {}
    for i in range(n):
        refs[f"clip{i}"] = sentence()
        hyps[f"clip{i}"] = refs[f"clip{i}"] if rng.random() < 0.2 else sentence()
    return hyps, refs


def main() -> None:
    quick = fig.quick()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=6 if quick else 16)
    ap.add_argument("--repeats", type=int, default=2 if quick else 3)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--pairs", type=int, default=0 if quick else 3305, help="caption pairs to score; 0 = skip")
    fig.add_args(ap)
    args = ap.parse_args()
    threads = fig.set_threads(args.threads)

    model, what = load_model(args.checkpoint)
    model.eval()
    print(f"model: {what}; torch threads: {threads}")
    video, vmask = toy_clips(args.clips)
    figures = [bench_decoding(model, video, vmask, args.repeats)]

    if args.pairs:
        hyps, refs = synthetic_pairs(args.pairs)
        meteor = shutil.which("java") is not None
        metrics, t = timed(lambda: caption_metrics(hyps, refs, meteor=meteor))
        note = "" if meteor else " (no java: METEOR skipped)"
        print(
            f"scoring {args.pairs} pairs (BLEU-3/4, METEOR, ROUGE-L, CIDEr){note}: {t:.1f} s "
            f"(CIDEr {metrics['CIDEr']:.3f}, METEOR {metrics['METEOR']:.2f})"
        )
    fig.write("decode", figures, args.json)


if __name__ == "__main__":
    main()
