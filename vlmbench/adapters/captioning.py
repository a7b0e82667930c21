"""Video captioning (YouCook2, paper section 4.5), for any model with the `caption` capability.

Training: the model's own caption loss on each clip's reference sentence (VLM: teacher forcing under the
text-causal mask with BERT's LM head, no separate decoder). Test clips are decoded by the model's `generate`
(beam 5, <= 21 new tokens; VLM: KV-cached). References are `tokenizer.decode(..., skip_special_tokens=True)` of
the bert-base-uncased WordPieces, cut to 61 tokens, as in the reference (VLM's hypotheses are decoded the same
way); scored with BLEU-3/4, METEOR, ROUGE-L and CIDEr.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import youcook2
from ..errors import InputError
from ..io import atomic_write
from ..metrics import MetricInputError
from ..metrics import captioning as capmetrics
from ..model import backbone as bb
from ..model.generate import PROMPT_LEN
from ..model.layout import MAX_VIDEO_LEN
from ..model.text import tokenize
from ..models.interface import CAPTION, VideoTextModel
from ..records.predictions import SOURCE_VIDEO
from .base import Adapter
from .overlap import refuse_overlap
from .protocol import batch_counts, protocol_conventions

CAPTIONS_CSV = "captions.csv"
METRICS = ("BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
N_EXAMPLES = 5


class CaptioningAdapter(Adapter):
    family = "captioning"
    needs = frozenset({CAPTION})

    # -- data ----------------------------------------------------------------------------------------------
    def preflight(self) -> None:
        if not self.cfg.skip_meteor:
            capmetrics.require_java()

    def warm_up(self) -> None:
        if not self.cfg.skip_meteor:
            capmetrics.start_meteor()  # its JVM loads (~6 s) while the model fine-tunes and decodes

    def load(self) -> None:
        ann_path = self.paths["annotations"]
        annotations = youcook2.load_annotations(ann_path)
        train_vids = youcook2.load_split_list(self.paths["train_list"])
        val_vids = youcook2.load_split_list(self.paths["val_list"])
        store = self.store()
        train_ok = self.keep_with_features(train_vids, store, "training videos")
        val_ok = self.keep_with_features(val_vids, store, "validation videos")
        # caption_clips: every annotated segment of each listed video, in list order
        train = youcook2.caption_clips(annotations, [v for v in train_vids if v in train_ok])
        test = youcook2.caption_clips(annotations, [v for v in val_vids if v in val_ok])
        for what, clips in (("train clips", train), ("test clips", test)):  # segments past the features: counted
            kept, fit = youcook2.fit_to_features(clips, store, ann_path, what, self.allow_missing)
            clips[:] = kept
            fit.record(self.loaded.counts, self.say)
        self.train_clips = self.cap(train, self.cfg.max_train, "train", lambda c: c.vid)
        self.test_clips = self.cap(test, self.cfg.max_test, "test", lambda c: c.vid)
        if not self.test_clips:
            raise InputError("no annotated segments in the listed validation videos", path=self.paths["val_list"])
        refuse_overlap(
            self.uncapped.get("train", set()),
            self.uncapped["test"],
            self.paths["train_list"],
            self.paths["val_list"],
        )
        self._store = store
        # The references' normaliser (and the random floor's): the bert-base-uncased WordPieces every backbone
        # here shares, whatever model is scored.
        self.tokenizer = bb.tokenizer(self.cfg.backbone)
        self.train_tokens = tokenize(self.tokenizer, [c.text for c in self.train_clips])  # the random floor's pool
        # References as the reference builds them: tokenised, cut to 61 tokens, decoded like the hypotheses.
        self.references = [self.decode_text(t) for t in tokenize(self.tokenizer, [c.text for c in self.test_clips])]
        self.loaded.counts.update(
            train_clips=len(self.train_clips),
            test_clips=len(self.test_clips),
            train_videos=len({c.vid for c in self.train_clips}),
            test_videos=len({c.vid for c in self.test_clips}),
            **batch_counts(self.family, self.cfg.batch_size, self.cfg.virtual_ranks),
        )
        self.loaded.annotation_files = [ann_path, self.paths["train_list"], self.paths["val_list"]]
        self.loaded.feature_ids = sorted({c.vid for c in self.train_clips + self.test_clips})

    def decode_text(self, ids) -> str:
        # clean_up_tokenization_spaces=True: transformers 3.4's default ("it ' s" -> "it's"), as the reference
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=True)

    def videos(self, clips: list[youcook2.Clip]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 32, 512) features [start:end] cut to the first 32 s, zero-padded; (B, 32) valid seconds."""
        video = torch.zeros(len(clips), MAX_VIDEO_LEN, self._store.dim)
        vmask = torch.zeros(len(clips), MAX_VIDEO_LEN, dtype=torch.bool)
        for i, c in enumerate(clips):
            rows = self._store.load(c.vid, c.start, min(c.end, c.start + MAX_VIDEO_LEN))
            video[i, : len(rows)] = torch.from_numpy(rows)
            vmask[i, : len(rows)] = True
        return video.to(self.device), vmask.to(self.device)

    # -- training ------------------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int | None:
        return math.ceil(len(self.train_clips) / self.cfg.batch_size) if self.train_clips else 0

    def train_batches(self, epoch: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        return self._batches(self.train_clips, rng.permutation(len(self.train_clips)))

    def test_loss_batches(self) -> Iterator[dict[str, Any]]:
        """Loss batches of the TEST clips (select=best-of-epochs: the reference's checkpoint_best.pt is picked by
        the loss on YouCook2 val, the scored split)."""
        return self._batches(self.test_clips, np.arange(len(self.test_clips)))

    def _batches(self, clips, order) -> Iterator[dict[str, Any]]:
        for s in range(0, len(order), self.cfg.batch_size):
            idx = order[s : s + self.cfg.batch_size]
            video, vmask = self.videos([clips[i] for i in idx])
            yield {"video": video, "vmask": vmask, "texts": [clips[i].text for i in idx]}

    def loss(self, module: VideoTextModel, batch: dict[str, Any]) -> torch.Tensor:
        return module.caption_loss(batch["video"], batch["vmask"], batch["texts"])

    # -- inference -----------------------------------------------------------------------------------------
    def predict(
        self, module: VideoTextModel, progress: Callable[[int, int], None] | None = None
    ) -> dict[str, np.ndarray]:
        cfg = self.cfg
        rows = cfg.beam if cfg.decode == "beam" else 1
        per_batch = max(1, cfg.eval_batch_size // rows)  # eval_batch_size counts decoder rows (clips x beams)
        hyps: list[str] = []
        # The search checks itself: beam outputs must score at least as well as greedy ones on the search's own
        # objective (search_gain, a paired per-clip difference: low noise, exactly 0 when "beam" runs greedy).
        audit = cfg.decode == "beam" and cfg.beam > 1
        beam_scores, greedy_scores = [], []
        total = len(self.test_clips)
        for s in range(0, total, per_batch):
            clips = self.test_clips[s : s + per_batch]
            video, vmask = self.videos(clips)
            search = dict(max_new_tokens=cfg.max_new_tokens, length_penalty=cfg.length_penalty, objective=audit)
            out = module.generate(video, vmask, decode=cfg.decode, beam=cfg.beam, **search)
            hyps += [t or capmetrics.EMPTY_HYPOTHESIS for t in out.texts]
            if audit:
                greedy = module.generate(video, vmask, decode="greedy", **search)
                if out.objective is None or greedy.objective is None:
                    audit = False  # the model does not score its own outputs: no search_gain
                else:
                    beam_scores.append(out.objective)
                    greedy_scores.append(greedy.objective)
            if progress:
                progress(len(hyps), total)
        preds = {
            "ids": np.array([c.clip_id for c in self.test_clips], dtype=str),
            "hypotheses": np.array(hyps, dtype=str),
            "references": np.array(self.references, dtype=str),
            SOURCE_VIDEO: np.array([c.vid for c in self.test_clips], dtype=str),  # clips of one video: one unit
        }
        if audit:
            preds["beam_score"], preds["greedy_score"] = np.concatenate(beam_scores), np.concatenate(greedy_scores)
        return preds

    # -- scoring -------------------------------------------------------------------------------------------
    @staticmethod
    def _pairs(preds: dict[str, np.ndarray]) -> tuple[dict[str, str], dict[str, str]]:
        ids = [str(x) for x in preds["ids"]]
        if len(set(ids)) != len(ids):
            raise MetricInputError("predictions have repeated clip ids")
        return dict(zip(ids, map(str, preds["hypotheses"]))), dict(zip(ids, map(str, preds["references"])))

    @classmethod
    def score(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
        hyps, refs = cls._pairs(preds)
        meteor = not cfg.get("skip_meteor", False)
        tokenize_mode = cfg.get("tokenize", "whitespace")
        out = capmetrics.caption_metrics(hyps, refs, tokenize=tokenize_mode, meteor=meteor)
        metrics = {k: float(out[k]) for k in METRICS}
        conventions = dict(capmetrics.CONVENTIONS)
        conventions["tokenize"] = f"used: {tokenize_mode}. " + conventions["tokenize"]
        if out["not_computed"]:
            conventions["not_computed"] = ", ".join(out["not_computed"]) + " (skip_meteor=true: NaN, not a score)"
        conventions["decoding"] = (
            f"{cfg.get('decode', 'beam')} search, beam {cfg.get('beam', 5)}, length penalty "
            f"{cfg.get('length_penalty', 1.0)} (sum logprob / (prompt {PROMPT_LEN} + tokens)**lp), at most "
            f"{cfg.get('max_new_tokens', 21)} new tokens, [SEP] ends a beam, transformers-3.4 beam semantics "
            "(no early stopping, no n-gram blocking); KV-cached, identical to full recomputation"
        )
        conventions["text"] = (
            "hypotheses and references are tokenizer.decode(skip_special_tokens=True) strings "
            "(lower-cased, WordPieces joined, punctuation glued); references cut to 61 tokens"
        )
        if "beam_score" in preds:  # a check of the decoder, not a caption metric
            metrics["search_gain"] = float(np.mean(preds["beam_score"] - preds["greedy_score"]))
            conventions["search_gain"] = (
                "mean over test clips of (beam output - greedy output) scored by the search's objective (sum "
                "logprob incl. [SEP] / (prompt + tokens)**lp, one teacher-forced forward): > 0 when beam search "
                "works, exactly 0 when it degenerates to greedy"
            )
        conventions.update(protocol_conventions(cls.family, cfg))
        return metrics, conventions

    @classmethod
    def example_values(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]) -> dict[str, np.ndarray]:
        """Per clip: BLEU n-gram statistics, ROUGE-L, CIDEr-D and (with Java) METEOR, the values the corpus
        metrics are recomputed from per resample."""
        hyps, refs = cls._pairs(preds)
        st = capmetrics.caption_statistics(
            hyps, refs, tokenize=cfg.get("tokenize", "whitespace"), meteor=not cfg.get("skip_meteor", False)
        )
        out = {k: st[k] for k in ("bleu", "rouge_l", "cider")}
        if np.isfinite(st["meteor"]).all():  # skip_meteor: no per-caption METEOR (not a column of NaN)
            out["meteor"] = st["meteor"]
        return out

    @classmethod
    def examples(cls, preds: dict[str, np.ndarray], cfg: dict[str, Any]):
        """Per test clip: the reference (`target`) and the decoded hypothesis (`prediction`), with its CIDEr-D
        (`score`, the per-clip value the corpus CIDEr averages) when the predictions carry it."""
        from .base import json_number

        cider = preds.get("example:cider")
        for i, (clip, hyp, ref) in enumerate(zip(preds["ids"], preds["hypotheses"], preds["references"])):
            row = {"id": str(clip), "target": str(ref), "prediction": str(hyp)}
            if cider is not None:
                row["score"] = json_number(cider[i])
            yield row

    def extra_outputs(self, preds: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """captions.csv, worst clip first by per-clip CIDEr-D (the paper's Table 11 error analysis)."""
        hyps, refs = self._pairs(preds)
        per_clip = capmetrics.per_clip_scores(hyps, refs, tokenize=self.cfg.tokenize)
        ranked = sorted(hyps, key=lambda k: (per_clip[k], k))

        def write(p: Path) -> None:
            with open(p, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["clip_id", "hypothesis", "reference", "cider"])
                w.writerows([k, hyps[k], refs[k], f"{per_clip[k]:.4f}"] for k in ranked)

        path = atomic_write(Path(out_dir) / CAPTIONS_CSV, write)
        row = lambda k: (k, hyps[k], refs[k], f"{per_clip[k]:.3f}")  # noqa: E731
        return {
            "captions_csv": str(path),
            "examples": {
                "Worst captions (clip | hypothesis | reference | CIDEr)": [row(k) for k in ranked[:N_EXAMPLES]],
                "Best captions (clip | hypothesis | reference | CIDEr)": [
                    row(k) for k in reversed(ranked[-N_EXAMPLES:])
                ],
            },
        }
