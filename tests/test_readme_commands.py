"""The README is a contract: every command it shows is run here as a user types it, as a subprocess of the
installed `vlmbench` entry point (smoke preset / tiny backbone where the README's default takes minutes).

Where the README's commands run:
- "Install": `make -n install` with each TORCH_INDEX shown (test_make_install_torch_index; a real install is
  tests/test_install.py's); "First run": `make demo`'s recipe (test_make_demo_command_as_typed);
- "Evaluate the authors' checkpoint on real data" and "Pre-train on HowTo100M": tests/test_readme_real_data.py
  walks both as typed on a folder laid out like the real releases;
- "More commands, on the toy world": test_more_commands_as_typed, line by line, under the smoke preset.

`test_every_documented_command_is_covered` reads the commands of the README and of docs/ and fails when one has
no test, so a command cannot be documented without being run. Each run asserts the exit code, the files the
documentation says are written, and a number or line that only a working run produces.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VLMBENCH = BIN / "vlmbench"
TORCHRUN = BIN / "torchrun"
pytestmark = pytest.mark.slow

# The verbs below each have a test in this module (or, for make targets that wrap a covered command, a
# dry-run check). A README command whose verb is not here fails test_every_readme_command_is_covered.
COVERED = {
    "vlmbench tasks",
    "vlmbench data toy",
    "vlmbench data check",
    "vlmbench pretrain",
    "vlmbench run",
    "vlmbench score",
    "vlmbench ablate",
    "vlmbench report",
    "vlmbench compare",
    "vlmbench baseline",
    "vlmbench suite",
    "torchrun",
    "make demo",
    "make test",
    "make install",
    "make bench",
    "make smoke",
    "make update-reference",
    "make update-noise",
    "make update-align",  # dry run below; vlmbench.alignment's main and measure: tests/test_alignment.py
    "make ci-suite",  # wrap `vlmbench suite --seed` + vlmbench.reporting.noise (tests/test_gate.py)
    "make mutants",  # dry-run check in tests/test_mutants.py (a real run takes ~90 min)
    "make check",  # dry-run below; its steps: ruff, lint-imports (tests/test_layers.py), the fast tests
    "make gpu-check",  # tests/test_gpu_check.py runs its dry run
    "vlmbench models",  # test_more_commands_as_typed; with a plug-in installed: tests/test_plugins.py
    # run as subprocesses of the entry point in tests/test_extract.py and tests/test_convert_mmpt.py
    "vlmbench features",
    "vlmbench convert",
    "vlmbench data prepare-howto100m",  # tests/test_prepared.py (then pretrain --data PREP)
    "vlmbench viz attention",
    "vlmbench viz embeddings",
}
SUBCOMMAND_GROUPS = {"data", "viz"}  # `vlmbench data toy`: the verb is two words


def readme_commands(text: str) -> list[str]:
    """Command lines of the README: lines of fenced code blocks and inline code spans that start with
    vlmbench, make or torchrun, without their trailing comments."""
    lines: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines += block.splitlines()
    lines += re.findall(r"`((?:vlmbench|make|torchrun) [^`]+)`", text)
    cmds = []
    for line in lines:
        line = line.split("  #")[0].split(" # ")[0].strip()
        if re.match(r"^(vlmbench|make|torchrun)\b", line):
            cmds.append(line)
    return cmds


def verb(cmd: str) -> str:
    words = cmd.split()
    if words[0] == "torchrun":
        return "torchrun"
    if words[0] == "vlmbench" and len(words) > 2 and words[1] in SUBCOMMAND_GROUPS:
        return " ".join(words[:3])
    return " ".join(words[:2])


DOCUMENTS = ["README.md", *(str(p.relative_to(REPO)) for p in sorted((REPO / "docs").glob("*.md")))]


def test_every_documented_command_is_covered():
    readme = readme_commands((REPO / "README.md").read_text())
    assert len(readme) >= 15, readme  # the parser found the README's commands at all
    for doc in DOCUMENTS:
        uncovered = sorted({verb(c) for c in readme_commands((REPO / doc).read_text())} - COVERED)
        assert not uncovered, f"{doc}: commands with no subprocess test (see {Path(__file__).name}): {uncovered}"


def test_readme_links_resolve():
    """Every relative link of the README and docs/ names a file of the repository."""
    for doc in DOCUMENTS:
        path = REPO / doc
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", path.read_text()):
            if not re.match(r"^[a-z]+:", target):
                assert (path.parent / target).exists(), f"{doc}: link to {target}, which is not there"


def test_readme_parser_sees_a_new_command():
    """Planted: a README with one more verb is reported uncovered."""
    cmds = readme_commands("```\nvlmbench frobnicate --x 1   # new\nmake test\n```\n`vlmbench tasks`")
    assert [verb(c) for c in cmds] == ["vlmbench frobnicate", "make test", "vlmbench tasks"]


# ---- running them -----------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path, timeout: int = 900, exe: Path = VLMBENCH) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "COLUMNS": "120"}
    r = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """A user's working folder: the toy world written by `data toy`, and a smoke checkpoint by `pretrain`."""
    root = tmp_path_factory.mktemp("user")
    ok(cli("data", "toy", "--out", "toy", "--seed", "0", cwd=root))
    r = ok(
        cli(
            "pretrain",
            "--data",
            "toy/howto100m",
            "--backbone",
            "tiny",
            "--out",
            "pt",
            "--preset",
            "smoke",
            "steps=6",
            "--no-progress",
            cwd=root,
        )
    )
    assert re.search(r"Pre-trained 6 steps", r.stderr + r.stdout)
    return {"root": root, "toy": root / "toy", "ckpt": root / "pt" / "model"}


