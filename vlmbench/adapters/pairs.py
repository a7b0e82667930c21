"""Shared machinery of the two-tower families (retrieval, MC-QA): video clips and texts, batched and encoded
through the model interface (encode_video's pooled vector, encode_text).

Evaluation encodes every distinct video clip ONCE and every distinct text ONCE and scores a pair by the dot
product of the two pooled vectors, as the reference's MMFusionJoint does at eval time (for VLM the isolated halves:
identical to the isolated full forward, tests/test_adapter_retrieval.py). Training uses the same encodings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import msrvtt
from ..data.features import FeatureStore
from ..errors import InputError
from ..io import read_json
from ..model.layout import MAX_VIDEO_LEN
from ..model.losses import contrastive_loss
from ..models.interface import TEXT, VIDEO, VideoTextModel
from .base import Adapter

Progress = Callable[[int, int], None] | None


@dataclass(frozen=True, slots=True)
class VideoClip:
    """Feature rows [start:end] of one video (None = from the start / to the end), cut to the first 32 s."""

    vid: str
    start: int | None = None
    end: int | None = None

    def load(self, store: FeatureStore) -> np.ndarray:
        start = self.start or 0
        end = start + MAX_VIDEO_LEN if self.end is None else min(self.end, start + MAX_VIDEO_LEN)
        return store.load(self.vid, start, end)  # only the first 32 rows of the clip are read


@dataclass(frozen=True, slots=True)
class TrainItem:
    """One training example: a clip and its caption(s); each access draws one caption (MSR-VTT has ~20)."""

    clip: VideoClip
    captions: tuple[str, ...]


def batch_videos(feats: Sequence[np.ndarray], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(video (B, 32, 512) float32 zero-padded, vmask (B, 32) bool) from per-clip (seconds, 512) arrays."""
    dim = feats[0].shape[1] if feats else 512
    video = torch.zeros(len(feats), MAX_VIDEO_LEN, dim)
    vmask = torch.zeros(len(feats), MAX_VIDEO_LEN, dtype=torch.bool)
    for i, f in enumerate(feats):
        n = min(len(f), MAX_VIDEO_LEN)
        video[i, :n] = torch.from_numpy(np.asarray(f[:n], dtype=np.float32))
        vmask[i, :n] = True
    return video.to(device), vmask.to(device)


def unique(keys: Sequence) -> tuple[list, np.ndarray]:
    """Distinct keys in first-seen order, and for every input its index among them."""
    index: dict = {}
    where = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    return list(index), where


def encode_clips(
    model: VideoTextModel,
    clips: Sequence[VideoClip],
    store: FeatureStore,
    batch_size: int,
    device: torch.device,
    progress: Progress = None,
    done: int = 0,
    total: int = 0,
) -> torch.Tensor:
    """(len(clips), H) float32 on the CPU; callers pass distinct clips (see unique())."""
    out = []
    for s in range(0, len(clips), batch_size):
        chunk = clips[s : s + batch_size]
        video, vmask = batch_videos([c.load(store) for c in chunk], device)
        out.append(model.encode_video(video, vmask).pooled.float().cpu())
        if progress:
            progress(done + s + len(chunk), total or len(clips))
    return torch.cat(out) if out else torch.zeros(0, model.hidden_size)


def encode_texts(
    model: VideoTextModel,
    texts: Sequence[str],
    batch_size: int,
    device: torch.device,
    progress: Progress = None,
    done: int = 0,
    total: int = 0,
) -> torch.Tensor:
    """(len(texts), H) float32 on the CPU; callers pass distinct texts (see unique())."""
    out = []
    for s in range(0, len(texts), batch_size):
        chunk = list(texts[s : s + batch_size])
        out.append(model.encode_text(chunk).float().cpu())
        if progress:
            progress(done + s + len(chunk), total or len(texts))
    return torch.cat(out) if out else torch.zeros(0, model.hidden_size)


