"""The README's real-data road, walked as typed: every command in the code blocks of "Evaluate the authors'
checkpoint on real data" and "Pre-train on HowTo100M" runs, in order, as a subprocess of the installed `vlmbench`
(or `torchrun`) entry point, on a folder laid out like the real releases, and the `suite --checkpoint` on the
converted checkpoint prints the table with every task's row.

The folder (built here, not by the README):
- `/data/vlm`: `vlmbench data toy` output (every dataset in the real files' formats and names, S3D-shaped
  features included) with the toy markers removed, so vlmbench treats it as real data, and HowTo100M's captions
  named `raw_caption.json` as the README lays them out;
- `checkpoint_best.pt`: the authors' released container and its 212 keys (built as tests/test_convert_mmpt.py
  builds one, from the spec's key table) at a tiny shape;
- `s3d_howto100m.pth`: the released S3D key layout with random weights (tests/test_s3d.py), and
  `/data/videos/msrvtt`: one generated 2-second video;
- `/models/bert-base-uncased` for `convert mmpt --bert`: a folder holding only what that option reads
  (`config.json` and the MLM bias in `model.safetensors`).

Substitutions, each made in `substitute` below (everything else runs as typed):
- paths: the four above; relative outputs (`checkpoints/`, `runs/`, the report) land in a temp working folder;
  `features extract` writes into a folder of its own (the toy world's features are already in place, and the
  extractor refuses a folder of features it did not write);
- size: the released VLM is bert-base (134.7 M weights, hours of CPU for seven tasks), so the checkpoint holds
  its keys at hidden 64 / 2 layers, and the `convert mmpt` subprocess is told that shape by a `sitecustomize`
  on its PYTHONPATH (the converter accepts only the released shape); pre-training's `--backbone
  /models/bert-base-uncased` becomes `--backbone tiny`;
- presets: `--preset paper` becomes `--preset smoke` (`suite`: plus `--limit 4`); `run` and `pretrain` get
  `--preset smoke` and small keys (`max_train=8 max_test=4`; `steps=3`); `--workers 8` becomes 2 and
  `--nproc_per_node=8` becomes 2; `--no-progress` is added where a command has it;
- the `torchrun` line is the README's alternative to the line before it: it writes to its own folder;
- the last `suite` (on the model pre-trained here) runs one task (`--tasks youcook2-retrieval`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent
SECTIONS = ("## Evaluate the authors' checkpoint on real data", "## Pre-train on HowTo100M")
TASKS = (
    "msrvtt-retrieval",
    "youcook2-retrieval",
    "msrvtt-mcqa",
    "coin-segmentation",
    "crosstask-zeroshot",
    "crosstask-supervised",
    "youcook2-caption",
)
# The README's walk must keep these steps, in this order (a rewrite that drops one fails here, not silently).
STEPS = (
    "vlmbench features extract",
    "vlmbench data check",
    "vlmbench convert mmpt",
    "vlmbench suite",
    "vlmbench report",
    "vlmbench run",
    "vlmbench data prepare-howto100m",
    "vlmbench pretrain",
    "torchrun",
    "vlmbench suite",
)
# The tiny shape of the synthetic MMPT checkpoint (the released one: hidden 768, 12 layers, intermediate 3072).
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)


def section_commands(text: str) -> list[str]:
    """Command lines (vlmbench / torchrun) of the fenced code blocks in the README's two real-data sections, in
    order, without trailing comments."""
    cmds: list[str] = []
    for title in SECTIONS:
        body = text.split(title + "\n", 1)[1]
        body = re.split(r"\n## ", body, maxsplit=1)[0]
        for block in re.findall(r"```[a-z]*\n(.*?)```", body, flags=re.S):
            for line in block.splitlines():
                line = line.split("  #")[0].split(" # ")[0].strip()
                if re.match(r"^(vlmbench|torchrun)\b", line):
                    cmds.append(line)
    return cmds


def step(argv: list[str]) -> str:
    if argv[0] == "torchrun":
        return "torchrun"
    n = 3 if argv[1] in ("data", "features", "convert") else 2
    return " ".join(argv[:n])


def test_the_walk_has_every_step_in_order():
    cmds = section_commands(README.read_text())
    steps = [step(shlex.split(c)) for c in cmds]
    it = iter(steps)
    assert all(s in it for s in STEPS), f"README real-data steps {steps} lack, or reorder, {STEPS}"
    assert any("--checkpoint" in c and c.startswith("vlmbench suite") for c in cmds), cmds


# ---- the folder laid out like the real releases ------------------------------------------------------------------


def tiny_mmpt_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The spec's 212-key MMFusionMTM state dict (tests/test_convert_mmpt.py) at the TINY shape: 768 -> hidden,
    3072 -> intermediate, layers 0..1 kept; tied decoder stored as a separate, equal tensor, as fairseq saves it."""
    from test_convert_mmpt import P, spec_keys

    size = {768: TINY["hidden_size"], 3072: TINY["intermediate_size"]}
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in spec_keys().items():
        layer = re.search(r"\.layer\.(\d+)\.", key)
        if layer and int(layer[1]) >= TINY["num_hidden_layers"]:
            continue
        shape = tuple(size.get(d, d) for d in shape)
        if key.endswith("position_ids"):
            state[key] = torch.arange(shape[1])[None]
        elif key.endswith("decoder.weight"):
            continue
        elif "LayerNorm.weight" in key:
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    state[P + "cls.predictions.decoder.weight"] = state[P + "bert.embeddings.word_embeddings.weight"].clone()
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    from safetensors.torch import save_file
    from test_convert_mmpt import container
    from test_s3d import spec_state

    from vlmbench.data import toy
    from vlmbench.video.synth import write_video

    base = tmp_path_factory.mktemp("real")
    data = base / "data" / "vlm"
    for name in toy.WRITERS:
        toy.write_dataset(name, data / name, seed=0)
        (data / name / ".complete").unlink()  # the toy marker: without it the folder is real data to vlmbench
    (data / "howto100m" / "captions.json").rename(data / "howto100m" / "raw_caption.json")
    videos = base / "videos" / "msrvtt"
    videos.mkdir(parents=True)
    write_video(videos / "video10000.mp4", 60, 30, 320, 240, seed=0)
    files = base / "files"
    files.mkdir()
    torch.save(container(tiny_mmpt_state()), files / "checkpoint_best.pt")
    torch.save(spec_state(with_text=True), files / "s3d_howto100m.pth")
    bert = files / "bert-base-uncased"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 30522}))
    save_file({"cls.predictions.bias": 0.01 * torch.randn(30522)}, str(bert / "model.safetensors"))
    shim = base / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "# tests/test_readme_real_data.py: the synthetic checkpoint_best.pt has the released keys at a tiny shape\n"
        "import vlmbench.convert.mmpt as mmpt\n\n"
        f"mmpt.BERT_BASE.update({TINY!r})\n"
    )
    work = base / "work"
    work.mkdir()
    return {"data": data, "videos": videos, "files": files, "bert": bert, "shim": shim, "work": work}


