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

Counts = dict[tuple[str, ...], int]


def ngram_counts(sentence: str, n: int = N) -> tuple[int, Counts]:
    """(number of words, n-gram -> count for 1..n-grams) of a whitespace-split sentence, the n-grams in
    pycocoevalcap's order (unigrams first, each in order of first occurrence)."""
    words = sentence.split()
    counts: Counts = {}
    get = counts.get
    for k in range(1, n + 1):
        for g in zip(*[words[i:] for i in range(k)]):
            counts[g] = get(g, 0) + 1
    return len(words), counts


def _check(gts: dict, res: dict) -> None:
    if gts.keys() != res.keys():
        raise ValueError("gts and res have different ids")
    for k, hyp in res.items():
        if not isinstance(hyp, list) or len(hyp) != 1 or not isinstance(gts[k], list) or not gts[k]:
            raise ValueError(f"clip {k!r}: need one hypothesis and at least one reference (lists of strings)")


class Cooked:
    """Each clip's n-gram counts, shared by BLEU and CIDEr-D (both cook sentences the same way)."""

    def __init__(self, gts: dict[object, list[str]], res: dict[object, list[str]], n: int = N):
        _check(gts, res)
        self.n = n
        self.keys = list(gts)
        self.hyps = [ngram_counts(res[k][0], n) for k in self.keys]
        self.refs = [[ngram_counts(r, n) for r in gts[k]] for k in self.keys]


def bleu(cooked: Cooked) -> tuple[list[float], list[list[float]], np.ndarray]:
    """pycocoevalcap ``Bleu(n).compute_score`` (score, scores), and the per-clip count statistics."""
    n = cooked.n
    stats = np.zeros((len(cooked.keys), 2 + 2 * n), dtype=np.float64)
    per_clip: list[list[float]] = [[] for _ in range(n)]
    testlen_sum = reflen_sum = 0
    guess_sum, correct_sum = [0] * n, [0] * n
    for row, ((testlen, test), refs) in enumerate(zip(cooked.hyps, cooked.refs)):
        maxcounts: Counts = {}
        for _, counts in refs:
            for g, c in counts.items():
                if c > maxcounts.get(g, 0):
                    maxcounts[g] = c
        reflen = min((abs(length - testlen), length) for length, _ in refs)[1]
        guess = [max(0, testlen - k + 1) for k in range(1, n + 1)]
        correct = [0] * n
        for g, c in test.items():
            m = maxcounts.get(g, 0)
            correct[len(g) - 1] += m if m < c else c
        stats[row] = [testlen, reflen, *guess, *correct]
        testlen_sum += testlen
        reflen_sum += reflen
        b = 1.0
        for k in range(n):
            guess_sum[k] += guess[k]
            correct_sum[k] += correct[k]
            b *= (float(correct[k]) + _TINY) / (float(guess[k]) + _SMALL)
            per_clip[k].append(b ** (1.0 / (k + 1)))
        ratio = (testlen + _TINY) / (reflen + _SMALL)
        if ratio < 1:
            for k in range(n):
                per_clip[k][-1] *= math.exp(1 - 1 / ratio)
    return corpus_bleu(testlen_sum, reflen_sum, guess_sum, correct_sum), per_clip, stats


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


def cider_d(cooked: Cooked, sigma: float = SIGMA) -> tuple[np.float64, np.ndarray]:
    """pycocoevalcap ``Cider().compute_score``: (mean, per-clip CIDEr-D), IDF from these clips' references."""
    n = cooked.n
    df: dict[tuple[str, ...], int] = {}
    for refs in cooked.refs:
        for g in {g for _, counts in refs for g in counts}:
            df[g] = df.get(g, 0) + 1
    ref_len = np.log(float(len(cooked.refs)))
    idf_of_df: dict[int, float] = {}  # ref_len - log(max(1, df)), one numpy log per distinct df

    def idf(g: tuple[str, ...]) -> float:
        d = df.get(g, 0)
        w = idf_of_df.get(d)
        if w is None:
            w = idf_of_df[d] = float(ref_len - np.log(max(1.0, float(d))))
        return w

    def vec(length: int, counts: Counts) -> tuple[list[dict], list[float], int]:
        v: list[dict] = [{} for _ in range(n)]
        sq = [0.0] * n
        for g, tf in counts.items():
            x = float(tf) * idf(g)
            k = len(g) - 1
            v[k][g] = x
            sq[k] += pow(x, 2)
        return v, [math.sqrt(s) for s in sq], max(0, length - 1)  # length: the number of bigrams

    penalty: dict[float, float] = {}
    denom = 2 * sigma**2
    scores = []
    for (hlen, hcounts), refs in zip(cooked.hyps, cooked.refs):
        hv, hnorm, hbigrams = vec(hlen, hcounts)
        score = [0.0] * n
        for rlen, rcounts in refs:
            rv, rnorm, rbigrams = vec(rlen, rcounts)
            delta = float(hbigrams - rbigrams)
            pen = penalty.get(delta)
            if pen is None:
                pen = penalty[delta] = np.e ** (-(delta**2) / denom)
            for k in range(n):
                val = 0.0
                rk = rv[k]
                for g, x in hv[k].items():
                    y = rk.get(g)
                    if y:
                        val += (x if x < y else y) * y
                if hnorm[k] != 0 and rnorm[k] != 0:
                    val /= hnorm[k] * rnorm[k]
                score[k] += val * pen
        avg = np.mean(np.array(score))
        avg /= len(refs)
        avg *= 10.0
        scores.append(avg)
    arr = np.array(scores)
    return np.mean(arr), arr
