"""`vlmbench suite`: every task from one model. Either pre-train once with a preset and run every registry task
from that checkpoint, or (`--checkpoint DIR`, `--model NAME`) evaluate a given model on every task it can run.

    OUT/pretrain/            the checkpoint every task starts from (when the suite pre-trains)
    OUT/<task>/result.json   one run folder per task (predictions.npz beside it)
    OUT/<task>/floor-<kind>/ the floor baselines the task's `learned:` rules are measured over (no model)
    OUT/suite.json           preset, seed, tasks, wall times

`seed` sets the seed of pre-training, of every task and of the floors; it is not part of a result's identity
(compare accepts a seed-only change within the measured seed noise, results/reference/<preset>/noise.json).

The `smoke` preset (tiny backbone, a few hundred examples) is the CI regression run: a few minutes on two CPU
cores, and bit-for-bit repeatable on one machine (every shuffle and dropout mask is seeded), so its results are
committed under results/reference/smoke/ (`make update-reference`) and CI compares a fresh run against them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import registry
from .errors import InputError
from .io import atomic_write, ensure_writable, write_json
from .records.result import Result, load_result, utc_now

RESULT = "result.json"


def suite(
    out: Path,
    *,
    preset: str = "smoke",
    data: Path | None = None,
    tasks: Sequence[str] | None = None,
    pretrain_pairs: Sequence[str] = (),
    run_pairs: Sequence[str] = (),
    seed: int | None = None,
    checkpoint: Path | None = None,
    model: str | None = None,
    limit: int | None = None,
    device_name: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> list[Result]:
    """Every task (or `tasks`) from one model, in registry order, with the floors their `learned:` rules need.

    Without `checkpoint` and `model` (VLM), a fresh pre-training with the preset first (no resume: a suite run is
    a measurement) and every task from it. With `checkpoint` (any model's folder) or `model` (fresh weights of a
    model that is not pre-trained here): no pre-training; tasks already done in `out` from the same checkpoint
    and preset are kept (the suite resumes per task), and tasks the model lacks a capability for are skipped
    with a note. pretrain_pairs / run_pairs: key=value overrides of the pre-training / every task's config.
    seed: None keeps each config's own seed."""
    from .adapters import adapter_class
    from .config import pretrain_config, run_config
    from .models import catalog
    from .models.interface import missing

    out = ensure_writable(Path(out))  # a read-only or full disk fails before any work
    names = list(dict.fromkeys(tasks)) if tasks else list(registry.all_tasks())
    if not tasks:
        for problem in registry.broken_tasks().values():  # the other tasks still run
            say(f"suite: skipped, the task file is broken: {problem}")
    seed_pair = [f"seed={int(seed)}"] if seed is not None else []
    run_pairs = [*run_pairs, *seed_pair]
    for name in names:  # unknown task, preset or bad key: fail before any work
        run_config(registry.get(name), preset, run_pairs)
    cfg = pretrain_config(preset, [*pretrain_pairs, *seed_pair])
    model_cls = catalog.resolve(model, checkpoint)
    runnable = [n for n in names if not missing(adapter_class(registry.get(n).family).needs, model_cls.capabilities)]
    for n in names:
        if n not in runnable:
            lacks = missing(adapter_class(registry.get(n).family).needs, model_cls.capabilities)
            say(f"suite: skipping {n}: model {model_cls.name} lacks {', '.join(lacks)}")
    if not runnable:
        raise InputError(f"model {model_cls.name} can run none of {', '.join(names)}", path="--model")
    from .floors import floor_baseline
    from .runner import run
    from .train.pretrain import pretrain

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    pretrains = checkpoint is None and model_cls.name == catalog.DEFAULT
    if pretrains:
        say(f"suite: pre-training (preset {preset}) into {out / 'pretrain'}")
        # The suite owns its folder: each run replaces the previous one's pre-training and task runs.
        pretrain(cfg, out / "pretrain", data=data, resume=False, overwrite=True, progress=progress, say=say)
        timings["pretrain"] = round(time.perf_counter() - t0, 1)
        checkpoint = out / "pretrain" / "model"
    results = []
    for i, name in enumerate(runnable, 1):
        t = time.perf_counter()
        done = None if pretrains else _done(out / name, checkpoint, preset, limit)
        if done is not None:
            say(f"suite: [{i}/{len(runnable)}] {name}: done already ({done.path}), kept")
            results.append(done)
            continue
        say(f"suite: [{i}/{len(runnable)}] {name}")
        start = checkpoint
        kept = out / "pretrain" / f"model-epoch{cfg.keep_epoch}"
        if pretrains and registry.get(name).options.get("start_from_kept_epoch") and kept.is_dir():
            start = kept  # the authors fine-tune supervised CrossTask from their epoch-11 checkpoint
            say(f"suite: {name} starts from {kept} (the authors' epoch-{cfg.keep_epoch} rule)")
        result, _ = run(
            name,
            data=data,
            checkpoint=start,
            model=model if checkpoint is None else None,
            out=out / name,
            preset=preset,
            pairs=run_pairs,
            progress=progress,
            say=say,
            overwrite=True,
            limit=limit,
            device_name=device_name,
        )
        for kind in floor_kinds(name):
            fdir = out / name / f"floor-{kind}"
            shutil.rmtree(fdir, ignore_errors=True)
            floor_baseline(name, kind, data=data, out=fdir, seed=cfg.seed, preset=preset, say=say)
        timings[name] = round(time.perf_counter() - t, 1)
        results.append(result)
    timings["total"] = round(time.perf_counter() - t0, 1)
    write_json(
        out / "suite.json",
        {
            "preset": preset,
            "seed": cfg.seed,
            "tasks": runnable,
            "skipped": [n for n in names if n not in runnable],
            "model": model_cls.name,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "data": str(data) if data else None,
            "wall_s": timings,
            "finished": utc_now(),
        },
    )
    pre = f" (pre-training {timings['pretrain']:.0f} s)" if pretrains else ""
    say(f"suite: {len(runnable)} tasks in {timings['total']:.0f} s{pre}")
    return results


