"""Text slots of the sequence: t1..tn [SEP] [PAD]... (62 slots), from strings or token-id lists."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .layout import MAX_TEXT_TOKENS, TEXT_SLOTS

CLS_ID, SEP_ID, PAD_ID, MASK_ID, UNK_ID = 101, 102, 0, 103, 100  # bert-base-uncased vocabulary
SPECIAL_IDS = (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID)


def pack(token_lists: Sequence[Sequence[int]], slots: int = TEXT_SLOTS) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (B, slots): tokens cut to slots-1, then [SEP], then padding."""
    ids = torch.full((len(token_lists), slots), PAD_ID, dtype=torch.long)
    for i, toks in enumerate(token_lists):
        toks = list(toks)[: slots - 1] + [SEP_ID]
        ids[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
    return ids, ids != PAD_ID


def tokenize(tokenizer, texts: Sequence[str], max_tokens: int = MAX_TEXT_TOKENS) -> list[list[int]]:
    """WordPiece ids without special tokens, cut to max_tokens (61 in the reference)."""
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens)
    return enc["input_ids"]


def encode(tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return pack(tokenize(tokenizer, texts))
