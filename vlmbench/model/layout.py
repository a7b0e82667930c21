"""The reference's fixed sequence layout: [CLS] v1..v32 [SEP] t1..tn [SEP] [PAD]... (96 positions).

Video slots are always 32 (invalid seconds are padding flagged by `vmask`), so position ids are simply
0..95 and equal the reference's (CLS+video at 0..32, the video-[SEP] and text from max_video_len+1 = 33 on).
Token types are 0 for [CLS], video and the video-[SEP] (34 positions), 1 for the text part.
"""

from __future__ import annotations

import torch

MAX_LEN = 96
MAX_VIDEO_LEN = 32
VIDEO_START = 1  # after [CLS]
VIDEO_SEP = VIDEO_START + MAX_VIDEO_LEN  # 33
TEXT_START = VIDEO_SEP + 1  # 34
TEXT_SLOTS = MAX_LEN - TEXT_START  # 62: at most 61 tokens + the final [SEP]
MAX_TEXT_TOKENS = TEXT_SLOTS - 1  # 61 = 96 - 32 - 3, as in the reference


def position_ids(batch: int, device=None) -> torch.Tensor:
    return torch.arange(MAX_LEN, device=device).expand(batch, -1)


def token_type_ids(batch: int, device=None) -> torch.Tensor:
    types = torch.zeros(MAX_LEN, dtype=torch.long, device=device)
    types[TEXT_START:] = 1
    return types.expand(batch, -1)


def valid_positions(vmask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(B, 96) bool: [CLS], valid video seconds, the video-[SEP], and non-pad text slots."""
    b = vmask.shape[0]
    ones = torch.ones(b, 1, dtype=torch.bool, device=vmask.device)
    return torch.cat([ones, vmask.bool(), ones, text_mask.bool()], dim=1)
