"""The toy world: synthetic corpora written in exactly the real formats, with structure a model can learn.

One concept space is shared by every toy dataset: each action word and each object word has a fixed random
direction in the 512-d feature space. A video is a sequence of steps (action, object, seconds); the feature of
each second is the L2-normalised sum of its step's two directions plus noise (S3D features are L2-normalised
too), and the captions around that second say which action and object it shows. Video and text are therefore
alignable, and a model pre-trained on the toy HowTo100M corpus can transfer zero-shot to the toy tasks.
It is a test harness, never a benchmark: results on it are labelled as toy everywhere.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import write_json

VERSION = 1
DIM = 512
ACTIONS = ["cut", "chop", "slice", "peel", "wash", "stir", "mix", "fry", "boil", "bake", "pour", "add",
           "grill", "season", "roll", "fold"]
OBJECTS = ["onion", "tomato", "potato", "carrot", "garlic", "pepper", "chicken", "beef", "fish", "egg",
           "rice", "pasta", "bread", "cheese", "butter", "flour", "sugar", "salt", "oil", "milk", "water",
           "lemon", "apple", "dough"]
FILLER = ["okay so", "alright", "now", "and then", "next", "so", "you want to", "go ahead and", "we are going to"]
OFF_TOPIC = ["thanks for watching", "please subscribe to my channel", "let me know in the comments",
             "this is my favorite recipe", "hello everyone welcome back"]
NOISE = 0.8  # norm of the per-second noise; a concept direction has norm 1


@dataclass(frozen=True)
class Step:
    action: str
    obj: str
    seconds: int


class World:
    """The shared concept space. Directions depend on VERSION only, so every toy dataset agrees on them."""

    def __init__(self):
        rng = np.random.default_rng([VERSION, 7919])
        words = ACTIONS + OBJECTS
        dirs = rng.standard_normal((len(words), DIM))
        self.direction = {w: d / np.linalg.norm(d) for w, d in zip(words, dirs)}

    def random_steps(self, rng: np.random.Generator, n: int, min_s: int = 4, max_s: int = 9) -> list[Step]:
        return [Step(str(rng.choice(ACTIONS)), str(rng.choice(OBJECTS)), int(rng.integers(min_s, max_s + 1)))
                for _ in range(n)]

    def features(self, steps: list[Step], rng: np.random.Generator, background: int = 0) -> np.ndarray:
        """(seconds, 512) float16; `background` seconds of noise only before each step.

        Each second = action direction + object direction + a per-video style offset + noise (norms ~1.4,
        0.5 and NOISE), then L2-normalised: visible to a model, not readable off a single coordinate."""
        noise = lambda scale: rng.standard_normal(DIM) / np.sqrt(DIM) * scale  # noqa: E731  (norm ~ scale)
        style = noise(0.5)
        rows = []
        for step in steps:
            rows += [style + noise(1.0) for _ in range(background)]
            centre = self.direction[step.action] + self.direction[step.obj] + style
            rows += [centre + noise(NOISE) for _ in range(step.seconds)]
        feats = np.stack(rows)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        return feats.astype(np.float16)

    @staticmethod
    def sentence(step: Step, rng: np.random.Generator, filler: bool = True) -> str:
        core = f"{step.action} the {step.obj}"
        if filler and rng.random() < 0.7:
            core = f"{rng.choice(FILLER)} {core}"
        return core


def default_cache() -> Path:
    return Path(os.environ.get("VLMBENCH_CACHE", Path.home() / ".cache" / "vlmbench"))


def _write_atomically(out: Path, fill) -> Path:
    """Build a dataset in a temp folder beside `out`, then rename: a killed run leaves no half dataset."""
    out = Path(out)
    if (out / ".complete").is_file():
        return out
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    (tmp / ".complete").write_text(json.dumps({"toy_version": VERSION}) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def write_howto100m(out: str | Path, seed: int = 0, n_videos: int = 240, steps_per_video: tuple[int, int] = (6, 10)) -> Path:
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
                    e = s + step.seconds / lines + rng.uniform(0.5, 2.0)   # rolling ASR overlaps the next line
                    say = OFF_TOPIC[rng.integers(len(OFF_TOPIC))] if rng.random() < 0.1 else world.sentence(step, rng)
                    start.append(round(max(0.0, s), 2)), end.append(round(e, 2)), text.append(say)
                t += step.seconds
            captions[vid] = {"start": start, "end": end, "text": text}
        write_json(tmp / "captions.json", captions)

    return _write_atomically(Path(out), fill)


def toy_root(seed: int = 0) -> Path:
    return default_cache() / f"toy-v{VERSION}-seed{seed}"


def ensure_howto100m(seed: int = 0, say=print) -> Path:
    path = toy_root(seed) / "howto100m"
    if not (path / ".complete").is_file():
        say(f"No --data given: writing the toy world (HowTo100M format) to {path}")
    else:
        say(f"No --data given: using the toy world at {path}")
    return write_howto100m(path, seed=seed)
