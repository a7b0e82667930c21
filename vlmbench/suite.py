"""`vlmbench suite`: pre-train once with a preset, then run every registry task from that checkpoint.

    OUT/pretrain/            the checkpoint every task starts from
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
from .records.result import Result, utc_now

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
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> list[Result]:
    """A fresh pre-training (no resume: a suite run is a measurement) and one run per task, in registry order.
    pretrain_pairs / run_pairs: key=value overrides of the preset's pre-training / every task's config (e.g.
    steps=3, max_test=16 in tests). seed: None keeps each config's own seed."""
    from .config import pretrain_config, run_config

    out = ensure_writable(Path(out))  # a read-only or full disk fails before any work
    names = list(tasks) if tasks else list(registry.all_tasks())
    seed_pair = [f"seed={int(seed)}"] if seed is not None else []
    run_pairs = [*run_pairs, *seed_pair]
    for name in names:  # unknown task, preset or bad key: fail before any work
        run_config(registry.get(name), preset, run_pairs)
    cfg = pretrain_config(preset, [*pretrain_pairs, *seed_pair])
    from .floors import floor_baseline
    from .runner import run
    from .train.pretrain import pretrain

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    say(f"suite: pre-training (preset {preset}) into {out / 'pretrain'}")
    # The suite owns its folder: each run replaces the previous one's pre-training and task runs.
    pretrain(cfg, out / "pretrain", data=data, resume=False, overwrite=True, progress=progress, say=say)
    timings["pretrain"] = round(time.perf_counter() - t0, 1)
    results = []
    for i, name in enumerate(names, 1):
        t = time.perf_counter()
        say(f"suite: [{i}/{len(names)}] {name}")
        result, _ = run(
            name,
            data=data,
            checkpoint=out / "pretrain" / "model",
            out=out / name,
            preset=preset,
            pairs=run_pairs,
            progress=progress,
            say=say,
            overwrite=True,
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
            "tasks": names,
            "data": str(data) if data else None,
            "wall_s": timings,
            "finished": utc_now(),
        },
    )
    say(f"suite: {len(names)} tasks in {timings['total']:.0f} s (pre-training {timings['pretrain']:.0f} s)")
    return results


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
