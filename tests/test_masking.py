"""MFM-MLM / MMM masking proportions over 10,000 draws (+-3%) and what may never be masked."""

import torch

from vlmbench.model.masking import MFM_MLM, WHOLE_TEXT, WHOLE_VIDEO, corrupt
from vlmbench.model.text import CLS_ID, MASK_ID, PAD_ID, SEP_ID, pack

N = 10_000


def _batch():
    g = torch.Generator().manual_seed(0)
    vmask = torch.zeros(N, 32, dtype=torch.bool)
    lengths = torch.randint(5, 33, (N,), generator=g)
    vmask[torch.arange(32)[None, :] < lengths[:, None]] = True
    video = torch.rand(N, 32, 8, generator=g) + 0.5  # strictly non-zero on valid seconds
    video = video * vmask[..., None]
    toks = [list(range(1000, 1000 + int(k))) + [CLS_ID] for k in torch.randint(4, 40, (N,), generator=g)]
    ids, tmask = pack(toks)
    return video, vmask, ids, tmask


def test_mmm_proportions_and_rates():
    video, vmask, ids, tmask = _batch()
    c = corrupt(video, vmask, ids, mmm=0.5, generator=torch.Generator().manual_seed(1))
    frac = lambda k: float((c.kind == k).float().mean())  # noqa: E731
    assert abs(frac(MFM_MLM) - 0.5) < 0.03
    assert abs(frac(WHOLE_TEXT) - 0.25) < 0.03
    assert abs(frac(WHOLE_VIDEO) - 0.25) < 0.03

    maskable = tmask & (ids != SEP_ID) & (ids != CLS_ID)
    plain = c.kind == MFM_MLM
    # MFM-MLM: 15% of valid frames, 15% of non-special tokens
    assert abs(float(c.video_masked[plain].sum() / vmask[plain].sum()) - 0.15) < 0.03
    assert abs(float(c.text_masked[plain].sum() / maskable[plain].sum()) - 0.15) < 0.03
    # whole-text: every maskable token, no frame; whole-video: every valid frame, no token
    wt, wv = c.kind == WHOLE_TEXT, c.kind == WHOLE_VIDEO
    assert torch.equal(c.text_masked[wt], maskable[wt]) and not c.video_masked[wt].any()
    assert torch.equal(c.video_masked[wv], vmask[wv]) and not c.text_masked[wv].any()
    # 80 / 10 / 10 over masked tokens
    masked_new, masked_old = c.text_ids[c.text_masked], ids[c.text_masked]
    n = len(masked_new)
    assert abs(float((masked_new == MASK_ID).sum()) / n - 0.8) < 0.03
    assert abs(float((masked_new == masked_old).sum()) / n - 0.1) < 0.03
    # masked frames are zeroed before the MLP; others untouched
    assert (c.video[c.video_masked] == 0).all()
    assert torch.equal(c.video[~c.video_masked], video[~c.video_masked])


def test_specials_and_padding_never_masked():
    video, vmask, ids, tmask = _batch()
    for mmm in (0.0, 0.5, 1.0):
        c = corrupt(video, vmask, ids, mmm=mmm, generator=torch.Generator().manual_seed(2))
        special = (ids == PAD_ID) | (ids == SEP_ID) | (ids == CLS_ID)
        assert not c.text_masked[special].any()
        assert torch.equal(c.text_ids[special], ids[special])
        assert not c.video_masked[~vmask].any()


def test_mmm_zero_is_plain_mfm_mlm_and_one_is_all_modality():
    video, vmask, ids, tmask = _batch()
    assert (corrupt(video, vmask, ids, mmm=0.0).kind == MFM_MLM).all()
    assert (corrupt(video, vmask, ids, mmm=1.0).kind != MFM_MLM).all()
