"""Retrieval ranks in row blocks: the same ranks, top-k and metrics (both tie policies) as the full N x N matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmbench.metrics import MetricInputError, retrieval_blocks
from vlmbench.metrics.retrieval import ranks, retrieval_metrics
from vlmbench.metrics.retrieval_blocks import _blocks, _top, metrics_from_counts, rank_counts, rank_counts_rows


def _cases():
    g = torch.Generator().manual_seed(0)
    for n in (1, 50, 97, 333, 1000):  # small integer embeddings: exact scores, many ties
        yield (
            f"ints-{n}",
            torch.randint(-2, 3, (n, 8), generator=g).float(),
            torch.randint(-2, 3, (n, 8), generator=g).float(),
        )
    yield "constant", torch.ones(64, 4), torch.ones(64, 4)  # every score tied
    yield "constant-wide", torch.ones(450, 4), torch.ones(450, 4)  # ... with rows long enough for the chunk search
    for n in (300, 1000):
        t = torch.randn(n, 32, generator=g)
        yield f"float-{n}", t, t + 0.5 * torch.randn(n, 32, generator=g)


def assert_full_matrix(c, full: np.ndarray, k: int = 5) -> None:
    """Every count, the top-k and both policies' metrics equal the full matrix's (equal, not close)."""
    true = np.diagonal(full)
    assert (c.t2v_ge == ranks(full)).all() and (c.v2t_ge == ranks(full.T)).all()
    assert (c.t2v_gt == (full > true[:, None]).sum(1)).all()
    assert (c.v2t_gt == (full > true[None, :]).sum(0)).all() and (c.v2t_ge == (full >= true[None, :]).sum(0)).all()
    assert (c.top == np.argsort(-full, axis=1, kind="stable")[:, :k]).all()
    assert (c.top_scores == np.take_along_axis(full, c.top, 1)).all() and (c.true_score == true).all()
    for ties in ("pessimistic", "mmpt"):
        assert metrics_from_counts(c, ties) == retrieval_metrics(full, ties)
    assert metrics_from_counts(c.to_dict(), "mmpt") == metrics_from_counts(c, "mmpt")


@pytest.mark.parametrize("name,text,video", list(_cases()), ids=lambda x: x if isinstance(x, str) else "")
@pytest.mark.parametrize("block", [7, 64, 4096])
def test_blocked_equals_full_matrix(name, text, video, block):
    """The full matrix as the blocks compute it (float scores: a BLAS may round a 7-row product differently
    from a 300-row one; integer scores are exact either way)."""
    full = torch.cat([text[a:b] @ video.T for a, b in _blocks(len(text), block)]).numpy()
    assert_full_matrix(rank_counts(text, video, block=block), full)
    if name.startswith("ints"):
        assert (full == (text @ video.T).numpy()).all()


@pytest.mark.parametrize("levels", [2, 3, 7])
@pytest.mark.parametrize("n,block", [(1, 1), (5, 2), (130, 7), (450, 64), (700, 1024)])
@pytest.mark.parametrize("with_diag", [False, True])
def test_quantised_rows_both_policies(levels, n, block, with_diag):
    """Scores of a few levels (ties in rows, in columns and at the k-th place), given by rows() as sanity.py and
    floors.py give them (numpy, float64 and int64), with and without the diagonal: the full matrix's answers."""
    rng = np.random.default_rng(levels * 1000 + n)
    for full in (rng.integers(levels, size=(n, n)), rng.integers(levels, size=(n, n)) / 2.0):
        diag = np.diagonal(full).copy() if with_diag else None
        c = rank_counts_rows(lambda a, b: full[a:b], n, block=block, diag=diag)  # noqa: B023 (called here)
        assert_full_matrix(c, full)
        assert c.passes == (1 if with_diag else 2)


def test_k_above_n_and_a_single_pair():
    t, v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    c = rank_counts(t, v, k=10)  # scores [[1,1,0],[0,0,1],[1,1,1]]
    assert c.top.tolist() == [[0, 1, 2], [2, 0, 1], [0, 1, 2]]
    assert c.t2v_gt.tolist() == [0, 1, 0] and c.t2v_ge.tolist() == [2, 3, 3]
    assert c.v2t_gt.tolist() == [0, 2, 0] and c.v2t_ge.tolist() == [2, 3, 2]  # column j against score[j, j]
    one = rank_counts(torch.tensor([[2.0]]), torch.tensor([[3.0]]))
    assert one.top.tolist() == [[0]] and one.t2v_ge.tolist() == [1] and one.v2t_gt.tolist() == [0]
    assert metrics_from_counts(one)["R@1"] == 100.0


