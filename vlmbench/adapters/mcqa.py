"""MSR-VTT multiple choice (5 candidate sentences per video): the reference's vttqa.

There is no MC training set: the model is fine-tuned on the MSR-VTT training videos (the official train + validate
videos of MSRVTT_data.json, the 7k-style list the reference uses; the 9k list holds ~1,990 MC test videos; a random
caption per access) with the V2T contrastive loss (softmax over the batch's texts per video). At test time each
video is encoded once and each candidate once; score_k = dot(pooled_video, pooled_text_k), prediction = argmax.
(The reference repeats each video 5 times through the isolated model; the pooled vectors are identical.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import msrvtt
from ..metrics.qa import CONVENTIONS, mcqa_accuracy
from .overlap import refuse_overlap
from .pairs import ContrastiveAdapter, Progress, VideoClip, encode_clips, encode_texts, load_msrvtt_train, unique
from .protocol import batch_counts, protocol_conventions


class MCQAAdapter(ContrastiveAdapter):
    family = "mcqa"
    default_direction = "v2t"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.questions: list[msrvtt.McQuestion] = []

    def load(self) -> None:
        self.train_items = load_msrvtt_train(self)
        path = self.paths["mc_csv"]
        questions = msrvtt.load_multiple_choice(path)
        self.loaded.annotation_files.append(path)
        kept = self.keep_with_features([q.video_id for q in questions], self.feature_store, "test videos")
        self.questions = self.cap(
            [q for q in questions if q.video_id in kept], self.cfg.max_test, "test", lambda q: q.video_id
        )
        # The MC questions are on full-test videos: a training list holding any of them is refused.
        refuse_overlap(self.uncapped["train"], self.uncapped["test"], self.train_list, path)
        self.loaded.counts["test_examples"] = len(self.questions)
        self.loaded.counts["test_videos"] = len({q.video_id for q in self.questions})
        self.loaded.counts.update(batch_counts(self.family, self.cfg.batch_size, self.cfg.virtual_ranks))
        self.loaded.feature_ids = sorted(
            {it.clip.vid for it in self.train_items} | {q.video_id for q in self.questions}
        )
        self.say(f"{self.spec.name}: {len(self.train_items)} training videos, {len(self.questions)} questions")

    def predict(self, module: nn.Module, progress: Progress = None) -> dict[str, np.ndarray]:
        """{"scores": (questions, 5) float32, "answers": (questions,) int64, "ids": video ids}."""
        module.eval()
        vids, video_of = unique([q.video_id for q in self.questions])
        texts, text_of = unique([c for q in self.questions for c in q.candidates])
        total = len(vids) + len(texts)
        bs = self.cfg.eval_batch_size
        with torch.no_grad():
            v = encode_clips(
                module, [VideoClip(x) for x in vids], self.feature_store, bs, self.device, progress, 0, total
            )
            t = encode_texts(module, texts, bs, self.device, progress, len(vids), total)
        cand = t[torch.from_numpy(text_of)].view(len(self.questions), msrvtt.N_CHOICES, -1)
        scores = torch.einsum("qh,qkh->qk", v[torch.from_numpy(video_of)], cand)
        return {
            "scores": scores.numpy().astype(np.float32),
            "answers": np.array([q.answer for q in self.questions], dtype=np.int64),
            "ids": np.array([q.video_id for q in self.questions], dtype=str),
        }

    @classmethod
    def score(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
        return mcqa_accuracy(preds["scores"], preds["answers"]), {
            **CONVENTIONS,
            **protocol_conventions(cls.family, cfg),
        }

    @classmethod
    def example_values(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per question: 1 when the argmax candidate is the answer."""
        return {"correct": (np.argmax(preds["scores"], axis=1) == preds["answers"]).astype(np.int8)}

    @classmethod
    def examples(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]):
        """Per question: the answer index, the argmax candidate (first maximum, as scored) and all 5 scores."""
        from .base import json_number

        scores, answers = np.asarray(preds["scores"]), np.asarray(preds["answers"])
        for i, vid in enumerate(str(x) for x in preds["ids"]):
            pred = int(np.argmax(scores[i]))
            yield {
                "id": vid,
                "question": i,
                "target": int(answers[i]),
                "prediction": pred,
                "correct": pred == int(answers[i]),
                "scores": [json_number(s) for s in scores[i]],
            }
