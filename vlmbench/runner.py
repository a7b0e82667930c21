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
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from . import config as cfgmod
from . import registry, rundir
from .config import RunConfig, run_config
from .convert.source import describe as describe_source
from .data import toy
from .errors import InputError
from .io import atomic_write, ensure_writable, remove_temp_files
from .model.vlm import VLM
from .reporting import errors as error_analysis
from .reporting import intervals
from .reporting.result import Result, provenance, save_result
from .train.finetune import finetune

PREDICTIONS = "predictions.npz"
PREDICTIONS_JSONL = "predictions.jsonl"  # the same predictions, one readable JSON object per example
RESULT = "result.json"
# What marks a folder as holding a task run, and what --overwrite replaces (nothing else).
RUN_MARKERS = (RESULT, PREDICTIONS)
RUN_FILES = (RESULT, PREDICTIONS, PREDICTIONS_JSONL, "finetune_losses.json")


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def save_predictions(path: Path, task: str, cfg: dict, preds: dict[str, np.ndarray]) -> Path:
    """predictions.npz (re-scorable by `vlmbench score`) and, beside it, predictions.jsonl: the same predictions
    one JSON object per example (id, target, prediction, score or rank; the task adapter's examples()),
    readable without numpy."""
    meta = {"__task__": np.array(task), "__config__": np.array(json.dumps(cfg))}
    records = registry.get(task).adapter_class().examples(preds, cfg)
    lines = "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), **meta, **preds))
    atomic_write(Path(path).with_suffix(".jsonl"), lambda p: p.write_text(lines, encoding="utf-8"))
    return path


def load_predictions(path: Path) -> tuple[str, dict, dict[str, np.ndarray]]:
    """(task, run config, arrays) of a predictions.npz; anything else (a truncated or damaged archive, a plain
    .npy, a pickle, members that are not arrays, a config that is not a JSON object, more than 8 GB once
    decompressed) is one InputError naming the file. Nothing is unpickled."""
    import zipfile
    import zlib

    from .data.features import NPY_ERRORS
    from .data.files import one_line

    limit = 8 << 30  # bytes once decompressed: retrieval predictions hold no N x N matrix (MBs); old ones ~100 MB
    # RuntimeError: zipfile's "is encrypted, password required" when a damaged flag says so
    damaged = (*NPY_ERRORS, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)

    def bad(why: object) -> InputError:
        return InputError(f"not a vlmbench predictions file ({one_line(why)})", path=path)

    try:
        f = open(path, "rb")  # ours to close: np.load leaves its own file open when the zip is damaged
    except OSError as e:
        raise bad(e) from None
    with f:
        try:
            loaded = np.load(f, allow_pickle=False)
        except damaged as e:
            raise bad(e) from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise bad("a single .npy array, not an .npz archive")
        with loaded as z:
            try:
                size = sum(info.file_size for info in z.zip.infolist())
                if size > limit:
                    raise bad(f"{size / (1 << 30):.1f} GB once decompressed, over the {limit >> 30} GB limit")
                data = {k: z[k] for k in z.files}
            except damaged as e:
                raise bad(f"damaged or truncated archive: {e}") from None
            except MemoryError:
                raise bad("an array larger than the memory") from None
    odd = [k for k, v in data.items() if not isinstance(v, np.ndarray)]
    if odd:
        raise bad(f"member {odd[0]!r} is not a .npy array")
    for key in ("__task__", "__config__"):
        if key not in data:
            raise bad(f"no {key}")
        if data[key].shape != () or data[key].dtype.kind != "U":
            raise bad(f"{key} is not a string")
    task = str(data.pop("__task__"))
    try:
        cfg = json.loads(str(data.pop("__config__")))
    except (ValueError, RecursionError) as e:
        raise bad(f"__config__ is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise bad("__config__ is not a JSON object")
    return task, cfg, data


def score_file(path: Path) -> tuple[str, dict[str, float], dict[str, str]]:
    task, cfg, preds = load_predictions(Path(path))
    spec = registry.get(task)
    metrics, conventions = spec.adapter_class().score(preds, cfg)
    return task, metrics, conventions


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
) -> tuple[Result, dict]:
    """Returns the saved result and the adapter's extra outputs (e.g. caption examples) for display.
    A folder that already holds a run is refused before any work unless overwrite (then its run files are
    replaced once the new predictions exist)."""
    spec = registry.get(task)
    is_toy = data is None
    toy_data = is_toy or toy.is_toy_dataset(Path(data) / spec.dataset)  # a `vlmbench data toy` folder
    cfg: RunConfig = run_config(spec, preset or ("toy" if toy_data else "paper"), pairs)
    out = Path(out) if out else Path("runs") / f"{task}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    remove_temp_files(ensure_writable(out), recursive=False)  # before any work; leftovers of a killed run
    if not overwrite:
        rundir.refuse_existing(out, RUN_MARKERS, "pass --overwrite to replace it")
    dev = device()
    root = toy.toy_root() if is_toy else Path(data)
    if not is_toy and not root.is_dir():
        raise InputError("data folder not found", path=root)
    adapter = spec.adapter_class()(spec, cfg, root, allow_missing=allow_missing, say=say, device=dev)
    adapter.preflight()
    if is_toy:
        toy.ensure_dataset(spec.dataset, say=say)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    adapter.load()
    timings["load_s"] = time.perf_counter() - t0

    if checkpoint is not None:
        vlm = VLM.load(checkpoint)
    elif is_toy:
        vlm = VLM.load(toy_checkpoint(cfg.backbone, say=say, progress=progress))
    else:
        say(f"No --checkpoint given: starting from the {cfg.backbone} backbone without VLM pre-training")
        vlm = VLM.from_backbone(cfg.backbone, seed=cfg.seed)
    source_note = describe_source(vlm.config.source)  # e.g. "converted from MMPT ..." (None for our own)
    if source_note:
        say(f"checkpoint: {source_note}")
    torch.manual_seed(cfg.seed)
    module = adapter.build(vlm).to(dev)

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
    preds = {**preds, **intervals.per_example(spec.family, preds, cfg_dict)}  # per-example values, kept
    save_predictions(out / PREDICTIONS, task, cfg_dict, preds)

    t0 = time.perf_counter()
    metrics, conventions = adapter.score(preds, cfg_dict)
    if backbone := vlm.backbone_note():  # e.g. "MiniLM-L6 (paper: bert-base-uncased)": shown in reports
        conventions = {**conventions, "backbone": backbone}
    cis = intervals.result_intervals(spec.family, preds, metrics)
    conventions = {**conventions, **(intervals.conventions(spec.family) if cis else {})}
    extra = adapter.extra_outputs(preds, out)
    error_analysis.export(spec.family, preds, out)  # retrieval_errors.csv / class_accuracy.csv
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
            "checkpoint_source": source_note,
            "data": str(root),
            "allow_missing": allow_missing,
        },
        preset=cfg.preset,
        seed=cfg.seed,
        toy=toy_data,
        provenance=provenance(adapter.loaded.fingerprint()),
        timings={k: round(v, 3) for k, v in timings.items()},
        intervals=cis,
    )
    save_result(result, out / RESULT)
    if losses:
        atomic_write(out / "finetune_losses.json", lambda p: p.write_text(json.dumps(losses)))
    result.path = out / RESULT
    return result, extra


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
