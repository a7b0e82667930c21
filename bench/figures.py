"""What a benchmark hands to the summary of `make bench` (bench/run_all.py), and the timing rules they share.

A bench_*.py script that measures a figure with a goal (a ratio against a naive form or a measured peak, or a time
limit) writes it with `write()`: one small JSON per script,

    {"bench": "eval", "threads": 1, "load": [1.2, 1.5, 1.4], "quick": false,
     "figures": [{"key": "mcqa_vs_naive", "label": "MC-QA: encode once vs per-pair forward (default)",
                  "measured": 4.9, "goal": 4.5, "better": "higher", "unit": "x", "detail": "..."}]}

to `--json PATH` when given, else into the folder named by $VLMBENCH_BENCH_DIR (run_all sets it to a fresh folder,
so a summary never mixes in an older run's files), else nowhere. `better` is "higher" (a speed-up, a utilisation)
or "lower" (a time, a ratio to a limit); a figure without a goal is printed without a verdict. run_all --quick sets
$VLMBENCH_BENCH_QUICK=1: scripts that read `quick()` pick smaller problems (the ratios get noisier, not different).

Timing: the machines this runs on are shared and oversubscribed, so an absolute time means little. Every figure is
a ratio of two things measured in the same process, interleaved (A, B, A, B, ...) so that load drifts hit both, and
the median of the repeats; the load average is recorded beside it. `--threads 1` (run_all's default) avoids the
OpenMP stalls of two threads that wait on a descheduled peer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ENV_DIR = "VLMBENCH_BENCH_DIR"
ENV_QUICK = "VLMBENCH_BENCH_QUICK"


def quick() -> bool:
    return os.environ.get(ENV_QUICK, "") not in ("", "0")


def add_args(parser: argparse.ArgumentParser, threads: int = 0) -> None:
    """--json PATH and --threads N (0 = torch's default)."""
    parser.add_argument(
        "--json", default=None, help="write the figures here (default: $VLMBENCH_BENCH_DIR/<name>.json)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=threads,
        help="torch threads (0 = torch's default); on a shared, oversubscribed CPU use 1: two OpenMP threads "
        "that wait on a descheduled peer make small kernels many times slower",
    )


def set_threads(n: int) -> int:
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def load_note() -> str:
    avg = load()
    cores = os.cpu_count() or 0
    return f"load average {' '.join(f'{x:.1f}' for x in avg)} on {cores} cores" if avg else "load average unknown"


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn `repeats` times (after one untimed warm-up call each)."""
    if warmup:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def ratio_of_medians(times: dict[str, list[float]], slow: str, fast: str) -> float:
    return median(times[slow]) / median(times[fast])


def paired_ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over repeats of slow_i / fast_i (each pair measured back to back, so under the same load)."""
    return statistics.median(s / f for s, f in zip(times[slow], times[fast]))


def figure(
    key: str,
    label: str,
    measured: float,
    goal: float | None = None,
    better: str = "higher",
    unit: str = "x",
    detail: str = "",
) -> dict:
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    return dict(key=key, label=label, measured=measured, goal=goal, better=better, unit=unit, detail=detail)


def met(fig: dict) -> bool | None:
    if fig.get("goal") is None or fig.get("measured") is None:
        return None
    return fig["measured"] >= fig["goal"] if fig["better"] == "higher" else fig["measured"] <= fig["goal"]


def write(bench: str, figures: list[dict], path: str | None = None, **extra) -> Path | None:
    """The figures of one script as JSON (see the module docstring); returns where, or None."""
    import torch

    if path is None:
        folder = os.environ.get(ENV_DIR)
        if not folder:
            return None
        path = str(Path(folder) / f"{bench}.json")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = dict(bench=bench, threads=torch.get_num_threads(), load=load(), quick=quick(), figures=figures, **extra)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)
    return out
