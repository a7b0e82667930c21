"""What every result records about the fine-tuning protocol: effective batch, in-batch negatives, selection.

The authors' batch sizes are per GPU, and their fine-tuning ran on several GPUs without all-gather (2 for MSR-VTT,
MC-QA, YouCook2 and CrossTask, 8 for COIN: fairseq examples/MMPT projects/mtm/vlm/*.yaml task_type sweep_small /
sweep_big, mmpt_cli/localjob.py:34-45): a contrastive example saw batch - 1 negatives (its own GPU's batch) while an
update averaged GPUs x batch examples. vlmbench runs `virtual_ranks` such batches per update in one process (the
paper recipes set the authors' count), each with its own negatives, so both match.
"""

from __future__ import annotations

from typing import Any

# family -> (what one update holds, whether the loss uses in-batch negatives)
UNITS = {
    "retrieval": ("examples", True),
    "mcqa": ("examples", True),
    "captioning": ("clips", False),
    "segmentation": ("video(s), all windows of each", False),
    "localization": ("video(s), all windows of each", False),
}


def batch_counts(family: str, batch_size: int, virtual_ranks: int = 1) -> dict[str, int]:
    """Counts for the result: effective_batch (per update, all simulated processes), virtual_ranks and
    in_batch_negatives per example (its own batch's)."""
    _, contrastive = UNITS[family]
    return {
        "effective_batch": int(batch_size) * int(virtual_ranks),
        "virtual_ranks": int(virtual_ranks),
        "in_batch_negatives": int(batch_size) - 1 if contrastive else 0,
    }


SELECTION = {
    "final": "the final model (after the last epoch); no test-split selection",
    "best-of-epochs": "best epoch, selected on the test split, as the reference does (retrieval / MC-QA: highest "
    "first headline metric; COIN, CrossTask, captioning: lowest fine-tuning loss on the test "
    "split): optimistic, compare with select=final",
}


def protocol_conventions(family: str, cfg: dict[str, Any]) -> dict[str, str]:
    return {**batch_conventions(family, cfg), "selection": SELECTION[str(cfg.get("select", "final"))]}


def batch_conventions(family: str, cfg: dict[str, Any]) -> dict[str, str]:
    bs, ranks = int(cfg.get("batch_size", 1)), int(cfg.get("virtual_ranks", 1))
    unit, contrastive = UNITS[family]
    counts = batch_counts(family, bs, ranks)
    neg = (
        f"{counts['in_batch_negatives']} in-batch negatives per example, its own batch's (no all-gather, as the "
        "reference)"
        if contrastive
        else "no in-batch negatives"
    )
    return {
        "batch": f"effective batch {counts['effective_batch']} {unit} per update ({ranks} simulated process"
        f"{'es' if ranks > 1 else ''} x {bs}, gradients averaged); {neg}; the paper recipe's virtual_ranks is the "
        "authors' GPU count"
    }


def describe(spec, cfg) -> list[tuple[str, str]]:
    """(key, value) lines of a task's resolved recipe for `vlmbench tasks --show`: every run-config value,
    then the protocol rules that follow from them."""
    from ..config import to_dict
    from ..metrics.retrieval import TIES
    from ..metrics.segmentation import sliding_windows
    from ..model.masking import NEVER_MASKED
    from ..model.text import CLS_ID, PAD_ID, SEP_ID

    d = to_dict(cfg)
    lines = [("task", f"{spec.name} ({spec.family}, scored on {spec.split})"), ("preset", str(d.pop("preset")))]
    lines += [(k, str(v)) for k, v in d.items()]
    lines.append(
        (
            "optimiser",
            f"Adam ({cfg.beta1}, {cfg.beta2}), lr {cfg.lr:g}, warm-up {cfg.warmup} updates, "
            f"linear decay to 0 at {cfg.lr_decay_steps} updates (~constant), clip {cfg.clip_norm}",
        )
    )
    if spec.family in ("retrieval", "mcqa"):
        lines.append(
            ("epoch", f"the training list x dup {cfg.dup}, shuffled; each access draws one of the video's captions")
        )
    example = sliding_windows(50, cfg.window, cfg.stride)
    lines.append(
        (
            "windows",
            f"{cfg.window} s at stride {cfg.train_stride} (training) / {cfg.stride} (test); the "
            f"last window starts at the first stride position with <= {cfg.window} s left and ends "
            f"at the video end (50 s at stride {cfg.stride}: {example}); test logits are averaged "
            "over the same windows"
            + ("" if spec.family in ("segmentation", "localization") else " (COIN / CrossTask only)"),
        )
    )
    names = {CLS_ID: "[CLS]", SEP_ID: "[SEP]", PAD_ID: "[PAD]"}
    lines.append(("never masked", ", ".join(names[i] for i in NEVER_MASKED) + " (pre-training MLM / MTM)"))
    if spec.family == "retrieval":
        lines.append(("ties policy", TIES[cfg.ties]))
    lines += [(k, v) for k, v in protocol_conventions(spec.family, d).items()]
    return lines