def test_version_and_help(ws):
    from vlmbench import __version__

    r = ok(cli("--version", cwd=ws["root"]))
    assert r.stdout.strip() == f"vlmbench {__version__}"
    top = ok(cli("-h", cwd=ws["root"])).stdout
    commands = ["pretrain", "run", "score", "tasks", "ablate", "suite", "report", "compare", "baseline", "data"]
    for name in commands:
        assert name in top
        sub = ok(cli(name, "-h", cwd=ws["root"])).stdout
        assert "Usage: vlmbench " + name in " ".join(sub.split())
    for name in ("toy", "check"):
        ok(cli("data", name, "--help", cwd=ws["root"]))


def test_tasks_lists_every_task_and_what_is_present(ws):
    r = ok(cli("tasks", cwd=ws["root"]))
    for name in (
        "msrvtt-retrieval",
        "youcook2-retrieval",
        "msrvtt-mcqa",
        "coin-segmentation",
        "crosstask-zeroshot",
        "crosstask-supervised",
        "youcook2-caption",
    ):
        assert name in r.stdout
    r = ok(cli("tasks", "--data", "toy", cwd=ws["root"]))
    assert r.stdout.count("yes") >= 7 and "missing" not in r.stdout


def test_data_toy_writes_the_real_formats(ws):
    toy = ws["toy"]
    for rel in (
        "howto100m/captions.json",
        "msrvtt/MSRVTT_train.9k.csv",
        "msrvtt/MSRVTT_JSFUSION_test.csv",
        "youcook2/youcookii_annotations_trainval.json",
        "coin/COIN.json",
        "crosstask/crosstask_release/tasks_primary.txt",
    ):
        assert (toy / rel).is_file(), rel
    assert any((toy / "msrvtt" / "features").glob("*.npy"))


def test_data_check_reports_every_task_ok(ws):
    r = ok(cli("data", "check", "--data", "toy", cwd=ws["root"]))
    assert r.stdout.count("ok") >= 7 and "malformed" not in r.stdout


def test_data_check_fails_on_a_malformed_dataset(ws, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ws["toy"] / "coin", bad / "coin")
    (bad / "coin" / "COIN.json").write_text("{not json")
    r = cli("data", "check", "--data", str(bad), cwd=ws["root"])
    assert r.returncode == 2 and "malformed" in r.stdout + r.stderr


def test_pretrain_writes_log_checkpoints_and_model(ws):
    pt = ws["root"] / "pt"
    log = [json.loads(line) for line in (pt / "log.jsonl").read_text().splitlines()]
    assert len([rec for rec in log if "loss" in rec]) == 6
    assert json.loads((pt / "summary.json").read_text())["final_step"] == 6
    assert all(rec["loss"] > 0 for rec in log if "loss" in rec)
    assert (pt / "model" / "vlm_config.json").is_file() and (pt / "model" / "model.safetensors").is_file()
    assert any((pt / "checkpoints").glob("step_*"))


