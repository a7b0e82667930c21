"""VLM behind the model interface: the paper's model, every capability.

Under the isolated mask (every fine-tune and test config of the reference) the video half and the text half of
`[CLS] v [SEP] t [SEP]` never attend to each other, so a clip is encoded once on its 33 positions
(VLM.forward_video) and a sentence once on its own slots (VLM.forward_text), pooled as the reference pools them;
a pair's score is their dot product, exactly as the reference's MMFusionJoint at eval time. Per-second states
are the video half's states of the 32 video slots. Captioning decodes under the text-causal mask with BERT's LM
head (vlmbench.model.generate, vlmbench.model.caption).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..convert.source import describe as describe_source
from ..model import backbone as bb
from ..model import caption as cap
from ..model import text as textmod
from ..model.generate import generate
from ..model.layout import MAX_VIDEO_LEN
from ..model.vlm import CONFIG_FILE, VLM, backbone_head
from .interface import ATTENTION, CAPTION, FRAMES, TEXT, VIDEO, Generation, VideoStates, VideoTextModel


def trim_text(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing slots that are padding in every row (B, 62) -> (B, <=62). Exact for forward_text:
    padding is masked out as a key and the kept slots keep their position ids, but a ~12-token caption then
    costs 13 positions instead of 62. (Not for the full 96-token forward, whose layout is fixed.)"""
    width = max(int(mask.sum(1).max()), 1) if len(mask) else 1
    return ids[:, :width], mask[:, :width]


class VLMModel(VideoTextModel):
    name = "vlm"
    capabilities = frozenset({VIDEO, TEXT, FRAMES, CAPTION, ATTENTION})
    config_file = CONFIG_FILE

    def __init__(self, vlm: VLM):
        super().__init__()
        self.vlm = vlm

    @classmethod
    def create(cls, backbone: str = bb.DEFAULT, seed: int = 0) -> VLMModel:
        """The backbone with a fresh video MLP and head, no VLM pre-training."""
        return cls(VLM.from_backbone(backbone, seed=seed))

    @classmethod
    def load(cls, folder: Path) -> VLMModel:
        return cls(VLM.load(folder))

    def save(self, folder: Path) -> Path:
        return self.vlm.save(folder)

    @property
    def hidden_size(self) -> int:
        return self.vlm.hidden_size

    @property
    def init_std(self) -> float:
        return self.vlm.bert.config.initializer_range

    @property
    def tokenizer(self):
        return bb.tokenizer(self.vlm.config.backbone)

    def prepare(self, family: str) -> dict[str, str]:
        """Captioning's LM head starts from the backbone's MLM vocabulary bias when the checkpoint has none (a VLM
        (MTM) head has no bias). The reference builds MMBertForNLG with from_pretrained(bert_name), which loads
        bert-base-uncased's cls.predictions.bias, then loads the VLM checkpoint over it and keeps every parameter
        the checkpoint lacks (fairseq examples/MMPT at 3d262bb: mmpt/models/mmfusion.py:116-117,
        mmpt/models/fairseqmmmodel.py:42-45)."""
        if family != "captioning":
            return {}
        head = self.vlm.cls.predictions
        if not str(self.vlm.config.head.get("bias", "")).startswith("none"):
            return {"caption_head_bias": f"the checkpoint's own ({self.vlm.config.head.get('bias', 'saved')})"}
        found, weights = backbone_head(self.vlm.config.backbone)
        if "bias" in found and found["bias"].shape == head.bias.shape:
            with torch.no_grad():
                head.bias.copy_(found["bias"])
            self.vlm.config.head = {**self.vlm.config.head, "bias": f"loaded from cls.predictions.bias of {weights}"}
            return {"caption_head_bias": f"the backbone's MLM bias ({weights}), as the reference's captioning head"}
        return {
            "caption_head_bias": "zeros: the backbone has no cls.predictions.bias (the reference starts from "
            "bert-base-uncased's MLM bias; `vlmbench convert mmpt --bert DIR` takes it from a local bert-base folder)"
        }

    def notes(self) -> dict[str, str]:
        return {"backbone": note} if (note := self.vlm.backbone_note()) else {}

    def describe(self) -> dict:
        """Also the backbone and, for converted weights, where they came from ('converted from MMPT ...')."""
        return {
            **super().describe(),
            "backbone": self.vlm.config.backbone,
            "source": describe_source(self.vlm.config.source),
        }

    # ---- the isolated halves ---------------------------------------------------------------------------------
    def encode_video(self, video: torch.Tensor, vmask: torch.Tensor) -> VideoStates:
        """Masked mean over the valid seconds + the video-[SEP] (the reference's pooled_video)."""
        states = self.vlm.forward_video(video, vmask)  # (B, 33, H)
        return VideoStates(states[:, :MAX_VIDEO_LEN], VLM.pool_video(states, vmask))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """t1..tn [SEP] (at most 61 tokens, as the reference), trimmed to the batch's longest; masked mean over
        the tokens + the final [SEP]. In evaluation (eval mode, no autograd) packed instead: no padding at all
        (VLM.encode_text_tokens), the same vectors up to float rounding."""
        if not texts:
            return torch.zeros(0, self.hidden_size, device=self.device)
        if self.vlm.packs():
            return self.vlm.encode_text_tokens(textmod.tokenize(self.tokenizer, list(texts)))
        ids, mask = trim_text(*textmod.encode(self.tokenizer, list(texts)))
        ids, mask = ids.to(self.device), mask.to(self.device)
        return VLM.pool_text(self.vlm.forward_text(ids, mask), mask)

    # ---- captioning ------------------------------------------------------------------------------------------
    def _tokens(self, texts: list[str]) -> list[list[int]]:
        return textmod.tokenize(self.tokenizer, list(texts))

    def caption_loss(self, video: torch.Tensor, vmask: torch.Tensor, texts: list[str]) -> torch.Tensor:
        ids, mask, labels = (t.to(video.device) for t in cap.teacher_forcing(self._tokens(texts)))
        return cap.caption_loss(self.vlm, video, vmask, ids, mask, labels)

    def decode_text(self, ids) -> str:
        # clean_up_tokenization_spaces=True: transformers 3.4's default ("it ' s" -> "it's"), as the reference
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=True)

    def generate(
        self,
        video: torch.Tensor,
        vmask: torch.Tensor,
        *,
        decode: str = "beam",
        beam: int = 5,
        max_new_tokens: int = 21,
        length_penalty: float = 1.0,
        objective: bool = False,
    ) -> Generation:
        """KV-cached decoding (beam 5, <= 21 new tokens, [SEP] ends); objective: each output scored by the search's
        own objective from one teacher-forced forward (model.caption.sequence_scores)."""
        out = generate(
            self.vlm,
            video,
            vmask,
            decode=decode,
            beam=beam,
            max_new_tokens=max_new_tokens,
            length_penalty=length_penalty,
        )
        scores: np.ndarray | None = None
        if objective:
            scores = cap.sequence_scores(self.vlm, video, vmask, out, length_penalty)
        return Generation([self.decode_text(t) for t in out], scores)
