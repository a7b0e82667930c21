import numpy as np
import pytest

from vlmbench.errors import InputError
from vlmbench.metrics import DIRECTIONS
from vlmbench.metrics.retrieval import CONVENTIONS, ranks, retrieval_metrics

KEYS = ["R@1", "R@5", "R@10", "MedR", "MeanR", "v2t_R@1", "v2t_R@5", "v2t_R@10", "v2t_MedR", "v2t_MeanR"]


def naive_ranks(scores):
    """Row-by-row reference: 1 + number of other items scoring >= the true one."""
    out = []
    for i, row in enumerate(scores):
        out.append(1 + sum(1 for j, s in enumerate(row) if j != i and s >= row[i]))
    return np.array(out)


def with_ranks(wanted):
    """A score matrix whose row i ranks its true item at wanted[i] (distinct scores)."""
    n = len(wanted)
    scores = np.zeros((n, n))
    for i, r in enumerate(wanted):
        others = [j for j in range(n) if j != i]
        scores[i, others] = np.arange(n - 1, 0, -1)  # n-1, ..., 1
        scores[i, i] = n - r + 0.5  # exactly r-1 others above it
    return scores


def test_hand_computed_3x3_both_directions():
    s = np.array([[0.9, 0.1, 0.5], [0.8, 0.7, 0.2], [0.1, 0.3, 0.2]])
    assert ranks(s).tolist() == [1, 2, 2]
    # Columns: col 2's true 0.2 is beaten by 0.5 and tied by 0.2 -> rank 3.
    assert ranks(s.T).tolist() == [1, 1, 3]
    m = retrieval_metrics(s)
    assert list(m) == KEYS
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["R@5"] == 100.0 and m["R@10"] == 100.0
    assert m["MedR"] == 2.0 and m["MeanR"] == pytest.approx(5 / 3)
    assert m["v2t_R@1"] == pytest.approx(200 / 3)
    assert m["v2t_MedR"] == 1.0 and m["v2t_MeanR"] == pytest.approx(5 / 3)
    assert all(type(v) is float for v in m.values())


def test_hand_computed_4x4_even_median():
    s = np.array(
        [
            [4.0, 3.0, 2.0, 1.0],  # rank 1
            [4.0, 3.0, 2.0, 1.0],  # rank 2
            [4.0, 3.0, 2.0, 1.0],  # rank 3
            [4.0, 3.0, 2.0, 1.0],
        ]
    )  # rank 4
    assert ranks(s).tolist() == [1, 2, 3, 4]
    m = retrieval_metrics(s)
    assert m["R@1"] == 25.0
    assert m["MedR"] == 2.5  # np.median averages the two middle ranks
    assert m["MeanR"] == 2.5
    # Every column holds the same value down its rows, so each video ties with all texts.
    assert ranks(s.T).tolist() == [4, 4, 4, 4]
    assert m["v2t_R@1"] == 0.0 and m["v2t_MedR"] == 4.0


def test_r5_r10_boundaries():
    wanted = [1, 5, 6, 10, 11, 3, 12, 2, 9, 7, 4, 8]
    s = with_ranks(wanted)
    assert ranks(s).tolist() == wanted
    m = retrieval_metrics(s)
    assert m["R@1"] == pytest.approx(100 * 1 / 12)
    assert m["R@5"] == pytest.approx(100 * 5 / 12)  # ranks 1, 5, 3, 2, 4
    assert m["R@10"] == pytest.approx(100 * 10 / 12)  # all but 11 and 12
    assert m["MedR"] == 6.5
    assert m["MeanR"] == pytest.approx(78 / 12)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_all_equal_scores_get_the_worst_rank(n):
    m = retrieval_metrics(np.full((n, n), 0.3))
    assert m["R@1"] == 0.0 and m["v2t_R@1"] == 0.0
    assert m["MedR"] == n and m["MeanR"] == n and m["v2t_MedR"] == n
    assert m["R@5"] == (100.0 if n <= 5 else 0.0)


def test_single_item_is_rank_one():
    assert retrieval_metrics(np.array([[0.0]]))["R@1"] == 100.0


def test_partial_tie_counts_against_the_model():
    s = np.array([[0.5, 0.5, 0.1], [0.0, 1.0, 1.0], [0.2, 0.3, 0.9]])
    assert ranks(s).tolist() == [2, 2, 1]


def test_v2t_on_asymmetric_matrix():
    s = np.array([[0.9, 0.8, 0.0], [0.1, 0.5, 0.0], [0.95, 0.2, 0.3]])
    # Rows (t2v): [1, 1, 2]. Columns (v2t): col 0 true 0.9 < 0.95 -> 2; col 1 true 0.5 < 0.8 -> 2; col 2 -> 1.
    m = retrieval_metrics(s)
    assert ranks(s).tolist() == [1, 1, 2]
    assert ranks(s.T).tolist() == [2, 2, 1]
    assert m["R@1"] == pytest.approx(200 / 3) and m["v2t_R@1"] == pytest.approx(100 / 3)
    assert m["MedR"] == 1.0 and m["v2t_MedR"] == 2.0


@pytest.mark.parametrize("decimals", [None, 1])
def test_random_200x200_matches_naive_loop(decimals):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(200, 200)).astype(np.float32)
    if decimals is not None:
        s = np.round(s, decimals)  # many ties
    np.testing.assert_array_equal(ranks(s), naive_ranks(s))
    np.testing.assert_array_equal(ranks(s.T), naive_ranks(s.T))
    r = naive_ranks(s)
    m = retrieval_metrics(s)
    assert m["R@10"] == pytest.approx(100 * np.mean(r <= 10))
    assert m["MedR"] == pytest.approx(float(np.median(r)))


@pytest.mark.parametrize(
    "bad", [np.array([[1.0, np.nan], [0.0, 1.0]]), np.zeros((2, 3)), np.zeros((0, 0)), np.zeros(3)]
)
def test_bad_input_is_rejected(bad):
    with pytest.raises(ValueError):
        retrieval_metrics(bad)
    with pytest.raises(InputError):  # the CLI prints it as one line
        ranks(bad)


def test_directions_and_conventions():
    assert all(DIRECTIONS[k] == ("lower" if k.endswith(("MedR", "MeanR")) else "higher") for k in KEYS)
    assert "pessimistic" in CONVENTIONS["ties"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in CONVENTIONS.items())
