import numpy as np
import pytest

from vlmbench.metrics.qa import CONVENTIONS, mcqa_accuracy


def test_hand_computed_accuracy():
    scores = np.array(
        [[0.1, 0.9, 0.0, 0.2, 0.3], [0.5, 0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.1, 0.0], [0.3, 0.2, 0.9, 0.1, 0.0]]
    )
    answers = np.array([1, 0, 4, 3])
    out = mcqa_accuracy(scores, answers)
    assert out == {"accuracy": 50.0}
    assert type(out["accuracy"]) is float


def test_ties_pick_the_first_maximum():
    scores = np.array([[0.7, 0.7, 0.1], [0.2, 0.7, 0.7]])
    assert mcqa_accuracy(scores, np.array([0, 1]))["accuracy"] == 100.0
    assert mcqa_accuracy(scores, np.array([1, 2]))["accuracy"] == 0.0
    assert "FIRST" in CONVENTIONS["prediction"]


@pytest.mark.parametrize(
    "scores, answers, msg",
    [
        (np.zeros((2, 5)), np.array([0, 5]), "outside"),
        (np.zeros((2, 5)), np.array([-1, 0]), "outside"),
        (np.zeros((2, 5)), np.array([0, 1, 2]), "shape"),
        (np.zeros((2, 5)), np.array([0.0, 1.0]), "integer"),
        (np.zeros(5), np.array([0]), "matrix"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "NaN"),
    ],
)
def test_bad_input_is_rejected(scores, answers, msg):
    with pytest.raises(ValueError, match=msg):
        mcqa_accuracy(scores, answers)
