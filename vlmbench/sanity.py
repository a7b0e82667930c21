"""Metric sanity (`python -m vlmbench.sanity`, run by .ci/run before the suite): scores of a known random model,
put through the package's real metric functions, must give their analytic expectation within 4 standard errors.

Sample sizes make a planted off-by-one rank (every rank +1: R@1 10% -> 0%, MeanR +1 vs a standard error
~0.01) or a tie-rule change (pessimistic '>=' -> optimistic '>' on integer scores: R@1 moves by > 10 points)
fail by far. Exit 1 on a failure; prints metric, expected, measured, allowed error, verdict.
Not yet covered: CrossTask recall of the random-logprob DP (no independent expectation written yet).
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


def _groups():
    """(label, thunk) per check group; a group that raises is one FAIL row (a crash is a failed check too)."""
    return [("retrieval (pessimistic)", lambda: _retrieval("pessimistic", None)),
            ("retrieval (mmpt)", lambda: _retrieval("mmpt", None)),
            ("retrieval (pessimistic, ties)", lambda: _retrieval("pessimistic", 4)),
            ("retrieval (pessimistic, blocked)", lambda: _retrieval("pessimistic", None, blocked=True)),
            ("retrieval (mmpt, blocked)", lambda: _retrieval("mmpt", None, blocked=True)),
            ("retrieval (pessimistic, ties, blocked)", lambda: _retrieval("pessimistic", 4, blocked=True)),
            ("MC-QA", lambda: [_mcqa()]), ("COIN", lambda: [_coin()])]


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
