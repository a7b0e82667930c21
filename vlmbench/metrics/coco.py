"""The coco-caption scorers BLEU-1..4, ROUGE-L and CIDEr-D in Python, equal to pycocoevalcap's to the bit.

Each function takes pycocoevalcap's (gts, res): clip id -> list of tokenized sentences (res: exactly one),
and returns what the matching pycocoevalcap scorer's ``compute_score`` returns, in gts order:

- ``bleu``: corpus BLEU-1..4 and per-clip BLEU (``Bleu(4)``: 'closest' reference length, the epsilons
  tiny=1e-15 and small=1e-9 so a zero count gives 0, the brevity penalty exp(1 - r/c) below ratio 1),
  plus each clip's counts [testlen, closest reflen, guess_1..4, correct_1..4] (their sums give the corpus
  score exactly);
- ``rouge_l``: mean and per-clip ROUGE-L (``Rouge``: tokens split on single spaces, the longest common
  subsequence with each reference, max precision and max recall over references, F with beta 1.2);
- ``cider_d``: mean and per-clip CIDEr-D (``Cider``: 1-4-grams, document frequency over the clips'
  reference sets, idf log(N) - log(max(1, df)), tf-idf vectors, clipped cosine per n, Gaussian length
  penalty sigma 6 on the bigram counts, mean over n, mean over references, x10).

"To the bit" means the same floating-point operations in the same order: sums run in pycocoevalcap's
order (first occurrence of each n-gram), squares are pow(x, 2) (the C library's pow, which differs from
x*x in the last bit now and then), logs are numpy's on the same scalars, and the means are numpy's on the
same arrays. Skipped: only additions of +0.0 (n-grams a reference lacks), which change nothing.
tests/test_metrics_captioning_parity.py checks every value against pycocoevalcap itself.
"""

from __future__ import annotations

import math

import numpy as np

N = 4
SIGMA = 6.0
BETA = 1.2
_TINY = 1e-15
_SMALL = 1e-9


def _check(gts: dict, res: dict) -> None:
    if gts.keys() != res.keys():
        raise ValueError("gts and res have different ids")
    for k, hyp in res.items():
        if not isinstance(hyp, list) or len(hyp) != 1 or not isinstance(gts[k], list) or not gts[k]:
            raise ValueError(f"clip {k!r}: need one hypothesis and at least one reference (lists of strings)")


class Cooked:
    """Each clip's n-gram counts (whitespace-split words), shared by BLEU and CIDEr-D.

    Sentences are numbered hypotheses first (sentence c is clip c's hypothesis), then every reference in
    clip order. ``grams[k-1]`` holds the k-grams as parallel arrays (sentence, n-gram id, count), one row per
    distinct k-gram of a sentence, in pycocoevalcap's order: by sentence, then by first occurrence.
    """

    def __init__(self, gts: dict[object, list[str]], res: dict[object, list[str]], n: int = N):
        _check(gts, res)
        self.n = n
        self.keys = list(gts)
        c = len(self.keys)
        refs = [gts[k] for k in self.keys]
        self.n_refs = np.array([len(r) for r in refs], dtype=np.int64)
        self.ref_clip = np.repeat(np.arange(c), self.n_refs)  # clip of each reference
        sentences = [res[k][0] for k in self.keys] + [r for rs in refs for r in rs]
        vocab: dict[str, int] = {}
        flat: list[int] = []
        lengths = []
        for sent in sentences:
            words = sent.split()
            lengths.append(len(words))
            flat.extend([vocab.setdefault(w, len(vocab)) for w in words])
        self.lengths = np.array(lengths, dtype=np.int64)
        words_ = np.array(flat, dtype=np.int64)
        ends = np.cumsum(self.lengths)
        sent_of = np.repeat(np.arange(len(sentences)), self.lengths)
        pos = np.arange(len(words_))
        gid, n_ids = words_, max(len(vocab), 1)
        self.grams: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
        for k in range(1, n + 1):
            if k > 1:  # a k-gram is a (k-1)-gram and the next word: number the distinct pairs
                keep = pos + (k - 1) < ends[sent_of]
                pos, sent_of, prev = pos[keep], sent_of[keep], gid[keep]
                uniq, gid = np.unique(prev * (len(vocab) + 1) + words_[pos + k - 1], return_inverse=True)
                n_ids = max(len(uniq), 1)
            key = sent_of * n_ids + gid
            uniq, first, counts = np.unique(key, return_index=True, return_counts=True)
            order = np.argsort(first, kind="stable")  # first occurrence, sentence by sentence
            uniq = uniq[order]
            self.grams.append((uniq // n_ids, uniq % n_ids, counts[order], n_ids))

    @property
    def n_clips(self) -> int:
        return len(self.keys)


def _split(cooked: Cooked, k: int):
    """The k-grams of the hypotheses (clip, id, count) and of the references (reference, clip, id, count)."""
    sent, gid, tf, n_ids = cooked.grams[k]
    c = cooked.n_clips
    hyp = sent < c
    ref = ~hyp
    r = sent[ref] - c
    return (sent[hyp], gid[hyp], tf[hyp]), (r, cooked.ref_clip[r], gid[ref], tf[ref]), n_ids


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, index) of each key in sorted_keys (index 0 where not found)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=np.int64)
    idx = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[idx] == keys, idx


