"""COIN action segmentation (family `segmentation`): a per-second 779-way classifier on the isolated video
states, trained on 32-s windows (stride 8, one video's windows per batch), tested on windows at stride 16 with
logits averaged over overlaps; frame accuracy at 1 fps, background included (the paper's number)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import coin
from ..errors import InputError
from ..io import write_csv
from ..metrics import segmentation as seg
from ..models.interface import FRAMES, VideoTextModel
from ..records.formats import pack_videos, unpack_videos
from . import windows
from .base import Adapter
from .overlap import refuse_overlap
from .protocol import batch_counts, protocol_conventions

IGNORE = -100
CLASS_ACCURACY = "class_accuracy.csv"  # padded window slots


class SegmentationModel(nn.Module):
    """The model plus `classifier` = Linear(hidden, 779), named as MMBertForTokenClassification's head."""

    def __init__(self, model: VideoTextModel, num_classes: int):
        super().__init__()
        self.model = model
        self.classifier = nn.Linear(model.hidden_size, num_classes)
        # BertPreTrainedModel.init_weights in the reference: N(0, initializer_range), zero bias.
        nn.init.normal_(self.classifier.weight, std=model.init_std)
        nn.init.zeros_(self.classifier.bias)

    def window_logits(self, win: windows.Windows, chunk: int = 0) -> torch.Tensor:
        """(W, 32, C) logits of every window slot. The text half is irrelevant under the isolated mask
        (video rows never see text), so only the video half is run."""
        return self.classifier(windows.frame_states(self.model, win, chunk))


