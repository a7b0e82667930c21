"""`vlmbench ablate`: a grid of pre-training (and fine-tune/eval) settings, each cell pre-trained once and
evaluated on a few tasks, then tabulated beside the paper's Tables 8/9 and plotted.

    ablate(["mmm=0,0.5", "loss=vlm,mfm-mlm"], tasks=["youcook2-retrieval"], out=Path("runs/ablate"))

A *cell* is one combination of values. Its folder OUT/cells/<hash>/ is named by a hash of its full resolved
config (pre-training config + run overrides + tasks + preset + data path), so re-running a grid finds the cells
it already has, and growing a grid (one more value) runs only the new cells. Inside a cell:

    cell.json        what the cell is (the hashed config, its varied values)
    pretrain/        vlmbench.train.pretrain output (checkpoints/, model/, log.jsonl); resumed when interrupted
    <task>/          vlmbench.runner.run output (predictions.npz, result.json)
    events.jsonl     one line per pre-training / task run started in this folder (pid, time): an audit trail
    log.txt          what the pre-training and runner said

Cells are claimed with a non-blocking file lock each, so several `ablate` processes (or --jobs workers) on
one folder never run a cell twice at once: a process skips a locked cell, comes back to it later, and only
waits when nothing else is left. A cell whose result files all exist is done and is never run again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing as mp
import os
import queue as queue_mod
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from . import config as cfgmod
from . import registry
from .config import PRESETS, PretrainConfig, RunConfig, pretrain_config, run_config
from .errors import InputError
from .io import ensure_writable, write_json
from .records.result import Result, load_result, save_result, utc_now

DEFAULT_TASKS = ("youcook2-retrieval", "youcook2-caption")  # the tasks of the paper's Tables 8 and 9
PRETRAIN_KEYS = cfgmod.field_types(PretrainConfig)
RUN_KEYS = cfgmod.field_types(RunConfig)
RESULT = "result.json"


@dataclass
class Cell:
    values: dict[str, Any]  # varied key -> typed value, in grid order
    pretrain: PretrainConfig  # fully resolved (preset + this cell's pre-training keys)
    run_pairs: tuple[str, ...]  # key=value overrides for vlmbench.runner.run
    config: dict[str, Any]  # what the hash is over
    key: str = ""  # the hash: folder name under OUT/cells/

    @property
    def label(self) -> str:
        """The varied values, then any value another key implied, e.g. `loss=mfm-mlm (min_text_len=10)`."""
        implied = [f"({k}={getattr(self.pretrain, k)})" for k in self.pretrain.implied() if k not in self.values]
        return " ".join([f"{k}={v}" for k, v in self.values.items()] + implied) or "defaults"


@dataclass
class AblationRun:
    """What `ablate` leaves: the folder, every cell in grid order, the varied keys (the grid's axes) and the
    cells this call ran. reporting.grid.summarise turns it into grid.md / grid.csv and plots."""

    out: Path
    cells: list[Cell]
    varied: list[str]
    ran: list[str]  # cell hashes this call ran (the others were done already or ran elsewhere)


# ---- the grid ------------------------------------------------------------------------------------------------


def parse_grid(pairs: Iterable[str]) -> dict[str, list[Any]]:
    """['mmm=0,0.5', 'loss=vlm'] -> {'mmm': [0.0, 0.5], 'loss': ['vlm']}, each value typed by the config that
    owns the key (a key of both configs, e.g. seed, must parse for both). Repeated values are dropped."""
    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"{pair!r}: expected key=value1,value2,...", path="ablate")
        key, raw = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        if key == "preset":
            raise InputError("preset cannot vary inside a grid: use --preset (one grid per preset)", path="ablate")
        if key in grid:
            raise InputError(f"key {key!r} given twice: list all its values once, e.g. {key}=a,b", path="ablate")
        if key not in PRETRAIN_KEYS and key not in RUN_KEYS:
            known = sorted((set(PRETRAIN_KEYS) | set(RUN_KEYS)) - {"preset"})
            raise InputError(
                f"unknown key {key!r}: not a pre-training or fine-tune/eval config key (known: {', '.join(known)})",
                path="ablate",
            )
        raws = [v.strip() for v in raw.split(",")]
        if not raw.strip() or any(v == "" for v in raws):
            raise InputError(f"{pair!r}: empty value", path="ablate")
        typed: list[Any] = []
        for v in raws:
            value = None
            for cls in (PretrainConfig, RunConfig):  # typed and bounded by the schema, before any cell
                if key in cfgmod.field_types(cls):
                    value = cfgmod.parse_value(cls, key, v, where="ablate")
            if value not in typed:
                typed.append(value)
        grid[key] = typed
    return grid


def seeds_axis(pairs: Sequence[str]) -> tuple[list[str], bool]:
    """`seeds=0,1,2` runs every cell under each seed as replicates: it becomes the `seed` axis, and the table
    and plots average over it (mean ± std across seeds) instead of showing one row per seed."""
    out, replicate = [], False
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if sep and key.strip() == "seeds":
            if any(p.partition("=")[0].strip() == "seed" for p in pairs):
                raise InputError("give seed= or seeds=, not both", path="ablate")
            out.append(f"seed={raw}")
            replicate = True
        else:
            out.append(pair)
    return out, replicate


def _pair(key: str, value: Any) -> str:
    return f"{key}={str(value).lower() if isinstance(value, bool) else value}"


def make_cells(grid: dict[str, list[Any]], tasks: Sequence[str], preset: str, data: Path | None) -> list[Cell]:
    """The cartesian product, every cell resolved and validated (bad values fail before any work)."""
    specs = [registry.get(t) for t in tasks]
    cells = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        pre_pairs = [_pair(k, v) for k, v in values.items() if k in PRETRAIN_KEYS]
        run_pairs = tuple(_pair(k, v) for k, v in values.items() if k in RUN_KEYS)
        pcfg = pretrain_config(preset, pre_pairs)
        for spec in specs:
            run_config(spec, preset, run_pairs)  # the task knows the preset, the values parse
        config = {
            "pretrain": cfgmod.to_dict(pcfg),
            "run": cfgmod.parse_overrides(RunConfig, run_pairs),
            "tasks": list(tasks),
            "preset": preset,
            "data": str(Path(data).resolve()) if data else None,
        }
        key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        cells.append(Cell(values, pcfg, run_pairs, config, key))
    return cells


def cell_dir(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / cell.key


def is_complete(out: Path, cell: Cell) -> bool:
    d = cell_dir(out, cell)
    return all((d / t / RESULT).is_file() for t in cell.config["tasks"])


# ---- running one cell ----------------------------------------------------------------------------------------


def _append(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:  # one write per line: lines never interleave
        f.write(line + "\n")


def _event(d: Path, event: str, **extra: Any) -> None:
    _append(d / "events.jsonl", json.dumps({"event": event, "pid": os.getpid(), "time": utc_now(), **extra}))


def annotate(result: Result, cell: Cell) -> Result:
    """Record the cell in its results: the varied values at the top of `config` (what grid_table reads), the
    full pre-training config under config.pretrain (what a paper row is matched on) and a readable name
    (what `vlmbench report` labels a run by). Idempotent; rewrites the file only when something changed."""
    config = {
        **result.config,
        **cell.values,
        "pretrain": cfgmod.to_dict(cell.pretrain),
        "name": cell.label,
        "ablation_cell": cell.key,
    }
    if config != result.config:
        result.config = config
        if result.path is not None:
            save_result(result, result.path)
    return result


def run_cell(out: Path, cell: Cell, data: Path | None, stage: Callable[[str], None] = lambda s: None) -> None:
    """Pre-train (resuming an interrupted pre-training) then run each task without a result yet.
    The caller holds the cell's lock."""
    from .runner import run
    from .train.pretrain import pretrain

    d = cell_dir(out, cell)
    d.mkdir(parents=True, exist_ok=True)
    write_json(
        d / "cell.json", {"hash": cell.key, "values": cell.values, "implied": cell.pretrain.implied(), **cell.config}
    )
    log = lambda s: _append(d / "log.txt", s)  # noqa: E731  (inner chatter goes to the cell's log)
    preset = cell.config["preset"]
    if not (d / "pretrain" / "summary.json").is_file():  # written after the final model
        stage("pretrain")
        _event(d, "pretrain")
        pretrain(cell.pretrain, d / "pretrain", data=data, resume=True, progress=False, say=log)
    for task in cell.config["tasks"]:
        if (d / task / RESULT).is_file():
            continue
        stage(task)
        _event(d, "task", task=task)
        result, _ = run(
            task,
            data=data,
            checkpoint=d / "pretrain" / "model",
            out=d / task,
            preset=preset,
            pairs=list(cell.run_pairs),
            progress=False,
            say=log,
            overwrite=True,
        )  # the cell owns the folder: a task killed before its result reruns
        annotate(result, cell)
    _event(d, "done")


def claim_loop(
    out: Path,
    cells: Sequence[Cell],
    data: Path | None,
    report: Callable[[str, str, str], None] = lambda *a: None,
    poll: float = 0.5,
) -> list[str]:
    """Run every cell that is not complete, each under its own non-blocking lock; returns the hashes run here.

    report(kind, cell_hash, info): kind 'start' / 'stage' / 'done' (info 'ran' or 'skipped')."""
    ran: list[str] = []
    pending = list(cells)
    while pending:
        progressed = False
        for cell in list(pending):
            if is_complete(out, cell):
                pending.remove(cell)
                report("done", cell.key, "skipped")
                progressed = True
                continue
            d = cell_dir(out, cell)
            d.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(d / "cell.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # another process has it: come back later
            try:
                if not is_complete(out, cell):  # it may have finished while we looked elsewhere
                    report("start", cell.key, cell.label)
                    run_cell(out, cell, data, stage=lambda s, k=cell.key: report("stage", k, s))
                    ran.append(cell.key)
                    report("done", cell.key, "ran")
                else:
                    report("done", cell.key, "skipped")
            finally:
                lock.release()
            pending.remove(cell)
            progressed = True
        if pending and not progressed:
            time.sleep(poll)  # everything left is held elsewhere: wait
    return ran


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel sends this worker SIGKILL when the ablate process dies, kill -9 included (daemon
    processes are only stopped on a clean exit), so no orphan holds a cell's lock or finishes it unseen; the
    next `ablate` resumes the cell from its checkpoint instead."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: daemon semantics only
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _worker(out: Path, cells: list[Cell], data: Path | None, q, threads: int, parent: int) -> None:
    """A --jobs worker process: the same claim loop, reporting to the parent through a queue."""
    import signal

    import torch

    # Ctrl-C reaches the whole process group: the parent answers it (it stops these workers; their cells resume
    # from their checkpoints), so a worker does not also stop with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    torch.set_num_threads(threads)
    try:
        ran = claim_loop(out, cells, data, report=lambda kind, key, info: q.put((kind, key, info)))
        q.put(("exit", "", json.dumps(ran)))
    except InputError as e:
        q.put(("input_error", "", str(e)))
    except BaseException:  # noqa: BLE001  (reported, then the parent raises)
        q.put(("error", "", traceback.format_exc()))


# ---- the driver ----------------------------------------------------------------------------------------------


class _Display:
    """Cells done / running / left, and one line per running cell with its stage; silent when disabled."""

    def __init__(self, enabled: bool, cells: Sequence[Cell]):
        self.enabled, self.total = enabled, len(cells)
        self.labels = {c.key: c.label for c in cells}
        self.done: set[str] = set()
        self.running: dict[str, Any] = {}
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.p = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TextColumn("{task.fields[info]}", markup=False),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self.main = self.p.add_task("ablate", total=self.total, info="")
            self.p.start()
            self._refresh()

    def _refresh(self) -> None:
        left = self.total - len(self.done) - len(self.running)
        self.p.update(
            self.main,
            completed=len(self.done),
            info=f"cells: {len(self.done)} done, {len(self.running)} running, {left} left",
        )

    def event(self, kind: str, key: str, info: str) -> None:
        if kind == "done":
            self.done.add(key)
        if not self.enabled:
            return
        if kind == "start":
            self.running[key] = self.p.add_task(f"  {key} {info}", total=None, info="")
        elif kind == "stage" and key in self.running:
            self.p.update(self.running[key], info=info)
        elif kind == "done" and key in self.running:
            self.p.remove_task(self.running.pop(key))
        self._refresh()

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def _ensure_toy(tasks: Sequence[str], say: Callable[[str], None]) -> None:
    """Write the toy datasets once, under a lock, before any cell runs: concurrent first writes would race."""
    from .data import toy
    from .data.toy.howto100m import ensure_howto100m

    root = toy.toy_root()
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".ablate-write.lock")):
        ensure_howto100m(seed=0, say=say)
        for name in dict.fromkeys(registry.get(t).dataset for t in tasks):
            toy.ensure_dataset(name, say=say)