def test_torchrun_pretrain_two_processes(ws, tmp_path):
    r = cli(
        "--nproc_per_node=2",
        "-m",
        "vlmbench.cli",
        "pretrain",
        "--data",
        str(ws["toy"] / "howto100m"),
        "--backbone",
        "tiny",
        "--out",
        str(tmp_path / "ddp"),
        "--preset",
        "smoke",
        "steps=3",
        "--no-progress",
        cwd=ws["root"],
        exe=TORCHRUN,
    )
    ok(r)
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["final_step"] == 3


# One task per adapter family, plus zero-shot localization; the caption run is `make demo`'s command.
RUNS = {
    "msrvtt-retrieval": ("R@1", ["max_train=16", "max_test=16"]),
    "youcook2-retrieval": ("R@1", ["max_train=16", "max_test=16"]),
    "msrvtt-mcqa": ("accuracy", ["max_train=16", "max_test=16"]),
    "coin-segmentation": ("frame_acc", ["max_train=4", "max_test=4"]),
    "crosstask-zeroshot": ("recall", ["max_test=4"]),
    "crosstask-supervised": ("recall", ["max_train=4", "max_test=4"]),
    "youcook2-caption": ("CIDEr", ["max_train=8", "max_test=8"]),
}


@pytest.fixture(scope="module")
def runs(ws) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    done = {}
    for task, (_, pairs) in RUNS.items():
        out = ws["root"] / "runs" / task
        r = ok(
            cli(
                "run",
                "--task",
                task,
                "--data",
                "toy",
                "--checkpoint",
                str(ws["ckpt"]),
                "--out",
                str(out),
                "--preset",
                "smoke",
                *pairs,
                "--no-progress",
                cwd=ws["root"],
            )
        )
        done[task] = (out, r)
    return done


@pytest.mark.parametrize("task", list(RUNS))
def test_run_each_family(runs, task):
    out, r = runs[task]
    metric = RUNS[task][0]
    result = json.loads((out / "result.json").read_text())
    assert result["task"] == task and metric in result["metrics"]
    assert (out / "predictions.npz").is_file()
    assert f"Result: {out / 'result.json'}" in " ".join((r.stderr + r.stdout).split())
    # the metrics table is printed, with the headline metric's column and its value in the metric's format
    assert metric in r.stdout
    assert re.search(r"\d+\.\d{2}", r.stdout)


def test_caption_run_prints_examples_after_the_metrics(runs):
    """`make demo` crashed here: the caption examples are printed after the five metrics."""
    out, r = runs["youcook2-caption"]
    text = r.stdout
    for m in ("BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
        assert m in text
    assert text.index("CIDEr") < text.index("Worst captions")
    with open(out / "captions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == json.loads((out / "result.json").read_text())["counts"]["test_clips"]


def test_make_demo_command_as_typed(ws, tmp_path):
    """The Makefile's demo recipe, run as written (the venv's entry point), with the smoke preset added."""
    dry = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    line = [ln for ln in dry.stdout.splitlines() if "vlmbench run" in ln]
    assert line, dry.stdout
    argv = shlex.split(line[-1])
    assert argv[0].endswith("vlmbench") and argv[1:3] == ["run", "--task"]
    assert f"`{shlex.join(['vlmbench', *argv[1:]])}`" in (REPO / "README.md").read_text()  # "First run" quotes it
    argv = [str(VLMBENCH)] + argv[1:]
    out = tmp_path / "demo"
    argv[argv.index("--out") + 1] = str(out)
    r = ok(cli(*argv[1:], "--preset", "smoke", "max_train=8", "max_test=8", "--no-progress", cwd=ws["root"]))
    assert "CIDEr" in r.stdout and (out / "result.json").is_file()


def test_score_reproduces_the_run(runs, ws):
    out, _ = runs["msrvtt-retrieval"]
    r = ok(cli("score", str(out / "predictions.npz"), cwd=ws["root"]))
    result = json.loads((out / "result.json").read_text())
    assert f"R@1: {result['metrics']['R@1']:.4f}" in r.stdout


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "csv", "json"])
def test_report_each_format(runs, ws, fmt):
    out, _ = runs["youcook2-caption"]
    r = ok(cli("report", str(out), "--against", "paper", "--format", fmt, cwd=ws["root"]))
    assert "VLM" in r.stdout  # the paper's row beside ours
    assert "toy world" in r.stdout
    if fmt == "json":
        json.loads(r.stdout)
    if fmt == "markdown":
        assert "| kind |" in r.stdout
    if fmt == "csv":
        assert r.stdout.splitlines()[0].count(",") >= 4


