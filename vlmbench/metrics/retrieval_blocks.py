"""Retrieval ranks without the N x N score matrix: scores in row blocks (O(N x block) memory), results identical
to `metrics.retrieval` on the full matrix, for both tie policies.

Per query only two counts are kept: `gt`, the items scoring strictly above the true one, and `ge`, those scoring
>= it (the true item included). The pessimistic rank is `ge`; the reference's (mmpt) tied positions of a row are
exactly gt, gt+1, ..., ge-1 in its descending order, so both policies' R@k, MedR and MeanR follow from the
counts (the pooled positions are never listed: their median comes from a histogram). That, with each row's
top-k, is all a predictions file needs for re-scoring: 4N counts + N x k ids instead of N^2 scores.

The matrix is text x video (row i's truth is column i), scores = text @ video.T, computed once, a row block at
a time, on the device the embeddings live on. Exactness (every comparison is between scores of that one
computation, bit for bit):

- a row's counts compare the row with its own diagonal entry, taken from the same block;
- a column's counts need the column's diagonal before the block that holds it has been computed, so an
  estimate D comes first (`_diagonal`: the diagonals of square tiles text[t] @ video[t].T, TILE/N of the pass's
  work), and every block counts its columns against D. The blocks also yield the true diagonal T; after the
  pass, the columns where D != T (a BLAS that sums a tile in another order than a block) are counted again
  against T in a second pass over the blocks (the same calls, the same bits). So the result is exact whatever
  the BLAS does, and a second pass costs time only (`RankCounts.passes`). With MKL (torch's CPU BLAS) D equalled
  T at every shape measured with blocks of >= 8 rows and tiles of >= 16 (`bench/bench_retrieval.py --bits`);
  on a GPU (cuBLAS) that is not measured yet. The blocks are balanced (sizes differ by at most one row), so no
  block is a few-row remainder;
- the counts are sums of 0/1 (exact: float32 sums of integers are exact below 2^24, float64 beyond), on a CPU
  a few rows at a time (CACHE bytes) so that three of the four comparisons read them from the cache;
- top-k is stable (ties by lower column index, as np.argsort(-s, kind='stable')): the row is cut into chunks,
  the k chunks with the largest maxima (ties: lower chunk first) hold the first k items of the stable order,
  and only their k x CHUNK scores (with the short last chunk's) are ranked: by topk where no tie can reorder
  them, else by a stable sort. The chunk maxima also reveal a NaN anywhere in the block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vlmbench.metrics import MetricInputError
from vlmbench.metrics.retrieval import _KS, TIES, _summary

BLOCK = 1024  # rows of scores per block: memory is O(N x BLOCK)
TILE = 64  # side of the square tiles that estimate the diagonal (N if smaller)
CHUNK = 64  # columns per chunk in the top-k search
CACHE = 8 << 20  # bytes of scores counted at a time on a CPU (rows that stay in the cache between comparisons)


@dataclass
class RankCounts:
    t2v_gt: np.ndarray  # (N,) int64: videos scoring above the true one, per text query
    t2v_ge: np.ndarray  # (N,) int64: ... scoring >= it (= the pessimistic 1-based rank)
    v2t_gt: np.ndarray  # (N,) per video query (columns)
    v2t_ge: np.ndarray
    top: np.ndarray  # (N, k) int64: each text query's best videos, ties by lower index (stable order)
    top_scores: np.ndarray | None = None  # (N, k) float32: their scores
    true_score: np.ndarray | None = None  # (N,) float32: the diagonal
    passes: int = 1  # blocks computed this many times (2: some diagonal estimates differed, recounted exactly)

    KEYS = ("t2v_gt", "t2v_ge", "v2t_gt", "v2t_ge", "top", "top_scores", "true_score")

    def to_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.KEYS if getattr(self, k) is not None}


def _blocks(n: int, block: int):
    """ceil(n / block) consecutive blocks of at most `block` rows, sizes differing by at most one (no tiny
    remainder block: a BLAS may sum a few-row product in another order than the tiles of `_diagonal`)."""
    nb = -(-n // block)
    size, extra = divmod(n, nb)
    a = 0
    for i in range(nb):
        b = a + size + (i < extra)
        yield a, b
        a = b


def rank_counts(text: torch.Tensor, video: torch.Tensor, block: int | None = None, k: int = 5) -> RankCounts:
    """Counts (and top-k) of the square score matrix text @ video.T, block rows at a time, each block computed
    once (see the module's docstring), on the embeddings' device."""
    text, video = torch.as_tensor(text), torch.as_tensor(video)
    n = len(text)
    if text.ndim != 2 or video.shape != text.shape or n == 0:
        raise MetricInputError(
            f"text and video must be non-empty (N, d) matrices of one shape, got "
            f"{tuple(text.shape)} and {tuple(video.shape)}"
        )
    if text.device != video.device or text.dtype != video.dtype:
        raise MetricInputError(
            f"text and video must share a device and dtype, got {text.device}/{text.dtype} and "
            f"{video.device}/{video.dtype}"
        )
    block = block or BLOCK
    vt = video.T
    out: list[torch.Tensor] = []  # one score buffer, reused by every block (the first block is the largest)

    def rows(a: int, b: int) -> torch.Tensor:
        if not out:
            out.append(text[a:b] @ vt)
            return out[0]
        return torch.matmul(text[a:b], vt, out=out[0][: b - a])

    return rank_counts_rows(rows, n, block, k, diag=_diagonal(text, video))


def _diagonal(text: torch.Tensor, video: torch.Tensor, tile: int = TILE) -> torch.Tensor:
    """diag(text @ video.T) from square tiles text[t] @ video[t].T of side min(tile, N), in one batched matmul
    (plus one tile that overlaps the one before it, for the rows left over): the estimate D of the module's
    docstring."""
    n, dim = text.shape
    r = min(tile, n)
    nt = n // r
    d = torch.empty(n, dtype=text.dtype, device=text.device)
    d[: nt * r] = (
        torch.bmm(text[: nt * r].reshape(nt, r, dim), video[: nt * r].reshape(nt, r, dim).transpose(1, 2))
        .diagonal(dim1=1, dim2=2)
        .reshape(-1)
    )
    if n > nt * r:
        d[nt * r :] = (text[n - r :] @ video[n - r :].T).diagonal()[nt * r - n :]
    return d


def rank_counts_rows(
    rows: Callable[[int, int], torch.Tensor | np.ndarray],
    n: int,
    block: int | None = None,
    k: int = 5,
    diag: torch.Tensor | np.ndarray | None = None,
) -> RankCounts:
    """Counts of a square score matrix given by `rows(a, b)` -> its rows a..b-1 (a tensor or array, on any
    device), called for consecutive blocks in order. `diag`: the matrix's diagonal, if known beforehand (a
    guess is enough: exactness never rests on it). rows() runs once over the blocks when every column's `diag`
    equals the diagonal the rows give, else (and always without `diag`) a second time, in order from row 0, to
    recount the differing columns: that pass must give the same values (recompute or replay). On a GPU a block
    holding NaN is asked for once more at the end, for the error's count."""
    if n == 0:
        raise MetricInputError("retrieval needs at least one query")
    k, block = min(k, n), block or BLOCK
    acc = None
    for a, b in _blocks(n, block):  # the pass: rows, their diagonal, top-k; columns against the estimate
        s = _checked(rows(a, b), a, b, n)
        if acc is None:
            acc = _Acc(n, k, s, diag)
        acc.add(s, a, b)
    return acc.finish(rows, block)


