"""S3D-G against the released checkpoint's key names and shapes (../shared/spec/s3d-encoder.md §1-2),
with the state dict built here from the spec's tables, not from the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vlmbench.errors import InputError
from vlmbench.video import s3d

# spec §1: (block, in, a0, a1, b1, a2, b2, a3)
BLOCKS = [
    ("mixed_3b", 192, 64, 96, 128, 16, 32, 32),
    ("mixed_3c", 256, 128, 128, 192, 32, 96, 64),
    ("mixed_4b", 480, 192, 96, 208, 16, 48, 64),
    ("mixed_4c", 512, 160, 112, 224, 24, 64, 64),
    ("mixed_4d", 512, 128, 128, 256, 24, 64, 64),
    ("mixed_4e", 512, 112, 144, 288, 32, 64, 64),
    ("mixed_4f", 528, 256, 160, 320, 32, 128, 128),
    ("mixed_5b", 832, 256, 160, 320, 32, 128, 128),
    ("mixed_5c", 832, 384, 192, 384, 48, 128, 128),
]


def spec_state(with_text: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple] = {}

    def bn(p, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{p}.{name}"] = (c,)
        shapes[f"{p}.num_batches_tracked"] = ()

    def conv(p, cin, cout, k=(1, 1, 1)):
        shapes[f"{p}.conv1.weight"] = (cout, cin, *k)
        bn(f"{p}.bn1", cout)

    def sep(p, cin, cout):
        shapes[f"{p}.conv1.weight"] = (cout, cin, 1, 3, 3)
        bn(f"{p}.bn1", cout)
        shapes[f"{p}.conv2.weight"] = (cout, cout, 3, 1, 1)
        bn(f"{p}.bn2", cout)

    def gate(p, c):
        shapes[f"{p}.fc.weight"], shapes[f"{p}.fc.bias"] = (c, c), (c,)

    conv("conv1", 24, 64, (2, 4, 4))
    conv("conv_2b", 64, 64)
    sep("conv_2c", 64, 192)
    gate("gating", 192)
    for name, cin, a0, a1, b1, a2, b2, a3 in BLOCKS:
        conv(f"{name}.conv_b0", cin, a0)
        conv(f"{name}.conv_b1_a", cin, a1)
        sep(f"{name}.conv_b1_b", a1, b1)
        conv(f"{name}.conv_b2_a", cin, a2)
        sep(f"{name}.conv_b2_b", a2, b2)
        conv(f"{name}.conv_b3_b", cin, a3)
        for gname, c in (("gating_b0", a0), ("gating_b1", b1), ("gating_b2", b2), ("gating_b3", a3)):
            gate(f"{name}.{gname}", c)
    shapes["fc.weight"], shapes["fc.bias"] = (512, 1024), (512,)
    if with_text:
        shapes.update(
            {
                "text_module.word_embd.weight": (66250, 300),
                "text_module.fc1.weight": (2048, 300),
                "text_module.fc1.bias": (2048,),
                "text_module.fc2.weight": (512, 2048),
                "text_module.fc2.bias": (512,),
            }
        )
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            state[key] = 0.05 * torch.randn(shape, generator=g)
    return state


def test_spec_state_dict_loads_strictly_key_for_key():
    state = spec_state(with_text=False)
    assert len(state) == 532  # spec: 532 video keys
    model = s3d.S3D()
    assert list(model.state_dict()) == list(state)  # same names, same registration order
    model.load_state_dict(state, strict=True)
    learnable = sum(p.numel() for p in model.parameters())
    assert learnable == 9_670_800
    full = spec_state(with_text=True)
    assert len(full) == 537
    s3d.S3D(with_text=True).load_state_dict(full, strict=True)
    values = sum(v.numel() for k, v in full.items() if not k.endswith("num_batches_tracked"))
    assert values == 31_232_424


def test_bn_is_stock_and_eval_uses_running_stats():
    bns = [m for m in s3d.S3D().modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bns) == 76 and all(m.eps == 1e-5 and m.momentum == 0.1 for m in bns)


@pytest.mark.slow
def test_load_weights_from_file_drops_the_text_branch_and_says_so(tmp_path):
    path = tmp_path / "s3d_howto100m.pth"
    state = spec_state()
    torch.save(state, path)
    said = []
    model = s3d.load_weights(path, say=said.append)
    assert not model.training
    assert torch.equal(model.mixed_4e.conv_b1_b.conv2.weight, state["mixed_4e.conv_b1_b.conv2.weight"])
    assert "text branch is not loaded" in said[0] and "5 text_module" in said[0]


def test_mismatching_checkpoint_is_refused_listing_the_first_keys(tmp_path):
    state = spec_state(with_text=False)
    state["mixed_5c.gating_b3.fc.weight"] = torch.zeros(64, 64)
    state["mixed_3c.conv_b3_b.conv9.weight"] = state.pop("mixed_3c.conv_b3_b.conv1.weight")
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(InputError) as e:
        s3d.load_weights(path, say=lambda s: None)
    msg = str(e.value)
    assert "1 missing: mixed_3c.conv_b3_b.conv1.weight" in msg
    assert "1 unexpected: mixed_3c.conv_b3_b.conv9.weight" in msg
    assert "mixed_5c.gating_b3.fc.weight (64, 64) (expected (128, 128))" in msg


class Planted:
    def __init__(self, marker: str):
        Path(marker).write_text("constructed")

    def __reduce__(self):
        return (Planted, (self.marker,))


def test_weights_load_with_weights_only(tmp_path):
    marker = tmp_path / "constructed"
    plant = object.__new__(Planted)
    plant.marker = str(marker)
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": spec_state(with_text=False), "x": plant}, path)
    with pytest.raises(InputError, match="not a loadable tensor checkpoint"):
        s3d.load_weights(path, say=lambda s: None)
    assert not marker.exists()


def test_space_to_depth_channel_order():
    x = torch.randn(1, 3, 4, 6, 8)
    y = s3d.S3D.space_to_depth(x)
    assert y.shape == (1, 24, 2, 3, 4)
    for dt, dh, dw, c, t, h, w in [
        (0, 0, 0, 0, 0, 0, 0),
        (1, 0, 1, 2, 1, 2, 3),
        (0, 1, 1, 1, 1, 1, 2),
        (1, 1, 0, 2, 0, 2, 1),
    ]:
        assert y[0, dt * 12 + dh * 6 + dw * 3 + c, t, h, w] == x[0, c, 2 * t + dt, 2 * h + dh, 2 * w + dw]


def test_same_pools_pad_after_and_use_ceil_mode():
    pool4a = s3d.SamePool((3, 3, 3), (2, 2, 2))
    assert pool4a(torch.rand(1, 1, 15, 28, 28)).shape == (1, 1, 8, 14, 14)  # ceil: T 15 -> 8
    pool2a = s3d.SamePool((1, 3, 3), (1, 2, 2))
    x = torch.zeros(1, 1, 1, 4, 4)
    x[..., 3, 3] = 1.0  # the last row/column: reached only if the pad is after
    assert pool2a(x).shape == (1, 1, 1, 2, 2) and pool2a(x)[..., 1, 1] == 1.0


@pytest.mark.slow
def test_forward_shapes_at_the_mmpt_clip_size():
    model = s3d.S3D().eval()
    model.load_state_dict(spec_state(with_text=False))
    seen = {}
    model.mixed_5c.register_forward_hook(lambda m, i, o: seen.update(map=o.shape))  # returns None
    with torch.no_grad():
        out = model(torch.rand(1, 3, 30, 224, 224), with_mixed_5c=True)
    assert seen["map"] == (1, 1024, 4, 7, 7)  # spec §2 shape trace
    assert out["video_embedding"].shape == (1, 512) and out["mixed_5c"].shape == (1, 1024)
    assert torch.allclose(out["video_embedding"], model.fc(out["mixed_5c"]))
    with pytest.raises(ValueError, match="even"):
        model(torch.rand(1, 3, 29, 64, 64))


def test_conv1_crop_is_tf_same_padding():
    """conv1 with padding (1,2,2) then dropping index 0 on T, H, W = TF SAME: pad (0,1) on T, (1,2) on H and W."""
    model = s3d.S3D().eval()
    model.load_state_dict(spec_state(with_text=False))
    x = torch.rand(1, 3, 8, 32, 32)
    seen = {}
    model.maxpool_2a.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    with torch.no_grad():
        model(x)
        s2d = s3d.S3D.space_to_depth(x)
        same = torch.nn.functional.conv3d(torch.nn.functional.pad(s2d, (1, 2, 1, 2, 0, 1)), model.conv1.conv1.weight)
        expected = torch.relu(model.conv1.bn1(same))
    assert seen["x"].shape == expected.shape == (1, 64, 4, 16, 16)
    assert torch.allclose(seen["x"], expected, atol=1e-5)


@pytest.mark.slow
def test_a_file_without_bn_counters_loads(tmp_path):
    """num_batches_tracked (unused in eval) may be absent from the released file: all absent is accepted."""
    state = {k: v for k, v in spec_state().items() if not k.endswith("num_batches_tracked")}
    assert len(state) == 537 - 76
    torch.save(state, tmp_path / "old.pth")
    model = s3d.load_weights(tmp_path / "old.pth", say=lambda s: None)
    assert torch.equal(model.fc.bias, state["fc.bias"])
    some = dict(state, **{"conv1.bn1.num_batches_tracked": torch.tensor(3)})  # only some: not this file
    torch.save(some, tmp_path / "mixed.pth")
    with pytest.raises(InputError, match="75 missing"):
        s3d.load_weights(tmp_path / "mixed.pth", say=lambda s: None)
