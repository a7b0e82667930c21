"""Evaluation metrics: pure functions (arrays/strings in, dicts of Python floats out), one module per family.

No torch or model imports here, so any saved predictions file can be re-scored offline. Each module has a
``CONVENTIONS`` dict (str -> str) that callers copy into every result file. ``DIRECTIONS`` says, for every metric
key these functions return, whether higher or lower is better. Import the functions from their modules
(``vlmbench.metrics.retrieval`` ...): this package imports none of them, so each stays a leaf.
"""

from vlmbench.errors import InputError


class MetricInputError(InputError, ValueError):
    """Invalid metric input (shape, NaN, range, missing ids).

    A ValueError for library callers, and an InputError so the CLI prints it as one line when
    a user re-scores a bad predictions file.
    """


_LOWER_IS_BETTER = ("MedR", "MeanR", "v2t_MedR", "v2t_MeanR")
_HIGHER_IS_BETTER = (
    "R@1",
    "R@5",
    "R@10",
    "v2t_R@1",
    "v2t_R@5",
    "v2t_R@10",
    "accuracy",
    "frame_acc",
    "frame_acc_nobg",
    "recall",
    "BLEU-3",
    "BLEU-4",
    "METEOR",
    "ROUGE-L",
    "CIDEr",
)
DIRECTIONS: dict[str, str] = {
    **{k: "higher" for k in _HIGHER_IS_BETTER},
    **{k: "lower" for k in _LOWER_IS_BETTER},
}
