"""Toy MSR-VTT: short clips of 1-2 steps, several captions each; the 9k-style train CSV, MSRVTT_data.json,
the JSFusion-style test CSV and the multiple-choice TSV, in the real formats."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...io import write_json
from . import World, write_atomically

SUBJECTS = ["a man", "a woman", "a person", "someone", "a chef", "a cook"]


def _caption(world: World, steps, rng: np.random.Generator) -> str:
    parts = [f"{s.action} the {s.obj}" for s in steps]
    return f"{rng.choice(SUBJECTS)} is going to {' and '.join(parts)}"


def write_msrvtt(out: str | Path, seed: int = 0, n_train: int = 400, n_test: int = 100,
                 captions_per_video: int = 5) -> Path:
    world = World()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 2])
        (tmp / "features").mkdir()
        videos, sentences, test_rows = [], [], []
        for n in range(n_train + n_test):
            vid = f"video{n}"
            steps = world.random_steps(rng, int(rng.integers(1, 3)), min_s=5, max_s=10)
            np.save(tmp / "features" / f"{vid}.npy", world.features(steps, rng))
            caps = [_caption(world, steps, rng) for _ in range(captions_per_video)]
            videos.append({"video_id": vid, "split": "train" if n < n_train else "test"})
            sentences += [{"video_id": vid, "caption": c, "sen_id": len(sentences) + i} for i, c in enumerate(caps)]
            if n >= n_train:
                test_rows.append((vid, caps[0]))
        write_json(tmp / "MSRVTT_data.json", {"videos": videos, "sentences": sentences})
        with open(tmp / "MSRVTT_train.9k.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id"])
            w.writerows([[f"video{n}"] for n in range(n_train)])
        with open(tmp / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["key", "vid_key", "video_id", "sentence"])
            for i, (vid, sent) in enumerate(test_rows):
                w.writerow([f"ret{i}", vid.replace("video", "msr"), vid, sent])
        # Multiple choice: the true caption among 4 captions of other test videos.
        with open(tmp / "MSR_MC_test.csv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["key", "vid_key", "video_id", "a1", "a2", "a3", "a4", "a5", "answer"])
            for i, (vid, sent) in enumerate(test_rows):
                others = [test_rows[j][1] for j in rng.choice(len(test_rows), 8, replace=False) if test_rows[j][0] != vid][:4]
                answer = int(rng.integers(5))
                cands = others[:answer] + [sent] + others[answer:]
                w.writerow([f"mc{i}", vid.replace("video", "msr"), vid, *cands, answer])

    return write_atomically(Path(out), fill)
