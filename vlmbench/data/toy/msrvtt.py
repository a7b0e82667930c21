"""Toy MSR-VTT: short clips of 1-2 steps, several captions each; the 9k-style train CSV, MSRVTT_data.json,
the JSFusion-style test CSV and the multiple-choice TSV, in the real formats.

Test clips come in sibling pairs whose captions share their words: a two-step clip's sibling has the objects
(with their attributes) swapped between its steps, a one-step clip's sibling another attribute, so retrieval
needs the binding of words to what happens when, not a bag of words. Each multiple-choice question's four
negatives are the true caption with exactly one concept (an action, object, attribute, quantity or tool)
replaced."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...io import write_json
from . import ATTRIBUTES, PART_WORDS, Step, World, compose, write_atomically

SUBJECTS = ["a man", "a woman", "a person", "someone", "a chef", "a cook"]


def _caption(steps: list[Step], rng: np.random.Generator) -> str:
    return f"{rng.choice(SUBJECTS)} is going to {compose(steps)}"


def sibling(steps: list[Step], rng: np.random.Generator) -> list[Step]:
    """Steps whose caption has the same words in another binding (see the module doc)."""
    if len(steps) == 2 and steps[0].obj != steps[1].obj:
        a, b = steps
        return [replace(a, obj=b.obj, attr=b.attr, qty=b.qty), replace(b, obj=a.obj, attr=a.attr, qty=a.qty)]
    attr = str(rng.choice([w for w in ATTRIBUTES if w != steps[0].attr]))
    return [replace(steps[0], attr=attr), *steps[1:]]


def one_concept_off(steps: list[Step], rng: np.random.Generator) -> list[Step]:
    """The steps with exactly one concept word of one step replaced by another of its kind."""
    i = int(rng.integers(len(steps)))
    part, word = list(steps[i].parts().items())[int(rng.integers(len(steps[i].parts())))]
    new = str(rng.choice([w for w in PART_WORDS[part] if w != word]))
    return [replace(s, **{part: new}) if j == i else s for j, s in enumerate(steps)]


def write_msrvtt(
    out: str | Path, seed: int = 0, n_train: int = 400, n_test: int = 1000, captions_per_video: int = 5
) -> Path:
    world = World()

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng([seed, 2])
        (tmp / "features").mkdir()
        videos, sentences, test_rows, test_steps = [], [], [], []
        for n in range(n_train + n_test):
            vid = f"video{n}"
            pair = n >= n_train and (n - n_train) % 2 == 1  # the second clip of a test sibling pair
            steps = (
                sibling(test_steps[-1], rng)
                if pair
                else world.random_steps(rng, int(rng.integers(1, 3)), min_s=5, max_s=10)
            )
            if pair:  # the sibling's durations are its own
                steps = [replace(s, seconds=int(rng.integers(5, 11))) for s in steps]
            np.save(tmp / "features" / f"{vid}.npy", world.features(steps, rng))
            caps = [_caption(steps, rng) for _ in range(captions_per_video)]
            videos.append({"video_id": vid, "split": "train" if n < n_train else "test"})
            sentences += [{"video_id": vid, "caption": c, "sen_id": len(sentences) + i} for i, c in enumerate(caps)]
            if n >= n_train:
                test_rows.append((vid, caps[0]))
                test_steps.append(steps)
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
        # Multiple choice: the true caption among 4 negatives, each one concept away from it.
        with open(tmp / "MSR_MC_test.csv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["key", "vid_key", "video_id", "a1", "a2", "a3", "a4", "a5", "answer"])
            for i, ((vid, sent), steps) in enumerate(zip(test_rows, test_steps)):
                subject = sent[: sent.index(" is going to ")]
                others: list[str] = []
                while len(others) < 4:
                    neg = f"{subject} is going to {compose(one_concept_off(steps, rng))}"
                    if neg != sent and neg not in others:
                        others.append(neg)
                answer = int(rng.integers(5))
                cands = others[:answer] + [sent] + others[answer:]
                w.writerow([f"mc{i}", vid.replace("video", "msr"), vid, *cands, answer])

    return write_atomically(Path(out), fill)
