"""Text-to-video retrieval (MSR-VTT 1k-A, YouCook2 3,350 clips): the reference's MMFusionJoint + T2VContraLoss.

Fine-tuning: in-batch contrastive loss on the pooled isolated halves (softmax over the batch's videos per text).
Evaluation: every test clip and every test text encoded once, a text x video matrix of raw dot products
(no normalisation, no temperature, no re-ranking; row i's truth is column i), ranked in row blocks
(metrics.retrieval_blocks: O(N x block) memory, the same metrics as metrics.retrieval on the full matrix); the
predictions keep ranks and top-5, never the matrix (old files holding `scores` still re-score).
Opt-in inference-time post-processing (run key `post`, recorded in every result's protocol signature):
`post=dual-softmax` re-weights each score by its softmax over the other side's items before ranking (text->video:
s_ij * softmax_i(s_ij / T) over the test texts i for video j; video->text: s_ij * softmax_j(s_ij / T) over the
test videos), the inverted-softmax prior of CAMoE (Cheng et al., 2021) that several published MSR-VTT numbers
use. It reads every test query's scores, so it is transductive and not the paper's protocol: off by default.
The normalisers are computed in a first pass over row blocks, so the matrix is still never held whole.
spec.options: reader (msrvtt | youcook2), loss (t2v | v2t); the run config's `dup` replicates the training list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import msrvtt, youcook2
from ..errors import InputError
from ..io import write_csv
from ..metrics.retrieval import TIES, conventions, retrieval_metrics
from ..metrics.retrieval_blocks import BLOCK, RankCounts, metrics_from_counts, rank_counts, rank_counts_rows
from ..records.formats import COUNT_KEYS, pack_retrieval, ranked_view
from ..records.predictions import SOURCE_VIDEO
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
            self.uncapped["train"],
            self.uncapped["test"],
            self.train_list,
            self.paths["test_csv"],
        )
        c = self.loaded.counts
        c["test_examples"] = len(self.test_ids)
        c["test_clips"] = len(set(self.test_clips))
        c["test_texts"] = len(set(self.test_texts))
        c.update(batch_counts(self.family, self.cfg.batch_size, self.cfg.virtual_ranks))
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
        pairs = self.cap([(v, s) for v, s in pairs if v in kept], self.cfg.max_test, "test", lambda p: p[0])
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
        clips = self.cap(clips, self.cfg.max_train, "train", lambda c: c.vid)
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
        clips = self.cap(clips, self.cfg.max_test, "test", lambda c: c.vid)
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
        """Scores text @ video.T ranked in row blocks; saved as ranks and top-5 (see pack), never the matrix.
        YouCook2's test clips share videos: each clip's video is kept (`source_video`, the bootstrap's unit)."""
        text, video = self.embed(module, progress)
        if self.cfg.post == "dual-softmax":
            counts = dual_softmax_counts(text, video, self.cfg.post_temperature)
        else:
            counts = rank_counts(text, video)
        preds = pack_retrieval(counts, self.test_ids, self.test_texts)
        if self.reader == "youcook2":
            preds[SOURCE_VIDEO] = np.array([c.vid for c in self.test_clips], dtype=str)
        return preds

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
        post = str(cfg.get("post", "none"))
        return metrics, {
            **conventions(ties),
            "post": POST[post].format(t=cfg.get("post_temperature", 1.0)) if post in POST else post,
            **protocol_conventions(cls.family, cfg),
        }

    @classmethod
    def example_values(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per text query its pessimistic rank (t2v) and per video query its rank (v2t); an old predictions file
        holding the full matrix is ranked here (new files carry them from pack_retrieval)."""
        from ..metrics.retrieval import ranks

        scores = np.asarray(preds["scores"])
        return {"rank": ranks(scores), "v2t_rank": ranks(scores.T)}

    def extra_outputs(self, preds: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """retrieval_errors.csv: every wrong top-1 text->video (the paper's Table 10 error kinds)."""
        write_csv(Path(out_dir) / RETRIEVAL_ERRORS, *retrieval_errors(preds))
        return {}

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


RETRIEVAL_ERRORS = "retrieval_errors.csv"

POST = {
    "none": "none: the raw scores are ranked (the paper's protocol)",
    "dual-softmax": "dual-softmax (opt-in, transductive: uses every test query): text->video ranks s_ij * "
    "softmax over texts i of s_ij / {t:g} (per video j), video->text ranks s_ij * softmax over videos j of "
    "s_ij / {t:g} (per text i)",
}


def log_normalisers(rows, n: int, temperature: float, block: int = BLOCK) -> torch.Tensor:
    """(n,) float64: log sum_i exp(s_ij / T) over the rows i of the square matrix given by rows(a, b), per
    column j, accumulated over row blocks (a stable running logsumexp)."""
    out = torch.full((n,), -torch.inf, dtype=torch.float64)
    for a in range(0, n, block):
        s = torch.as_tensor(rows(a, min(n, a + block))).to(torch.float64) / temperature
        out = torch.logaddexp(out, torch.logsumexp(s, dim=0))
    return out


def dual_softmax_rows(rows, n: int, temperature: float, block: int = BLOCK):
    """rows(a, b) of the re-weighted matrix s_ij * exp(s_ij / T - log_normaliser_j) (softmax down each column),
    float64, deterministic (rank_counts_rows calls it twice per block)."""
    log_z = log_normalisers(rows, n, temperature, block)

    def weighted(a: int, b: int) -> torch.Tensor:
        s = torch.as_tensor(rows(a, b)).to(torch.float64)
        return s * torch.exp(s / temperature - log_z[None, :])

    return weighted


def dual_softmax_counts(
    text: torch.Tensor, video: torch.Tensor, temperature: float = 1.0, block: int | None = None
) -> RankCounts:
    """Both directions' rank counts after dual-softmax: text->video on S = text @ video.T re-weighted down its
    columns (softmax over texts), video->text on S.T re-weighted down its columns (softmax over videos), each
    ranked by metrics.retrieval_blocks without the full matrix."""
    text, video = torch.as_tensor(text), torch.as_tensor(video)
    n, block = len(text), block or BLOCK
    t2v = rank_counts_rows(dual_softmax_rows(lambda a, b: text[a:b] @ video.T, n, temperature, block), n, block)
    v2t = rank_counts_rows(dual_softmax_rows(lambda a, b: video[a:b] @ text.T, n, temperature, block), n, block)
    return dataclasses.replace(t2v, v2t_gt=v2t.t2v_gt, v2t_ge=v2t.t2v_ge)


def retrieval_errors(preds: Mapping[str, np.ndarray]) -> tuple[list[str], list[list]]:
    """(header, rows) of retrieval_errors.csv: query, the retrieved clip and its own caption, the true clip's
    rank and the score margin, worst first."""
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
