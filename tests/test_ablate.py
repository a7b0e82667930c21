"""`vlmbench ablate`: grid parsing, cells keyed by config hash, skip-when-done, SIGKILL + resume, two processes
on one folder (every cell exactly once), the grid table beside the paper's Table 8, plots."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vlmbench.ablate import ablate, make_cells, parse_grid
from vlmbench.errors import InputError
from vlmbench.reporting.grid import summarise

# A quick grid: two pre-training cells of 3 smoke steps, one fast task on fewer examples.
GRID = ["mmm=0,0.5", "steps=3", "lr_decay_steps=3", "save_every=1", "max_train=16", "max_test=32"]
STEPS = 3
TASKS = ["msrvtt-retrieval"]


def _cli(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def _ablate_args(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vlmbench.cli",
        "ablate",
        *GRID,
        "--tasks",
        ",".join(TASKS),
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


def _events(cell: Path) -> list[dict]:
    return [json.loads(line) for line in (cell / "events.jsonl").read_text().splitlines()]


def _results(out: Path) -> dict[str, dict]:
    """cell hash -> metrics of its task, plus every saved prediction array (ranks, top-k scores, per example)."""
    got = {}
    for cell in sorted((out / "cells").iterdir()):
        res = json.loads((cell / TASKS[0] / "result.json").read_text())
        with np.load(cell / TASKS[0] / "predictions.npz") as z:
            got[cell.name] = {"metrics": res["metrics"], "arrays": {k: z[k].copy() for k in z.files}}
    return got


def _same(a: dict, b: dict) -> bool:
    def same_arrays(x: dict, y: dict) -> bool:
        return x.keys() == y.keys() and all(np.array_equal(x[n], y[n]) for n in x)

    return a.keys() == b.keys() and all(
        a[k]["metrics"] == b[k]["metrics"] and same_arrays(a[k]["arrays"], b[k]["arrays"]) for k in a
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of GRID, in-process; the other tests compare their numbers against it."""
    out = tmp_path_factory.mktemp("ablate") / "ref"
    t0 = time.perf_counter()
    summary = summarise(ablate(GRID, tasks=TASKS, out=out, preset="smoke", progress=False, say=lambda s: None))
    return out, summary, time.perf_counter() - t0


# ---- grid parsing (no training) ------------------------------------------------------------------------------


def test_grid_values_are_typed_by_the_config_that_owns_the_key():
    grid = parse_grid(["mmm=0,0.5,0.50", "loss=vlm,mfm-mlm", "epochs=2", "seed=0,1"])
    assert grid == {"mmm": [0.0, 0.5], "loss": ["vlm", "mfm-mlm"], "epochs": [2], "seed": [0, 1]}
    cells = make_cells(grid, ["youcook2-retrieval"], "smoke", None)
    assert len(cells) == 2 * 2 * 1 * 2
    c = cells[-1]
    assert c.values == {"mmm": 0.5, "loss": "mfm-mlm", "epochs": 2, "seed": 1}
    # mmm/loss are pre-training keys, epochs a fine-tune key, seed belongs to both
    assert (c.pretrain.mmm, c.pretrain.loss, c.pretrain.seed, c.pretrain.backbone) == (0.5, "mfm-mlm", 1, "tiny")
    assert c.pretrain.steps == 30  # the smoke preset underneath
    assert c.run_pairs == ("epochs=2", "seed=1")
    assert len({x.key for x in cells}) == len(cells)  # distinct configs, distinct folders


def test_cell_hash_is_over_the_full_resolved_config():
    a = make_cells(parse_grid(["mmm=0.5"]), ["msrvtt-retrieval"], "smoke", None)[0]
    same = make_cells(parse_grid(["mmm=0.50"]), ["msrvtt-retrieval"], "smoke", None)[0]
    # mmm=0.5 is the default: naming it or not is the same resolved pre-training config
    default = make_cells(parse_grid([]), ["msrvtt-retrieval"], "smoke", None)[0]
    assert a.key == same.key and a.config["pretrain"] == default.config["pretrain"]
    other_task = make_cells(parse_grid(["mmm=0.5"]), ["youcook2-retrieval"], "smoke", None)[0]
    other_preset = make_cells(parse_grid(["mmm=0.5"]), ["msrvtt-retrieval"], "toy", None)[0]
    other_data = make_cells(parse_grid(["mmm=0.5"]), ["msrvtt-retrieval"], "smoke", Path("/data"))[0]
    assert len({a.key, other_task.key, other_preset.key, other_data.key}) == 4


