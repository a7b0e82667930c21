"""The CLI verbs that need no fine-tuning: tasks, data toy (deterministic), data check, errors."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "vlmbench.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_tasks_lists_the_registry():
    r = _cli("tasks")
    assert r.returncode == 0
    for name in ("msrvtt-retrieval", "youcook2-caption", "coin-segmentation", "crosstask-zeroshot"):
        assert name[:8] in r.stdout


def test_toy_howto100m_is_deterministic_by_seed(tmp_path):
    from vlmbench.data.toy.howto100m import write_howto100m

    a = write_howto100m(tmp_path / "a", seed=3, n_videos=6)
    b = write_howto100m(tmp_path / "b", seed=3, n_videos=6)
    c = write_howto100m(tmp_path / "c", seed=4, n_videos=6)
    assert _digest(a) == _digest(b) != _digest(c)
    # the real pre-training format: captions.json + features/<vid>.npy (seconds, 512), L2-normalised
    import json

    import numpy as np

    caps = json.loads((a / "captions.json").read_text())
    vid = sorted(caps)[0]
    assert set(caps[vid]) == {"start", "end", "text"}
    feats = np.load(a / "features" / f"{vid}.npy")
    assert feats.shape[1] == 512 and feats.dtype == np.float16
    assert np.allclose(np.linalg.norm(feats.astype(np.float32), axis=1), 1, atol=1e-2)


def test_toy_features_follow_the_captions():
    """Learnable structure: a second's feature is closest to the concept its caption names."""
    import numpy as np

    from vlmbench.data.toy import World

    w = World()
    rng = np.random.default_rng(0)
    steps = w.random_steps(rng, 20)
    feats = w.features(steps, rng).astype(np.float32)
    t = 0
    hits = 0
    for s in steps:
        f = feats[t : t + s.seconds].mean(0)
        best = max(("chop", "onion") + tuple(w.direction), key=lambda k: float(f @ w.direction[k]))
        hits += best in (s.action, s.obj)
        t += s.seconds
    assert hits >= 18


@pytest.mark.slow
def test_unknown_task_is_one_line(tmp_path):
    r = _cli("run", "--task", "nope", "--no-progress")
    assert r.returncode == 2 and "unknown task 'nope'" in r.stderr and "Traceback" not in r.stderr