def bleu(cooked: Cooked) -> tuple[list[float], list[list[float]], np.ndarray]:
    """pycocoevalcap ``Bleu(n).compute_score`` (score, scores), and the per-clip count statistics."""
    n, c = cooked.n, cooked.n_clips
    testlen = cooked.lengths[:c]
    reflens = cooked.lengths[c:]
    # closest reference length: min over references of (|r - testlen|, r)
    big = int(reflens.max(initial=0)) + 1
    key = np.abs(reflens - testlen[cooked.ref_clip]) * big + reflens
    starts = np.concatenate([[0], np.cumsum(cooked.n_refs)[:-1]])
    reflen = np.minimum.reduceat(key, starts) % big
    guess = np.maximum(0, testlen[:, None] - np.arange(n)[None, :])
    correct = np.zeros((c, n), dtype=np.int64)
    for k in range(n):
        (hc, hg, ht), (_, rc, rg, rt), n_ids = _split(cooked, k)
        rkey = rc * n_ids + rg
        o = np.lexsort((rt, rkey))  # by (clip, id), the largest count last
        rkey, rt = rkey[o], rt[o]
        last = np.ones(len(rkey), dtype=bool)
        last[:-1] = rkey[1:] != rkey[:-1]
        maxkey, maxcount = rkey[last], rt[last]
        found, idx = _lookup(maxkey, hc * n_ids + hg)
        clipped = np.minimum(ht, np.where(found, maxcount[idx] if len(maxcount) else 0, 0))
        correct[:, k] = np.bincount(hc, weights=clipped, minlength=c).astype(np.int64)
    stats = np.column_stack([testlen, reflen, guess, correct]).astype(np.float64)

    per_clip: list[list[float]] = [[] for _ in range(n)]
    for tl, rl, g, cor in zip(testlen.tolist(), reflen.tolist(), guess.tolist(), correct.tolist()):
        b = 1.0
        for k in range(n):
            b *= (float(cor[k]) + _TINY) / (float(g[k]) + _SMALL)
            per_clip[k].append(b ** (1.0 / (k + 1)))
        ratio = (tl + _TINY) / (rl + _SMALL)
        if ratio < 1:
            for k in range(n):
                per_clip[k][-1] *= math.exp(1 - 1 / ratio)
    total = corpus_bleu(int(testlen.sum()), int(reflen.sum()), guess.sum(0).tolist(), correct.sum(0).tolist())
    return total, per_clip, stats


def corpus_bleu(testlen: float, reflen: float, guess: list, correct: list) -> list[float]:
    """Corpus BLEU-1..n from summed counts, as pycocoevalcap's BleuScorer.compute_score."""
    scores = []
    b = 1.0
    for k in range(len(guess)):
        b *= float(correct[k] + _TINY) / (guess[k] + _SMALL)
        scores.append(b ** (1.0 / (k + 1)))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    if ratio < 1:
        for k in range(len(guess)):
            scores[k] *= math.exp(1 - 1 / ratio)
    return scores


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (bit-parallel, Allison-Dix / Hyyro)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    positions: dict[str, int] = {}
    for i, w in enumerate(b):
        positions[w] = positions.get(w, 0) | (1 << i)
    mask = (1 << len(b)) - 1
    v = mask
    for w in a:
        u = v & positions.get(w, 0)
        v = ((v + u) | (v - u)) & mask
    return len(b) - v.bit_count()