def test_column_counts_by_hand():
    """Column j counts the rows scoring above / at least score[j, j], whichever block holds them."""
    full = np.array([[5, 1, 9, 0], [5, 2, 2, 3], [6, 2, 1, 3], [4, 8, 1, 3]], float)
    c = rank_counts_rows(lambda a, b: full[a:b], 4, block=3)  # blocks of rows 0-1 and 2-3
    assert c.v2t_gt.tolist() == [1, 1, 2, 0] and c.v2t_ge.tolist() == [3, 3, 4, 3]  # diagonal 5, 2, 1, 3
    assert c.t2v_gt.tolist() == [1, 2, 3, 2] and c.t2v_ge.tolist() == [2, 4, 4, 3]


def test_top_k_stable_order_with_ties():
    """Ties at and above the k-th place, across chunks and in the short last chunk: lower column first, as
    np.argsort(-s, kind='stable'); the chunk search and its tie fallbacks against the plain sort."""
    rng = np.random.default_rng(1)
    for _ in range(40):
        m, n, levels, chunk = rng.integers(1, 9), rng.integers(1, 60), rng.integers(1, 6), rng.integers(1, 9)
        s = rng.integers(levels, size=(m, n)).astype(np.float32)
        if rng.random() < 0.3:
            s[rng.random((m, n)) < 0.3] = -np.inf
        for k in range(1, min(n, 7) + 1):
            idx, vals, _ = _top(torch.from_numpy(s), k, chunk=int(chunk))
            want = np.argsort(-s, axis=1, kind="stable")[:, :k]
            assert (idx.numpy() == want).all() and (vals.numpy() == np.take_along_axis(s, want, 1)).all()
    s = torch.tensor([[0, 3, 3, 1, 3, 0, 0, 3, 2, 3, 3]])  # integers: three chunks of 3 and a tail of 2
    assert _top(s, 4, chunk=3)[0].tolist() == [[1, 2, 4, 7]]


def test_top_k_of_distinct_scores_is_topk():
    s = torch.randn(30, 1000, generator=torch.Generator().manual_seed(2))
    idx, vals, _ = _top(s, 5)
    assert (idx == torch.topk(s, 5).indices).all() and (vals == torch.topk(s, 5).values).all()


