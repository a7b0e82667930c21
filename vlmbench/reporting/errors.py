"""Error analysis exports, one CSV per run folder (the paper's Tables 10 and 11, and per-class accuracy):

retrieval_errors.csv   every wrong top-1 text->video: query, the retrieved clip and its own caption, the true
                       clip's rank (Table 10's error kinds are read off these rows)
captions.csv           worst captions first, with references (written by the captioning adapter: Table 11)
class_accuracy.csv     COIN: per step class, frames, accuracy and the class it is most often mistaken for;
                       CrossTask: per (task, step), annotated videos and recall
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vlmbench.io import atomic_write

RETRIEVAL_ERRORS = "retrieval_errors.csv"
CLASS_ACCURACY = "class_accuracy.csv"


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    def write(p: Path) -> None:
        with open(p, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    return atomic_write(path, write)


def retrieval_errors(preds: Mapping[str, np.ndarray]) -> tuple[list[str], list[list]]:
    from vlmbench.adapters.retrieval import ranked_view

    view = ranked_view(preds)  # ranks and top-5 (or an old file's full matrix)
    ids = view["ids"]
    texts = [str(x) for x in preds["texts"]] if "texts" in preds else [""] * len(ids)
    true_rank = view["rank"]
    rows = []
    for i in np.flatnonzero(true_rank > 1):
        j = int(view["top"][i, 0])
        margin = view["top_scores"][i, 0] - view["true_score"][i]
        rows.append([ids[i], texts[i], ids[j], texts[j], int(true_rank[i]), f"{margin:.4f}"])
    rows.sort(key=lambda r: (-r[4], r[0]))
    return ["query_id", "query_text", "retrieved_id", "retrieved_caption", "true_rank", "score_margin"], rows


def segmentation_classes(preds: Mapping[str, np.ndarray]) -> tuple[list[str], list[list]]:
    pred, target = np.asarray(preds["pred"]), np.asarray(preds["target"])
    rows = []
    for c in np.unique(target):
        sel = target == c
        wrong = Counter(pred[sel & (pred != c)].tolist())
        confused, n_conf = wrong.most_common(1)[0] if wrong else ("", 0)
        rows.append(
            [
                int(c),
                "background" if c == 0 else "",
                int(sel.sum()),
                f"{100 * np.mean(pred[sel] == c):.2f}",
                confused,
                n_conf,
            ]
        )
    return ["class", "note", "frames", "accuracy", "most_confused_with", "frames_confused"], rows


def localization_steps(preds: Mapping[str, np.ndarray]) -> tuple[list[str], list[list]]:
    from vlmbench.adapters.localization import unpack_matrices

    tasks, _, y_true, y_pred, _ = unpack_matrices(dict(preds))
    hits: dict[tuple[str, int], list[int]] = {}
    for t, yt, yp in zip(tasks, y_true, y_pred):
        for k in range(yt.shape[1]):
            if yt[:, k].any():
                h = hits.setdefault((t, k + 1), [0, 0])
                h[0] += int((yt[:, k] * yp[:, k]).sum() > 0)
                h[1] += 1
    rows = [[t, k, n, f"{100 * h / n:.2f}"] for (t, k), (h, n) in sorted(hits.items())]
    return ["task", "step", "videos_annotated", "recall"], rows


def export(family: str, preds: Mapping[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Write the family's error CSV into the run folder; returns what was written."""
    out_dir = Path(out_dir)
    if family == "retrieval":
        return [_write(out_dir / RETRIEVAL_ERRORS, *retrieval_errors(preds))]
    if family == "segmentation":
        return [_write(out_dir / CLASS_ACCURACY, *segmentation_classes(preds))]
    if family == "localization":
        return [_write(out_dir / CLASS_ACCURACY, *localization_steps(preds))]
    return []