class SegmentationAdapter(Adapter):
    family = "segmentation"
    needs = frozenset({FRAMES})

    def load(self) -> None:
        path = self.paths["coin_json"]
        videos = coin.load_coin(path)
        store = self._store = self.store()
        self.num_classes = int(self.spec.options.get("num_classes", coin.NUM_CLASSES))
        if self.num_classes != coin.NUM_CLASSES:
            raise InputError(
                f"num_classes must be {coin.NUM_CLASSES} (778 COIN steps + background)", path=self.spec.source
            )
        train = coin.split(videos, "train")
        test = coin.split(videos, "test")
        if not test:
            raise InputError("no videos with subset 'testing'", path=path)
        keep_train = self.keep_with_features([v.vid for v in train], store, "train videos") if train else set()
        keep_test = self.keep_with_features([v.vid for v in test], store, "test videos")
        train, fit_train = coin.fit_to_features(
            [v for v in train if v.vid in keep_train], store, path, "train segments", self.allow_missing
        )
        test, fit_test = coin.fit_to_features(
            [v for v in test if v.vid in keep_test], store, path, "test segments", self.allow_missing
        )
        fit_train.record(self.loaded.counts, self.say)  # segments past the features: counted, said, never silent
        fit_test.record(self.loaded.counts, self.say)
        self.train = self.cap(train, self.cfg.max_train, "train", lambda v: v.vid)
        self.test = self.cap(test, self.cfg.max_test, "test", lambda v: v.vid)
        refuse_overlap(
            self.uncapped.get("train", set()),
            self.uncapped["test"],
            f"{path} (subset training)",
            f"{path} (subset testing)",
        )
        self._targets: dict[str, np.ndarray] = {}
        for v in self.train + self.test:
            n = store.n_seconds(v.vid)
            if n < 1:
                raise InputError(f"video {v.vid} has no feature rows", path=store.path(v.vid))
            self._targets[v.vid] = seg.frame_targets(n, [(s.step_id, s.start, s.end) for s in v.segments])
        self.loaded.counts.update(
            train_videos=len(self.train),
            test_videos=len(self.test),
            test_frames=sum(len(self._targets[v.vid]) for v in self.test),
            train_windows=windows.total(
                (len(self._targets[v.vid]) for v in self.train), self.cfg.window, self.cfg.train_stride
            ),
            **batch_counts(self.family, self.cfg.batch_size, self.cfg.virtual_ranks),
        )
        self.loaded.annotation_files = [path]
        self.loaded.feature_ids = [v.vid for v in self.train + self.test]

    def targets(self, vid: str) -> np.ndarray:
        return self._targets[vid]

    # -- model ---------------------------------------------------------------------------------------------
    def build(self, model: VideoTextModel) -> nn.Module:
        return SegmentationModel(model, self.num_classes)

    def steps_per_epoch(self) -> int | None:
        return len(self.train)

    def train_batches(self, epoch: int, rng: np.random.Generator) -> Iterator[Any]:
        """One video per batch: all its windows at the training stride, targets -100 in padded slots."""
        return self._batches([self.train[i].vid for i in rng.permutation(len(self.train))])

    def test_loss_batches(self) -> Iterator[Any]:
        """The training loss's batches over the TEST videos (select=best-of-epochs, as the reference's
        checkpoint_best.pt, whose validation subset is COIN's testing subset)."""
        return self._batches([v.vid for v in self.test])

    def _batches(self, vids: list[str]) -> Iterator[Any]:
        for vid in vids:
            win = windows.make_windows(self._store.load(vid), self.cfg.window, self.cfg.train_stride)
            target = windows.window_targets(self._targets[vid], win, IGNORE)
            yield win, torch.from_numpy(target)

    def loss(self, module: nn.Module, batch: Any) -> torch.Tensor:
        win, target = batch
        logits = module.window_logits(win.to(self.device))
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1).to(self.device), ignore_index=IGNORE
        )

    def video_logits(self, module: nn.Module, feats: np.ndarray) -> np.ndarray:
        """(T, 779) test logits: windows at the test stride, averaged over the windows covering each second."""
        win = windows.make_windows(feats, self.cfg.window, self.cfg.stride).to(self.device)
        windows.count(self.loaded.counts, "test_windows", win)
        return windows.average(module.window_logits(win, chunk=self.cfg.eval_batch_size), win)

    def predict(self, module: nn.Module, progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        preds, targets = [], []
        for i, v in enumerate(self.test):
            preds.append(self.video_logits(module, self._store.load(v.vid)).argmax(axis=1))
            targets.append(self._targets[v.vid])
            if progress:
                progress(i + 1, len(self.test))
        return pack_videos([v.vid for v in self.test], preds, targets)

    # -- scoring -------------------------------------------------------------------------------------------
    @classmethod
    def score(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
        ids, pred, target = unpack_videos(preds)
        acc = seg.frame_accuracy(pred, target)
        all_bg = seg.frame_accuracy([np.zeros_like(t) for t in target], target)["frame_acc"]
        conventions = {
            **seg.CONVENTIONS,
            "fps": "1 fps (S3D features), not COIN's 10 fps (MMPT convention)",
            "windows": f"sliding windows of {cfg.get('window', 32)} s, stride {cfg.get('train_stride', 8)} in "
            f"training and {cfg.get('stride', 16)} at test; the last window starts at the first stride "
            f"position with <= {cfg.get('window', 32)} s left and ends at the video end; all windows of "
            "one video form a batch",
            **protocol_conventions(cls.family, cfg),
            "text": "no text: under the isolated mask the (dummy) text cannot affect the video states",
            "all_background_floor": f"{all_bg:.2f} (frame_acc of predicting background for every frame of "
            f"these {len(ids)} test videos)",
        }
        return {"frame_acc": acc["frame_acc"], "frame_acc_nobg": acc["frame_acc_nobg"]}, conventions

    @classmethod
    def example_values(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per test video: frames and hits, with and without background (frame accuracy pools them)."""
        _, pred, target = unpack_videos(dict(preds))
        return {
            "frames": np.array([len(t) for t in target]),
            "hits": np.array([(p == t).sum() for p, t in zip(pred, target)]),
            "fg_frames": np.array([(t != 0).sum() for t in target]),
            "fg_hits": np.array([((p == t) & (t != 0)).sum() for p, t in zip(pred, target)]),
        }

    def extra_outputs(self, preds: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """class_accuracy.csv: per step class, frames, accuracy and the class it is most often mistaken for."""
        write_csv(Path(out_dir) / CLASS_ACCURACY, *segmentation_classes(preds))
        return {}

    @classmethod
    def examples(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]):
        """Per test video: frame accuracy (with and without background) and the per-second labels (0 = bg)."""
        from .base import json_number

        for vid, pred, target in zip(*unpack_videos(preds)):
            fg = target != 0
            yield {
                "id": vid,
                "frames": len(target),
                "frame_acc": json_number(100.0 * (pred == target).mean()),
                "frame_acc_nobg": json_number(100.0 * (pred[fg] == target[fg]).mean()) if fg.any() else None,
                "target": target.tolist(),
                "prediction": pred.tolist(),
            }


def segmentation_classes(preds: Mapping[str, np.ndarray]) -> tuple[list[str], list[list]]:
    """(header, rows) of class_accuracy.csv for COIN."""
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