def test_blocks_are_balanced():
    for n, block in ((1, 1024), (1025, 1024), (2049, 1024), (20000, 1024), (50, 7), (7, 7)):
        bl = list(_blocks(n, block))
        sizes = [b - a for a, b in bl]
        assert bl[0][0] == 0 and bl[-1][1] == n and all(x[1] == y[0] for x, y in zip(bl, bl[1:], strict=False))
        assert max(sizes) <= block and max(sizes) - min(sizes) <= 1 and len(bl) == -(-n // block)


def test_rows_are_called_once_when_the_diagonal_holds():
    full = np.random.default_rng(0).standard_normal((40, 40)).astype(np.float32)
    calls = []

    def rows(a, b):
        calls.append((a, b))
        return full[a:b]

    c = rank_counts_rows(rows, 40, block=16, diag=np.diagonal(full))
    assert calls == [(0, 14), (14, 27), (27, 40)] and c.passes == 1
    assert_full_matrix(c, full)


def test_a_wrong_diagonal_estimate_is_recounted_exactly(monkeypatch):
    """The estimate is never trusted: columns whose estimate differs from the pass's own diagonal (here: one
    moved by one ulp either way, another far off) are recounted in a second pass, in order from row 0."""
    g = torch.Generator().manual_seed(3)
    t = torch.randint(-2, 3, (200, 8), generator=g).float()  # ties: an ulp changes the counts
    v = torch.randint(-2, 3, (200, 8), generator=g).float()
    full = (t @ v.T).numpy()
    real = retrieval_blocks._diagonal

    def off(text, video, tile=retrieval_blocks.TILE):
        d = real(text, video, tile)
        d[3] = torch.nextafter(d[3], torch.tensor(np.inf))
        d[77] = torch.nextafter(d[77], torch.tensor(-np.inf))
        d[150] += 100
        return d

    monkeypatch.setattr(retrieval_blocks, "_diagonal", off)
    c = rank_counts(t, v, block=64)
    assert c.passes == 2
    assert_full_matrix(c, full)
    calls = []

    def rows(a, b):
        calls.append(a)
        return full[a:b]

    assert_full_matrix(rank_counts_rows(rows, 200, block=64, diag=off(t, v)), full)
    assert calls == [0, 50, 100, 150] * 2


@pytest.mark.parametrize("n,dim,block", [(300, 32, 64), (1000, 768, 1024), (2500, 96, 1024), (3000, 768, 777)])
def test_the_tile_diagonal_matches_this_blas(n, dim, block):
    """Speed, not exactness: on this machine's BLAS the tile diagonal equals the blocked pass's diagonal bit for
    bit, so rank_counts computes each block once. If this fails (another BLAS or torch), results stay exact
    but every call costs two passes: re-measure `_diagonal`'s tile shape (docs/scale.md)."""
    g = torch.Generator().manual_seed(n)
    t = torch.randn(n, dim, generator=g)
    v = t + torch.randn(n, dim, generator=g)
    c = rank_counts(t, v, block=block)
    assert c.passes == 1
    true = torch.cat([(t[a:b] @ v.T).diagonal(a) for a, b in _blocks(n, block)])
    assert (retrieval_blocks._diagonal(t, v) == true).all()


def test_the_device_paths_on_the_cpu(monkeypatch):
    """The GPU's code paths (bool comparisons, whole blocks, sorts instead of topk, NaN read back once at the
    end) run here too, through the switch that picks them: the same answers without a GPU."""
    monkeypatch.setattr(retrieval_blocks, "_runs_ahead", lambda device: True)
    for _, text, video in _cases():
        for block in (7, 64):
            full = torch.cat([text[a:b] @ video.T for a, b in _blocks(len(text), block)]).numpy()
            assert_full_matrix(rank_counts(text, video, block=block), full)
    for n in (5, 450):
        full = np.random.default_rng(0).standard_normal((n, n))
        full[n - 1, 1] = np.nan  # in the last block: the whole pass runs, then the NaN is found
        a = list(_blocks(n, 2))[-1][0]
        with pytest.raises(MetricInputError, match=f"1 NaN values \\(rows {a}-{n - 1}\\)"):
            rank_counts_rows(lambda a, b: full[a:b], n, block=2)  # noqa: B023 (called here)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs where the embeddings live)")
def test_cuda_embeddings_rank_on_the_device():
    g = torch.Generator().manual_seed(4)
    t = torch.randint(-2, 3, (3000, 16), generator=g).float()  # exact scores: CPU and GPU agree bit for bit
    v = torch.randint(-2, 3, (3000, 16), generator=g).float()
    cpu, gpu = rank_counts(t, v), rank_counts(t.cuda(), v.cuda())
    for key in cpu.KEYS:
        assert np.array_equal(getattr(cpu, key), getattr(gpu, key)), key
    assert_full_matrix(gpu, (t @ v.T).numpy())
    t = torch.randn(3000, 768, generator=g).cuda()
    v = t + torch.randn(3000, 768, generator=g).cuda()
    c = rank_counts(t, v)
    full = torch.cat([t[a:b] @ v.T for a, b in _blocks(3000, retrieval_blocks.BLOCK)]).cpu().numpy()  # the pass
    assert_full_matrix(c, full)
    assert c.passes == 1  # speed: the tile diagonal matched cuBLAS's blocked pass


def test_pooled_ties_by_hand():
    """3 queries; scores of row 0 all tied (positions 0,1,2), row 1 truth first, row 2 truth second of a tie
    of two: pooled positions [0,1,2, 0, 1,2] -> R@1 = 2/6, MedR = median(1,2,3,1,2,3) = 2, MeanR = 12/6."""
    counts = {
        "t2v_gt": np.array([0, 0, 1]),
        "t2v_ge": np.array([3, 1, 3]),
        "v2t_gt": np.zeros(3, int),
        "v2t_ge": np.ones(3, int),
    }
    m = metrics_from_counts(counts, "mmpt")
    assert m["R@1"] == pytest.approx(100 * 2 / 6) and m["R@5"] == 100.0
    assert m["MedR"] == 2.0 and m["MeanR"] == 2.0 and m["v2t_R@1"] == 100.0
    p = metrics_from_counts(counts, "pessimistic")
    assert p["R@1"] == pytest.approx(100 / 3) and p["MedR"] == 3.0


@pytest.mark.parametrize("n", [5, 450])  # the short-row sort and the chunk search
@pytest.mark.parametrize("where", ["diagonal", "chunk", "tail"])
def test_nan_anywhere_is_an_input_error(n, where):
    full = np.random.default_rng(0).standard_normal((n, n))
    i, j = {"diagonal": (2, 2), "chunk": (3, 1), "tail": (4, n - 1)}[where]
    full[i, j] = np.nan
    with pytest.raises(MetricInputError, match="1 NaN values"):
        rank_counts_rows(lambda a, b: full[a:b], n, block=2)


def test_bad_inputs():
    with pytest.raises(MetricInputError):
        rank_counts(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(MetricInputError):
        rank_counts(torch.full((3, 4), float("nan")), torch.ones(3, 4))
    with pytest.raises(MetricInputError):
        rank_counts(torch.ones(3, 4), torch.ones(3, 4, dtype=torch.float64))
    with pytest.raises(MetricInputError):
        rank_counts_rows(lambda a, b: np.zeros((b - a, 4)), 3)
    with pytest.raises(MetricInputError):
        metrics_from_counts({"t2v_gt": [0], "t2v_ge": [1], "v2t_gt": [0], "v2t_ge": [1]}, "optimistic")