def default_preset(data: Path | None) -> str:
    """ci on the toy world: every task learns there (tasks/*.yaml `learned:`) and its seed noise is measured
    (results/reference/ci/noise.json), so a grid cell's difference can be read against it; and it is fast: the
    README's 4-cell grid takes 8 minutes on 2 cores (toy, MiniLM: 25). Real data: paper."""
    return "ci" if data is None else "paper"


def auto_jobs(cells: int) -> int:
    """Default --jobs: one cell per CPU core on CPU (a tiny model gains little from a second thread, a second
    cell nearly doubles throughput), one at a time on a GPU."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(cells, os.cpu_count() or 1))


def ablate(
    pairs: Sequence[str],
    *,
    tasks: Sequence[str] = DEFAULT_TASKS,
    data: Path | None = None,
    out: Path = Path("runs/ablate"),
    jobs: int | None = 1,
    preset: str | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> AblationRun:
    out = ensure_writable(Path(out))  # a read-only or full disk fails before any work
    tasks = list(dict.fromkeys(tasks))
    if not tasks:
        raise InputError("no tasks given", path="--tasks")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {jobs}", path="--jobs")
    preset = default_preset(data) if preset is None else preset
    if not preset.strip():  # `--preset ''` is a mistake, never "the default"
        raise InputError(f"must not be empty (known: {', '.join(PRESETS)})", path="--preset")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})", path="--preset")
    if data is not None and not Path(data).is_dir():
        raise InputError("data folder not found", path=data)
    pairs, replicate = seeds_axis(pairs)
    grid = parse_grid(pairs)
    cells = make_cells(grid, tasks, preset, data)
    todo = [c for c in cells if not is_complete(out, c)]
    jobs = auto_jobs(len(todo)) if jobs is None else jobs
    say(
        f"ablate: {len(cells)} cells x {len(tasks)} tasks ({', '.join(tasks)}), preset {preset}, "
        f"{len(cells) - len(todo)} already done, {min(jobs, max(1, len(todo)))} at a time; folder {out}"
    )
    if todo and data is None:
        _ensure_toy(tasks, say)

    display = _Display(progress, cells)
    try:
        if jobs == 1 or len(todo) <= 1:
            ran = claim_loop(out, cells, data, report=display.event)
        else:
            ran = _run_workers(out, cells, data, min(jobs, len(todo)), display)
    finally:
        display.close()
    say(f"ablate: ran {len(ran)} cells here, {len(cells) - len(ran)} were done already or ran elsewhere")
    return AblationRun(out, cells, [k for k in grid if not (replicate and k == "seed")], ran)


def _run_workers(out: Path, cells: list[Cell], data: Path | None, jobs: int, display: _Display) -> list[str]:
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    q = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    procs = [
        ctx.Process(target=_worker, args=(out, cells, data, q, threads, os.getpid()), daemon=True) for _ in range(jobs)
    ]
    for p in procs:
        p.start()
    ran: list[str] = []
    exited = 0
    try:
        while exited < jobs:
            try:
                kind, key, info = q.get(timeout=0.5)
            except queue_mod.Empty:
                if not any(p.is_alive() for p in procs) and q.empty():
                    raise RuntimeError("ablate workers died without reporting (killed?)") from None
                continue
            if kind == "exit":
                ran += json.loads(info)
                exited += 1
            elif kind == "input_error":
                raise InputError(info)
            elif kind == "error":
                raise RuntimeError(f"an ablate worker failed:\n{info}")
            else:
                display.event(kind, key, info)
    finally:
        for p in procs:
            if p.is_alive() and exited < jobs:
                p.terminate()  # their cells are resumable: pre-training checkpoints, atomic results
            p.join()
    return ran


# ---- the cells' results ---------------------------------------------------------------------------------------


def collect(out: Path, cells: Sequence[Cell]) -> list[Result]:
    """Every cell's results, in cell then task order, annotated with the cell."""
    results = []
    for cell in cells:
        for task in cell.config["tasks"]:
            path = cell_dir(out, cell) / task / RESULT
            if path.is_file():
                results.append(annotate(load_result(path), cell))
    return results
