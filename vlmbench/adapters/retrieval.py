"""Text-to-video retrieval (MSR-VTT 1k-A, YouCook2 3,350 clips): the reference's MMFusionJoint + T2VContraLoss.

Fine-tuning: in-batch contrastive loss on the pooled isolated halves (softmax over the batch's videos per text).
Evaluation: every test clip and every test text encoded once, a text x video matrix of raw dot products
(no normalisation, no temperature, no re-ranking; row i's truth is column i), ranked in row blocks
(metrics.retrieval_blocks: O(N x block) memory, the same metrics as metrics.retrieval on the full matrix); the
predictions keep ranks and top-5, never the matrix (old files holding `scores` still re-score).
spec.options: reader (msrvtt | youcook2), loss (t2v | v2t); the run config's `dup` replicates the training list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import msrvtt, youcook2
from ..errors import InputError
from ..metrics.retrieval import TIES, conventions, retrieval_metrics
from ..metrics.retrieval_blocks import RankCounts, metrics_from_counts, rank_counts
from .overlap import refuse_overlap
from .pairs import (
    ContrastiveAdapter,
    Progress,
    TrainItem,
    VideoClip,
    encode_clips,
    encode_texts,
    load_msrvtt_train,
    unique,
)
from .protocol import batch_counts, protocol_conventions

READERS = ("msrvtt", "youcook2")


class RetrievalAdapter(ContrastiveAdapter):
    family = "retrieval"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reader = self.spec.options.get("reader")
        if self.reader not in READERS:
            raise InputError(
                f"options.reader must be one of {', '.join(READERS)}, got {self.reader!r}", path=self.spec.source
            )
        self.test_ids: list[str] = []  # one per test pair: the clip id (column i of the matrix)
        self.test_clips: list[VideoClip] = []
        self.test_texts: list[str] = []

    # -- data ----------------------------------------------------------------------------------------------
    def load(self) -> None:
        if self.reader == "msrvtt":
            self.train_items = load_msrvtt_train(self)
            self._load_msrvtt_test()
        else:
            self.train_items = self._youcook2_train()
            self._load_youcook2_test()
        # Train and test come from different lists: a shared video is refused (exit 2), never silent.
        refuse_overlap(
            {it.clip.vid for it in self.train_items},
            {clip.vid for clip in self.test_clips},
            self.train_list,
            self.paths["test_csv"],
        )
        c = self.loaded.counts
        c["test_examples"] = len(self.test_ids)
        c["test_clips"] = len(set(self.test_clips))
        c["test_texts"] = len(set(self.test_texts))
        c.update(batch_counts(self.family, self.cfg.batch_size))
        used = {it.clip.vid for it in self.train_items} | {clip.vid for clip in self.test_clips}
        self.loaded.feature_ids = sorted(used)
        self.say(
            f"{self.spec.name}: {len(self.train_items)} training "
            f"{'videos' if self.reader == 'msrvtt' else 'clips'}, {len(self.test_ids)} test pairs"
        )

    def _load_msrvtt_test(self) -> None:
        path = self.paths["test_csv"]
        pairs = msrvtt.load_retrieval_test(path)
        self.loaded.annotation_files.append(path)
        kept = self.keep_with_features([v for v, _ in pairs], self.feature_store, "test videos")
        pairs = self.cap([(v, s) for v, s in pairs if v in kept], self.cfg.max_test)
        self.test_ids = [v for v, _ in pairs]
        self.test_clips = [VideoClip(v) for v, _ in pairs]
        self.test_texts = [s for _, s in pairs]

    def _youcook2_train(self) -> list[TrainItem]:
        """Every annotated segment of the train_list videos (features [start:end], first 32 s), one sentence."""
        ann_path, list_path = self.paths["annotations"], self.paths["train_list"]
        annotations = youcook2.load_annotations(ann_path)
        vids = youcook2.load_split_list(list_path)
        self.loaded.annotation_files += [ann_path, list_path]
        self.train_list = list_path
        kept = self.keep_with_features(vids, self.feature_store, "train videos")
        clips = youcook2.caption_clips(annotations, [v for v in vids if v in kept])
        clips, fit = youcook2.fit_to_features(clips, self.feature_store, ann_path, "train clips", self.allow_missing)
        fit.record(self.loaded.counts, self.say)  # segments past the features: counted, said, never silent
        clips = self.cap(clips, self.cfg.max_train)
        self.loaded.counts["train_videos"] = len({c.vid for c in clips})
        self.loaded.counts["train_examples"] = len(clips)
        return [TrainItem(VideoClip(c.vid, c.start, c.end), (c.text,)) for c in clips]

    def _load_youcook2_test(self) -> None:
        path = self.paths["test_csv"]
        clips = youcook2.load_retrieval_test(path)
        self.loaded.annotation_files.append(path)
        vids = list(dict.fromkeys(c.vid for c in clips))
        kept = self.keep_with_features(vids, self.feature_store, "test videos")
        clips, fit = youcook2.fit_to_features(
            [c for c in clips if c.vid in kept], self.feature_store, path, "test clips", self.allow_missing
        )
        fit.record(self.loaded.counts, self.say)  # spans past the features: counted, said, never silent
        clips = self.cap(clips, self.cfg.max_test)
        self.loaded.counts["test_videos"] = len({c.vid for c in clips})
        self.test_ids = [c.clip_id for c in clips]
        self.test_clips = [VideoClip(c.vid, c.start, c.end) for c in clips]
        self.test_texts = [c.text for c in clips]

    # -- evaluation ----------------------------------------------------------------------------------------
    def embed(self, module: nn.Module, progress: Progress = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, video) vectors, one row per test pair (row i of text matches row i of video), encoded in
        batches. A clip or text listed twice (the real YouCook2 file repeats one span with two sentences) is
        encoded once and its vector reused."""
        module.eval()
        clips, clip_of = unique(self.test_clips)
        texts, text_of = unique(self.test_texts)
        total = len(clips) + len(texts)
        bs = self.cfg.eval_batch_size
        with torch.no_grad():
            v = encode_clips(module, clips, self.feature_store, bs, self.device, progress, 0, total)
            t = encode_texts(module, texts, bs, self.device, progress, len(clips), total)
        return t[torch.from_numpy(text_of)], v[torch.from_numpy(clip_of)]

    def predict(self, module: nn.Module, progress: Progress = None) -> dict[str, np.ndarray]:
        """Scores text @ video.T ranked in row blocks; saved as ranks and top-5 (see pack), never the matrix."""
        return pack(rank_counts(*self.embed(module, progress)), self.test_ids, self.test_texts)

    @classmethod
    def score(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
        ties = str(cfg.get("ties", "pessimistic"))
        if ties not in TIES:
            raise InputError(f"ties must be one of {', '.join(TIES)}, got {ties!r}", path="ties")
        if "scores" in preds:  # a predictions file from before the blocked ranking: the matrix
            metrics = retrieval_metrics(preds["scores"], ties)
        else:
            missing = [k for k in COUNT_KEYS if k not in preds]
            if missing:
                raise InputError(
                    f"retrieval predictions hold neither `scores` nor the rank counts ({', '.join(missing)} missing)",
                    path="predictions",
                )
            metrics = metrics_from_counts({k: preds[k] for k in COUNT_KEYS}, ties)
        return metrics, {**conventions(ties), **protocol_conventions(cls.family, cfg)}

    @classmethod
    def examples(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]):
        """Per text query i (truth: clip i): its 1-based rank (ties pessimistic), true score, top-5 clip ids."""
        from .base import json_number

        view = ranked_view(preds)
        ids = view["ids"]
        for i, clip in enumerate(ids):
            top = view["top"][i]
            yield {
                "id": clip,
                "query": i,
                "target": clip,
                "prediction": ids[top[0]],
                "rank": int(view["rank"][i]),
                "score": json_number(view["true_score"][i]),
                "top5": [ids[j] for j in top[:5]],
            }