def test_compare_passes_on_itself_and_fails_on_a_regression(runs, ws, tmp_path):
    out, _ = runs["msrvtt-mcqa"]
    # a smoke run learns nothing, so its learned rule (a ci-preset check) is left out with --no-floors
    r = ok(cli("compare", str(out), str(out), "--no-floors", cwd=ws["root"]))
    assert "accuracy" in r.stdout
    worse = tmp_path / "worse"
    shutil.copytree(out, worse)
    res = json.loads((worse / "result.json").read_text())
    res["metrics"]["accuracy"] -= 10
    (worse / "result.json").write_text(json.dumps(res))
    r = cli("compare", str(worse), str(out), "--no-floors", cwd=ws["root"])
    assert r.returncode == 1 and "accuracy" in r.stdout and "regressed" in r.stdout


def test_compare_accepts_the_held_out_seeds():
    """As typed in docs/ci-gate.md's tolerance paragraph, from the repository root."""
    r = ok(cli("compare", "results/heldout/ci-gate", "results/reference/ci", cwd=REPO))
    assert re.search(r"all \d+ metrics ok", r.stdout)
    assert "new = the mean over seeds " + ", ".join(map(str, range(25, 33))) in r.stdout
    assert "ref = the mean over seeds " + ", ".join(map(str, range(25))) + " (noise.json)" in r.stdout


def test_the_report_example_prints_what_the_docs_show(tmp_path):
    """docs/reference.md's "A report" section: its baseline and report commands as typed, from a folder holding the
    committed reference, print exactly the markdown shown (the page nests its headings two levels deeper)."""
    section = (REPO / "docs" / "reference.md").read_text().split("## A report\n", 1)[1]
    report = next(c for c in re.findall(r"`(vlmbench report [^`]+)`", section))
    baseline = next(c for c in re.findall(r"`(vlmbench baseline [^`]+)`", section))
    shown = re.split(r"\n#{2,3} ", section.split("prints:\n\n", 1)[1])[0].strip()
    expected = "\n".join(line[2:] if line.startswith("####") else line for line in shown.splitlines())
    src = REPO / "results" / "reference" / "ci" / "youcook2-caption"
    shutil.copytree(src, tmp_path / src.relative_to(REPO))
    ok(cli(*shlex.split(baseline)[1:], cwd=tmp_path))
    r = ok(cli(*shlex.split(report)[1:], cwd=tmp_path))
    assert r.stdout.strip() == expected


def test_baseline_writes_a_floor_result(ws, tmp_path):
    out = tmp_path / "floor"
    r = ok(
        cli(
            "baseline",
            "--task",
            "coin-segmentation",
            "--kind",
            "all-background",
            "--data",
            "toy",
            "--out",
            str(out),
            "--preset",
            "smoke",
            cwd=ws["root"],
        )
    )
    result = json.loads((out / "result.json").read_text())
    assert 0 < result["metrics"]["frame_acc"] < 100 and result["metrics"]["frame_acc_nobg"] == 0
    assert "frame_acc" in r.stdout


def readme_block(title: str) -> list[str]:
    """The command lines of the fenced code blocks in one README section, in order."""
    body = re.split(r"\n## ", (REPO / "README.md").read_text().split(title + "\n", 1)[1], maxsplit=1)[0]
    return readme_commands("".join(re.findall(r"```[a-z]*\n.*?```\n", body, flags=re.S)))


# Added to each command of "More commands, on the toy world" (the smoke preset and small caps: the README's take
# minutes); nothing else changes.
SMALLER = {
    "vlmbench run": ["--preset", "smoke", "max_train=16", "max_test=16", "--no-progress"],
    "vlmbench suite": ["--no-progress"],  # and its --preset ci becomes smoke
    "vlmbench ablate": ["--preset", "smoke", "steps=4", "max_train=8", "max_test=8", "--no-progress"],
}


