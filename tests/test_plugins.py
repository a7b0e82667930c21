"""An external model from a wheel: the plug-in of docs/plugins.md, installed as typed beside the vlmbench wheel
into a fresh venv, is listed by `vlmbench models`, runs `vlmbench suite --model meanpool --preset smoke` on every
task its capabilities allow, and is refused on captioning in one line."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, build_wheel, fresh_venv, run_ok

pytestmark = pytest.mark.slow
DOC = (REPO / "docs" / "plugins.md").read_text()


def _block(lang: str) -> str:
    (code,) = re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)
    return code


def test_the_example_is_about_forty_lines():
    assert 30 <= len(_block("python").strip().splitlines()) <= 70


@pytest.fixture(scope="module")
def venv(vlmbench_wheel, tmp_path_factory) -> tuple[Path, dict]:
    src = tmp_path_factory.mktemp("plugin")
    (src / "meanpool_model.py").write_text(_block("python"))
    (src / "pyproject.toml").write_text(_block("toml") + '\n[tool.setuptools]\npy-modules = ["meanpool_model"]\n')
    dist = build_wheel(src, tmp_path_factory.mktemp("plugin-dist"))
    (plugin,) = dist.glob("meanpool_model-*.whl")
    return fresh_venv(tmp_path_factory.mktemp("venv"), vlmbench_wheel, plugin)


def test_models_lists_the_plugin(venv):
    v, env = venv
    out = run_ok([v / "bin" / "vlmbench", "models"], v.parent, env).stdout
    row = next(line for line in out.splitlines() if "meanpool" in line)
    assert "frames, text, video" in row and "msrvtt-retrieval" in out


def test_suite_runs_every_task_the_plugin_can(venv):
    v, env = venv
    r = run_ok(
        [v / "bin" / "vlmbench", "suite", "--model", "meanpool", "--preset", "smoke", "--out", "S", "--no-progress"],
        v.parent,
        env,
    )
    assert "skipping youcook2-caption: model meanpool lacks caption" in r.stderr
    done = sorted(p.parent.name for p in (v.parent / "S").glob("*/result.json"))
    assert done == sorted(
        [
            "coin-segmentation",
            "crosstask-supervised",
            "crosstask-zeroshot",
            "msrvtt-mcqa",
            "msrvtt-retrieval",
            "youcook2-retrieval",
        ]
    )
    result = json.loads((v.parent / "S" / "msrvtt-retrieval" / "result.json").read_text())
    assert result["model"]["name"] == "meanpool" and result["model"]["class"] == "meanpool_model.MeanPool"
    assert result["model"]["capabilities"] == ["frames", "text", "video"] and result["model"]["interface"] == 1
    assert result["counts"]["finetune_updates"] > 0 and "R@1" in r.stdout  # fine-tuned, and the final table


def test_a_task_the_plugin_cannot_do_is_refused_before_any_work(venv):
    v, env = venv
    r = subprocess.run(
        [v / "bin" / "vlmbench", "run", "--task", "youcook2-caption", "--model", "meanpool", "--out", "R"],
        cwd=v.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "meanpool cannot run youcook2-caption" in line and "caption" in line
    assert not (v.parent / "R").exists()