class _Acc:
    """Running counts of one pass, on the device of the scores."""

    def __init__(self, n: int, k: int, s: torch.Tensor, diag):
        dev, self.n, self.k, self.m = s.device, n, k, len(s)  # the first block is the largest
        self.cdt = torch.float32 if n < 2**24 else torch.float64  # sums of 0/1 are exact below 2^24 in float32
        self.t2v_gt, self.t2v_ge, self.v2t_gt, self.v2t_ge = (
            torch.zeros(n, dtype=self.cdt, device=dev) for _ in "1234"
        )
        self.top = torch.empty((n, k), dtype=torch.int64, device=dev)
        self.top_scores = torch.empty((n, k), dtype=s.dtype, device=dev)
        self.true = torch.empty(n, dtype=s.dtype, device=dev)
        if diag is not None and not isinstance(diag, torch.Tensor):
            diag = torch.from_numpy(np.array(diag))  # a copy: np.diagonal() is read-only
        self.est = None if diag is None else diag.to(dev, s.dtype).reshape(-1)
        if self.est is not None and len(self.est) != n:
            raise MetricInputError(f"diag has {len(self.est)} values for {n} rows")
        self.sync = not _runs_ahead(dev)
        # rows counted at a time: a few on a CPU, so that three of the four comparisons read them from the cache;
        # a whole block on a GPU
        self.step = min(self.m, max(1, CACHE // (s.element_size() * n))) if self.sync else self.m
        # their 0/1 comparisons: float on a CPU (its float sums vectorise, its bool sums do not)
        self.buf = torch.empty(self.step * n, dtype=self.cdt if self.sync else torch.bool, device=dev)
        self.nan: list[tuple[int, int, torch.Tensor]] = []

    def add(self, s: torch.Tensor, a: int, b: int) -> None:
        self.top[a:b], self.top_scores[a:b], nan = _top(s, self.k)  # first: NaN is checked before counting
        if nan is not None:
            if self.sync:
                _no_nan(s, nan, a)
            else:
                self.nan.append((a, b, nan))  # read once, at the end: a read per block would stall the device
        d = s.diagonal(a)  # s[i, a + i]: the true scores of these rows
        self.true[a:b] = d
        for i in range(0, b - a, self.step):
            j = min(b - a, i + self.step)
            x, f, di = s[i:j], self._scratch(j - i, self.n), d[i:j, None]
            torch.sum(torch.gt(x, di, out=f), 1, dtype=self.cdt, out=self.t2v_gt[a + i : a + j])
            torch.sum(torch.ge(x, di, out=f), 1, dtype=self.cdt, out=self.t2v_ge[a + i : a + j])  # >=: rank 1 is itself
            if self.est is not None:
                self._columns(x, self.est, f, slice(None))

    def _scratch(self, rows: int, cols: int) -> torch.Tensor:
        return self.buf[: rows * cols].view(rows, cols)

    def _columns(self, s: torch.Tensor, d: torch.Tensor, f: torch.Tensor, cols) -> None:
        self.v2t_gt[cols] += torch.gt(s, d, out=f).sum(0, dtype=self.cdt)
        self.v2t_ge[cols] += torch.ge(s, d, out=f).sum(0, dtype=self.cdt)

    def finish(self, rows, block: int) -> RankCounts:
        if self.nan and bool(torch.stack([f for _, _, f in self.nan]).any()):
            a, b = next((a, b) for a, b, f in self.nan if f)
            _no_nan(_checked(rows(a, b), a, b, self.n), True, a)
        passes = 1
        if self.est is None:
            cols = slice(None)
        else:
            cols = torch.nonzero(self.est != self.true).flatten()
        if self.est is None or len(cols):  # recount those columns against the true diagonal
            passes = 2
            self.v2t_gt[cols], self.v2t_ge[cols] = 0, 0
            d = self.true[cols]
            for a, b in _blocks(self.n, block):
                s = _checked(rows(a, b), a, b, self.n)[:, cols]
                for i in range(0, b - a, self.step):
                    x = s[i : i + self.step]
                    self._columns(x, d, self._scratch(*x.shape), cols)
        counts = [c.cpu().numpy().astype(np.int64) for c in (self.t2v_gt, self.t2v_ge, self.v2t_gt, self.v2t_ge)]
        host = [t.cpu().numpy() for t in (self.top, self.top_scores, self.true)]
        return RankCounts(*counts, *host, passes)


def _checked(s, a: int, b: int, n: int) -> torch.Tensor:
    s = torch.as_tensor(s)
    if s.shape != (b - a, n):
        raise MetricInputError(f"score rows {a}-{b - 1} have shape {tuple(s.shape)}, expected {(b - a, n)}")
    return s


def _top(s: torch.Tensor, k: int, chunk: int = CHUNK) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The first k columns of each row in stable descending order (np.argsort(-s, kind='stable')[:, :k]), their
    scores, and whether the rows hold a NaN (a 0-d tensor, None for integers), without sorting whole rows."""
    m, n = s.shape
    nc = n // chunk
    if nc <= k or k == 0:  # short rows: one stable sort
        vals, idx = torch.sort(s, dim=1, descending=True, stable=True)
        return idx[:, :k], vals[:, :k], torch.isnan(s).any() if s.is_floating_point() else None
    body = s[:, : nc * chunk].reshape(m, nc, chunk)
    mx = body.amax(2)  # full chunks' maxima (amax propagates NaN)
    tail = s[:, nc * chunk :]  # the short last chunk, always a candidate
    nan = torch.isnan(mx).any() | torch.isnan(tail).any() if s.is_floating_point() else None
    # The k chunks first in (max descending, chunk ascending) order hold, with the tail, the first k items of the
    # stable order: an item of any other chunk has k chunk maxima before it, each >= it and, if equal, at a lower
    # column.
    first = _first(mx, k).sort(dim=1).values  # ascending: candidates in column order, ties broken by column
    cand = torch.cat([body.gather(1, first[:, :, None].expand(m, k, chunk)).view(m, k * chunk), tail], 1)
    won = _first(cand, k)  # positions in cand, in stable descending order
    in_chunks = won < k * chunk
    col = torch.where(
        in_chunks, first.gather(1, (won // chunk).clamp(max=k - 1)) * chunk + won % chunk, won + (nc - k) * chunk
    )
    return col, cand.gather(1, won), nan


def _first(x: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices of each row's first k values in stable descending order (ties: lower column first). On a
    CPU: topk's when its k + 1 values are strictly decreasing in every row (distinct values have one order), else
    a stable sort; on a GPU always the sort (cheap there, and no read back to decide)."""
    if not _runs_ahead(x.device) and x.shape[1] > k:
        vals, idx = torch.topk(x, k + 1, dim=1)
        if bool((vals[:, :-1] > vals[:, 1:]).all()):
            return idx[:, :k]
    return torch.sort(x, dim=1, descending=True, stable=True).indices[:, :k]


def _runs_ahead(device: torch.device) -> bool:
    """A device (CUDA) whose work is queued by Python and runs behind it: read nothing back per block, which would
    make it wait for Python's next calls (the tests call its code paths on the CPU through this switch)."""
    return device.type != "cpu"


def _no_nan(s: torch.Tensor, found, a: int) -> None:
    """Raise if `found` (rows a.. of the matrix, for the message)."""
    if bool(found):
        raise MetricInputError(f"scores contain {int(torch.isnan(s).sum())} NaN values (rows {a}-{a + len(s) - 1})")


def metrics_from_counts(counts: RankCounts | dict, ties: str = "pessimistic") -> dict[str, float]:
    """`retrieval_metrics` of the full matrix, from the counts alone."""
    if ties not in TIES:
        raise MetricInputError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    c = counts.to_dict() if isinstance(counts, RankCounts) else counts
    out: dict[str, float] = {}
    for prefix, gt, ge in (("", c["t2v_gt"], c["t2v_ge"]), ("v2t_", c["v2t_gt"], c["v2t_ge"])):
        gt, ge = np.asarray(gt, np.int64), np.asarray(ge, np.int64)
        out.update(_summary(ge, prefix) if ties == "pessimistic" else _pooled(gt, ge, prefix))
    return out


def _pooled(gt: np.ndarray, ge: np.ndarray, prefix: str) -> dict[str, float]:
    """Row i contributes the 0-based positions gt_i .. ge_i - 1; R@k, MedR and MeanR of their pool (+1), with
    the same float operations as `_summary` on the listed pool (so the numbers are equal, not just close)."""
    m = int((ge - gt).sum())
    out = {f"{prefix}R@{k}": float(100.0 * (int(np.clip(np.minimum(ge, k) - gt, 0, None).sum()) / m)) for k in _KS}
    n = int(ge.max()) + 1
    hist = np.zeros(n + 1, np.int64)  # positions per value, from +1/-1 at interval ends
    np.add.at(hist, gt, 1)
    np.add.at(hist, ge, -1)
    cum = np.cumsum(np.cumsum(hist)[:n])  # positions <= value

    def kth(i: int) -> int:  # the i-th smallest pooled position (0-based)
        return int(np.searchsorted(cum, i + 1))

    med = kth(m // 2) if m % 2 else (kth(m // 2 - 1) + kth(m // 2)) / 2
    out[f"{prefix}MedR"] = float(med + 1)
    total = int(((ge - 1) * ge // 2 - (gt - 1) * gt // 2).sum())  # sum of gt..ge-1 per row
    out[f"{prefix}MeanR"] = float((total + m) / m)
    return out
