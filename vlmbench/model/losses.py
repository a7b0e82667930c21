"""Pre-training and fine-tuning losses.

masked_token_loss is the paper's Eq. 8-9 in the reference's exact layout (losses/nce.py MTM): every masked
position is one row of a single cross-entropy whose classes are its true target, the embeddings of all
non-masked valid video tokens in the (per-rank) batch, and the vocabulary.
  video row: [h.v+, h.N..., h.vocab...]  target 0
  text row:  [h.vocab..., h.N..., 0]     target = token id (the constant 0 column pads the width)
Both go through linear_cross_entropy, which never holds all rows x vocabulary logits at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .linear_ce import EXTRA, linear_cross_entropy


def masked_token_loss(
    h_video: torch.Tensor,
    video_targets: torch.Tensor,
    h_text: torch.Tensor,
    text_targets: torch.Tensor,
    negatives: torch.Tensor,
    vocab: torch.Tensor,
) -> torch.Tensor:
    """h_video (Mv,H) with their original frame embeddings video_targets (Mv,H); h_text (Mt,H) with ids (Mt,);
    negatives (N,H) non-masked valid frame embeddings; vocab (V,H) word embeddings (no bias)."""
    mv, mt = h_video.shape[0], h_text.shape[0]
    # Both row kinds share the classes [vocab, negatives] (a softmax does not depend on column order); the
    # extra column is a video row's own target, or a text row's constant 0.
    extra = torch.cat([(h_video * video_targets).sum(-1), h_text.new_zeros(mt)])
    target = torch.cat([text_targets.new_full((mv,), EXTRA), text_targets])
    return linear_cross_entropy(torch.cat([h_video, h_text]), torch.cat([vocab, negatives]), target, extra=extra)


def mfm_mlm_loss(
    h_video: torch.Tensor,
    video_targets: torch.Tensor,
    h_text: torch.Tensor,
    text_targets: torch.Tensor,
    negatives: torch.Tensor,
    vocab: torch.Tensor,
    vocab_bias: torch.Tensor,
) -> torch.Tensor:
    """The MFM-MLM baseline: MFM NCE over [own target, non-masked frames] + MLM CE over the vocabulary (with
    bias), each a mean over its own rows, summed."""
    loss = vocab.sum() * 0.0
    if h_video.shape[0]:
        pos = (h_video * video_targets).sum(-1, keepdim=True)
        logits = torch.cat([pos, h_video @ negatives.T], dim=1)
        loss = loss + F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
    if h_text.shape[0]:
        loss = loss + linear_cross_entropy(h_text, vocab, text_targets, bias=vocab_bias)
    return loss


def contrastive_loss(text: torch.Tensor, video: torch.Tensor, direction: str = "t2v") -> torch.Tensor:
    """In-batch contrastive loss on raw dot products (no temperature, no normalisation, as the reference).
    t2v: softmax over videos per text (retrieval); v2t: softmax over texts per video (MC-QA fine-tuning)."""
    scores = text @ video.T
    if direction == "v2t":
        scores = scores.T
    return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))
