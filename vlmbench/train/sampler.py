"""The reference's pre-training clip sampler (MFMMLMAligner), made a pure function of (seed, step, rank).

Per video, `clips_per_video` clips; each picks a random centre ASR line and a target length drawn in
[min_text_len, max_text_len] tokens, then grows left/right (p=0.5 each way) until the text reaches that
length or spans 256 s. The video span is floor(first start)..ceil(last end), cut to the first 32 s.
Because every batch is drawn from rng([seed, step, rank]), a resumed run sees exactly the batches an
uninterrupted run would, with no sampler state to checkpoint, and a batch can be built in any process
(the DataLoader workers of `train.loader`).

The sampler reads a prepared corpus (`data.prepared`): caption spans, token counts and feature lengths come
from memory-mapped arrays, so start-up reads no feature header and a rank's memory does not grow with the
corpus. Features are read per video, once per batch, from the rows its clips need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import torch

from ..data import prepared as P
from ..data.features import FeatureStore
from ..errors import InputError
from ..model import text as T
from ..model.layout import MAX_TEXT_TOKENS, MAX_VIDEO_LEN

MAX_SPAN_S = 256.0


@dataclass
class Batch:
    video: torch.Tensor  # (B, 32, 512) float32, invalid seconds zero
    vmask: torch.Tensor  # (B, 32) bool
    text_ids: torch.Tensor  # (B, 62)
    text_mask: torch.Tensor  # (B, 62)

    def pin_memory(self) -> Batch:  # called by the DataLoader's pin-memory thread
        return Batch(*(t.pin_memory() for t in (self.video, self.vmask, self.text_ids, self.text_mask)))

    def __len__(self) -> int:
        return len(self.video)


@dataclass
class _Video:
    """One video's captions as Python lists (the growth loop reads them element by element)."""

    position: int
    starts: list[float]
    ends: list[float]
    lens: list[int]
    cum: list[int]  # cum[i] = tokens before caption i
    token_base: int
    seconds: int


