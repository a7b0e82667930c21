"""`vlmbench run`: task spec -> adapter -> (fine-tune) -> predictions file -> metrics -> result record.

Data flows one way; the predictions are saved before scoring so any run can be re-scored offline
(`vlmbench score`). On the toy world (no --data) the toy datasets and a toy pre-trained checkpoint are made
once, cached, and reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from . import config as cfgmod
from . import registry, rundir
from .config import RunConfig, pretrain_config, run_config
from .data import toy
from .errors import InputError
from .io import FolderLock, atomic_write, ensure_writable, remove_temp_files
from .progress import JobProgress
from .records import signature
from .records.corpus import contamination, read_ids
from .records.predictions import (
    PREDICTIONS,
    PREDICTIONS_JSONL,
    RESULT,
    example_arrays,
    load_predictions,
    save_predictions,
)
from .records.result import Result, provenance, save_result

# torch, transformers and the adapters are imported inside the functions, after the arguments are checked: a
# bad key or task is refused in well under a second instead of after the ~4 s those imports take.

# What marks a folder as holding a task run, and what --overwrite replaces (nothing else).
RUN_MARKERS = (RESULT, PREDICTIONS)
RUN_FILES = (RESULT, PREDICTIONS, PREDICTIONS_JSONL, "finetune_losses.json", "tb")


# A run on the toy world without --checkpoint starts from the toy checkpoint pre-trained with the SAME preset (the
# paper preset's pre-training is HowTo100M-scale, so the toy world's paper runs start from the toy preset's, and say
# so): a result labelled ci never comes from the smoke preset's checkpoint.
TOY_PRETRAIN_PRESET = {"smoke": "smoke", "ci": "ci", "toy": "toy", "paper": "toy"}


def _toy_folder(backbone: str, preset: str) -> Path:
    tag = (
        backbone
        if backbone in ("default", "tiny")
        else hashlib.sha1(str(Path(backbone).resolve()).encode()).hexdigest()[:10]
    )
    return toy.toy_root() / "checkpoints" / f"pretrain-{TOY_PRETRAIN_PRESET[preset]}-{tag}"


def toy_checkpoint_cached(backbone: str, preset: str) -> bool:
    return preset in TOY_PRETRAIN_PRESET and (_toy_folder(backbone, preset) / "model" / "model.safetensors").is_file()


def toy_checkpoint(
    backbone: str, say: Callable[[str], None] = print, progress: bool = True, preset: str = "smoke"
) -> Path:
    """The toy world's pre-trained VLM for a run preset and backbone, pre-trained once (with the pre-training
    preset TOY_PRETRAIN_PRESET names) under a lock and cached."""
    from .config import pretrain_config
    from .train.pretrain import pretrain

    if preset not in TOY_PRETRAIN_PRESET:
        raise InputError(
            f"no toy checkpoint for preset {preset!r} (known: {', '.join(TOY_PRETRAIN_PRESET)})", path="--preset"
        )
    run_preset, out = preset, _toy_folder(backbone, preset)
    preset = TOY_PRETRAIN_PRESET[preset]
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "model" / "model.safetensors").is_file():
            say(
                f"No --checkpoint given: pre-training a toy checkpoint once (pre-training preset {preset} for the "
                f"{run_preset} run) into {out}"
            )
            t0 = time.perf_counter()
            pretrain(
                pretrain_config(preset, [f"backbone={backbone}"]),
                out,
                data=None,
                resume=True,
                progress=progress,
                say=lambda s: None,
            )
            say(f"Toy pre-training took {time.perf_counter() - t0:.0f} s")
        else:
            say(f"No --checkpoint given: using the toy checkpoint pre-trained with preset {preset} ({out / 'model'})")
    return out / "model"


def score_file(path: Path) -> tuple[str, dict[str, float], dict[str, str], dict[str, list[float]]]:
    """(task, metrics, conventions, intervals) of a saved predictions file, re-scored offline."""
    from .adapters import adapter_class
    from .stats import intervals

    task, cfg, preds = load_predictions(Path(path))
    spec = registry.get(task)
    adapter = adapter_class(spec.family)
    metrics, conventions = adapter.score(preds, cfg)
    preds = {**preds, **adapter.per_example(preds, cfg)}
    return task, metrics, conventions, intervals.result_intervals(spec.family, preds, metrics)


def device(name: str | None = None):
    """`--device`: cpu, cuda or cuda:N; None = cuda when available, else cpu. A device that is not there is one
    InputError line."""
    import torch

    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"{name!r}: expected cpu, cuda or cuda:N", path="--device") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index or 0) >= n:
            raise InputError(f"{name}: no such CUDA device ({n} visible)", path="--device")
    elif dev.type != "cpu":
        raise InputError(f"{name!r}: expected cpu, cuda or cuda:N", path="--device")
    return dev


def run(
    task: str,
    *,
    data: Path | None = None,
    checkpoint: Path | None = None,
    out: Path | None = None,
    preset: str | None = None,
    pairs: list[str] | tuple[str, ...] = (),
    allow_missing: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = print,
    overwrite: bool = False,
    model: str | None = None,
    limit: int | None = None,
    device_name: str | None = None,
) -> tuple[Result, dict]:
    """Returns the saved result and the adapter's extra outputs (e.g. caption examples) for display.

    model: a name of vlmbench.models.catalog (default: what the checkpoint holds, else VLM). A task whose family
    needs a capability the model lacks is refused before any work. limit: score the first N test examples only
    (max_test=N, marked in the result). A folder that already holds a run is refused before any work unless
    overwrite (then its run files are replaced once the new predictions exist); a folder another vlmbench is
    running in is refused."""
    spec = registry.get(task)
    is_toy = data is None
    toy_data = is_toy or toy.is_toy_dataset(Path(data) / spec.dataset)  # a `vlmbench data toy` folder
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be >= 1, got {limit}", path="--limit")
        pairs = [*pairs, f"max_test={limit}"]
    cfg: RunConfig = run_config(spec, ("toy" if toy_data else "paper") if preset is None else preset, pairs)
    out = Path(out) if out else Path("runs") / f"{task}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    ensure_writable(out)  # before any work: a read-only or full disk, or a file in the way
    root = toy.toy_root() if is_toy else Path(data)
    if not is_toy and not root.is_dir():
        raise InputError("data folder not found", path=root)
    from .adapters import adapter_class
    from .models import catalog
    from .models.interface import missing

    model_cls = catalog.resolve(model, checkpoint)
    lacking = missing(adapter_class(spec.family).needs, model_cls.capabilities)
    if lacking:
        raise InputError(
            f"model {model_cls.name} cannot run {task}: the {spec.family} family needs {', '.join(lacking)}, which "
            f"it lacks (it has: {', '.join(sorted(model_cls.capabilities))}; `vlmbench models` lists what each can "
            "run)",
            path="--model",
        )
    dev = device(device_name)
    adapter = adapter_class(spec.family)(spec, cfg, root, allow_missing=allow_missing, say=say, device=dev)
    adapter.preflight()  # e.g. java for METEOR: before anything is written
    if not overwrite:
        rundir.refuse_existing(out, RUN_MARKERS, "pass --overwrite to replace it")
    plan = Plan(spec, cfg, root, is_toy, toy_data, out, model_cls, checkpoint, adapter, dev, limit, allow_missing)
    lock = FolderLock(out).acquire()
    try:
        remove_temp_files(out, recursive=False)  # leftovers of a killed run
        if not overwrite:  # again under the lock: another run may have finished here meanwhile
            rundir.refuse_existing(out, RUN_MARKERS, "pass --overwrite to replace it")
        job = JobProgress(progress, f"run {task}", _stages(plan))
        try:
            return _execute(plan, job, say, overwrite)
        except BaseException:
            # Interrupted (SIGINT/SIGTERM) or failed once the run began writing: a run is atomic, so none of its
            # files stay (with --overwrite the old run is gone by then: it is only cleared once the new one has
            # predictions). Rerunning the same command starts afresh.
            if plan.writing:
                rundir.clear(out, RUN_FILES)
            raise
        finally:
            job.close()
    finally:
        lock.release()


@dataclass
class Plan:
    """A run as checked before any work: the task, its config, where the data is, the model class, the adapter."""

    spec: registry.TaskSpec
    cfg: RunConfig
    root: Path
    is_toy: bool
    toy_data: bool
    out: Path
    model_cls: type
    checkpoint: Path | None
    adapter: Any
    device: Any
    limit: int | None
    allow_missing: bool
    writing: bool = False  # set once the run replaces or writes its files in out


# Stage weights of a run's progress display (vlmbench.progress): expected seconds on 2 CPU cores, measured on the
# toy world (MiniLM; the tiny backbone is ~10x faster per step). Only their ratios matter for the whole-run ETA.
SECONDS_PER = {"pretrain_step": 1.7, "update": 0.8, "caption": 0.25, "example": 0.01}


def _stages(plan: Plan) -> list[tuple[str, float]]:
    cfg = plan.cfg
    scale = 0.1 if cfg.backbone == "tiny" else 1.0
    toy_ckpt = plan.is_toy and plan.checkpoint is None and plan.model_cls.name == "vlm"
    pre = (
        pretrain_config(TOY_PRETRAIN_PRESET.get(cfg.preset, "toy"), [f"backbone={cfg.backbone}"]) if toy_ckpt else None
    )
    tests = cfg.max_test or 500
    per_test = SECONDS_PER["caption"] if plan.spec.family == "captioning" else SECONDS_PER["example"]
    updates = 0 if cfg.zeroshot else cfg.epochs * max(1, (cfg.max_train or 500) // max(1, cfg.batch_size))
    return [
        ("toy data", 5.0 if plan.is_toy else 0.0),
        ("load", 5.0),
        ("pre-train the toy checkpoint", pre.steps * SECONDS_PER["pretrain_step"] * scale if pre else 0.0),
        ("fine-tune", updates * SECONDS_PER["update"] * scale),
        ("predict", tests * per_test * scale),
        ("score", 15.0 if plan.spec.family == "captioning" else 2.0),
    ]


def _execute(plan: Plan, job: JobProgress, say: Callable[[str], None], overwrite: bool) -> tuple[Result, dict]:
    import torch

    from .stats import intervals
    from .train.finetune import finetune
    from .train.tracking import Tracker

    spec, cfg, root, out, adapter, dev = plan.spec, plan.cfg, plan.root, plan.out, plan.adapter, plan.device
    model_cls, checkpoint, is_toy, task = plan.model_cls, plan.checkpoint, plan.is_toy, spec.name
    if is_toy:
        job.stage("toy data", None)
        toy.ensure_dataset(spec.dataset, say=say)
    else:
        job.skip("toy data")

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    job.stage("load", None)
    adapter.load()
    adapter.warm_up()
    timings["load_s"] = time.perf_counter() - t0

    weights = None
    if checkpoint is not None:
        model = model_cls.load(checkpoint)
        weights = Path(checkpoint)
    elif is_toy and model_cls.name == "vlm":
        if toy_checkpoint_cached(cfg.backbone, cfg.preset):
            job.skip("pre-train the toy checkpoint")
            weights = toy_checkpoint(cfg.backbone, say=say, progress=False, preset=cfg.preset)
        else:
            tick = job.stage("pre-train the toy checkpoint", None)
            weights = toy_checkpoint(cfg.backbone, say=say, progress=tick if job.enabled else False, preset=cfg.preset)
        model = model_cls.load(weights)
    else:
        say(
            f"No --checkpoint given: {model_cls.name} on the {cfg.backbone} backbone with fresh weights (seed "
            f"{cfg.seed}), no pre-training"
        )
        model = model_cls.create(cfg.backbone, cfg.seed)
    about = model_record(model, weights)
    if about.get("source"):
        say(f"checkpoint: {about['source']}")
    prepared = model.prepare(spec.family)  # e.g. captioning's LM head bias (recorded in the conventions)
    torch.manual_seed(cfg.seed)
    module = adapter.build(model).to(dev)

    losses: list[float] = []
    tracker = Tracker(out, staged=True)
    if not cfg.zeroshot and cfg.epochs > 0:
        t0 = time.perf_counter()
        tick = job.stage("fine-tune", _total(adapter, cfg))
        losses = finetune(adapter, module, cfg, dev, on_step=lambda s, l: tick(1, f"loss {l:.3f}"), tracker=tracker)
        timings["finetune_s"] = time.perf_counter() - t0
    module.eval()

    t0 = time.perf_counter()
    tick = job.stage("predict", None)
    with torch.no_grad():
        preds = adapter.predict(module, progress=lambda done, total: tick(done, "", total))
    timings["predict_s"] = time.perf_counter() - t0
    cfg_dict = cfgmod.to_dict(cfg)
    plan.writing = True
    if overwrite:
        rundir.clear(out, RUN_FILES)  # the old run stays intact until the new one has predictions
    preds = {**preds, **adapter.per_example(preds, cfg_dict)}  # per-example values, kept
    save_predictions(out / PREDICTIONS, task, cfg_dict, preds, adapter.examples(preds, cfg_dict))

    t0 = time.perf_counter()
    job.stage("score", None)
    metrics, conventions = adapter.score(preds, cfg_dict)
    conventions = {
        **conventions,
        **model.notes(),
        **prepared,
    }  # e.g. "MiniLM-L6 (paper: bert-base-uncased)": shown in reports
    cis = intervals.result_intervals(spec.family, preds, metrics)
    conventions = {**conventions, **(intervals.conventions(spec.family, example_arrays(preds)) if cis else {})}
    extra = adapter.extra_outputs(preds, out)
    timings["score_s"] = time.perf_counter() - t0

    counts = {k: int(v) for k, v in adapter.loaded.counts.items()}
    counts["finetune_updates"] = len(losses)
    seen, line = contamination(adapter.scored.get("test", set()), read_ids(weights))
    conventions["pretraining_overlap"] = line  # HowTo100M and the task datasets share YouTube videos
    if seen is not None:
        counts["test_videos_in_pretraining"] = seen
    result = Result(
        task=task,
        family=spec.family,
        split=spec.split,
        metrics=metrics,
        conventions=conventions,
        counts=counts,
        config={
            **cfg_dict,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "checkpoint_source": about.get("source"),
            "data": str(root),
            "allow_missing": plan.allow_missing,
        },
        preset=cfg.preset,
        seed=cfg.seed,
        toy=plan.toy_data,
        provenance=provenance(adapter.loaded.fingerprint()),
        timings={k: round(v, 3) for k, v in timings.items()},
        intervals=cis,
        model=about,
        limit=plan.limit,
        signature=signature.of_run(spec, root, plan.toy_data, len(preds["ids"]), cfg_dict, about, plan.limit),
    )
    save_result(result, out / RESULT)
    tracker.scalars(len(losses), **{f"metrics/{k}": v for k, v in metrics.items()})
    tracker.publish()
    if losses:
        atomic_write(out / "finetune_losses.json", lambda p: p.write_text(json.dumps(losses)))
    result.path = out / RESULT
    return result, extra


def model_record(model, weights: Path | None) -> dict:
    """What a result records of its model: name, class, capabilities, interface version, backbone, where the
    weights came from and their sha256 (None for fresh weights)."""
    from .io import file_sha256

    about = dict(model.describe())
    files = sorted(Path(weights).glob("*.safetensors")) if weights is not None else []
    about["weights_sha256"] = file_sha256(files[0]) if len(files) == 1 else None
    about["weights"] = str(weights) if weights is not None else "fresh (no checkpoint)"
    return about


def _total(adapter, cfg: RunConfig) -> int | None:
    """Updates of the whole fine-tuning (batches per epoch / virtual_ranks, rounded up), for the progress bar."""
    per = adapter.steps_per_epoch()
    return -(-per // cfg.virtual_ranks) * cfg.epochs if per else None