def rouge_l(gts: dict[object, list[str]], res: dict[object, list[str]]) -> tuple[np.float64, np.ndarray]:
    """pycocoevalcap ``Rouge().compute_score``: (mean, per-clip ROUGE-L)."""
    _check(gts, res)
    scores = []
    for k in gts:
        cand = res[k][0].split(" ")
        prec, rec = [], []
        for ref in gts[k]:
            toks = ref.split(" ")
            lcs = lcs_length(toks, cand)
            prec.append(lcs / float(len(cand)))
            rec.append(lcs / float(len(toks)))
        p, r = max(prec), max(rec)
        if p != 0 and r != 0:
            scores.append(((1 + BETA**2) * p * r) / float(r + BETA**2 * p))
        else:
            scores.append(0.0)
    arr = np.array(scores)
    return np.mean(arr), arr


def _pow2(x: np.ndarray) -> np.ndarray:
    """pow(x, 2) element by element with the C library's pow, as Python and numpy scalars compute it (numpy's
    array power squares by x*x, which differs in the last bit now and then); once per distinct value."""
    uniq, inv = np.unique(x, return_inverse=True)
    return np.array([pow(float(v), 2) for v in uniq.tolist()], dtype=np.float64)[inv]


def cider_d(cooked: Cooked, sigma: float = SIGMA) -> tuple[np.float64, np.ndarray]:
    """pycocoevalcap ``Cider().compute_score``: (mean, per-clip CIDEr-D), IDF from these clips' references.

    The sums run in pycocoevalcap's order through np.bincount, which adds its weights one by one in order.
    """
    n, c = cooked.n, cooked.n_clips
    n_sent = len(cooked.lengths)
    n_ref = n_sent - c
    ref_len = np.log(float(c))
    bigrams = np.maximum(0, cooked.lengths - 1).astype(np.float64)  # pycocoevalcap's "length"
    hyp_bigrams = bigrams[:c][cooked.ref_clip]
    delta = hyp_bigrams - bigrams[c:]
    uniq, inv = np.unique(delta, return_inverse=True)
    penalty = np.array([np.e ** (-(d**2) / (2 * sigma**2)) for d in uniq.tolist()], dtype=np.float64)[inv]
    score = np.zeros((c, n), dtype=np.float64)
    for k in range(n):
        sent, gid, tf, n_ids = cooked.grams[k]
        (hc, hg, _), (r, rc, rg, _), _ = _split(cooked, k)
        is_ref = sent >= c
        # document frequency: in how many clips' reference sets each n-gram is
        clip_of = np.where(is_ref, cooked.ref_clip[np.maximum(sent - c, 0)], -1)
        pairs = np.unique(clip_of[is_ref] * n_ids + gid[is_ref])
        df = np.bincount(pairs % n_ids, minlength=n_ids)
        d_uniq, d_inv = np.unique(df, return_inverse=True)
        logs = np.array([np.log(max(1.0, float(d))) for d in d_uniq.tolist()], dtype=np.float64)
        idf = ref_len - logs[d_inv]
        x = tf.astype(np.float64) * idf[gid]
        norm = np.sqrt(np.bincount(sent, weights=_pow2(x), minlength=n_sent).astype(np.float64))
        # clipped dot products: the reference's n-grams that the hypothesis has, in the hypothesis's order
        hx = x[~is_ref]
        hkey = hc * n_ids + hg
        horder = np.argsort(hkey, kind="stable")
        found, idx = _lookup(hkey[horder], rc * n_ids + rg)
        hi = horder[idx[found]]  # index of the matching hypothesis n-gram
        rx = x[is_ref][found]
        rr = r[found]
        o = np.lexsort((hi, rr))
        terms = np.minimum(hx[hi], rx) * rx
        val = np.bincount(rr[o], weights=terms[o], minlength=n_ref).astype(np.float64)
        nh, nr = norm[:c][cooked.ref_clip], norm[c:]
        both = (nh != 0) & (nr != 0)
        val[both] /= nh[both] * nr[both]
        score[:, k] = np.bincount(cooked.ref_clip, weights=val * penalty, minlength=c)
    per_clip = np.array([np.mean(row) for row in score]) if c else np.zeros(0)
    per_clip /= cooked.n_refs
    per_clip *= 10.0
    return np.mean(per_clip), per_clip
