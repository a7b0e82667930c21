"""S3D-G, the HowTo100M MIL-NCE video encoder, in plain torch.

Module names and shapes are those of the released `s3d_howto100m.pth`, so its video keys load with
`load_state_dict(strict=True)`. The text branch (`text_module.*`) is defined with its released names and
shapes but never run or loaded: `load_weights` drops those keys and says so. Facts: ../shared/spec/s3d-encoder.md.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InputError

EMBED_DIM = 512

# (name, in, a0, a1, b1, a2, b2, a3) in registration order; a "pool" entry marks maxpool_4a / maxpool_5a.
INCEPTION = (
    ("mixed_3b", 192, 64, 96, 128, 16, 32, 32),
    ("mixed_3c", 256, 128, 128, 192, 32, 96, 64),
    ("mixed_4b", 480, 192, 96, 208, 16, 48, 64),
    ("mixed_4c", 512, 160, 112, 224, 24, 64, 64),
    ("mixed_4d", 512, 128, 128, 256, 24, 64, 64),
    ("mixed_4e", 512, 112, 144, 288, 32, 64, 64),
    ("mixed_4f", 528, 256, 160, 320, 32, 128, 128),
    ("mixed_5b", 832, 256, 160, 320, 32, 128, 128),
    ("mixed_5c", 832, 384, 192, 384, 48, 128, 128),
)
TEXT_PREFIX = "text_module."


class STConv(nn.Module):
    """Conv3d (no bias) + BN (eps 1e-5) + ReLU; a 3x3x3 separable one is spatial (1,3,3) then temporal (3,1,1)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=1, padding=0, separable: bool = False):
        super().__init__()
        self.separable = separable
        if separable:
            self.conv1 = nn.Conv3d(cin, cout, (1, 3, 3), stride=1, padding=(0, 1, 1), bias=False)
            self.bn1 = nn.BatchNorm3d(cout)
            self.conv2 = nn.Conv3d(cout, cout, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False)
            self.bn2 = nn.BatchNorm3d(cout)
        else:
            self.conv1 = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
            self.bn1 = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x))) if self.separable else x


