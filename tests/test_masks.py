"""The three attention masks, checked through the real encoder (tiny BERT)."""

import pytest
import torch

from vlmbench.model import masks
from vlmbench.model.backbone import tokenizer
from vlmbench.model.layout import MAX_LEN, TEXT_START, VIDEO_SEP
from vlmbench.model.text import encode
from vlmbench.model.vlm import VLM


@pytest.fixture(scope="module")
def model():
    m = VLM.from_backbone("tiny", seed=3)
    return m.eval()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    vmask = torch.zeros(2, 32, dtype=torch.bool)
    vmask[0, :10], vmask[1, :32] = True, True
    video = torch.randn(2, 32, 512, generator=g) * vmask[..., None]
    ids, tmask = encode(tokenizer("tiny"), ["cut the onion", "a man is cooking pasta in a pan"])
    return video, vmask, ids, tmask


def test_masks_are_4d_additive_float():
    video, vmask, ids, tmask = _batch()
    for build in masks.BUILDERS.values():
        m = build(vmask, tmask)
        assert m.shape == (2, 1, MAX_LEN, MAX_LEN) and m.dtype == torch.float32
        assert set(m.unique().tolist()) == {0.0, torch.finfo(torch.float32).min}
        # padding is folded in: no row may attend to an invalid video second or a text pad
        assert (m[0, 0, :, 11:33] != 0).all()
        assert (m[:, 0, :, TEXT_START:][~tmask[:, None, :].expand(-1, MAX_LEN, -1)] != 0).all()


def test_isolated_video_states_equal_video_alone(model):
    video, vmask, ids, tmask = _batch()
    with torch.no_grad():
        full = model(video, vmask, ids, tmask, mask="isolated")[:, 1 : VIDEO_SEP + 1]
        # video alone: no text at all (every text slot padding)
        empty = torch.zeros_like(ids)
        alone = model(video, vmask, empty, empty != 0, mask="isolated")[:, 1 : VIDEO_SEP + 1]
        half = model.forward_video(video, vmask)
    assert (full - alone).abs().max() <= 1e-5
    # the slots of invalid seconds are unspecified (nothing reads them; the packed eval path leaves them 0):
    # compared over the valid seconds and the video [SEP]
    read = torch.cat([vmask, torch.ones(2, 1, dtype=torch.bool)], 1)
    assert (full - half)[read].abs().max() <= 1e-5


def test_isolated_text_states_ignore_video(model):
    video, vmask, ids, tmask = _batch()
    other = torch.randn_like(video) * vmask[..., None]
    with torch.no_grad():
        a = model(video, vmask, ids, tmask, mask="isolated")[:, TEXT_START:]
        b = model(other, vmask, ids, tmask, mask="isolated")[:, TEXT_START:]
        c = model.forward_text(ids, tmask)
    assert (a - b)[tmask].abs().max() <= 1e-5
    assert (a - c)[tmask].abs().max() <= 1e-5


def test_joint_mask_mixes_modalities(model):
    video, vmask, ids, tmask = _batch()
    other = torch.randn_like(video) * vmask[..., None]
    with torch.no_grad():
        a = model(video, vmask, ids, tmask, mask="joint")[:, TEXT_START:]
        b = model(other, vmask, ids, tmask, mask="joint")[:, TEXT_START:]
    assert (a - b)[tmask].abs().max() > 1e-3


def test_text_causal_position_unchanged_by_later_tokens(model):
    video, vmask, ids, tmask = _batch()
    n = int(tmask[1].sum())
    with torch.no_grad():
        base = model(video, vmask, ids, tmask, mask="text_causal")
        for i in range(n - 1):
            changed = ids.clone()
            changed[1, i + 1 : n] = 2000 + i  # every token after i replaced
            out = model(video, vmask, changed, tmask, mask="text_causal")
            assert (out[1, : TEXT_START + i + 1] - base[1, : TEXT_START + i + 1]).abs().max() <= 1e-5
            assert (
                out[1, TEXT_START + i + 1 : TEXT_START + n] - base[1, TEXT_START + i + 1 : TEXT_START + n]
            ).abs().max() > 1e-4


def test_text_causal_video_rows_do_not_see_text(model):
    video, vmask, ids, tmask = _batch()
    changed = ids.clone()
    changed[:, 0] = 3000
    with torch.no_grad():
        a = model(video, vmask, ids, tmask, mask="text_causal")[:, :TEXT_START]
        b = model(video, vmask, changed, tmask, mask="text_causal")[:, :TEXT_START]
    assert (a - b).abs().max() <= 1e-6
