"""Pre-training corruption: MFM-MLM and masked-modality masking (MMM), drawn per example.

With probability `mmm` an example is masked-modality: half of those lose ALL their text tokens, half ALL their
valid frames (so mmm=0.5 gives 50% MFM-MLM / 25% whole-text / 25% whole-video, the paper's VLM setting).
Otherwise 15% of the valid frames are zeroed (before the video MLP, as the reference has no mask embedding)
and 15% of the text tokens other than [CLS]/[SEP]/[PAD] go through BERT's 80% [MASK] / 10% random / 10% unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .text import CLS_ID, MASK_ID, PAD_ID, SEP_ID

# Exactly the tokens the reference never masks (its special_tokens_mask for [CLS] ... [SEP] + padding): [UNK]
# and a literal [MASK] in the data are ordinary tokens there, so they are masked and predicted like any other.
NEVER_MASKED = (CLS_ID, SEP_ID, PAD_ID)

MFM_MLM, WHOLE_TEXT, WHOLE_VIDEO = 0, 1, 2


@dataclass
class Corruption:
    video: torch.Tensor  # (B, 32, D) with masked frames zeroed
    text_ids: torch.Tensor  # (B, 62) with masked tokens replaced
    video_masked: torch.Tensor  # (B, 32) bool: frames to predict
    text_masked: torch.Tensor  # (B, 62) bool: tokens to predict
    kind: torch.Tensor  # (B,) MFM_MLM / WHOLE_TEXT / WHOLE_VIDEO


def corrupt(
    video: torch.Tensor,
    vmask: torch.Tensor,
    text_ids: torch.Tensor,
    mmm: float = 0.5,
    mfm_prob: float = 0.15,
    mlm_prob: float = 0.15,
    vocab_size: int = 30522,
    generator: torch.Generator | None = None,
) -> Corruption:
    b = video.shape[0]
    g = generator
    rand = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731

    maskable = ~torch.isin(text_ids, torch.tensor(NEVER_MASKED))
    valid_video = vmask.bool()

    modality = rand(b) < mmm
    whole_text = modality & (rand(b) < 0.5)
    whole_video = modality & ~whole_text
    kind = torch.full((b,), MFM_MLM, dtype=torch.long)
    kind[whole_text], kind[whole_video] = WHOLE_TEXT, WHOLE_VIDEO

    plain = ~modality
    video_masked = valid_video & ((plain[:, None] & (rand(b, vmask.shape[1]) < mfm_prob)) | whole_video[:, None])
    text_masked = maskable & ((plain[:, None] & (rand(*text_ids.shape) < mlm_prob)) | whole_text[:, None])

    # 80% [MASK], 10% random token, 10% unchanged
    action = rand(*text_ids.shape)
    new_ids = text_ids.clone()
    new_ids[text_masked & (action < 0.8)] = MASK_ID
    to_random = text_masked & (action >= 0.8) & (action < 0.9)
    new_ids[to_random] = torch.randint(vocab_size, (int(to_random.sum()),), generator=g)

    new_video = video.masked_fill(video_masked[..., None], 0.0)
    return Corruption(new_video, new_ids, video_masked, text_masked, kind)