class SelfGating(nn.Module):
    """x * sigmoid(fc(mean over T, H, W)), channel-wise."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * weights[:, :, None, None, None]


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, a0: int, a1: int, b1: int, a2: int, b2: int, a3: int):
        super().__init__()
        self.conv_b0 = STConv(cin, a0)
        self.conv_b1_a = STConv(cin, a1)
        self.conv_b1_b = STConv(a1, b1, separable=True)
        self.conv_b2_a = STConv(cin, a2)
        self.conv_b2_b = STConv(a2, b2, separable=True)
        self.conv_b3_b = STConv(cin, a3)
        self.gating_b0 = SelfGating(a0)
        self.gating_b1 = SelfGating(b1)
        self.gating_b2 = SelfGating(b2)
        self.gating_b3 = SelfGating(a3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.gating_b0(self.conv_b0(x))
        b1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(x)))
        b2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(x)))
        b3 = self.gating_b3(self.conv_b3_b(F.max_pool3d(x, 3, stride=1, padding=1)))
        return torch.cat([b0, b1, b2, b3], dim=1)


class SamePool(nn.Module):
    """TF 'SAME' max-pool: zero pad max(k-s, 0) per dim (smaller half first), then ceil-mode pooling.
    Zero padding is safe: every input is >= 0 (post-ReLU or gated)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        pads = [max(k - s, 0) for k, s in zip(kernel, stride)]
        # F.pad takes the last dim first: (W before, W after, H before, H after, T before, T after)
        self.pad = tuple(p for total in reversed(pads) for p in (total // 2, total - total // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.pad(x, self.pad), self.kernel, self.stride, ceil_mode=True)


class TextModule(nn.Module):
    """The released checkpoint's text branch, names and shapes only (never run here)."""

    def __init__(self, vocab: int = 66250, word_dim: int = 300, hidden: int = 2048, out: int = EMBED_DIM):
        super().__init__()
        self.word_embd = nn.Embedding(vocab, word_dim)
        self.fc1 = nn.Linear(word_dim, hidden)
        self.fc2 = nn.Linear(hidden, out)


class S3D(nn.Module):
    """Input (B, 3, T, H, W) RGB in [0, 1], T/H/W even; output {'video_embedding': (B, 512)[, 'mixed_5c': (B, 1024)]}."""

    def __init__(self, with_text: bool = False):
        super().__init__()
        self.conv1 = STConv(24, 64, kernel=(2, 4, 4), stride=1, padding=(1, 2, 2))
        self.conv_2b = STConv(64, 64)
        self.conv_2c = STConv(64, 192, separable=True)
        self.gating = SelfGating(192)
        self.maxpool_2a = SamePool((1, 3, 3), (1, 2, 2))
        self.maxpool_3a = SamePool((1, 3, 3), (1, 2, 2))
        self.maxpool_4a = SamePool((3, 3, 3), (2, 2, 2))
        self.maxpool_5a = SamePool((2, 2, 2), (2, 2, 2))
        for name, *dims in INCEPTION:
            self.add_module(name, InceptionBlock(*dims))
        self.fc = nn.Linear(1024, EMBED_DIM)
        if with_text:
            self.text_module = TextModule()

    @staticmethod
    def space_to_depth(x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, 24, T/2, H/2, W/2); channel dt*12 + dh*6 + dw*3 + c."""
        b, c, t, h, w = x.shape
        if t % 2 or h % 2 or w % 2:
            raise ValueError(f"S3D needs even T, H and W, got {t}x{h}x{w}")
        x = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2)
        x = x.permute(0, 3, 5, 7, 1, 2, 4, 6)  # b, dt, dh, dw, c, t, h, w
        return x.reshape(b, 8 * c, t // 2, h // 2, w // 2)

    def forward(self, video: torch.Tensor, with_mixed_5c: bool = False) -> dict[str, torch.Tensor]:
        x = self.conv1(self.space_to_depth(video))[:, :, 1:, 1:, 1:]  # with the (1,2,2) pad: TF SAME
        x = self.maxpool_3a(self.gating(self.conv_2c(self.conv_2b(self.maxpool_2a(x)))))
        x = self.mixed_3c(self.mixed_3b(x))
        x = self.maxpool_4a(x)
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            x = getattr(self, name)(x)
        x = self.mixed_5c(self.mixed_5b(self.maxpool_5a(x)))
        pooled = x.mean(dim=(2, 3, 4))
        out = {"video_embedding": self.fc(pooled)}
        if with_mixed_5c:
            out["mixed_5c"] = pooled
        return out


def _first_line(e: object) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors only (`weights_only=True`, on the CPU); a wrapping {'state_dict': ...} is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise InputError("S3D weights file not found", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/zip error means "not a tensor checkpoint"
        raise InputError(
            f"not a loadable tensor checkpoint ({type(e).__name__}: {_first_line(e)})", path=path
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("expected a state dict of tensors", path=path)
    return state


def check_state(model: nn.Module, state: dict[str, torch.Tensor], path: object = None, show: int = 5) -> None:
    """Refuse a state dict whose video keys or shapes differ from the model's, naming the first offenders."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            more = f" and {len(keys) - show} more" if len(keys) > show else ""
            problems.append(f"{len(keys)} {what}: {', '.join(keys[:show])}{more}")
    if problems:
        raise InputError("not the HowTo100M S3D checkpoint: " + "; ".join(problems), path=path)


def load_weights(path: str | Path, say=print) -> S3D:
    """The video part of `s3d_howto100m.pth`, loaded strictly, in eval mode."""
    state = load_state(path)
    text = [k for k in state if k.startswith(TEXT_PREFIX)]
    video = {k: v for k, v in state.items() if not k.startswith(TEXT_PREFIX)}
    model = S3D()
    # Whether the released file stores BN's num_batches_tracked is unverified; it is a training counter that
    # eval never reads, so a file without any is completed with zeros (as PyTorch does for old BN files).
    counters = [k for k in model.state_dict() if k.endswith(".num_batches_tracked")]
    if not any(k in video for k in counters):
        video.update({k: torch.tensor(0, dtype=torch.long) for k in counters})
    check_state(model, video, path=path)
    model.load_state_dict(video, strict=True)
    say(
        f"S3D: loaded {len(video)} video tensors from {Path(path).name}; "
        f"the text branch is not loaded ({len(text)} text_module.* keys ignored)"
    )
    return model.eval()


def random_model(seed: int = 0) -> S3D:
    """Seeded random S3D with non-trivial BN statistics (testing only: its features mean nothing)."""
    torch.manual_seed(seed)
    model = S3D()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()