class ClipSampler:
    """Clips of a prepared corpus (or, for the old call `ClipSampler(captions, store, tokenizer)`, of a caption
    dict prepared in memory with the same rules)."""

    def __init__(
        self,
        corpus: P.Prepared | dict,
        store: FeatureStore,
        tokenizer=None,
        *,
        min_text_len: int = 8,
        max_text_len: int = 64,
        clips_per_video: int = 32,
        batch_size: int = 256,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        positions: np.ndarray | None = None,
    ):
        """positions: the corpus positions this sampler may draw (default: every video); e.g. pre-training's
        training videos without its held-out validation slice, or that slice alone."""
        if min_text_len > max_text_len:
            raise InputError(f"min_text_len={min_text_len} > max_text_len={max_text_len}", path="config")
        if isinstance(corpus, dict):
            if tokenizer is None:
                raise TypeError("a caption dict needs its tokenizer")
            corpus = P.build(corpus, store, tokenizer)
        self.corpus, self.store = corpus, store
        n = len(corpus)
        self.n_skipped = int(corpus.counts.get("videos_in", n)) - n
        pool = np.arange(n) if positions is None else np.asarray(positions, dtype=np.int64)
        self.pool = pool  # every rank's videos
        self.index = pool[rank::world_size]  # disjoint shard per rank
        if not len(self.index):
            raise InputError(f"rank {rank} of {world_size} gets no videos ({n} usable)", path=store.folder)
        self.min_len, self.max_len = min_text_len, max_text_len
        self.clips_per_video = min(clips_per_video, batch_size)
        self.videos_per_batch = max(1, batch_size // self.clips_per_video)
        self.seed, self.rank = seed, rank
        self._perm: tuple[int, np.ndarray] | None = None
        a = corpus.arrays
        self._cap_off, self._tok_off, self._seconds = a["video_captions"], a["video_tokens"], a["video_seconds"]
        self._start, self._end, self._ntok, self._tokens = (
            a["caption_start"],
            a["caption_end"],
            a["caption_ntokens"],
            a["tokens"],
        )

    # -- which videos -------------------------------------------------------------------------------------------
    @property
    def n_videos(self) -> int:
        return len(self.index)

    @property
    def videos(self) -> list[str]:
        """This rank's video ids (built on request: a list of Python strings is what the corpus avoids)."""
        return [self.corpus.video_id(int(i)) for i in self.index]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.index) / self.videos_per_batch)

    def video_at(self, index: int) -> int:
        """Corpus position of the index-th video of an endless stream of per-epoch permutations."""
        n = len(self.index)
        epoch, pos = divmod(index, n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, 17, self.rank, epoch]).permutation(n))
        return int(self.index[self._perm[1][pos]])

    def _position(self, vid: str) -> int:
        ids = self.corpus.arrays["video_ids"]
        i = int(np.searchsorted(ids, vid.encode()))
        if i >= len(ids) or bytes(ids[i]).decode() != vid:
            raise KeyError(vid)
        return i

    # -- clips ---------------------------------------------------------------------------------------------------
    def _video(self, v: int) -> _Video:
        c0, c1 = int(self._cap_off[v]), int(self._cap_off[v + 1])
        lens = self._ntok[c0:c1].tolist()
        return _Video(
            v,
            self._start[c0:c1].tolist(),
            self._end[c0:c1].tolist(),
            lens,
            [0, *accumulate(lens)],
            int(self._tok_off[v]),
            int(self._seconds[v]),
        )

    def _span(self, vid: _Video, rng: np.random.Generator) -> tuple[int, int, list[int]]:
        """(first row, end row, token ids) of one clip; the same draws, in the same order, as the reference."""
        lens, n = vid.lens, len(vid.lens)
        centre = int(rng.integers(n))
        target = int(rng.integers(self.min_len, self.max_len + 1))
        left = right = centre
        length = lens[centre]
        while length < target and vid.ends[right] - vid.starts[left] < MAX_SPAN_S and (left > 0 or right < n - 1):
            if (rng.random() < 0.5 and left > 0) or right == n - 1:
                left -= 1
                length += lens[left]
            else:
                right += 1
                length += lens[right]
        a = vid.token_base + vid.cum[left]
        b = min(vid.token_base + vid.cum[right + 1], a + MAX_TEXT_TOKENS)
        start = max(0, math.floor(vid.starts[left]))
        end = min(math.ceil(vid.ends[right]), start + MAX_VIDEO_LEN, vid.seconds)
        return start, max(start, end), self._tokens[a:b].tolist()

    def clip(self, vid: str | int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
        """One clip of a video (its id or corpus position): float32 features and token ids."""
        v = self._position(vid) if isinstance(vid, str) else int(vid)
        start, end, text = self._span(self._video(v), rng)
        return self.store.load(self.corpus.video_id(v), start, end), text

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, step, self.rank])
        feats, texts = [], []
        for j in range(self.videos_per_batch):
            video = self._video(self.video_at(step * self.videos_per_batch + j))
            spans = [self._span(video, rng) for _ in range(self.clips_per_video)]
            lo, hi = min(s for s, _, _ in spans), max(e for _, e, _ in spans)
            rows = self.store.load(self.corpus.video_id(video.position), lo, max(lo, hi))  # one read per video
            for s, e, text in spans:
                feats.append(rows[s - lo : e - lo])
                texts.append(text)
        return collate(feats, texts, self.store.dim)


def held_out(corpus: P.Prepared, fraction: float) -> np.ndarray:
    """Corpus positions of the validation slice: the `fraction` of videos (at least 1, never all) whose id has the
    smallest crc32, so the slice is the same whatever the corpus order and keeps its videos as the corpus grows."""
    import zlib

    n = len(corpus)
    if fraction <= 0 or n < 2:
        return np.zeros(0, np.int64)
    k = min(n - 1, max(1, round(fraction * n)))
    keys = np.array([zlib.crc32(corpus.video_id(i).encode()) for i in range(n)], dtype=np.int64)
    return np.sort(np.argsort(keys, kind="stable")[:k])


def collate(feats: list[np.ndarray], token_lists: list[list[int]], dim: int = 512) -> Batch:
    b = len(feats)
    if feats and feats[0].ndim == 2:
        dim = feats[0].shape[1]
    video = _zeros((b, MAX_VIDEO_LEN, dim))
    rows = video.numpy()
    lengths = np.zeros(b, np.int64)
    for i, f in enumerate(feats):
        f = f[:MAX_VIDEO_LEN]
        rows[i, : len(f)] = f
        lengths[i] = len(f)
    vmask = torch.from_numpy(np.arange(MAX_VIDEO_LEN)[None, :] < lengths[:, None])
    ids, mask = T.pack(token_lists)
    return Batch(video, vmask, ids, mask)


def _zeros(shape: tuple[int, ...]) -> torch.Tensor:
    """float32 zeros; in a DataLoader worker, made in shared memory at once (as torch's default_collate does),
    so handing the batch to the training process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.zeros(shape)
    storage = torch.empty(0)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0).new(storage).view(shape).zero_()
