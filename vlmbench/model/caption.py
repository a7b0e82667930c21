"""Captioning with the VLM's text-causal layout: teacher forcing, its loss, and the beam search's objective.

Training is teacher forcing with shifted tokens: text slots `[BOS] t1..tn`, labels `t1..tn [SEP]`, one
cross-entropy over the labelled slots (the LM head: transform + tied decoder + bias). `sequence_scores` scores
given outputs by the search's own objective (vlmbench.model.generate).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .generate import BOS_ID, PROMPT_LEN, lm_logits
from .layout import MAX_TEXT_TOKENS, TEXT_SLOTS, TEXT_START
from .text import PAD_ID, SEP_ID

IGNORE = -100


def teacher_forcing(token_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels), each (B, 62): inputs `[BOS] t1..tn [PAD]..`, labels `t1..tn [SEP] -100..`."""
    b = len(token_lists)
    ids = torch.full((b, TEXT_SLOTS), PAD_ID, dtype=torch.long)
    labels = torch.full((b, TEXT_SLOTS), IGNORE, dtype=torch.long)
    for i, toks in enumerate(token_lists):
        toks = list(toks)[:MAX_TEXT_TOKENS]
        ids[i, : len(toks) + 1] = torch.tensor([BOS_ID, *toks], dtype=torch.long)
        labels[i, : len(toks) + 1] = torch.tensor([*toks, SEP_ID], dtype=torch.long)
    return ids, labels != IGNORE, labels


def caption_loss(
    model, video: torch.Tensor, vmask: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of the LM head (tied decoder + bias) over the labelled text slots."""
    hidden = model(video, vmask, ids, mask, mask="text_causal")[:, TEXT_START:]
    labelled = labels != IGNORE
    return model.cls.predictions.nll(hidden[labelled], labels[labelled])  # lm_logits' head


def sequence_scores(
    model, video: torch.Tensor, vmask: torch.Tensor, token_lists: list[list[int]], length_penalty: float = 1.0
) -> np.ndarray:
    """The beam search's own objective for given outputs: sum log p(t1..tn [SEP] | video) / (PROMPT_LEN + n)**lp
    (a finished hypothesis's score in model.generate), from one teacher-forced text-causal forward."""
    ids, mask, labels = teacher_forcing(token_lists)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            hidden = model(video, vmask, ids.to(video.device), mask.to(video.device), mask="text_causal")[
                :, TEXT_START:
            ]
            labelled = (labels != IGNORE).to(video.device)
            logp = F.log_softmax(lm_logits(model, hidden[labelled]).float(), dim=-1)
            tok = logp.gather(1, labels.to(video.device)[labelled][:, None])[:, 0]
    finally:
        model.train(was_training)
    rows = torch.arange(len(token_lists), device=video.device)[:, None].expand_as(labelled)[labelled]
    total = torch.zeros(len(token_lists), dtype=torch.float64, device=video.device).index_add_(0, rows, tok.double())
    lengths = np.array([PROMPT_LEN + min(len(t), MAX_TEXT_TOKENS) for t in token_lists], dtype=np.float64)
    return total.cpu().numpy() / lengths**length_penalty
