"""Attention masks as 4-D additive float masks (B, 1, 96, 96): 0 where a query row may attend, finfo.min elsewhere.

transformers 5 takes such masks verbatim; 3-D masks raise and 4-D boolean masks are misread under eager
attention, so every builder returns float. Padding is folded in: no row attends to an invalid key.
"""

from __future__ import annotations

import torch

from .layout import MAX_LEN, TEXT_START, VIDEO_SEP, valid_positions


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)


def _groups(device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    idx = torch.arange(MAX_LEN, device=device)
    cls = idx == 0
    video = (idx >= 1) & (idx <= VIDEO_SEP)  # video slots + the video-[SEP]
    text = idx >= TEXT_START  # text tokens + final [SEP] (+ pad, removed by validity)
    return cls, video, text


def joint(vmask: torch.Tensor, text_mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Pre-training: every token sees every valid token."""
    valid = valid_positions(vmask, text_mask)
    allowed = valid[:, None, :].expand(-1, MAX_LEN, -1)
    return _additive(allowed, dtype)


def isolated(vmask: torch.Tensor, text_mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Fine-tuning (num_iso_layer=12): [CLS] sees itself; video rows see video + video-[SEP]; text rows see text."""
    valid = valid_positions(vmask, text_mask)
    cls, video, text = _groups(vmask.device)
    same_group = (cls[:, None] & cls[None, :]) | (video[:, None] & video[None, :]) | (text[:, None] & text[None, :])
    allowed = same_group[None] & valid[:, None, :]
    return _additive(allowed, dtype)


def text_causal(vmask: torch.Tensor, text_mask: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """Captioning: [CLS]/video rows see [CLS] + valid video + video-[SEP]; text row i also sees text 0..i.

    Text padding rows copy the video rows (as the reference does), so they never read future text.
    """
    valid = valid_positions(vmask, text_mask)
    cls, video, text = _groups(vmask.device)
    prefix = (cls | video)[None, :] & valid  # (B, 96) keys of the prefix
    causal = torch.tril(torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool, device=vmask.device))
    text_keys = (text[None, :] & causal)[None] & valid[:, None, :]  # (B, 96, 96)
    is_text_row = text[None, :, None] & valid[:, :, None]  # valid text query rows
    allowed = prefix[:, None, :] | (text_keys & is_text_row)
    return _additive(allowed, dtype)


BUILDERS = {"joint": joint, "isolated": isolated, "text_causal": text_causal}
