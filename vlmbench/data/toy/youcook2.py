"""Toy YouCook2: recipe videos of 5-8 annotated steps with background between them; the annotation JSON,
split lists and the retrieval CSV (validation_youcook.csv), in the real formats."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...io import write_json
from . import World, write_atomically

RECIPES = {"101": 0, "102": 1, "103": 2, "104": 3}


def write_youcook2(out: str | Path, seed: int = 0, n_train: int = 80, n_val: int = 30) -> Path:
    world = World()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 3])
        (tmp / "features").mkdir()
        database, train_list, val_list, retrieval = {}, [], [], []
        for n in range(n_train + n_val):
            vid = f"yc{n:04d}"
            recipe = str(rng.choice(list(RECIPES)))
            subset = "training" if n < n_train else "validation"
            steps = world.random_steps(rng, int(rng.integers(5, 9)), min_s=4, max_s=9)
            gap = 2
            feats = world.features(steps, rng, background=gap)
            np.save(tmp / "features" / f"{vid}.npy", feats)
            annotations, t = [], 0
            for i, step in enumerate(steps):
                start = t + gap
                end = start + step.seconds
                annotations.append({"segment": [start, end], "id": i, "sentence": world.sentence(step, rng, filler=False)})
                t = end
            database[vid] = {"duration": float(len(feats)), "subset": subset, "recipe_type": recipe,
                             "annotations": annotations, "video_url": f"https://example.invalid/{vid}"}
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