class ContrastiveAdapter(Adapter):
    """Fine-tuning shared by retrieval and MC-QA: in-batch contrastive loss on pooled isolated halves.

    Subclasses fill self.train_items in load(); `direction` is "t2v" (softmax over the batch's videos per text,
    the reference's T2VContraLoss) or "v2t" (softmax over texts per video, V2TContraLoss).
    """

    default_direction = "t2v"
    needs = frozenset({VIDEO, TEXT})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_items: list[TrainItem] = []
        self.train_list: object = ""  # the training list file (named by the leakage check)
        self._store: FeatureStore | None = None
        self.direction = str(self.spec.options.get("loss", self.default_direction))
        if self.direction not in ("t2v", "v2t"):
            raise InputError(f"options.loss must be t2v or v2t, got {self.direction!r}", path=self.spec.source)
        # cfg.dup: the reference replicates the MSR-VTT training list 20 times per "epoch" (a caption is drawn
        # per access; the MSR-VTT paper recipes set dup: 20); 1 makes an epoch one pass over the videos.
        self.dup = int(self.cfg.dup)

    @property
    def feature_store(self) -> FeatureStore:
        if self._store is None:
            self._store = self.store()
        return self._store

    # -- training ------------------------------------------------------------------------------------------
    def _order(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(np.tile(np.arange(len(self.train_items)), self.dup))

    def steps_per_epoch(self) -> int:
        n = len(self.train_items) * self.dup
        steps = math.ceil(n / self.cfg.batch_size)
        return steps - 1 if n % self.cfg.batch_size == 1 else steps  # a lone last item has no negatives

    def train_batches(self, epoch: int, rng: np.random.Generator) -> Iterator[dict]:
        """Shuffled batches of cfg.batch_size; a single-item remainder is dropped (its loss would be 0).
        As in the reference, the same video may appear twice in a batch when dup > 1 (false negatives)."""
        order = self._order(rng)
        bs = self.cfg.batch_size
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            if len(idx) < 2:
                continue
            items = [self.train_items[i] for i in idx]
            texts = [it.captions[int(rng.integers(len(it.captions)))] for it in items]
            video, vmask = batch_videos([it.clip.load(self.feature_store) for it in items])
            yield {"video": video, "vmask": vmask, "texts": texts}

    def loss(self, module: VideoTextModel, batch: dict) -> torch.Tensor:
        vmask = batch["vmask"].to(self.device)
        v = module.encode_video(batch["video"].to(self.device), vmask).pooled
        t = module.encode_text(batch["texts"])
        return contrastive_loss(t.float(), v.float(), self.direction)


OFFICIAL_TRAIN_SPLITS = ("train", "validate")  # MSRVTT_data.json: 6,513 + 497 = the 7k-style training list


def load_msrvtt_train(adapter: ContrastiveAdapter) -> list[TrainItem]:
    """MSR-VTT training videos with all their captions (MMPT's MSRVTTMetaProcessor), restricted to videos
    with features, capped by max_train.

    files.train_csv (retrieval): the 9k list; with files.full_test_csv the full-test videos outside the
    JSFusion test are appended as MMPT does (MSRVTT_train.9k.csv already holds them).
    Without train_csv (MC-QA): the official train + validate videos of MSRVTT_data.json (the 7k-style list,
    MMPT's MSRVTT_train.csv): the MC questions are on full-test videos, which the 9k list partly contains."""
    p = adapter.paths
    if "train_csv" in p:
        extra = {}
        if "full_test_csv" in p:
            extra = dict(jsfusion_test_csv=p["test_csv"], full_test_csv=p["full_test_csv"])
            adapter.loaded.annotation_files += [p["full_test_csv"]]
        ids, captions = msrvtt.load_train(p["train_csv"], p["data_json"], **extra)
        adapter.loaded.annotation_files += [p["train_csv"], p["data_json"]]
        adapter.train_list = p["train_csv"]
    else:
        ids, captions = official_train(p["data_json"])
        adapter.loaded.annotation_files += [p["data_json"]]
        adapter.train_list = f"{p['data_json']} (split {'+'.join(OFFICIAL_TRAIN_SPLITS)})"
    kept = adapter.keep_with_features(ids, adapter.feature_store, "train videos")
    ids = adapter.cap([v for v in ids if v in kept], adapter.cfg.max_train, "train")
    adapter.loaded.counts["train_videos"] = len(ids)
    adapter.loaded.counts["train_captions"] = sum(len(captions[v]) for v in ids)
    adapter.loaded.counts["train_examples"] = len(ids) * adapter.dup
    return [TrainItem(VideoClip(v), tuple(captions[v])) for v in ids]


def official_train(data_json) -> tuple[list[str], dict[str, list[str]]]:
    """Videos of MSRVTT_data.json whose `split` is train or validate (file order) and their captions."""
    data = read_json(data_json)
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, list) or not all(
        isinstance(v, dict) and "video_id" in v and "split" in v for v in videos
    ):
        raise InputError("expected 'videos': [{video_id, split}, ...] (the official MSRVTT_data.json)", path=data_json)
    ids = list(dict.fromkeys(str(v["video_id"]) for v in videos if v["split"] in OFFICIAL_TRAIN_SPLITS))
    if not ids:
        raise InputError(f"no video with split {' or '.join(OFFICIAL_TRAIN_SPLITS)}", path=data_json)
    captions = msrvtt._read_sentences(Path(data_json))  # the reader the 9k path uses
    lacking = [v for v in ids if v not in captions]
    if lacking:
        raise InputError(
            f"{len(lacking)} training videos have no caption (first: {', '.join(lacking[:3])})", path=data_json
        )
    return ids, {v: captions[v] for v in ids}
