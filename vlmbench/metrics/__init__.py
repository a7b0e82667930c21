"""Evaluation metrics: pure functions (arrays/strings in, dicts of Python floats out).

No torch or model imports here, so any saved predictions file can be re-scored offline.
Each module has a ``CONVENTIONS`` dict (str -> str) that callers copy into every result file.
``DIRECTIONS`` says, for every metric key these functions return, whether higher or lower is better.
"""

from vlmbench.errors import InputError


class MetricInputError(InputError, ValueError):
    """Invalid metric input (shape, NaN, range, missing ids).

    A ValueError for library callers, and an InputError so the CLI prints it as one line when
    a user re-scores a bad predictions file.
    """


# Imported after MetricInputError exists: the submodules import it from this package.
from vlmbench.metrics.localization import (  # noqa: E402
    crosstask_recall,
    crosstask_targets,
    dp_one_frame_per_step,
)
from vlmbench.metrics.qa import mcqa_accuracy  # noqa: E402
from vlmbench.metrics.retrieval import ranks, retrieval_metrics  # noqa: E402
from vlmbench.metrics.segmentation import (  # noqa: E402
    average_window_logits,
    frame_accuracy,
    frame_targets,
    sliding_windows,
)

# The captioning scorers need pycocoevalcap (and Java for METEOR): loaded on first use, so retrieval, QA,
# segmentation and localization metrics import without it (e.g. `bench/gpu_check.py` on a machine without it).
_CAPTIONING = ("caption_metrics", "per_clip_scores", "require_java")


def __getattr__(name: str):
    if name in _CAPTIONING:
        from vlmbench.metrics import captioning

        return getattr(captioning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

__all__ = [
    "DIRECTIONS",
    "MetricInputError",
    "average_window_logits",
    "caption_metrics",
    "crosstask_recall",
    "crosstask_targets",
    "dp_one_frame_per_step",
    "frame_accuracy",
    "frame_targets",
    "mcqa_accuracy",
    "per_clip_scores",
    "ranks",
    "require_java",
    "retrieval_metrics",
    "sliding_windows",
]