COUNT_KEYS = ("t2v_gt", "t2v_ge", "v2t_gt", "v2t_ge")


def pack(counts: RankCounts, ids, texts=None) -> dict[str, np.ndarray]:
    """The saved predictions: per query the counts both tie policies re-score from (4 x N), the top-5 clips and
    their scores and the true score (examples, retrieval_errors.csv), the pessimistic ranks as per-example values
    (intervals, paired compare). Never the N x N matrix."""
    out = {
        **counts.to_dict(),
        "ids": np.array(list(ids), dtype=str),
        "example:rank": counts.t2v_ge.copy(),
        "example:v2t_rank": counts.v2t_ge.copy(),
    }
    if texts is not None:
        out["texts"] = np.array(list(texts), dtype=str)  # for retrieval_errors.csv
    return out


def ranked_view(preds) -> dict:
    """ids, pessimistic rank, true score, top-5 (indices) and their scores, from either predictions format."""
    ids = [str(x) for x in preds["ids"]]
    if "scores" in preds:  # the old format: the full matrix
        from ..metrics.retrieval import ranks

        scores = np.asarray(preds["scores"])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        return {
            "ids": ids,
            "rank": ranks(scores),
            "true_score": np.diagonal(scores).copy(),
            "top": top,
            "top_scores": np.take_along_axis(scores, top, axis=1),
        }
    return {
        "ids": ids,
        "rank": np.asarray(preds["t2v_ge"]),
        "true_score": np.asarray(preds["true_score"]),
        "top": np.asarray(preds["top"]),
        "top_scores": np.asarray(preds["top_scores"]),
    }
