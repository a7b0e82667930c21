"""The pre-training loop: sample clips, corrupt them (MFM-MLM / MMM), masked token loss, Adam, checkpoints.

Everything random is drawn from (seed, step, rank), so a run resumed from a checkpoint reproduces an
uninterrupted run bit for bit, and the same seed gives the same loss log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import config as cfgmod
from .. import rundir
from ..config import PretrainConfig
from ..data import prepared
from ..data.features import FeatureStore
from ..data.toy.howto100m import ensure_howto100m
from ..errors import InputError
from ..io import FolderLock, ensure_writable, is_write_error, write_error, write_json, write_text
from ..model.layout import TEXT_START, VIDEO_SEP, VIDEO_START
from ..model.losses import masked_token_loss, mfm_mlm_loss
from ..model.masking import corrupt
from ..model.vlm import VLM
from ..records.corpus import write_ids
from ..records.result import save_result
from . import checkpoint as ckpt
from . import distributed
from .loader import batches, default_workers
from .loss_summary import loss_result
from .optim import adam, lr_at, set_lr
from .sampler import Batch, ClipSampler, held_out
from .tracking import TB_DIR, Tracker


class Objective(nn.Module):
    """Wraps the VLM so one forward returns the pre-training loss (what DDP needs to see)."""

    def __init__(self, model: VLM, loss: str):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, video, vmask, text_in, text_targets, text_mask, video_masked, text_masked):
        m = self.model
        vt = m.video_tokens(video)  # original frames: targets and negatives
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


# What marks a folder as holding a pre-training run, and what --overwrite removes (nothing else).
RUN_MARKERS = ("log.jsonl", "checkpoints", "model")
RUN_FILES = (*RUN_MARKERS, "run.json", "summary.json", "result.json", TB_DIR, "model-epoch*")


def pretrain(
    cfg: PretrainConfig,
    out: Path,
    data: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
    overwrite: bool = False,
    workers: int | None = None,
    exclude_test_videos: bool = False,
) -> dict:
    """resume: continue from the last checkpoint in out; overwrite: replace the run in out. Without either, a
    folder that already holds a run is refused (InputError) before any work.
    data: a HowTo100M folder (prepared once into the cache) or a corpus made by `data prepare-howto100m`.
    workers: DataLoader worker processes per rank (None: 0 on CPU, up to 4 on a GPU); batches do not depend on it."""
    d = distributed.init()
    out = ensure_writable(Path(out))  # a read-only or full disk fails now, not after training
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other", path="--overwrite")
    # One writer per folder: a second pre-training into the same --out is refused, not interleaved with this one.
    lock = FolderLock(out).acquire() if d.is_main else None
    try:
        return _pretrain(cfg, out, d, data, resume, progress, say, overwrite, workers, exclude_test_videos)
    finally:
        if lock is not None:
            lock.release()


def _pretrain(
    cfg: PretrainConfig,
    out: Path,
    d,
    data: Path | None,
    resume: bool,
    progress: bool,
    say: Callable[[str], None],
    overwrite: bool,
    workers: int | None,
    exclude_test_videos: bool,
) -> dict:
    if not (resume or overwrite):
        # Every rank checks before rank 0 writes anything (the DDP wrap below is the first sync point).
        rundir.refuse_existing(out, RUN_MARKERS, "pass --resume to continue it or --overwrite to start over")
    toy = data is None
    if toy:
        data = ensure_howto100m(seed=0, say=say if d.is_main else (lambda s: None))
    # Caption rules, counted skips (no features, all-empty, past the end), tokens and feature lengths: done once.
    corpus = prepared.for_pretraining(Path(data), cfg.backbone, say=say if d.is_main else (lambda s: None))
    store = FeatureStore(corpus.features)
    # The validation slice (val_fraction of the videos, held out of training) gives a validation loss at every
    # checkpoint; select=best-val makes model/ the checkpoint with the lowest one, as the authors' checkpoint_best.
    held = held_out(corpus, cfg.val_fraction)
    excluded = _test_positions(corpus, data, toy, say) if exclude_test_videos else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(corpus)), np.union1d(held, excluded)) if len(held) or len(excluded) else None
    clip_args = dict(
        min_text_len=cfg.min_text_len,
        max_text_len=cfg.max_text_len,
        clips_per_video=cfg.clips_per_video,
        batch_size=cfg.batch_size,
    )
    sampler = ClipSampler(
        corpus, store, **clip_args, seed=cfg.seed, rank=d.rank, world_size=d.world_size, positions=keep
    )
    val = ClipSampler(corpus, store, **clip_args, seed=cfg.seed + 1, positions=held) if len(held) else None
    total = cfg.steps or cfg.epochs * sampler.steps_per_epoch()
    workers = default_workers(d.device, d.world_size) if workers is None else workers

    # head init per loss; init_range=0 keeps the backbone's own initializer_range
    model = VLM.from_backbone(cfg.backbone, seed=cfg.seed, loss=cfg.loss, init_range=cfg.init_range or None)
    model = model.to(d.device)
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
    plain = objective  # validation runs outside DDP, on rank 0
    if d.enabled:
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=cfg.loss == "vlm")

    run_info = {
        "validation_videos": int(len(held)),
        "excluded_test_videos": int(len(excluded)),
        "config": cfgmod.to_dict(cfg),
        "preset": cfg.preset,
        "toy": toy,
        "data": str(data),
        "implied": cfg.implied(),  # values another key set, e.g. min_text_len 10 for loss=mfm-mlm
        "total_steps": total,
        "world_size": d.world_size,
        "videos": len(corpus),
        "videos_skipped_no_features": corpus.skipped["videos_no_features"],
        "skipped": corpus.skipped,
        "captions": corpus.counts,
        "prepared": str(corpus.folder),
        "loader_workers": workers,
    }
    if d.is_main:
        if overwrite:
            rundir.clear(out, RUN_FILES)  # no stale checkpoint of the old run may be resumed later
        out.mkdir(parents=True, exist_ok=True)
        ckpt.remove_orphans(out)  # every temp name a kill can leave, in out/, model/ and checkpoints/
        write_json(out / "run.json", run_info)
        write_text(log_path, "".join(line + "\n" for line in _read_log(log_path, start)))
        if corpus.report():
            say(f"HowTo100M: {corpus.report()}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if d.device.type == "cuda" else nullcontext()

    log = open(log_path, "a") if d.is_main else None
    tracker = Tracker(out if d.is_main else None, purge_step=start)
    # progress: True = this command's own bar; a callable = a stage of a larger job's display (vlmbench.progress)
    bar = _progress(d.is_main and bool(progress), total, start, progress if callable(progress) else None)
    losses = []
    watch = DataWait(say if d.is_main else None, workers)
    stream = _batch_source(sampler, start, total, workers, pin_memory=d.device.type == "cuda")
    try:
        for step, batch, data_wait in stream:
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1_000_003 + step * d.world_size + d.rank)  # dropout
            g = torch.Generator().manual_seed(cfg.seed * 7_368_787 + step * d.world_size + d.rank)
            c = corrupt(batch.video, batch.vmask, batch.text_ids, cfg.mmm, cfg.mfm_prob, cfg.mlm_prob, generator=g)
            tensors = _step_tensors(batch, c, d.device, non_blocking=True)
            lr = lr_at(step, cfg.lr, cfg.warmup, cfg.lr_decay_steps)
            set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = objective(*tensors)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm))
            optimizer.step()
            loss_value = float(loss.detach())  # waits for the device: model time ends here
            model_s = time.perf_counter() - t0
            dt = data_wait + model_s
            record = {
                "step": step,
                "loss": round(loss_value, 6),
                "lr": lr,
                "grad_norm": round(grad_norm, 6),
                "masked_video": int(c.video_masked.sum()),
                "masked_text": int(c.text_masked.sum()),
                "clips_per_s": round(len(batch.video) * d.world_size / dt, 2),
                "tokens_per_s": round(_tokens(batch) * d.world_size / dt, 1),
                "data_wait_s": round(data_wait, 6),
                "model_s": round(model_s, 6),
            }
            watch.add(step, data_wait, model_s)
            losses.append(record["loss"])
            tracker.scalars(
                step,
                **{
                    "pretrain/loss": record["loss"],
                    "pretrain/lr": lr,
                    "pretrain/grad_norm": grad_norm,
                    "pretrain/data_wait_s": data_wait,
                    "pretrain/clips_per_s": record["clips_per_s"],
                },
            )
            if log:
                try:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                except OSError as e:
                    if not is_write_error(e):
                        raise
                    raise write_error(log_path, e) from None
            if bar:
                bar.update(step, record)
            done = step + 1
            if cfg.keep_epoch and not cfg.steps and done == cfg.keep_epoch * sampler.steps_per_epoch() and d.is_main:
                kept = model.save(out / f"model-epoch{cfg.keep_epoch}")  # supervised CrossTask's starting point
                write_ids(kept, trained_ids(corpus, sampler))
            if done % cfg.save_every == 0 or done == total:
                if d.is_main:
                    extra = {"preset": cfg.preset, "toy": toy}
                    if val is not None:
                        extra["val_loss"] = validate(plain, val, cfg, d.device, autocast)
                        tracker.scalars(step, **{"pretrain/val_loss": extra["val_loss"]})
                    ckpt.save(ckpt_root, done, model, optimizer, extra)
                d.barrier()
    finally:
        stream.close()  # stops the loader's worker processes
        if bar:
            bar.close()
        if log:
            try:
                log.close()
            except OSError:  # a full disk: already reported by the write that failed
                pass
        tracker.close()
    watch.finish()
    summary = {
        **run_info,
        "final_step": total,
        "out": str(out),
        "data_wait_share": watch.share(),
        "rank_weight_digests": _rank_digests(model, d),
    }
    if d.is_main:
        if cfg.select == "best-val" and val is not None:
            summary["selected"] = select_best_val(ckpt_root, model, say)
        write_ids(model.save(out / "model"), trained_ids(corpus, sampler))  # what later results check against
        write_json(out / "summary.json", summary)
        save_result(loss_result(out, run_info, cfg.seed), out / "result.json")  # what the CI gate compares
    d.barrier()
    distributed.shutdown(d)
    return summary


def trained_ids(corpus, sampler: ClipSampler) -> list[str]:
    """The ids of the videos pre-training drew from (every rank's shard: all positions but the held-out ones)."""
    pool = sampler.pool
    return [corpus.video_id(int(i)) for i in pool]


def _test_positions(corpus, data: Path, toy: bool, say: Callable[[str], None]) -> np.ndarray:
    """Corpus positions of the videos that are a task's test video under the data root beside the HowTo100M
    folder (the toy world's root on the toy world): --exclude-test-videos keeps them out of pre-training."""
    from ..adapters import test_videos
    from ..data import toy as toymod

    root = (
        toymod.toy_root()
        if toy
        else (
            Path(data).parent
            if (Path(data) / "captions.json").exists() or (Path(data) / "captions").is_dir()
            else Path(data)
        )
    )
    tests = set().union(*test_videos(root).values()) if root.is_dir() else set()
    positions = [i for i in range(len(corpus)) if corpus.video_id(i) in tests]
    say(
        f"--exclude-test-videos: {len(positions)} of the corpus's {len(corpus)} videos are a task's test video "
        f"under {root}; left out of pre-training"
    )
    return np.asarray(positions, dtype=np.int64)


def validate(objective: Objective, val: ClipSampler, cfg: PretrainConfig, device, autocast) -> float:
    """Mean pre-training loss over the validation slice's first val_batches batches, in eval mode (no dropout),
    with a fixed masking draw per batch: the same number for the same weights, checkpoint after checkpoint."""
    model = objective.model
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        with torch.no_grad():
            for i in range(min(cfg.val_batches, val.steps_per_epoch())):
                batch = val.batch(i)
                g = torch.Generator().manual_seed(cfg.seed * 7_368_787 + 1_000_003 + i)
                c = corrupt(batch.video, batch.vmask, batch.text_ids, cfg.mmm, cfg.mfm_prob, cfg.mlm_prob, generator=g)
                tensors = _step_tensors(batch, c, device)
                with autocast:
                    loss = float(objective(*tensors))
                total, n = total + loss * len(batch), n + len(batch)
    finally:
        model.train(was_training)
    return round(total / n, 6) if n else float("nan")


def select_best_val(ckpt_root: Path, model: VLM, say: Callable[[str], None]) -> dict:
    """Load the weights of the checkpoint with the lowest validation loss into `model` (the authors'
    checkpoint_best.pt); returns {step, val_loss, per checkpoint}."""
    losses = {}
    for path in sorted(ckpt_root.glob("step_*")):
        try:
            meta = json.loads((path / ckpt.TRAINER).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta.get("val_loss"), (int, float)):
            losses[path.name] = (int(meta["step"]), float(meta["val_loss"]))
    if not losses:
        return {}
    name, (step, best) = min(losses.items(), key=lambda kv: (kv[1][1], kv[1][0]))
    model.load_state_dict(VLM.load(ckpt_root / name).state_dict())
    say(f"select=best-val: model/ = checkpoint of step {step} (validation loss {best:.4f}, lowest of {len(losses)})")
    return {"step": step, "val_loss": best, "val_losses": {str(s): v for s, v in sorted(losses.values())}}


def _batch_source(sampler: ClipSampler, start: int, stop: int, workers: int, pin_memory: bool):
    """(step, batch, seconds waited) for the steps of this run: the DataLoader pipeline of train.loader."""
    return batches(sampler, start, stop, workers=workers, pin_memory=pin_memory)


class DataWait:
    """Per-step data-wait and model time; one warning when waiting for data exceeds 10% of step time.

    The first step of a run is left out (it includes starting the workers and filling their queues); the share
    is judged over windows of WINDOW steps, and once more over the whole run at the end."""

    LIMIT, WINDOW = 0.10, 20

    def __init__(self, say: Callable[[str], None] | None, workers: int):
        self.say, self.workers = say, workers
        self.first: int | None = None
        self.wait = self.model = 0.0
        self.win_wait = self.win_model = 0.0
        self.win_steps, self.win_from, self.warned = 0, 0, False

    def add(self, step: int, wait: float, model: float) -> None:
        if self.first is None:
            self.first = step
            return
        self.wait, self.model = self.wait + wait, self.model + model
        if self.win_steps == 0:
            self.win_from = step
        self.win_wait, self.win_model, self.win_steps = self.win_wait + wait, self.win_model + model, self.win_steps + 1
        if self.win_steps == self.WINDOW:
            self._judge(self.win_wait, self.win_model, f"steps {self.win_from}-{step}")
            self.win_wait = self.win_model = 0.0
            self.win_steps = 0

    def share(self) -> float | None:
        total = self.wait + self.model
        return round(self.wait / total, 4) if total > 0 else None

    def finish(self) -> None:
        if self.first is not None and self.wait + self.model > 0:
            self._judge(self.wait, self.model, "the run")

    def _judge(self, wait: float, model: float, where: str) -> None:
        share = wait / (wait + model) if wait + model > 0 else 0.0
        if share > self.LIMIT and not self.warned and self.say:
            self.warned = True
            self.say(
                f"warning: {where} waited for data {share:.0%} of the step time (over {self.LIMIT:.0%}): "
                f"the run is input-bound with {self.workers} loader worker(s); raise --workers or read a "
                "prepared corpus (`vlmbench data prepare-howto100m`)"
            )


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

    mine = torch.tensor([int(digest[i : i + 15], 16) for i in range(0, 60, 15)], dtype=torch.int64, device=d.device)
    gathered = [torch.zeros_like(mine) for _ in range(d.world_size)]
    dist.all_gather(gathered, mine)
    return ["".join(f"{int(x):015x}" for x in g.tolist()) for g in gathered]


def _tokens(batch: Batch) -> int:
    return int(batch.vmask.sum() + batch.text_mask.sum() + 2 * len(batch.vmask))


class _progress:
    """A rich progress bar showing loss and clips/s; a no-op object when disabled."""

    def __new__(cls, enabled: bool, total: int, start: int, tick=None):
        if not enabled:
            return None
        return super().__new__(cls)

    def __init__(self, enabled: bool, total: int, start: int, tick=None):
        self.tick, self.total = tick, total
        if tick is not None:  # a stage of a larger display
            tick(start, "", total)
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(
            TextColumn("pretrain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} clips/s"),
            TimeRemainingColumn(),
        )
        self.task = self.p.add_task("pretrain", total=total, completed=start, loss="-", speed="-")
        self.p.start()

    def update(self, step: int, record: dict) -> None:
        if self.tick is not None:
            self.tick(step + 1, f"loss {record['loss']:.3f}, {record['clips_per_s']:.0f} clips/s", self.total)
            return
        self.p.update(self.task, completed=step + 1, loss=f"{record['loss']:.3f}", speed=f"{record['clips_per_s']:.0f}")

    def close(self) -> None:
        if self.tick is None:
            self.p.stop()


def _step_tensors(batch, c, device, non_blocking: bool = False) -> list[torch.Tensor]:
    """What a pre-training step feeds the model, on `device`: video, its mask, the corrupted text ids, the clean
    ids (targets), the text mask, and which video / text tokens were masked."""
    parts = (batch.video, batch.vmask, c.text_ids, batch.text_ids, batch.text_mask, c.video_masked, c.text_masked)
    return [t.to(device, non_blocking=non_blocking) for t in parts]
