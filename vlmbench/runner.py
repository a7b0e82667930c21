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
from .config import RunConfig, run_config
from .data import toy
from .errors import InputError
from .io import atomic_write, ensure_writable, remove_temp_files
from .records import signature
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
RUN_FILES = (RESULT, PREDICTIONS, PREDICTIONS_JSONL, "finetune_losses.json")
LOCK_FILE = ".vlmbench.lock"


def toy_checkpoint(backbone: str, say: Callable[[str], None] = print, progress: bool = True) -> Path:
    """The toy world's pre-trained VLM for a backbone (preset `smoke` for the tiny one, `toy` otherwise),
    pre-trained once under a lock and cached."""
    from .config import pretrain_config
    from .train.pretrain import pretrain

    preset = "smoke" if backbone == "tiny" else "toy"
    tag = (
        backbone
        if backbone in ("default", "tiny")
        else hashlib.sha1(str(Path(backbone).resolve()).encode()).hexdigest()[:10]
    )
    out = toy.toy_root() / "checkpoints" / f"pretrain-{preset}-{tag}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not (out / "model" / "model.safetensors").is_file():
            say(f"No --checkpoint given: pre-training a toy checkpoint once (preset {preset}) into {out}")
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
            say(f"No --checkpoint given: using the cached toy checkpoint {out / 'model'}")
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


def run_lock(out: Path) -> FileLock:
    """The run folder's lock, held for the whole run: a second vlmbench writing into the same folder is refused
    (run_folder_lock raises) instead of both reporting success with one result lost."""
    return FileLock(str(Path(out) / LOCK_FILE), timeout=0)


def acquire(lock: FileLock, out: Path) -> None:
    from filelock import Timeout

    try:
        lock.acquire()
    except Timeout:
        raise InputError(
            "another vlmbench process is running in this folder (wait for it, or use another --out)", path=out
        ) from None


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
    cfg: RunConfig = run_config(spec, preset or ("toy" if toy_data else "paper"), pairs)
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
    out.mkdir(parents=True, exist_ok=True)
    lock = run_lock(out)
    acquire(lock, out)
    try:
        remove_temp_files(out, recursive=False)  # leftovers of a killed run
        if not overwrite:  # again under the lock: another run may have finished here meanwhile
            rundir.refuse_existing(out, RUN_MARKERS, "pass --overwrite to replace it")
        return _execute(plan, progress, say, overwrite)
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


def _execute(plan: Plan, progress: bool, say: Callable[[str], None], overwrite: bool) -> tuple[Result, dict]:
    import torch

    from .stats import intervals
    from .train.finetune import finetune

    spec, cfg, root, out, adapter, dev = plan.spec, plan.cfg, plan.root, plan.out, plan.adapter, plan.device
    model_cls, checkpoint, is_toy, task = plan.model_cls, plan.checkpoint, plan.is_toy, spec.name
    if is_toy:
        toy.ensure_dataset(spec.dataset, say=say)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    adapter.load()
    timings["load_s"] = time.perf_counter() - t0

    weights = None
    if checkpoint is not None:
        model = model_cls.load(checkpoint)
        weights = Path(checkpoint)
    elif is_toy and model_cls.name == "vlm":
        weights = toy_checkpoint(cfg.backbone, say=say, progress=progress)
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
    torch.manual_seed(cfg.seed)
    module = adapter.build(model).to(dev)

    losses: list[float] = []
    if not cfg.zeroshot and cfg.epochs > 0:
        t0 = time.perf_counter()
        with _bar(progress, "fine-tune", _total(adapter, cfg)) as tick:
            losses = finetune(adapter, module, cfg, dev, on_step=lambda s, l: tick(1, f"loss {l:.3f}"))
        timings["finetune_s"] = time.perf_counter() - t0
    module.eval()

    t0 = time.perf_counter()
    with torch.no_grad(), _bar(progress, "predict", None) as tick:
        preds = adapter.predict(module, progress=lambda done, total: tick(done, "", total))
    timings["predict_s"] = time.perf_counter() - t0
    cfg_dict = cfgmod.to_dict(cfg)
    if overwrite:
        rundir.clear(out, RUN_FILES)  # the old run stays intact until the new one has predictions
    preds = {**preds, **adapter.per_example(preds, cfg_dict)}  # per-example values, kept
    save_predictions(out / PREDICTIONS, task, cfg_dict, preds, adapter.examples(preds, cfg_dict))

    t0 = time.perf_counter()
    metrics, conventions = adapter.score(preds, cfg_dict)
    conventions = {**conventions, **model.notes()}  # e.g. "MiniLM-L6 (paper: bert-base-uncased)": shown in reports
    cis = intervals.result_intervals(spec.family, preds, metrics)
    conventions = {**conventions, **(intervals.conventions(spec.family, example_arrays(preds)) if cis else {})}
    extra = adapter.extra_outputs(preds, out)
    timings["score_s"] = time.perf_counter() - t0

    counts = {k: int(v) for k, v in adapter.loaded.counts.items()}
    counts["finetune_updates"] = len(losses)
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
        signature=signature.record(
            signature.build(
                task=task,
                family=spec.family,
                split=spec.split,
                n=len(preds["ids"]),
                cfg=cfg_dict,
                model=about,
                features=signature.feature_source(spec.feature_dir(root), plan.toy_data),
                limit=plan.limit,
            )
        ),
    )
    save_result(result, out / RESULT)
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
    per = adapter.steps_per_epoch()
    return per * cfg.epochs if per else None


class _bar:
    """Context manager yielding tick(advance_or_done, text, total=None); rich progress when enabled."""

    def __init__(self, enabled: bool, label: str, total: int | None):
        self.enabled, self.label, self.total = enabled, label, total

    def __enter__(self):
        if not self.enabled:
            return lambda *a, **k: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(
            TextColumn(self.label),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.p.add_task(self.label, total=self.total, info="")
        self.p.start()

        def tick(n: int, info: str = "", total: int | None = None) -> None:
            if total is not None:  # absolute progress (predict)
                self.p.update(self.task, completed=n, total=total, info=info)
            else:
                self.p.update(self.task, advance=n, info=info)

        return tick

    def __exit__(self, *exc):
        if self.enabled:
            self.p.stop()
        return False
