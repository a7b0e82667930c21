"""linear_cross_entropy equals F.cross_entropy over the materialised logits: value and every gradient."""

import pytest
import torch
import torch.nn.functional as F

from vlmbench.model import linear_ce
from vlmbench.model.linear_ce import EXTRA, linear_cross_entropy


def _inputs(rows=37, classes=23, hidden=5, seed=0, extra_rows=(0, 3, 4, 36)):
    g = torch.Generator().manual_seed(seed)
    leaf = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    h, w, b, e = leaf(rows, hidden), leaf(classes, hidden), leaf(classes), leaf(rows)
    target = torch.randint(0, classes, (rows,), generator=g)
    target[list(extra_rows)] = EXTRA
    return h, w, b, e, target


def _naive(h, w, b, e, target):
    logits = torch.cat(
        [h @ w.T + (0 if b is None else b), (torch.zeros(len(h), dtype=h.dtype) if e is None else e)[:, None]], 1
    )
    return F.cross_entropy(logits, torch.where(target == EXTRA, w.shape[0], target))


@pytest.mark.parametrize("block", [1, 7 * 24, 1 << 22])  # one row a block, blocks of 7 rows (a ragged tail), one
def test_value_and_gradients_equal_the_materialised_cross_entropy(monkeypatch, block):
    monkeypatch.setitem(linear_ce.BLOCK_ELEMENTS, "cpu", block)
    h, w, b, e, target = _inputs()
    got = linear_cross_entropy(h, w, target, bias=b, extra=e)
    want = _naive(h, w, b, e, target)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    for g1, g2 in zip(torch.autograd.grad(got, (h, w, b, e)), torch.autograd.grad(want, (h, w, b, e))):
        assert torch.allclose(g1, g2, rtol=0, atol=1e-12)


def test_without_bias_or_extra_and_with_an_upstream_scale():
    h, w, _, _, target = _inputs(extra_rows=())
    got = 3.0 * linear_cross_entropy(h, w, target)
    want = 3.0 * F.cross_entropy(h @ w.T, target)
    assert torch.allclose(got, want, atol=1e-12)
    for g1, g2 in zip(torch.autograd.grad(got, (h, w)), torch.autograd.grad(want, (h, w))):
        assert torch.allclose(g1, g2, atol=1e-12)


def test_gradients_only_where_asked_and_none_under_no_grad():
    h, w, b, e, target = _inputs()
    frozen = w.detach()
    loss = linear_cross_entropy(h, frozen, target, bias=b.detach(), extra=e)
    gh, ge = torch.autograd.grad(loss, (h, e))
    want = _naive(h, frozen, b.detach(), e, target)
    assert torch.allclose(gh, torch.autograd.grad(want, h, retain_graph=True)[0], atol=1e-12)
    assert torch.allclose(ge, torch.autograd.grad(want, e)[0], atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(
            linear_cross_entropy(h, w, target, bias=b, extra=e), _naive(h, w, b, e, target), atol=1e-12
        )


def test_float32_follows_float64_and_no_rows_give_a_zero_that_backpropagates():
    h, w, b, e, target = _inputs()
    got = linear_cross_entropy(h.float(), w.float(), target, bias=b.float(), extra=e.float())
    assert got.dtype == torch.float32 and abs(got.item() - _naive(h, w, b, e, target).item()) < 1e-5
    empty = linear_cross_entropy(h[:0], w, target[:0])
    assert empty.item() == 0.0 and torch.autograd.grad(empty, w)[0].abs().sum() == 0


def test_an_extra_target_without_extra_logits_is_refused():
    h, w, _, _, target = _inputs()
    with pytest.raises(ValueError, match="extra column"):
        linear_cross_entropy(h, w, target)


def test_large_logits_stay_finite():
    h, w, b, e, target = _inputs()
    got = linear_cross_entropy(h * 200, w, target, bias=b, extra=e * 500)
    assert torch.isfinite(got) and torch.allclose(got, _naive(h * 200, w, b, e * 500, target), atol=1e-9)


def test_under_bf16_autocast_the_softmax_stays_float32():
    """The GPU loops run under bf16 autocast: the logits' matmul is bf16 there (as F.cross_entropy's inputs were),
    but the softmax, the loss and the gradients are float32: equal to float32 CE over the bf16 logits."""
    h, w, b, e, target = (x.float().detach().requires_grad_() if x.is_floating_point() else x for x in _inputs())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = linear_cross_entropy(h, w, target, bias=b, extra=e)
    logits = torch.addmm(b.bfloat16(), h.bfloat16(), w.bfloat16().T).float()
    want = F.cross_entropy(torch.cat([logits, e[:, None]], 1), torch.where(target == EXTRA, w.shape[0], target))
    assert got.dtype == torch.float32 and abs(got.item() - want.item()) < 1e-5
    assert torch.autograd.grad(got, h)[0].dtype == torch.float32