@pytest.mark.parametrize(
    "pairs, needle",
    [
        (["nope=1,2"], "unknown key 'nope'"),
        (["mmm=zero"], "mmm='zero': expected float"),
        (["loss=vlm,bad"], "loss='bad': expected one of vlm, mfm-mlm"),
        (["mmm=0", "mmm=1"], "given twice"),
        (["preset=toy"], "use --preset"),
        (["mmm=0,"], "empty value"),
        (["mmm"], "expected key=value"),
    ],
)
def test_bad_grid_is_an_input_error_naming_the_key(pairs, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        make_cells(parse_grid(pairs), ["msrvtt-retrieval"], "smoke", None)


@pytest.mark.slow
def test_cli_bad_key_is_one_line_exit_2(tmp_path):
    r = _cli("ablate", "mmmm=0,1", "--out", str(tmp_path), "--no-progress")
    assert r.returncode == 2 and "unknown key 'mmmm'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cells").exists()  # nothing ran
    r = _cli("ablate", "mmm=0", "--tasks", "msrvtt-retrieval,nope", "--out", str(tmp_path), "--no-progress")
    assert r.returncode == 2 and "unknown task 'nope'" in r.stderr


def test_seeds_are_replicates_not_an_axis():
    from vlmbench.ablate import seeds_axis

    assert seeds_axis(["mmm=0,0.5", "seeds=0,1,2"]) == (["mmm=0,0.5", "seed=0,1,2"], True)
    assert seeds_axis(["seed=0,1"]) == (["seed=0,1"], False)
    with pytest.raises(InputError, match="not both"):
        seeds_axis(["seed=0", "seeds=1,2"])
    cells = make_cells(parse_grid(seeds_axis(["mmm=0,0.5", "seeds=0,1,2"])[0]), TASKS, "smoke", None)
    assert len(cells) == 6 and len({c.key for c in cells}) == 6


# ---- running grids -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_grid_runs_every_cell_then_tables_and_plots(reference):
    out, summary, _ = reference
    assert len(summary.cells) == 2 and sorted(summary.ran) == sorted(c.key for c in summary.cells)
    for cell in summary.cells:
        d = out / "cells" / cell.key
        assert json.loads((d / "cell.json").read_text())["values"]["mmm"] == cell.values["mmm"]
        assert len((d / "pretrain" / "log.jsonl").read_text().splitlines()) == STEPS
        res = json.loads((d / TASKS[0] / "result.json").read_text())
        # the run started from this cell's checkpoint, and the result records the cell
        assert res["config"]["checkpoint"] == str(d / "pretrain" / "model")
        assert res["config"]["mmm"] == cell.values["mmm"] and res["config"]["pretrain"]["mmm"] == cell.values["mmm"]
        assert [e["event"] for e in _events(d)] == ["pretrain", "task", "done"]
    grid = summary.grid
    assert list(grid["mmm"]) == [0.0, 0.5] and set(grid["cell"]) == {c.key for c in summary.cells}
    assert grid["R@1"].between(0, 100).all() and grid["MedR"].between(1, 32).all()
    csv = (out / "grid.csv").read_text()
    assert csv.splitlines()[0].startswith("cell,task,mmm,steps")
    md = (out / "grid.md").read_text()
    assert "### msrvtt-retrieval" in md and "toy world" in md
    assert "msrvtt-retrieval" in summary.terminal
    png = out / "plots" / "R@1-vs-mmm.png"  # the metric's own name, not "Rat1"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = png.with_suffix(".svg").read_text()
    assert "<svg" in svg and "R@1 vs mmm" in svg and "preset smoke" in svg and "toy world" in svg
    assert not (out / "plots" / "R@1-vs-steps.png").exists()  # steps held at one value: not an axis
    # the cells' results carry intervals, the markdown shows them, the CSV carries both bounds
    assert {"R@1:lo", "R@1:hi"} <= set(grid.columns) and (grid["R@1:lo"] <= grid["R@1"]).all()
    assert re.search(r"\| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \|", md) and "R@1:lo" in csv.splitlines()[0]
    # a smoke grid on the toy world: every row labelled, the plumbing check said once
    assert md.count("| smoke |") == 2 and md.count("smoke preset: a plumbing check of the harness") == 1
    # the second cell is compared with the first by a paired bootstrap on the same queries
    assert grid["R@1:diff"].notna().iloc[1] and grid["R@1:sig"].iloc[1] in ("yes", "no")


@pytest.mark.slow
def test_rerun_skips_every_cell_at_once(reference):
    out, summary, first_s = reference
    before = {c.key: (out / "cells" / c.key / "events.jsonl").read_text() for c in summary.cells}
    t0 = time.perf_counter()
    again = summarise(ablate(GRID, tasks=TASKS, out=out, preset="smoke", progress=False, say=lambda s: None))
    took = time.perf_counter() - t0
    assert again.ran == [] and took < min(10.0, first_s / 2)
    assert {c.key: (out / "cells" / c.key / "events.jsonl").read_text() for c in summary.cells} == before
    assert again.grid["R@1"].tolist() == summary.grid["R@1"].tolist()