def test_more_commands_as_typed(tmp_path):
    """The README's "More commands, on the toy world", line by line in one working folder, as typed (plus SMALLER):
    each exits 0 and leaves what the README says it does."""
    cmds = readme_block("## More commands, on the toy world")
    assert [verb(c) for c in cmds][:3] == ["vlmbench tasks", "vlmbench models", "vlmbench run"], cmds
    done = {}
    for cmd in cmds:
        argv = shlex.split(cmd)[1:]
        if verb(cmd) == "vlmbench suite":
            argv = ["smoke" if a == "ci" and p == "--preset" else a for p, a in zip(["", *argv], argv)]
        r = ok(cli(*argv, *SMALLER.get(verb(cmd), []), cwd=tmp_path, timeout=1800))
        done[verb(cmd)] = (argv, r)
    assert all(t in done["vlmbench tasks"][1].stdout for t in RUNS)
    assert "videoclip" in done["vlmbench models"][1].stdout and "youcook2-caption" in done["vlmbench models"][1].stdout
    argv, r = done["vlmbench run"]
    out = tmp_path / argv[argv.index("--out") + 1]
    result = json.loads((out / "result.json").read_text())
    assert f"R@1: {result['metrics']['R@1']:.4f}" in done["vlmbench score"][1].stdout
    # suite: the seven tasks, the pre-training's own result and, beside each task, its floors
    argv, r = done["vlmbench suite"]
    suite = tmp_path / argv[argv.index("--out") + 1]
    results = sorted(p.parent.name for p in suite.rglob("result.json") if not p.parent.name.startswith("floor-"))
    assert len(results) == 8 and "pretrain" in results, results
    assert any(suite.glob("*/floor-random/result.json"))
    assert "coin-segmentation" in r.stdout and "frame_acc" in r.stdout  # the table, one block per task
    assert "| kind |" in done["vlmbench report"][1].stdout
    # ablate: one cell per value, the paper's two ablation tasks, grid files and plots
    argv, r = done["vlmbench ablate"]
    grid = tmp_path / "runs" / "ablate"
    with open(grid / "grid.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted({float(row["mmm"]) for row in rows}) == [0.0, 0.3, 0.5, 0.7]
    assert list((grid / "plots").glob("*.png")) and (grid / "grid.md").is_file()
    assert "R@1" in r.stdout and "CIDEr" in r.stdout


def test_make_install_torch_index():
    """ "Install": each `make install` the README shows, dry-run: TORCH_INDEX puts torch's step on that index (without
    the constraints, whose pins that index need not hold); without it, torch comes from PyPI under the pins; the
    rest is pinned either way."""
    shown = [c for c in readme_block("## Install") if c.startswith("make install")]
    assert any("TORCH_INDEX=https://download.pytorch.org/whl/cpu" in c for c in shown), shown
    for cmd in shown:
        dry = subprocess.run(["make", "-nB", *shlex.split(cmd)[1:]], cwd=REPO, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        torch_line = next(ln for ln in dry.stdout.splitlines() if '"torch==2.13.0"' in ln)
        index = re.search(r"TORCH_INDEX=(\S+)", cmd)
        if index:
            assert f'--index-url "{index[1]}"' in torch_line and "constraints" not in torch_line, torch_line
        else:
            assert "-c constraints.txt" in torch_line and "--index-url" not in torch_line, torch_line
        assert "-c constraints.txt -e '.[dev]'" in dry.stdout


@pytest.mark.parametrize(
    "target", ["test", "check", "install", "bench", "smoke", "update-reference", "update-align", "demo"]
)
def test_make_targets_exist_and_call_real_commands(target):
    dry = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    if target == "smoke":
        assert "vlmbench suite --preset smoke" in dry.stdout
    if target == "update-reference":  # the CI gate's reference: the ci preset, into results/reference/ci
        assert "vlmbench suite --preset ci" in dry.stdout and "--save-reference results/reference/ci" in dry.stdout
    if target == "update-align":  # what tests/test_alignment.py reads
        assert "-m vlmbench.alignment" in dry.stdout and "--out results/reference/align/seeds.json" in dry.stdout
    if target == "bench":
        assert "bench/run_all.py" in dry.stdout and (REPO / "bench" / "run_all.py").is_file()


@pytest.mark.parametrize("kind", ["attention", "embeddings"])
def test_viz_draws_png_and_svg(ws, tmp_path, kind):
    task = "youcook2-retrieval" if kind == "attention" else "youcook2-caption"
    out = tmp_path / "viz"
    ok(
        cli(
            "viz",
            kind,
            "--task",
            task,
            "--data",
            "toy",
            "--checkpoint",
            str(ws["ckpt"]),
            "--out",
            str(out),
            cwd=ws["root"],
        )
    )
    pngs = sorted(out.glob("*.png"))
    assert pngs and all(p.with_suffix(".svg").is_file() for p in pngs)
    svg = pngs[0].with_suffix(".svg").read_text()
    assert ("isolated mask" in svg) if kind == "attention" else ("video tokens" in svg)
