"""Metric sanity (`python -m vlmbench.sanity`, run by .ci/run before the suite): scores of a known random model,
put through the package's real metric functions, must give their analytic expectation within 4 standard errors.

Sample sizes make a planted off-by-one rank (every rank +1: R@1 10% -> 0%, MeanR +1 vs a standard error
~0.01) or a tie-rule change (pessimistic '>=' -> optimistic '>' on integer scores: R@1 moves by > 10 points)
fail by far. Exit 1 on a failure; prints metric, expected, measured, allowed error, verdict.
Also the test-time window averaging of COIN/CrossTask (not a metric, but a mean the tasks rely on).
and the CrossTask DP on a planted known answer (its recall of a random model has no closed form here).
"""
from __future__ import annotations

import sys

import numpy as np

SIGMAS = 4.0


def _retrieval(ties: str, levels: int | None, n: int = 20, blocks: int = 2000, seed: int = 0,
               blocked: bool = False) -> list[tuple]:
    """blocked: through metrics.retrieval_blocks (what the retrieval tasks run: counts, no N x N matrix, both
    directions), else metrics.retrieval on the full matrix (re-scoring, ablation, old prediction files)."""
    from vlmbench.metrics import retrieval, retrieval_blocks

    rng = np.random.default_rng(seed)
    keys = ("R@1", "R@5", "MeanR", "v2t_R@1", "v2t_MeanR") if blocked else ("R@1", "R@5", "MeanR")
    got: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(blocks):
        s = rng.integers(levels, size=(n, n)) if levels else rng.standard_normal((n, n))
        if blocked:
            counts = retrieval_blocks.rank_counts_rows(lambda a, b: s[a:b], n, block=7)   # 3 uneven blocks
            m = retrieval_blocks.metrics_from_counts(counts, ties=ties)
        else:
            m = retrieval.retrieval_metrics(s, ties=ties)
        for k in got:
            got[k].append(m[k])
    rows = []
    if levels:   # pessimistic ties: rank = 1 + #others >= truth; truth level v uniform on 0..L-1
        v = np.arange(levels)
        p_lt = v / levels
        exp = {"R@1": 100 * np.mean(p_lt ** (n - 1)),
               "R@5": 100 * np.mean([sum(__import__("math").comb(n - 1, j) * (1 - q) ** j * q ** (n - 1 - j)
                                         for j in range(5)) for q in p_lt]),
               "MeanR": 1 + (n - 1) * np.mean(1 - p_lt)}
    else:
        exp = {"R@1": 100 / n, "R@5": 500 / n, "MeanR": (n + 1) / 2}
    exp.update({"v2t_R@1": exp["R@1"], "v2t_MeanR": exp["MeanR"]})     # the matrix is exchangeable
    for k, vals in got.items():
        vals = np.asarray(vals)
        se = vals.std(ddof=1) / np.sqrt(len(vals))
        rows.append((f"retrieval {k} ({ties}{', ties L=' + str(levels) if levels else ''}, N={n}"
                     f"{', blocked' if blocked else ''})",
                     float(exp[k]), float(vals.mean()), SIGMAS * float(se)))
    return rows


def _mcqa(m: int = 200_000, seed: int = 1) -> tuple:
    from vlmbench.metrics.qa import mcqa_accuracy

    rng = np.random.default_rng(seed)
    acc = mcqa_accuracy(rng.standard_normal((m, 5)), rng.integers(5, size=m))["accuracy"]
    return ("MC-QA accuracy (5 choices)", 20.0, float(acc), SIGMAS * 100 * np.sqrt(0.2 * 0.8 / m))


def _coin(k: int = 10, videos: int = 200, frames: int = 500, seed: int = 2) -> tuple:
    from vlmbench.metrics.segmentation import frame_accuracy

    rng = np.random.default_rng(seed)
    t = [rng.integers(k, size=frames) for _ in range(videos)]
    p = [rng.integers(k, size=frames) for _ in range(videos)]
    acc = frame_accuracy(p, t)["frame_acc"]
    n = videos * frames
    return (f"COIN frame_acc (uniform labels, {k} classes)", 100 / k, float(acc), SIGMAS * 100 * np.sqrt((1 / k) * (1 - 1 / k) / n))