# ---- the walk ------------------------------------------------------------------------------------------------------


def substitute(cmd: str, w: dict[str, Path]) -> tuple[list[str], dict[str, str]]:
    """(argv, extra environment) for one README command; every change from the typed line is made here."""
    argv = shlex.split(cmd)
    out: list[str] = []
    prev = ""
    for tok in argv:
        if tok.startswith("/data/vlm"):
            tok = str(w["data"]) + tok[len("/data/vlm") :]
        elif tok.startswith("/data/videos/msrvtt"):
            tok = str(w["videos"]) + tok[len("/data/videos/msrvtt") :]
        elif tok in ("checkpoint_best.pt", "s3d_howto100m.pth"):
            tok = str(w["files"] / tok)
        elif tok == "/models/bert-base-uncased":
            tok = str(w["bert"]) if prev == "--bert" else "tiny"
        elif prev == "--preset" and tok == "paper":
            tok = "smoke"
        elif prev == "--workers":
            tok = "2"
        elif tok.startswith("--nproc_per_node="):
            tok = "--nproc_per_node=2"
        out.append(tok)
        prev = tok
    verb = step(out)
    env: dict[str, str] = {}
    extra: list[str] = []
    if verb == "vlmbench convert mmpt":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(w["shim"]), os.environ.get("PYTHONPATH")]))
    elif verb == "vlmbench features extract":
        i = out.index("--out") + 1  # the toy world holds its features already: extract beside them
        out[i] = str(w["work"] / "extracted" / Path(out[i]).relative_to(w["data"]))
        extra = ["--no-progress"]
    elif verb == "vlmbench suite":
        extra = ["--limit", "4", "--no-progress"] + (["--tasks", "youcook2-retrieval"] if "pretrain" in cmd else [])
    elif verb == "vlmbench run":
        extra = ([] if "--preset" in out else ["--preset", "smoke"]) + ["max_train=8", "max_test=4", "--no-progress"]
    elif verb in ("vlmbench pretrain", "torchrun"):
        extra = ([] if "--preset" in out else ["--preset", "smoke"]) + ["steps=3", "--no-progress"]
        if verb == "torchrun":
            i = out.index("--out") + 1
            out[i] += "-torchrun"  # the alternative to the line before: a folder of its own
    return out + extra, env


