"""Toy YouCook2: recipe videos of 6-10 steps with background between them, annotated as 4-7 segments of one
or two consecutive steps ("cut the red onion and then fry two eggs in the pan": 3-16 words); the annotation
JSON, split lists and the retrieval CSV (validation_youcook.csv), in the real formats."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...io import write_json
from . import World, compose, write_atomically

RECIPES = {"101": 0, "102": 1, "103": 2, "104": 3}


def write_youcook2(out: str | Path, seed: int = 0, n_train: int = 80, n_val: int = 180) -> Path:
    world = World()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 3])
        (tmp / "features").mkdir()
        database, train_list, val_list, retrieval = {}, [], [], []
        for n in range(n_train + n_val):
            vid = f"yc{n:04d}"
            recipe = str(rng.choice(list(RECIPES)))
            subset = "training" if n < n_train else "validation"
            steps = world.random_steps(rng, int(rng.integers(6, 11)), min_s=4, max_s=8)
            gap = 2
            feats = world.features(steps, rng, background=gap)
            np.save(tmp / "features" / f"{vid}.npy", feats)
            # Segments: runs of one or two consecutive steps; a two-step segment spans the gap between them.
            bounds, t = [], 0
            for step in steps:
                bounds.append((t + gap, t + gap + step.seconds))
                t += gap + step.seconds
            annotations, i = [], 0
            while i < len(steps):
                k = 2 if i + 1 < len(steps) and rng.random() < 0.5 else 1
                annotations.append(
                    {
                        "segment": [bounds[i][0], bounds[i + k - 1][1]],
                        "id": len(annotations),
                        "sentence": compose(steps[i : i + k]),
                    }
                )
                i += k
            database[vid] = {
                "duration": float(len(feats)),
                "subset": subset,
                "recipe_type": recipe,
                "annotations": annotations,
                "video_url": f"https://example.invalid/{vid}",
            }
            (train_list if subset == "training" else val_list).append(f"{recipe}/{vid}")
            if subset == "validation":
                retrieval += [(a["segment"][1], a["segment"][0], recipe, a["sentence"], vid) for a in annotations]
        write_json(tmp / "youcookii_annotations_trainval.json", {"database": database})
        (tmp / "train_list.txt").write_text("\n".join(train_list) + "\n")
        (tmp / "val_list.txt").write_text("\n".join(val_list) + "\n")
        with open(tmp / "validation_youcook.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["end", "start", "task", "text", "video_id"])
            w.writerows(retrieval)

    return write_atomically(Path(out), fill)
