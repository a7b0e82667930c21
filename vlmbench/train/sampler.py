"""The reference's pre-training clip sampler (MFMMLMAligner), made a pure function of (seed, step, rank).

Per video, `clips_per_video` clips; each picks a random centre ASR line and a target length drawn in
[min_text_len, max_text_len] tokens, then grows left/right (p=0.5 each way) until the text reaches that
length or spans 256 s. The video span is floor(first start)..ceil(last end), cut to the first 32 s.
Because every batch is drawn from rng([seed, step, rank]), a resumed run sees exactly the batches an
uninterrupted run would, with no sampler state to checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..data.features import FeatureStore
from ..data.howto100m import Captions
from ..errors import InputError
from ..model import text as T
from ..model.layout import MAX_TEXT_TOKENS, MAX_VIDEO_LEN

MAX_SPAN_S = 256.0


@dataclass
class Batch:
    video: torch.Tensor      # (B, 32, 512) float32, invalid seconds zero
    vmask: torch.Tensor      # (B, 32) bool
    text_ids: torch.Tensor   # (B, 62)
    text_mask: torch.Tensor  # (B, 62)


class ClipSampler:
    def __init__(self, captions: dict[str, Captions], store: FeatureStore, tokenizer, *, min_text_len: int = 8,
                 max_text_len: int = 64, clips_per_video: int = 32, batch_size: int = 256, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if min_text_len > max_text_len:
            raise InputError(f"min_text_len={min_text_len} > max_text_len={max_text_len}", path="config")
        usable = sorted(v for v in captions if v in store and len(captions[v]))
        self.n_skipped = len(captions) - len(usable)
        if not usable:
            raise InputError(f"none of the {len(captions)} captioned videos has a feature file", path=store.folder)
        for vid in usable:
            store.n_seconds(vid)        # header check (shape, width, dtype) up front, before any work is written
        self.videos = usable[rank::world_size]           # disjoint shard per rank
        if not self.videos:
            raise InputError(f"rank {rank} of {world_size} gets no videos ({len(usable)} usable)", path=store.folder)
        self.captions, self.store, self.tok = captions, store, tokenizer
        self.min_len, self.max_len = min_text_len, max_text_len
        self.clips_per_video = min(clips_per_video, batch_size)
        self.videos_per_batch = max(1, batch_size // self.clips_per_video)
        self.seed, self.rank = seed, rank
        self._tokens: dict[str, list[list[int]]] = {}

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.videos) / self.videos_per_batch)

    def tokens(self, vid: str) -> list[list[int]]:
        if vid not in self._tokens:
            self._tokens[vid] = T.tokenize(self.tok, self.captions[vid].text, max_tokens=self.max_len)
        return self._tokens[vid]

    def video_at(self, index: int) -> str:
        """The index-th video of an endless stream of per-epoch permutations."""
        n = len(self.videos)
        epoch, pos = divmod(index, n)
        perm = np.random.default_rng([self.seed, 17, self.rank, epoch]).permutation(n)
        return self.videos[perm[pos]]

    def clip(self, vid: str, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
        cap, toks = self.captions[vid], self.tokens(vid)
        n = len(toks)
        centre = int(rng.integers(n))
        target = int(rng.integers(self.min_len, self.max_len + 1))
        left = right = centre
        length = len(toks[centre])
        while length < target and cap.end[right] - cap.start[left] < MAX_SPAN_S and (left > 0 or right < n - 1):
            if (rng.random() < 0.5 and left > 0) or right == n - 1:
                left -= 1
                length += len(toks[left])
            else:
                right += 1
                length += len(toks[right])
        text = [t for i in range(left, right + 1) for t in toks[i]][:MAX_TEXT_TOKENS]
        start = max(0, math.floor(cap.start[left]))
        end = min(math.ceil(cap.end[right]), start + MAX_VIDEO_LEN, self.store.n_seconds(vid))
        feats = self.store.load(vid, start, max(start, end))
        return feats, text

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, step, self.rank])
        feats, texts = [], []
        for j in range(self.videos_per_batch):
            vid = self.video_at(step * self.videos_per_batch + j)
            for _ in range(self.clips_per_video):
                f, t = self.clip(vid, rng)
                feats.append(f), texts.append(t)
        return collate(feats, texts)


def collate(feats: list[np.ndarray], token_lists: list[list[int]]) -> Batch:
    b = len(feats)
    video = torch.zeros(b, MAX_VIDEO_LEN, feats[0].shape[1] if feats and feats[0].ndim == 2 else 512)
    vmask = torch.zeros(b, MAX_VIDEO_LEN, dtype=torch.bool)
    for i, f in enumerate(feats):
        f = f[:MAX_VIDEO_LEN]
        video[i, : len(f)] = torch.from_numpy(np.asarray(f, dtype=np.float32))
        vmask[i, : len(f)] = True
    ids, mask = T.pack(token_lists)
    return Batch(video, vmask, ids, mask)
