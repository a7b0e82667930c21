"""The joint token space (`vlmbench viz embeddings`): video and text tokens at the model's input (after the
video MLP / word embeddings) and output (last layer), projected to 2-D with t-SNE (PCA for many tokens)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlmbench.io import atomic_write
from vlmbench.model import masks
from vlmbench.model.layout import TEXT_START, VIDEO_SEP, VIDEO_START, position_ids, token_type_ids

TSNE_MAX = 2000  # above this many tokens t-SNE is slow on a CPU: PCA instead


@dataclass
class Projection:
    points: dict[str, np.ndarray]  # "input" / "output" -> (N, 2)
    modality: np.ndarray  # (N,) "video" / "text"
    method: str


def token_states(
    vlm, video, vmask, text_ids, text_mask, mask: str = "joint"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input (N, H), output (N, H), modality (N,)) over the valid video seconds and text tokens of a batch."""
    vlm.eval()
    with torch.no_grad():
        b = text_ids.shape[0]
        embeds = vlm.embed(vlm.video_tokens(video), text_ids)
        attn = masks.BUILDERS[mask](vmask, text_mask, dtype=embeds.dtype)
        out = vlm.bert(
            inputs_embeds=embeds,
            attention_mask=attn,
            position_ids=position_ids(b, video.device),
            token_type_ids=token_type_ids(b, video.device),
        ).last_hidden_state
    sel_v = torch.zeros(embeds.shape[:2], dtype=torch.bool)
    sel_v[:, VIDEO_START:VIDEO_SEP] = vmask.bool().cpu()
    sel_t = torch.zeros_like(sel_v)
    sel_t[:, TEXT_START:] = text_mask.bool().cpu()
    sel_t[:, TEXT_START:] &= text_ids.cpu() != vlm.sep_id  # word pieces, not the closing [SEP]
    inputs = torch.cat([embeds.cpu()[sel_v], embeds.cpu()[sel_t]]).float().numpy()
    outputs = torch.cat([out.cpu()[sel_v], out.cpu()[sel_t]]).float().numpy()
    modality = np.array(["video"] * int(sel_v.sum()) + ["text"] * int(sel_t.sum()))
    return inputs, outputs, modality


def project(inputs: np.ndarray, outputs: np.ndarray, modality: np.ndarray, seed: int = 0) -> Projection:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(modality)
    method = "t-SNE" if 5 <= n <= TSNE_MAX else "PCA"
    points = {}
    for name, x in (("input", inputs), ("output", outputs)):
        if method == "t-SNE":
            points[name] = TSNE(
                n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed
            ).fit_transform(x)
        else:
            points[name] = PCA(n_components=2, random_state=seed).fit_transform(x)
    return Projection(points, modality, method)


def plot_projection(p: Projection, out_png: str | Path, title: str = "") -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    for i, name in enumerate(("input", "output")):
        ax = fig.add_subplot(1, 2, i + 1)
        for kind, colour in (("video", "tab:blue"), ("text", "tab:orange")):
            xy = p.points[name][p.modality == kind]
            ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.7, color=colour, label=f"{kind} tokens ({len(xy)})")
        ax.set_title(f"{name} of the transformer", fontsize=9)
        ax.set_xlabel(f"{p.method} 1")
        ax.set_ylabel(f"{p.method} 2")
        ax.legend(fontsize="small")
    fig.suptitle((title + " — " if title else "") + f"joint token space ({p.method})", fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    atomic_write(out_png.with_suffix(".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
    return atomic_write(out_png, lambda tmp: fig.savefig(tmp, format="png"))