def _windows(lengths=(40, 100, 157, 300), classes: int = 16, repeats: int = 15, seed: int = 3) -> tuple:
    """COIN/CrossTask test-time window averaging (adapters.windows.average, what the tasks run): iid N(0, 1)
    logits per window give each second a mean of c(s) values, so E[out^2] = mean over seconds of 1/c(s), with
    c(s) the number of 32-s windows (stride 16) covering it, counted here from the spans. One window's logits
    standing in for the mean gives 1."""
    import torch

    from vlmbench.adapters.windows import Windows, average
    from vlmbench.metrics.segmentation import sliding_windows

    rng = np.random.default_rng(seed)
    squares, expected = [], []
    for n in lengths:
        spans = sliding_windows(n, 32, 16)
        cover = np.array([sum(a <= t < b for a, b in spans) for t in range(n)], dtype=np.float64)
        for _ in range(repeats):
            values = torch.from_numpy(rng.standard_normal((len(spans), 32, classes)).astype(np.float32))
            out = average(values, Windows(torch.empty(0), torch.empty(0), spans, n))
            squares.append((out ** 2).ravel())
            expected.append(np.repeat(1.0 / cover, classes))
    sq, ex = np.concatenate(squares), np.concatenate(expected)
    se = float(np.sqrt(np.mean(2 * ex ** 2) / len(sq)))      # Var[x^2] = 2 sigma^4 for a normal x
    return ("window averaging E[logit^2] (32-s windows, stride 16)", float(ex.mean()), float(sq.mean()), SIGMAS * se)


def _dp(cases: int = 300, seed: int = 4) -> tuple:
    """CrossTask's one-frame-per-step DP on a known answer: step k's log-probability is 0 at a planted frame
    f_k (f_1 < ... < f_K) and in [-10, -5] everywhere else, so the planted frames are the unique optimum and
    must come back in every case (a shifted step column or an order rule change loses them)."""
    from vlmbench.metrics.localization import dp_one_frame_per_step

    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(cases):
        k, t = int(rng.integers(2, 9)), int(rng.integers(10, 60))
        frames = np.sort(rng.choice(t, size=k, replace=False))
        logprob = rng.uniform(-10, -5, size=(t, k))
        logprob[frames, np.arange(k)] = 0.0
        want = np.zeros((t, k), dtype=np.uint8)
        want[frames, np.arange(k)] = 1
        hits += bool(np.array_equal(dp_one_frame_per_step(logprob), want))
    return (f"CrossTask DP recovers a planted optimum ({cases} cases, %)", 100.0, 100.0 * hits / cases, 0.0)


def _groups():
    """(label, thunk) per check group; a group that raises is one FAIL row (a crash is a failed check too)."""
    return [("retrieval (pessimistic)", lambda: _retrieval("pessimistic", None)),
            ("retrieval (mmpt)", lambda: _retrieval("mmpt", None)),
            ("retrieval (pessimistic, ties)", lambda: _retrieval("pessimistic", 4)),
            ("retrieval (pessimistic, blocked)", lambda: _retrieval("pessimistic", None, blocked=True)),
            ("retrieval (mmpt, blocked)", lambda: _retrieval("mmpt", None, blocked=True)),
            ("retrieval (pessimistic, ties, blocked)", lambda: _retrieval("pessimistic", 4, blocked=True)),
            ("MC-QA", lambda: [_mcqa()]), ("COIN", lambda: [_coin()]), ("windows", lambda: [_windows()]),
            ("CrossTask DP", lambda: [_dp()])]


def checks() -> list[tuple[str, float, float, float, str]]:
    out = []
    for label, run in _groups():
        try:
            rows = run()
        except Exception as e:  # noqa: BLE001 - reported as the failed check it is
            out.append((f"{label}: raised {type(e).__name__}: {e}", float("nan"), float("nan"), 0.0, "FAIL"))
            continue
        out += [(name, e, g, a, "ok" if abs(g - e) <= a else "FAIL") for name, e, g, a in rows]
    return out


def main() -> int:
    rows = checks()
    print("| metric | expected | measured | allowed error | verdict |\n|---|---|---|---|---|")
    for name, e, g, a, v in rows:
        print(f"| {name} | {e:.4f} | {g:.4f} | {a:.4f} | {v} |")
    bad = [r for r in rows if r[4] != "ok"]
    if bad:
        print(f"sanity: {len(bad)} metric check(s) failed: " + "; ".join(r[0] for r in bad), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