@pytest.mark.slow
def test_grid_table_shows_paper_table8_beside_matching_cells(reference, tmp_path, monkeypatch):
    """A youcook2-retrieval grid over mmm matches the paper's 'VLM w/ MMM 0%' / '50%' rows (values copied
    from the cells' results: the grid code is what is tested, not another training run)."""
    import shutil

    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: the row label whole on one line

    from vlmbench.ablate import AblationRun, make_cells

    out, summary, _ = reference
    cells = make_cells(parse_grid(GRID), ["youcook2-retrieval"], "smoke", None)
    for mine, theirs in zip(cells, summary.cells):  # same grid order
        src = out / "cells" / theirs.key / TASKS[0] / "result.json"
        res = json.loads(src.read_text())
        res["task"] = "youcook2-retrieval"
        dst = tmp_path / "cells" / mine.key / "youcook2-retrieval" / "result.json"
        dst.parent.mkdir(parents=True)
        dst.write_text(json.dumps(res))
    got = summarise(AblationRun(tmp_path, cells, list(parse_grid(GRID)), ran=[]))
    g = got.grid.set_index("mmm")
    assert g.loc[0.0, "paper"] == "Table 8: VLM w/ MMM 0%" and g.loc[0.0, "paper:R@1"] == 15.12
    assert g.loc[0.5, "paper"] == "Table 8: VLM w/ MMM 50%" and g.loc[0.5, "paper:R@1"] == 27.05
    assert "paper R@1" in got.markdown and "15.12" in got.markdown and "Table 8: VLM w/ MMM 50%" in got.terminal
    # the cells are a toy-world smoke run: the paper's rows in a table of their own, after the cells'
    toy, paper = got.markdown.split("### youcook2-retrieval: ")[1:]
    assert "paper R@1" not in toy and "| smoke |" in toy and paper.startswith("the paper's rows for these settings")
    shutil.rmtree(tmp_path / "cells")


@pytest.mark.slow
def test_sigkill_mid_cell_then_rerun_gives_the_uninterrupted_numbers(reference, tmp_path):
    ref_out, summary, _ = reference
    out = tmp_path / "killed"
    first = out / "cells" / summary.cells[0].key
    # one process (the reference ran in-process: --jobs 2 workers get 1 thread each, other float sums)
    proc = subprocess.Popen(_ablate_args(out, "--jobs", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (first / "pretrain" / "checkpoints" / "latest").exists():  # a checkpoint is complete: mid-way
        assert time.time() < deadline and proc.poll() is None, "ablate ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (first / "pretrain" / "model").exists()  # it died mid-cell
    r = subprocess.run(_ablate_args(out, "--jobs", "1"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Resuming from" in (first / "log.txt").read_text()
    assert [e["event"] for e in _events(first)] == ["pretrain", "pretrain", "task", "done"]
    assert _same(_results(out), _results(ref_out))
    assert "msrvtt-retrieval" in r.stdout and "R@1" in r.stdout  # the grid is printed


@pytest.mark.slow
def test_two_processes_on_one_folder_run_every_cell_exactly_once(reference, tmp_path):
    """One process with --jobs 2 (two workers) and one plain process race for the same two cells."""
    ref_out, summary, _ = reference
    out = tmp_path / "shared"
    procs = [
        subprocess.Popen(_ablate_args(out, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for extra in (["--jobs", "2"], [])
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outputs]
    ran = [int(e.split("ablate: ran ")[1].split()[0]) for _, e in outputs]
    assert sum(ran) == 2
    for cell in summary.cells:
        events = [e["event"] for e in _events(out / "cells" / cell.key)]
        assert events == ["pretrain", "task", "done"], events  # exactly once, never resumed or repeated
        assert len((out / "cells" / cell.key / "pretrain" / "log.jsonl").read_text().splitlines()) == STEPS
    got = _results(out)
    assert got.keys() == _results(ref_out).keys()
    for stdout, _ in outputs:
        assert "R@1" in stdout  # both print the finished grid


def test_default_preset_and_jobs(monkeypatch, tmp_path):
    """The toy world's grid runs the ci preset (every task learns there; its seed noise is measured) one cell per
    core on CPU; real data runs the paper's; a GPU runs one cell at a time."""
    import torch

    from vlmbench import ablate as ab

    assert ab.default_preset(None) == "ci" and ab.default_preset(tmp_path) == "paper"
    monkeypatch.setattr(ab.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ab.auto_jobs(4) == 2 and ab.auto_jobs(1) == 1 and ab.auto_jobs(0) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert ab.auto_jobs(4) == 1


@pytest.mark.slow
def test_a_worker_dies_with_its_killed_parent():
    """kill -9 of `ablate` takes its --jobs workers with it (PR_SET_PDEATHSIG), so no orphan finishes a cell."""
    script = (
        "import multiprocessing as mp, os, time\n"
        "from vlmbench.ablate import _die_with_parent\n"
        "def child(parent):\n    _die_with_parent(parent); time.sleep(120)\n"
        "p = mp.get_context('fork').Process(target=child, args=(os.getpid(),)); p.start()\n"
        "print(p.pid, flush=True); time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has called prctl
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        try:  # reaped by init, or a zombie until then
            if open(f"/proc/{child}/stat").read().split()[2] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the worker outlived its killed parent")
