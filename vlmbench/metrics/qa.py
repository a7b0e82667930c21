"""Multiple-choice QA accuracy (MSR-VTT MC)."""

import numpy as np

from vlmbench.metrics import MetricInputError

CONVENTIONS: dict[str, str] = {
    "prediction": "argmax over candidates; on ties the FIRST maximum wins (np.argmax)",
    "scale": "accuracy in percent (0-100)",
}


def mcqa_accuracy(scores: np.ndarray, answers: np.ndarray) -> dict[str, float]:
    """Percent of questions whose highest-scoring candidate is the answer.

    scores: (n_questions, n_candidates); answers: (n_questions,) integer candidate indices.
    """
    scores = np.asarray(scores, dtype=np.float64)
    answers = np.asarray(answers)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise MetricInputError(
            f"scores must be a non-empty (n_questions, n_candidates) matrix, got shape {scores.shape}"
        )
    if answers.shape != (scores.shape[0],):
        raise MetricInputError(f"answers must have shape ({scores.shape[0]},), got {answers.shape}")
    if not np.issubdtype(answers.dtype, np.integer):
        raise MetricInputError(f"answers must be integer candidate indices, got dtype {answers.dtype}")
    bad = (answers < 0) | (answers >= scores.shape[1])
    if bad.any():
        raise MetricInputError(
            f"{int(bad.sum())} answers outside [0, {scores.shape[1] - 1}], first at question {int(np.argmax(bad))}"
        )
    if np.isnan(scores).any():
        raise MetricInputError(f"scores contain {int(np.isnan(scores).sum())} NaN values")
    correct = np.argmax(scores, axis=1) == answers
    return {"accuracy": float(100.0 * correct.mean())}
