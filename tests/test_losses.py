"""The masked token loss (Eq. 8-9, the reference's layout) and the MFM-MLM baseline, against hand computation."""

import math

import torch

from vlmbench.model.losses import contrastive_loss, masked_token_loss, mfm_mlm_loss


def _lse(xs):
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# A 2-example batch, H = 2, vocabulary of 3 words.
# Example 1 has 2 valid frames: frame A masked, frame B not; example 2 has 1 valid frame C (not masked)
# and one masked text token (id 2). So: one masked video row (A), one masked text row, negatives {B, C}.
VOCAB = [[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]]
A, B, C = [0.2, 0.4], [-0.3, 0.1], [0.6, -0.2]  # MLP embeddings of the ORIGINAL frames
H_VIDEO = [0.5, -1.0]  # transform output at frame A's position
H_TEXT = [1.5, 0.25]  # transform output at the masked token
TOKEN = 2


def _tensors():
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return t([H_VIDEO]), t([A]), t([H_TEXT]), torch.tensor([TOKEN]), t([B, C]), t(VOCAB)


def test_masked_token_loss_by_hand():
    hv, tv, ht, ids, neg, vocab = _tensors()
    # video row: [h.A, h.B, h.C, h.w0, h.w1, h.w2], target 0
    row_v = [_dot(H_VIDEO, A), _dot(H_VIDEO, B), _dot(H_VIDEO, C)] + [_dot(H_VIDEO, w) for w in VOCAB]
    loss_v = _lse(row_v) - row_v[0]
    # text row: [h.w0, h.w1, h.w2, h.B, h.C, 0], target = token id
    row_t = [_dot(H_TEXT, w) for w in VOCAB] + [_dot(H_TEXT, B), _dot(H_TEXT, C), 0.0]
    loss_t = _lse(row_t) - row_t[TOKEN]
    expected = (loss_v + loss_t) / 2
    got = masked_token_loss(hv, tv, ht, ids, neg, vocab)
    assert abs(float(got) - expected) < 1e-12


def test_mfm_mlm_loss_by_hand():
    hv, tv, ht, ids, neg, vocab = _tensors()
    bias = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    row_v = [_dot(H_VIDEO, A), _dot(H_VIDEO, B), _dot(H_VIDEO, C)]
    mfm = _lse(row_v) - row_v[0]
    row_t = [_dot(H_TEXT, w) + b for w, b in zip(VOCAB, bias.tolist())]
    mlm = _lse(row_t) - row_t[TOKEN]
    got = mfm_mlm_loss(hv, tv, ht, ids, neg, vocab, bias)
    assert abs(float(got) - (mfm + mlm)) < 1e-12


def test_losses_with_one_modality_masked():
    hv, tv, ht, ids, neg, vocab = _tensors()
    only_text = masked_token_loss(hv[:0], tv[:0], ht, ids, neg, vocab)
    row_t = [_dot(H_TEXT, w) for w in VOCAB] + [_dot(H_TEXT, B), _dot(H_TEXT, C), 0.0]
    assert abs(float(only_text) - (_lse(row_t) - row_t[TOKEN])) < 1e-12
    assert float(masked_token_loss(hv[:0], tv[:0], ht[:0], ids[:0], neg, vocab)) == 0.0


def test_contrastive_directions():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    video = torch.tensor([[2.0, 1.0], [0.5, 3.0]], dtype=torch.float64)
    s = text @ video.T  # [[2, .5], [1, 3]]
    t2v = ((_lse([2, 0.5]) - 2) + (_lse([1, 3]) - 3)) / 2
    v2t = ((_lse([2, 1]) - 2) + (_lse([0.5, 3]) - 3)) / 2
    assert abs(float(contrastive_loss(text, video, "t2v")) - t2v) < 1e-12
    assert abs(float(contrastive_loss(text, video, "v2t")) - v2t) < 1e-12
    assert float(s[0, 0]) == 2.0


def test_objective_assembles_rows_from_the_right_positions():
    """Objective (the pre-training forward) equals masked_token_loss fed by hand-gathered rows."""
    from vlmbench.model.layout import TEXT_START, VIDEO_START
    from vlmbench.model.text import pack
    from vlmbench.model.vlm import VLM
    from vlmbench.train.pretrain import Objective

    torch.manual_seed(0)
    m = VLM.from_backbone("tiny", seed=0).eval()
    vmask = torch.zeros(2, 32, dtype=torch.bool)
    vmask[0, :3], vmask[1, :2] = True, True
    video = torch.randn(2, 32, 512) * vmask[..., None]
    ids, tmask = pack([[2000, 2001, 2002], [2003, 2004]])
    vmasked = torch.zeros_like(vmask)
    vmasked[0, 1] = True
    tmasked = torch.zeros_like(tmask)
    tmasked[1, 0] = True
    text_in = ids.clone()
    text_in[1, 0] = 103
    with torch.no_grad():
        got = Objective(m, "vlm")(video, vmask, text_in, ids, tmask, vmasked, tmasked)
        vt = m.video_tokens(video)
        zeroed = video.clone()
        zeroed[0, 1] = 0
        hidden = m(zeroed, vmask, text_in, tmask, mask="joint")
        tr = m.cls.predictions.transform
        hv = tr(hidden[0, VIDEO_START + 1])[None]
        ht = tr(hidden[1, TEXT_START + 0])[None]
        negatives = torch.stack([vt[0, 0], vt[0, 2], vt[1, 0], vt[1, 1]])
        expected = masked_token_loss(
            hv, vt[0, 1][None], ht, ids[1, :1], negatives, m.bert.embeddings.word_embeddings.weight
        )
    assert abs(float(got) - float(expected)) < 1e-5