def _done(task_dir: Path, checkpoint: Path | None, preset: str, limit: int | None) -> Result | None:
    """The task's result in `task_dir` when it was made from the same checkpoint, preset and limit (resume)."""
    path = task_dir / RESULT
    if checkpoint is None or not path.is_file():
        return None
    try:
        r = load_result(path)
    except InputError:
        return None
    same = r.config.get("checkpoint") == str(checkpoint) and r.preset == preset and r.limit == limit
    return r if same else None


def floor_kinds(task: str) -> list[str]:
    """The floor baselines (kinds of `vlmbench baseline`) the task's `learned:` rules are measured over."""
    tasks = registry.all_tasks()
    return sorted({r.over for r in registry.get(task).learned if r.over is not None and r.over not in tasks})


def save_reference(run_dir: Path, ref_dir: Path) -> Path:
    """Copy a suite's result.json files to ref_dir/<task>/result.json, replacing ref_dir as a whole: the new
    set is built beside it and swapped in by rename, so a reader (or a killed update) never sees a mix.
    Floor baselines (<task>/floor-*) are not copied: the gate takes floors from the new run."""
    run_dir, ref_dir = Path(run_dir), Path(ref_dir)
    files = sorted(run_dir.glob(f"*/{RESULT}"))
    if not files:
        raise InputError("no <task>/result.json to save as reference", path=run_dir)
    ref_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref_dir.with_name(f".{ref_dir.name}.tmp{os.getpid()}")
    old = ref_dir.with_name(f".{ref_dir.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        atomic_write(tmp / f.parent.name / RESULT, lambda p, src=f: shutil.copyfile(src, p))
    noise = ref_dir / "noise.json"  # measured separately (make update-noise): kept across a reference update
    if noise.is_file():
        atomic_write(tmp / noise.name, lambda p: shutil.copyfile(noise, p))
    if ref_dir.exists():
        os.replace(ref_dir, old)
    os.replace(tmp, ref_dir)
    shutil.rmtree(old, ignore_errors=True)
    return ref_dir
