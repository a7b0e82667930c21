"""The pre-training loader as it was before the prepared corpus (vlmbench 0a278ef), kept verbatim as a reference:
bench/bench_data.py measures it beside the new one, and tests/test_loader.py checks the new one gives its batches.

It holds every caption as Python objects, reads every video's feature header at start-up and tokenises lazily
per video; one clip at a time, in the training process.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from vlmbench.data.features import FeatureStore
from vlmbench.data.howto100m import find, load_captions, usable
from vlmbench.model import text as T
from vlmbench.train.sampler import Batch


class OldClipSampler:
    def __init__(
        self,
        captions,
        store,
        tokenizer,
        *,
        min_text_len=8,
        max_text_len=64,
        clips_per_video=32,
        batch_size=256,
        seed=0,
        rank=0,
        world_size=1,
    ):
        usable_ = sorted(v for v in captions if v in store and len(captions[v]))
        for vid in usable_:
            store.n_seconds(vid)  # header check up front
        self.videos = usable_[rank::world_size]
        self.captions, self.store, self.tok = captions, store, tokenizer
        self.min_len, self.max_len = min_text_len, max_text_len
        self.clips_per_video = min(clips_per_video, batch_size)
        self.videos_per_batch = max(1, batch_size // self.clips_per_video)
        self.seed, self.rank = seed, rank
        self._tokens = {}

    def steps_per_epoch(self):
        return math.ceil(len(self.videos) / self.videos_per_batch)

    def tokens(self, vid):
        if vid not in self._tokens:
            self._tokens[vid] = T.tokenize(self.tok, self.captions[vid].text, max_tokens=self.max_len)
        return self._tokens[vid]

    def video_at(self, index):
        n = len(self.videos)
        epoch, pos = divmod(index, n)
        perm = np.random.default_rng([self.seed, 17, self.rank, epoch]).permutation(n)
        return self.videos[perm[pos]]

    def clip(self, vid, rng):
        cap, toks = self.captions[vid], self.tokens(vid)
        n = len(toks)
        centre = int(rng.integers(n))
        target = int(rng.integers(self.min_len, self.max_len + 1))
        left = right = centre
        length = len(toks[centre])
        while length < target and cap.end[right] - cap.start[left] < 256.0 and (left > 0 or right < n - 1):
            if (rng.random() < 0.5 and left > 0) or right == n - 1:
                left -= 1
                length += len(toks[left])
            else:
                right += 1
                length += len(toks[right])
        text = [t for i in range(left, right + 1) for t in toks[i]][:61]
        start = max(0, math.floor(cap.start[left]))
        end = min(math.ceil(cap.end[right]), start + 32, self.store.n_seconds(vid))
        return self.store.load(vid, start, max(start, end)), text

    def batch(self, step):
        rng = np.random.default_rng([self.seed, step, self.rank])
        feats, texts = [], []
        for j in range(self.videos_per_batch):
            vid = self.video_at(step * self.videos_per_batch + j)
            for _ in range(self.clips_per_video):
                f, t = self.clip(vid, rng)
                feats.append(f), texts.append(t)
        b = len(feats)
        video = torch.zeros(b, 32, 512)
        vmask = torch.zeros(b, 32, dtype=torch.bool)
        for i, f in enumerate(feats):
            f = f[:32]
            video[i, : len(f)] = torch.from_numpy(np.asarray(f, dtype=np.float32))
            vmask[i, : len(f)] = True
        ids, mask = T.pack(texts)
        return Batch(video, vmask, ids, mask)


def old_loader(data: str | Path, tokenizer, **kw) -> OldClipSampler:
    """What `pretrain` did at start-up: every caption loaded, the usable ones kept, every header read."""
    cap_path, feat_path = find(Path(data))
    store = FeatureStore(feat_path)
    return OldClipSampler(usable(load_captions(cap_path), store).captions, store, tokenizer, **kw)
