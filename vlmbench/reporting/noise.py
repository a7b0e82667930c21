"""Seed noise of a suite: the same preset run under several seeds -> REF/noise.json, which `vlmbench compare`
turns into per-metric tolerances (t x sqrt(1/n + 1/K) std and the floors of compare.py's tolerance()).

    python -m vlmbench.reporting.noise --out results/reference/ci/noise.json runs/noise-ci-seed0 runs/noise-ci-seed1 ...

noise.json: {"preset", "seeds", "tasks": {task: {metric: {mean, std, min, max, values, seeds}}}}; std is the
sample standard deviation (ddof=1). Floor baselines (OUT/<task>/floor-*) are not part of it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from vlmbench.errors import InputError
from vlmbench.io import write_json

NOISE = "noise.json"
MIN_SEEDS = 5


def noise_from_runs(run_dirs: list[Path], min_seeds: int = MIN_SEEDS) -> dict:
    from vlmbench.records.result import load_results

    per: dict[str, dict[str, list[tuple[int, float]]]] = {}
    presets, seeds = set(), []
    for d in run_dirs:
        results = [r for r in load_results(d) if not r.baseline]
        if not results:
            raise InputError("no task results in this suite folder", path=d)
        run_seeds = {r.seed for r in results}
        if len(run_seeds) != 1:
            raise InputError(f"mixed seeds {sorted(map(str, run_seeds))} in one suite folder", path=d)
        seed = run_seeds.pop()
        if seed in seeds:
            raise InputError(f"seed {seed} given twice", path=d)
        seeds.append(seed)
        presets |= {r.preset for r in results}
        for r in results:
            for m, v in r.metrics.items():
                if isinstance(v, (int, float)) and not math.isnan(v):
                    per.setdefault(r.task, {}).setdefault(m, []).append((seed, float(v)))
    if len(seeds) < min_seeds:
        raise InputError(f"{len(seeds)} seeds; at least {min_seeds} are needed for a spread", path="runs")
    if len(presets) != 1:
        raise InputError(f"runs of different presets: {sorted(map(str, presets))}", path="runs")
    tasks = {}
    for task, metrics in sorted(per.items()):
        tasks[task] = {}
        for m, sv in metrics.items():
            v = np.array([x for _, x in sv])
            tasks[task][m] = {
                "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()),
                "max": float(v.max()),
                "values": v.tolist(),
                "seeds": [s for s, _ in sv],
            }
    return {"preset": presets.pop(), "seeds": seeds, "tasks": tasks}


def load_noise(ref_path: str | Path) -> dict | None:
    """REF/noise.json when the reference is a folder holding one, else None (DEFAULT_TOLERANCES apply)."""
    p = Path(ref_path) / NOISE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON ({e.msg})", path=p) from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        raise InputError('expected {"tasks": {task: {metric: {std, ...}}}}', path=p)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vlmbench.reporting.noise", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="suite folders, one per seed")
    ap.add_argument("--out", type=Path, required=True, help="noise.json to write (atomically)")
    ap.add_argument("--min-seeds", type=int, default=MIN_SEEDS)
    args = ap.parse_args(argv)
    try:
        data = noise_from_runs(args.runs, args.min_seeds)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json(args.out, data)
    print(f"noise of {len(data['tasks'])} tasks over seeds {data['seeds']}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
