"""Does pre-training on the toy corpus depend on caption-clip alignment? The `align` pre-training preset against the
same corpus with every video's captions moved to the next video (issue 25).

Measured per seed: the pre-training's own loss (loss_last, as the CI gate reads it) and CrossTask zero-shot recall
from its checkpoint (no fine-tuning, so nothing downstream can recover what pre-training missed). The seeds of both
pairings are kept in results/reference/align/seeds.json (`make update-align`); tests/test_alignment.py pre-trains
seed 0 both ways and checks each side against them:

    python -m vlmbench.alignment --seeds 0 1 2 3 4 5 6 7 --shifted-seeds 0 1 2 --out results/reference/align/seeds.json
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .config import pretrain_config
from .data.toy import ensure_dataset, write_atomically
from .errors import InputError
from .io import read_json, write_json
from .records.result import provenance

PRESET = "align"
TASK = "crosstask-zeroshot"
TASK_PRESET = "ci"  # the ci test set (toy world v3: 50 test videos per task)
METRICS = ("loss_last", "recall")


def shifted_corpus(src: str | Path, out: str | Path) -> Path:
    """A copy of the HowTo100M folder `src` whose video i carries video i+1's captions (the last the first's), in
    sorted id order; features are linked, not copied. Captions past a video's end are skipped by the reader as
    usual."""
    src = Path(src)
    captions = read_json(src / "captions.json")
    if not isinstance(captions, dict) or len(captions) < 2:
        raise InputError("expected a captions.json of at least two videos", path=src / "captions.json")
    ids = sorted(captions)

    def fill(tmp: Path) -> None:
        write_json(tmp / "captions.json", {v: captions[ids[(i + 1) % len(ids)]] for i, v in enumerate(ids)})
        try:
            os.symlink((src / "features").resolve(), tmp / "features")
        except OSError:  # a filesystem without links
            shutil.copytree(src / "features", tmp / "features")

    return write_atomically(Path(out), fill)


def measure(seed: int, out: Path, data: Path | None = None, say: Callable[[str], None] = lambda s: None) -> dict:
    """Pre-train the `align` preset (seed) on `data` (default: the toy corpus) into out/pretrain, then CrossTask
    zero-shot from it into out/crosstask-zeroshot: {"loss_last": ..., "recall": ...}."""
    from .runner import run
    from .train.pretrain import pretrain

    out = Path(out)
    cfg = pretrain_config(PRESET, [f"seed={seed}"])
    pretrain(cfg, out / "pretrain", data=data, overwrite=True, progress=False, say=say)
    loss = read_json(out / "pretrain" / "result.json")["metrics"]["loss_last"]
    result, _ = run(
        TASK,
        checkpoint=out / "pretrain" / "model",
        out=out / TASK,
        preset=TASK_PRESET,
        overwrite=True,
        progress=False,
        say=say,
    )
    return {"loss_last": float(loss), "recall": float(result.metrics["recall"])}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="seeds of the aligned corpus")
    p.add_argument("--shifted-seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the shifted corpus")
    p.add_argument("--work", type=Path, default=Path("runs/align"), help="run folders")
    p.add_argument("--out", type=Path, default=Path("results/reference/align/seeds.json"))
    a = p.parse_args(argv)
    aligned = ensure_dataset("howto100m", seed=0, say=print)
    shifted = shifted_corpus(aligned, a.work / "howto100m-shifted")
    runs: dict[str, dict[str, dict]] = {"aligned": {}, "shifted": {}}
    for side, data, seeds in (("aligned", None, a.seeds), ("shifted", shifted, a.shifted_seeds)):
        for s in seeds:
            runs[side][str(s)] = measure(s, a.work / f"{side}-seed{s}", data=data)
            print(f"{side} seed {s}: {runs[side][str(s)]}", flush=True)
    write_json(
        a.out,
        {
            "about": "align pre-training preset, loss_last and CrossTask zero-shot recall (ci test set) per seed; "
            "shifted = every video's captions moved to the next video (vlmbench.alignment)",
            "preset": PRESET,
            "task": TASK,
            "task_preset": TASK_PRESET,
            "provenance": provenance(None),
            **runs,
        },
    )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
