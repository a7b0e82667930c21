"""Toy COIN: instructional videos of one task ("class") each, showing an ordered subset of that task's steps
with background seconds between them; COIN.json (the official `database` shape) + features/<vid>.npy.

Steps are (action, object) pairs of the shared concept space with fixed global step ids spread over 1..778,
so per-second classification is learnable and an all-background predictor stays clearly below a trained one.
Two steps of every recipe look like a step of another recipe (same action and object, another step id), so
their identity needs the temporal context: which recipe the neighbouring steps belong to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import write_json
from . import ACTIONS, CONCEPTS, OBJECTS, Step, World, write_atomically

N_RECIPES = 8
STEPS_PER_RECIPE = 6
SHARED = (1, 4)  # positions whose visual is shared by recipes r and r + N_RECIPES // 2
RECIPE_NAMES = [
    "MakeToySoup",
    "MakeToySalad",
    "BakeToyBread",
    "FryToyEggs",
    "CookToyPasta",
    "GrillToyFish",
    "MakeToyPie",
    "BoilToyRice",
]


def step_table() -> list[list[tuple[int, str, str]]]:
    """Per recipe, its ordered steps as (global step id, action, object); the same for every seed.

    48 step ids over 40 distinct (action, object) pairs: the SHARED positions of recipe r + 4 repeat recipe
    r's pairs. Ids are spread over 1..778 like the real COIN "Action Id"s."""
    rng = np.random.default_rng([CONCEPTS, 4242])
    pairs: list[tuple[str, str]] = []
    while len(pairs) < N_RECIPES * STEPS_PER_RECIPE:
        r, k = divmod(len(pairs), STEPS_PER_RECIPE)
        if k in SHARED and r >= N_RECIPES // 2:
            pairs.append(pairs[(r - N_RECIPES // 2) * STEPS_PER_RECIPE + k])
            continue
        pair = (str(rng.choice(ACTIONS)), str(rng.choice(OBJECTS)))
        if pair not in pairs:
            pairs.append(pair)
    ids = np.sort(rng.choice(np.arange(1, 779), len(pairs), replace=False))
    return [
        [(int(ids[r * STEPS_PER_RECIPE + k]), *pairs[r * STEPS_PER_RECIPE + k]) for k in range(STEPS_PER_RECIPE)]
        for r in range(N_RECIPES)
    ]


def write_coin(out: str | Path, seed: int = 0, n_train: int = 120, n_test: int = 320) -> Path:
    world = World()
    table = step_table()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 5])
        (tmp / "features").mkdir()
        database = {}
        for n in range(n_train + n_test):
            vid = f"coin{n:04d}"
            recipe = int(rng.integers(N_RECIPES))
            # An ordered subset of the recipe's steps (COIN videos skip steps), at least 4.
            keep = rng.random(STEPS_PER_RECIPE) < 0.85
            if keep.sum() < 4:
                keep[rng.choice(STEPS_PER_RECIPE, 4, replace=False)] = True
            shown = [table[recipe][k] for k in np.flatnonzero(keep)]
            steps = [Step(action, obj, int(rng.integers(4, 11))) for _, action, obj in shown]
            gap = int(rng.integers(3, 9))  # background seconds before every step
            feats = world.features(steps, rng, background=gap)
            np.save(tmp / "features" / f"{vid}.npy", feats)
            annotation, t = [], 0
            for (step_id, _, _), step in zip(shown, steps):
                start = t + gap
                end = start + step.seconds
                annotation.append(
                    {
                        "id": str(step_id),
                        "segment": [float(start), float(end)],
                        "label": f"{step.action} the {step.obj}",
                    }
                )
                t = end
            database[vid] = {
                "recipe_type": recipe,
                "annotation": annotation,
                "video_url": f"https://example.invalid/embed/{vid}",
                "start": 0.0,
                "end": float(len(feats)),
                "duration": float(len(feats)),
                "class": RECIPE_NAMES[recipe],
                "subset": "training" if n < n_train else "testing",
            }
        write_json(tmp / "COIN.json", {"database": database})

    return write_atomically(Path(out), fill)
