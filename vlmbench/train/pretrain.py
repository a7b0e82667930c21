"""The pre-training loop: sample clips, corrupt them (MFM-MLM / MMM), masked token loss, Adam, checkpoints.

Everything random is drawn from (seed, step, rank), so a run resumed from a checkpoint reproduces an
uninterrupted run bit for bit, and the same seed gives the same loss log.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import config as cfgmod
from ..data.features import FeatureStore
from ..data.howto100m import find as howto_paths, load_captions, usable
from ..data.toy.howto100m import ensure_howto100m
from ..errors import InputError
from ..io import ensure_writable, write_json, write_text
from ..model import backbone as bb
from ..model.layout import TEXT_START, VIDEO_SEP, VIDEO_START
from ..model.losses import masked_token_loss, mfm_mlm_loss
from ..model.masking import corrupt
from ..model.vlm import VLM
from . import checkpoint as ckpt
from . import distributed
from .config import PretrainConfig
from .optim import adam, lr_at, set_lr
from .sampler import Batch, ClipSampler


class Objective(nn.Module):
    """Wraps the VLM so one forward returns the pre-training loss (what DDP needs to see)."""

    def __init__(self, model: VLM, loss: str):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, video, vmask, text_in, text_targets, text_mask, video_masked, text_masked):
        m = self.model
        vt = m.video_tokens(video)                                   # original frames: targets and negatives
        zero = m.video_tokens(video.new_zeros(1, 1, video.shape[-1]))  # masked frames are zeroed before the MLP
        vt_in = torch.where(video_masked[..., None], zero, vt)
        hidden = m(video, vmask, text_in, text_mask, mask="joint", video_tokens=vt_in)
        transform = m.cls.predictions.transform
        h_video = transform(hidden[:, VIDEO_START:VIDEO_SEP][video_masked]).float()
        h_text = transform(hidden[:, TEXT_START:][text_masked]).float()
        targets = vt[video_masked].float()
        negatives = vt[vmask & ~video_masked].float()
        vocab = m.bert.embeddings.word_embeddings.weight.float()
        ids = text_targets[text_masked]
        if self.loss == "vlm":
            return masked_token_loss(h_video, targets, h_text, ids, negatives, vocab)
        return mfm_mlm_loss(h_video, targets, h_text, ids, negatives, vocab, m.cls.predictions.bias.float())


def _read_log(path: Path, upto: int) -> list[str]:
    """Complete log lines of steps < upto (a line cut by a kill is dropped)."""
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] < upto:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keep


def pretrain(cfg: PretrainConfig, out: Path, data: Path | None = None, resume: bool = False,
             progress: bool = True, say: Callable[[str], None] = print) -> dict:
    d = distributed.init()
    out = ensure_writable(Path(out))   # a read-only or full disk fails now, not after training
    toy = data is None
    if toy:
        data = ensure_howto100m(seed=0, say=say if d.is_main else (lambda s: None))
    cap_path, feat_path = howto_paths(Path(data))
    store = FeatureStore(feat_path)
    corpus = usable(load_captions(cap_path), store)   # counted skips: no features, all-empty, past the end
    sampler = ClipSampler(corpus.captions, store, bb.tokenizer(cfg.backbone), min_text_len=cfg.min_text_len,
                          max_text_len=cfg.max_text_len, clips_per_video=cfg.clips_per_video,
                          batch_size=cfg.batch_size, seed=cfg.seed, rank=d.rank, world_size=d.world_size)
    total = cfg.steps or cfg.epochs * sampler.steps_per_epoch()

    model = VLM.from_backbone(cfg.backbone, seed=cfg.seed).to(d.device)
    optimizer = adam(model.parameters(), cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay)
    ckpt_root, log_path = out / "checkpoints", out / "log.jsonl"
    start = 0
    if resume:
        last = ckpt.latest(ckpt_root)
        if last is None:
            say(f"--resume: no checkpoint in {ckpt_root}, starting from step 0")
        else:
            start = ckpt.restore(last, model, optimizer)["step"]
            say(f"Resuming from {last} (step {start})")
    objective: nn.Module = Objective(model, cfg.loss)
    if d.enabled:
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=cfg.loss == "vlm")

    run_info = {"config": cfgmod.to_dict(cfg), "preset": cfg.preset, "toy": toy, "data": str(data),
                "total_steps": total, "world_size": d.world_size, "videos": len(sampler.videos) * d.world_size,
                "videos_skipped_no_features": corpus.skipped["videos_no_features"], "skipped": corpus.skipped}
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_orphans(out)   # every temp name a kill can leave, in out/, model/ and checkpoints/
        write_json(out / "run.json", run_info)
        write_text(log_path, "".join(line + "\n" for line in _read_log(log_path, start)))
        if corpus.report():
            say(f"HowTo100M: {corpus.report()}")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if d.device.type == "cuda" else nullcontext())

    log = open(log_path, "a") if d.is_main else None
    bar = _progress(progress and d.is_main, total, start)
    losses = []
    try:
        for step in range(start, total):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + step * d.world_size + d.rank)   # dropout
            batch = sampler.batch(step)
            g = torch.Generator().manual_seed(cfg.seed * 7_368_787 + step * d.world_size + d.rank)
            c = corrupt(batch.video, batch.vmask, batch.text_ids, cfg.mmm, cfg.mfm_prob, cfg.mlm_prob, generator=g)
            tensors = [t.to(d.device) for t in (batch.video, batch.vmask, c.text_ids, batch.text_ids,
                                                 batch.text_mask, c.video_masked, c.text_masked)]
            lr = lr_at(step, cfg.lr, cfg.warmup, cfg.lr_decay_steps)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = objective(*tensors)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm))
            optimizer.step()
            dt = time.perf_counter() - t0
            record = {"step": step, "loss": round(float(loss.detach()), 6), "lr": lr, "grad_norm": round(grad_norm, 6),
                      "masked_video": int(c.video_masked.sum()), "masked_text": int(c.text_masked.sum()),
                      "clips_per_s": round(len(batch.video) * d.world_size / dt, 2),
                      "tokens_per_s": round(_tokens(batch) * d.world_size / dt, 1)}
            losses.append(record["loss"])
            if log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if bar:
                bar.update(step, record)
            done = step + 1
            if done % cfg.save_every == 0 or done == total:
                if d.is_main:
                    ckpt.save(ckpt_root, done, model, optimizer, {"preset": cfg.preset, "toy": toy})
                d.barrier()
    finally:
        if bar:
            bar.close()
        if log:
            log.close()
    summary = {**run_info, "final_step": total, "out": str(out),
               "rank_weight_digests": _rank_digests(model, d)}
    if d.is_main:
        model.save(out / "model")
        write_json(out / "summary.json", summary)
    d.barrier()
    distributed.shutdown(d)
    return summary


def weight_digest(model: nn.Module) -> str:
    """sha256 of every parameter's bytes, in state-dict order (bitwise identity check)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _rank_digests(model: nn.Module, d) -> list[str]:
    """Every rank's weight digest, gathered (DDP must leave all ranks with identical weights)."""
    digest = weight_digest(model)
    if not d.enabled:
        return [digest[:60]]
    import torch.distributed as dist

    mine = torch.tensor([int(digest[i:i + 15], 16) for i in range(0, 60, 15)], dtype=torch.int64, device=d.device)
    gathered = [torch.zeros_like(mine) for _ in range(d.world_size)]
    dist.all_gather(gathered, mine)
    return ["".join(f"{int(x):015x}" for x in g.tolist()) for g in gathered]


def _tokens(batch: Batch) -> int:
    return int(batch.vmask.sum() + batch.text_mask.sum() + 2 * len(batch.vmask))


class _progress:
    """A rich progress bar showing loss and clips/s; a no-op object when disabled."""

    def __new__(cls, enabled: bool, total: int, start: int):
        if not enabled:
            return None
        return super().__new__(cls)

    def __init__(self, enabled: bool, total: int, start: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("pretrain"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} clips/s"),
                          TimeRemainingColumn())
        self.task = self.p.add_task("pretrain", total=total, completed=start, loss="-", speed="-")
        self.p.start()

    def update(self, step: int, record: dict) -> None:
        self.p.update(self.task, completed=step + 1, loss=f"{record['loss']:.3f}", speed=f"{record['clips_per_s']:.0f}")

    def close(self) -> None:
        self.p.stop()
