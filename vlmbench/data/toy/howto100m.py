"""Toy HowTo100M: ASR-like captions + per-second features, in the real pre-training formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...io import write_json
from . import OFF_TOPIC, World, ensure, write_atomically


def write_howto100m(
    out: str | Path, seed: int = 0, n_videos: int = 240, steps_per_video: tuple[int, int] = (6, 10)
) -> Path:
    """captions.json ({vid: {start, end, text}}) + features/<vid>.npy, the HowTo100M pre-training format.

    ASR-like captions: each step is narrated by one or two overlapping lines; ~10% of lines are off-topic.
    """
    world = World()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 1])
        (tmp / "features").mkdir()
        captions = {}
        for i in range(n_videos):
            vid = f"toy_how_{i:05d}"
            steps = world.random_steps(rng, int(rng.integers(*steps_per_video, endpoint=True)))
            np.save(tmp / "features" / f"{vid}.npy", world.features(steps, rng))
            start, end, text, t = [], [], [], 0.0
            for step in steps:
                lines = 1 if step.seconds < 6 else 2
                for k in range(lines):
                    s = t + k * step.seconds / lines + rng.uniform(-0.5, 0.5)
                    e = s + step.seconds / lines + rng.uniform(0.5, 2.0)  # rolling ASR overlaps the next line
                    say = OFF_TOPIC[rng.integers(len(OFF_TOPIC))] if rng.random() < 0.1 else world.sentence(step, rng)
                    start.append(round(max(0.0, s), 2)), end.append(round(e, 2)), text.append(say)
                t += step.seconds
            captions[vid] = {"start": start, "end": end, "text": text}
        write_json(tmp / "captions.json", captions)

    return write_atomically(Path(out), fill)


def ensure_howto100m(seed: int = 0, say=print) -> Path:
    return ensure("howto100m", write_howto100m, seed=seed, say=say)
