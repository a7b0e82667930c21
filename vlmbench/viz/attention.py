"""Self-attention maps over the 96-position layout, under the mask the task uses (`vlmbench viz attention`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlmbench.io import atomic_write
from vlmbench.model import masks
from vlmbench.model.layout import MAX_VIDEO_LEN, TEXT_START, VIDEO_SEP, position_ids, token_type_ids, valid_positions

# The mask each family runs its model under (pre-training: joint).
MASK_OF_FAMILY = {
    "retrieval": "isolated",
    "mcqa": "isolated",
    "segmentation": "isolated",
    "localization": "isolated",
    "captioning": "text_causal",
}


@dataclass
class AttentionMaps:
    weights: np.ndarray  # (layers, heads, L, L) over the valid positions only
    labels: list[str]  # L token labels: [CLS], seconds ("3s"), [SEP], word pieces
    kinds: list[str]  # L of "cls" / "video" / "sep" / "text"
    mask: str


def attention_maps(
    vlm,
    video: torch.Tensor,
    vmask: torch.Tensor,
    text_ids: torch.Tensor,
    text_mask: torch.Tensor,
    tokenizer,
    mask: str = "isolated",
) -> AttentionMaps:
    """One example (batch of 1): every layer's and head's attention probabilities at the valid positions."""
    if mask not in masks.BUILDERS:
        raise ValueError(f"unknown mask {mask!r}")
    vlm.eval()
    prev = vlm.bert.config._attn_implementation
    vlm.bert.set_attn_implementation("eager")  # sdpa does not return the probabilities
    try:
        with torch.no_grad():
            embeds = vlm.embed(vlm.video_tokens(video), text_ids)
            attn = masks.BUILDERS[mask](vmask, text_mask, dtype=embeds.dtype)
            out = vlm.bert(
                inputs_embeds=embeds,
                attention_mask=attn,
                position_ids=position_ids(1, video.device),
                token_type_ids=token_type_ids(1, video.device),
                output_attentions=True,
            )
    finally:
        vlm.bert.set_attn_implementation(prev)
    valid = valid_positions(vmask, text_mask)[0].cpu().numpy()
    keep = np.flatnonzero(valid)
    weights = torch.stack(out.attentions)[:, 0].float().cpu().numpy()[:, :, keep][:, :, :, keep]
    pieces = tokenizer.convert_ids_to_tokens(text_ids[0].tolist())
    labels, kinds = [], []
    for p in keep:
        if p == 0:
            labels.append("[CLS]"), kinds.append("cls")
        elif p <= MAX_VIDEO_LEN:
            labels.append(f"{p - 1}s"), kinds.append("video")
        elif p == VIDEO_SEP:
            labels.append("[SEP]"), kinds.append("sep")
        else:
            labels.append(pieces[p - TEXT_START]), kinds.append("text")
    return AttentionMaps(weights, labels, kinds, mask)


def plot_attention(
    maps: AttentionMaps, out_png: str | Path, layer: int = -1, head: int | None = None, title: str = ""
) -> Path:
    """One head as a labelled heatmap, or (head None) a grid of every head of the layer; PNG + SVG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_layers, n_heads = maps.weights.shape[:2]
    layer = layer % n_layers
    heads = [head] if head is not None else list(range(n_heads))
    cols = min(4, len(heads))
    rows = -(-len(heads) // cols)
    size = 6 if len(heads) == 1 else 3.2
    fig = Figure(figsize=(size * cols, size * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    n = len(maps.labels)
    step = max(1, n // 24)  # at most ~24 tick labels per axis
    for i, h in enumerate(heads):
        ax = fig.add_subplot(rows, cols, i + 1)
        im = ax.imshow(maps.weights[layer, h], cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ticks = list(range(0, n, step))
        ax.set_xticks(ticks, [maps.labels[t] for t in ticks], rotation=90, fontsize=6)
        ax.set_yticks(ticks, [maps.labels[t] for t in ticks], fontsize=6)
        ax.set_title(f"layer {layer + 1}, head {h + 1}", fontsize=8)
        ax.set_xlabel("key", fontsize=7)
        ax.set_ylabel("query", fontsize=7)
    fig.colorbar(im, ax=fig.axes, shrink=0.6, label="attention probability")
    fig.suptitle((title + " — " if title else "") + f"self-attention under the {maps.mask} mask", fontsize=10)
    out_png = Path(out_png)
    atomic_write(out_png.with_suffix(".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
    return atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