@pytest.mark.slow
def test_readme_real_data_walk_as_typed(world):
    cmds = section_commands(README.read_text())
    assert len(cmds) >= len(STEPS), cmds
    done: dict[str, subprocess.CompletedProcess] = {}
    for cmd in cmds:
        argv, env = substitute(cmd, world)
        exe = BIN / argv[0]
        r = subprocess.run(
            [str(exe), *argv[1:]],
            cwd=world["work"],
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "COLUMNS": "200", **env},
        )
        shown = f"$ {cmd}\nran: {shlex.join(argv)}\nexit {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
        assert r.returncode == 0 and "Traceback" not in r.stderr, shown
        done.setdefault(step(argv), r)
        if step(argv) == "vlmbench suite" and "--checkpoint" in argv:
            done.setdefault("suite " + argv[argv.index("--checkpoint") + 1], r)

    check = done["vlmbench data check"].stdout
    assert "malformed" not in check and "missing" not in check, check
    assert "checkpoint: converted from MMPT checkpoint_best.pt" in done["vlmbench convert mmpt"].stderr
    assert (world["work"] / "checkpoints" / "vlm-mmpt" / "vlm_config.json").is_file()

    # The table `suite --checkpoint` ends with: a block per task with our row (the converted checkpoint, named
    # as such) above the paper's rows; none of it labelled toy. The floors are saved beside each task.
    table = done["suite checkpoints/vlm-mmpt"].stdout
    for task in TASKS:
        assert task in table, (task, table[-3000:])
    assert table.count("converted") >= len(TASKS), table[-3000:]  # our row's label (a table may wrap it)
    assert table.count("paper Table") >= len(TASKS) and "VLM" in table
    assert "toy world" not in table
    suite = world["work"] / "runs" / "vlm-mmpt"
    assert sorted(p.parent.name for p in suite.glob("*/result.json")) == sorted(TASKS)
    for p in suite.glob("*/result.json"):
        result = json.loads(p.read_text())
        assert result["config"]["checkpoint_source"].startswith("converted from MMPT checkpoint_best.pt"), p
        assert result["toy"] is False, p  # the folder is real data to vlmbench
    floors = {p.parent.parent.name for p in suite.glob("*/floor-*/result.json")}
    assert len(floors) >= 5, floors  # every task with a learned rule over a floor
    page = (world["work"] / "vlm-mmpt.html").read_text()  # `report`: the same tables, floors included
    assert page.count("converted from MMPT") >= len(TASKS) and "floor" in page
    extracted = np.load(world["work"] / "extracted" / "msrvtt" / "features" / "video10000.npy")
    assert extracted.shape == (2, 512) and extracted.dtype == np.float16
    assert (world["work"] / "runs" / "pretrain-vlm" / "model" / "vlm_config.json").is_file()
    assert (world["work"] / "runs" / "vlm-ours" / "youcook2-retrieval" / "result.json").is_file()
