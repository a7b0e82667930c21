"""The runner's own rules: which toy checkpoint a run starts from, the device, the run-folder lock."""

from __future__ import annotations

import pytest

from vlmbench import runner
from vlmbench.errors import InputError


@pytest.mark.parametrize(
    "run_preset, pretrain_preset", [("smoke", "smoke"), ("ci", "ci"), ("toy", "toy"), ("paper", "toy")]
)
def test_a_run_starts_from_the_toy_checkpoint_of_its_own_preset(run_preset, pretrain_preset, monkeypatch, tmp_path):
    """`run --preset ci` used the smoke preset's checkpoint and labelled the result ci: never again."""
    import vlmbench.train.pretrain as pt

    monkeypatch.setenv("VLMBENCH_CACHE", str(tmp_path))

    seen = []

    def fake_pretrain(cfg, out, **kw):
        seen.append((cfg.preset, cfg.backbone))
        (out / "model").mkdir(parents=True)
        (out / "model" / "model.safetensors").write_bytes(b"")

    monkeypatch.setattr(pt, "pretrain", fake_pretrain)
    lines = []
    folder = runner.toy_checkpoint("tiny", say=lines.append, progress=False, preset=run_preset)
    assert seen == [(pretrain_preset, "tiny")]
    assert folder.parent.name == f"pretrain-{pretrain_preset}-tiny"
    assert f"pre-training preset {pretrain_preset} for the {run_preset} run" in lines[0]
    runner.toy_checkpoint("tiny", say=lines.append, progress=False, preset=run_preset)  # cached: no second run
    assert len(seen) == 1 and f"pre-trained with preset {pretrain_preset}" in lines[-1]


def test_device_names():
    assert runner.device("cpu").type == "cpu"
    assert runner.device(None).type in ("cpu", "cuda")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device: cuda: no such CUDA device"):
            runner.device("cuda")
    with pytest.raises(InputError, match="expected cpu, cuda or cuda:N"):
        runner.device("tpu")
