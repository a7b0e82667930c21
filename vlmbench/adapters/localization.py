"""CrossTask step localization (family `localization`): per-second scores = isolated video-frame states ·
pooled step-text states, averaged over 32-s windows (stride 16), log-softmax over the task's steps, then the
order-constrained one-frame-per-step DP; recall per primary task, mean over tasks.

crosstask-zeroshot uses the pre-trained checkpoint as is (cfg.zeroshot: the runner skips fine-tuning);
crosstask-supervised first fine-tunes with BCE-with-logits against the 0/1 targets, one video per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import crosstask as ct
from ..errors import InputError
from ..io import write_csv
from ..metrics import localization as loc
from ..models.interface import FRAMES, TEXT, VideoTextModel
from ..records.formats import pack_matrices, unpack_matrices
from . import windows
from .base import Adapter
from .overlap import refuse_overlap
from .protocol import batch_counts, protocol_conventions

CLASS_ACCURACY = "class_accuracy.csv"


class LocalizationAdapter(Adapter):
    family = "localization"
    needs = frozenset({FRAMES, TEXT})

    def load(self) -> None:
        release = self.paths["release"]
        primary = ct.load_tasks(release / ct.PRIMARY)
        self.tasks = {**ct.load_tasks(release / ct.RELATED), **primary}
        self.primary = list(primary)
        store = self._store = self.store()
        # Missing features: an error unless --allow-missing, counted either way. Checked over the videos the
        # split can use (annotated, of a known task, not in videos_val.csv); build_split then drops the rest,
        # as MMPT does before drawing the split.
        val = set(ct.load_videos(release / ct.VIDEOS_VAL))
        usable = [
            tv
            for tv in ct.load_videos(release / ct.VIDEOS)
            if tv.task in self.tasks and tv not in val and ct.annotation_path(release, *tv).is_file()
        ]
        if not usable:
            raise InputError("no annotated video of a known task outside videos_val.csv", path=release)
        self.keep_with_features(list(dict.fromkeys(v for _, v in usable)), store, "annotated videos")
        n_train = int(self.spec.options.get("n_train", 30))
        seed = int(self.spec.options.get("split_seed", 0))
        train, test = ct.build_split(release, store.__contains__, n_train=n_train, seed=seed)
        if not test:
            raise InputError(
                f"the split leaves no test video (a primary task needs more than n_train={n_train} "
                "annotated videos with features)",
                path=release,
            )
        self.train = self.cap(train, self.cfg.max_train, "train", lambda tv: tv.vid) if not self.cfg.zeroshot else []
        self.test = self.cap(test, self.cfg.max_test, "test", lambda tv: tv.vid)
        refuse_overlap(
            self.uncapped.get("train", set()),
            self.uncapped["test"],
            f"{release / ct.VIDEOS} (train split)",
            f"{release / ct.VIDEOS} (test split)",
        )
        self._targets: dict[ct.TaskVideo, np.ndarray] = {}
        for tv in self.train + self.test:
            n = store.n_seconds(tv.vid)
            if n < 1:
                raise InputError(f"video {tv.vid} has no feature rows", path=store.path(tv.vid))
            k = len(self.tasks[tv.task].steps)
            spans = ct.read_annotation(ct.annotation_path(release, *tv), n_steps=k)
            self._targets[tv] = loc.crosstask_targets(n, k, [tuple(s) for s in spans])
        self.loaded.counts.update(
            train_videos=len(self.train),
            test_videos=len(self.test),
            test_tasks=len({t for t, _ in self.test}),
            test_frames=sum(len(self._targets[tv]) for tv in self.test),
            train_windows=windows.total(
                (len(self._targets[tv]) for tv in self.train), self.cfg.window, self.cfg.train_stride
            ),
            **batch_counts(self.family, self.cfg.batch_size, self.cfg.virtual_ranks),
        )
        self.loaded.annotation_files = [
            release / ct.PRIMARY,
            release / ct.RELATED,
            release / ct.VIDEOS,
            release / ct.VIDEOS_VAL,
            *sorted(ct.annotation_path(release, *tv) for tv in self.train + self.test),
        ]
        self.loaded.feature_ids = [tv.vid for tv in self.train + self.test]

    def targets(self, tv: ct.TaskVideo) -> np.ndarray:
        return self._targets[tv]

    # -- model ---------------------------------------------------------------------------------------------
    def build(self, model: VideoTextModel) -> nn.Module:
        """The model alone (for VLM the reference's MMBertForJoint: videomlp + bert)."""
        return model

    def steps_per_epoch(self) -> int | None:
        return len(self.train)

    def train_batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        """One video per batch: (task, features, 0/1 targets (T, K))."""
        for i in rng.permutation(len(self.train)):
            tv = self.train[i]
            yield tv.task, self._store.load(tv.vid), self._targets[tv]

    def test_loss_batches(self) -> Iterator[Any]:
        """The training loss's batches over the TEST videos (select=best-of-epochs: the reference's
        checkpoint_best.pt is picked on test_vids)."""
        for tv in self.test:
            yield tv.task, self._store.load(tv.vid), self._targets[tv]

    def window_logits(self, model: VideoTextModel, task: str, win: windows.Windows, chunk: int = 0) -> torch.Tensor:
        """(W, 32, K): per-second states · pooled step texts (the task's steps encoded as one batch). For VLM each
        step text runs alone through the text half (the reference pairs it with one zero video token, which the
        isolated mask hides from the text)."""
        steps = model.encode_text(list(self.tasks[task].steps))  # (K, H)
        return windows.frame_states(model, win, chunk) @ steps.T

    def loss(self, module: nn.Module, batch: Any) -> torch.Tensor:
        """BCE-with-logits on every valid frame of every window (windows at the training stride, 16 in the
        paper recipe as at test, overlap, so seconds repeat, as in the reference's training)."""
        task, feats, y = batch
        win = windows.make_windows(feats, self.cfg.window, self.cfg.train_stride).to(self.device)
        logits = self.window_logits(module, task, win)
        target = torch.from_numpy(windows.window_targets(y, win, 0)).to(self.device)
        valid = win.vmask
        return nn.functional.binary_cross_entropy_with_logits(logits[valid].float(), target[valid].float())

    def video_logits(self, module: nn.Module, task: str, feats: np.ndarray) -> np.ndarray:
        """(T, K) scores averaged over the test windows covering each second."""
        win = windows.make_windows(feats, self.cfg.window, self.cfg.stride).to(self.device)
        windows.count(self.loaded.counts, "test_windows", win)
        return windows.average(self.window_logits(module, task, win, chunk=self.cfg.eval_batch_size), win)

    def predict(self, module: nn.Module, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        y_true, y_pred = [], []
        for i, tv in enumerate(self.test):
            logits = torch.from_numpy(self.video_logits(module, tv.task, self._store.load(tv.vid)))
            logprob = torch.log_softmax(logits, dim=1).numpy()  # over the task's steps, per frame
            y_pred.append(loc.dp_one_frame_per_step(logprob))
            y_true.append(self._targets[tv])
            if progress:
                progress(i + 1, len(self.test))
        return pack_matrices([tv.task for tv in self.test], [tv.vid for tv in self.test], y_true, y_pred, self.primary)

    # -- scoring -------------------------------------------------------------------------------------------
    @classmethod
    def score(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
        tasks, _, y_true, y_pred, primary = unpack_matrices(preds)
        per_video = list(zip(tasks, y_true, y_pred))
        res = loc.crosstask_recall(per_video, primary_tasks=primary)
        floor = random_recall(per_video, primary)
        metrics = {"recall": res["recall"]}
        # Per-task recall as metrics `recall/<task>` (primary tasks, file order): numbers that compare/report
        # can read, unlike free text in conventions.
        metrics.update({f"recall/{t}": res["per_task"][t] for t in primary if t in res["per_task"]})
        conventions = {
            **loc.CONVENTIONS,
            "scores": "per-second logits = last-layer isolated video-frame states · mean-pooled step-text states "
            "(dot product, no normalisation), averaged over 32-s windows at the test stride, then "
            "log-softmax over the task's steps",
            **protocol_conventions(cls.family, cfg),
            "windows": f"sliding windows of {cfg.get('window', 32)} s, stride {cfg.get('train_stride', 16)} in "
            f"training and {cfg.get('stride', 16)} at test; the last window starts at the first stride "
            f"position with <= {cfg.get('window', 32)} s left and ends at the video end",
            "per_task": "per-task recall of the primary tasks is reported as metrics recall/<task id>",
            "random_floor": f"{floor:.2f} (expected recall of a uniformly random strictly increasing "
            "one-frame-per-step assignment on these test videos, mean over the same tasks)",
        }
        return metrics, conventions

    @classmethod
    def example_values(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per test video: its task, the annotated steps the DP hit, and the annotated steps (recall pools them
        per task)."""
        tasks, _, y_true, y_pred, _ = unpack_matrices(dict(preds))
        return {
            "task": np.array(tasks, dtype=str),
            "hits": np.array([int((t.astype(np.int64) * p).sum()) for t, p in zip(y_true, y_pred)]),
            "steps": np.array([int((t.sum(axis=0) > 0).sum()) for t in y_true]),
        }

    def extra_outputs(self, preds: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """class_accuracy.csv: per (task, step), the annotated videos and the step's recall."""
        write_csv(Path(out_dir) / CLASS_ACCURACY, *localization_steps(preds))
        return {}

    @classmethod
    def examples(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]):
        """Per test video, one entry per step in the task's order: `target` its annotated seconds, `prediction`
        the DP's frame (None: no frame, when T < K), `hit`; `hits` / `annotated_steps` are what recall pools."""
        tasks, ids, y_true, y_pred, primary = unpack_matrices(preds)
        for task, vid, yt, yp in zip(tasks, ids, y_true, y_pred):
            target = [np.flatnonzero(yt[:, k]).tolist() for k in range(yt.shape[1])]
            chosen = [np.flatnonzero(yp[:, k]) for k in range(yp.shape[1])]
            frame = [int(c[0]) if len(c) else None for c in chosen]
            hit = [f is not None and bool(yt[f, k]) for k, f in enumerate(frame)]
            yield {
                "id": vid,
                "task": task,
                "primary": task in primary,
                "frames": int(yt.shape[0]),
                "target": target,
                "prediction": frame,
                "hit": hit,
                "hits": sum(hit),
                "annotated_steps": sum(bool(t) for t in target),
            }


def random_recall(per_video: list[tuple[str, np.ndarray, np.ndarray]], primary: list[str]) -> float:
    """Expected recall (percent) when each video's K frames are a uniformly random K-subset of its T frames,
    assigned to the steps in order (T < K: the DP's fixed diagonal). Pooled per task, mean over the tasks the
    real recall averages."""
    match: dict[str, float] = {}
    total: dict[str, float] = {}
    for task, y_true, _ in per_video:
        n, k = y_true.shape
        hits = 0.0
        if k and n >= k:
            # P(k-th smallest of a random K-subset of 0..T-1 is t) = C(t, k-1) C(T-1-t, K-k) / C(T, K)
            t = np.arange(n)[:, None]
            j = np.arange(k)[None, :]
            logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
            logp = _log_comb(logfact, t, j) + _log_comb(logfact, n - 1 - t, k - 1 - j) - _log_comb(logfact, n, k)
            hits = float((np.exp(logp) * y_true).sum())
        elif k:
            hits = float(np.diagonal(y_true[:n, :n]).sum())
        match[task] = match.get(task, 0.0) + hits
        total[task] = total.get(task, 0.0) + float((y_true.sum(axis=0) > 0).sum())
    scored = [100.0 * match[t] / total[t] for t in primary if total.get(t)]
    return float(np.mean(scored)) if scored else math.nan


def _log_comb(logfact: np.ndarray, n, r) -> np.ndarray:
    """log C(n, r) from a table of log factorials; -inf where r < 0 or r > n."""
    n, r = np.broadcast_arrays(np.asarray(n), np.asarray(r))
    ok = (r >= 0) & (r <= n)
    n0, r0 = np.where(ok, n, 0), np.where(ok, r, 0)
    return np.where(ok, logfact[n0] - logfact[r0] - logfact[n0 - r0], -np.inf)


def localization_steps(preds: Mapping[str, np.ndarray]) -> tuple[list[str], list[list]]:
    """(header, rows) of class_accuracy.csv for CrossTask: per (task, step) annotated videos and recall."""
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
