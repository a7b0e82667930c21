"""Pre-training throughput (clips/s, tokens/s) and model FLOP utilisation against a matmul peak measured in
the same run. `python bench/bench_pretrain.py [--device cuda --sizes base --batch 256 --bf16]`.

Model FLOPs per step are counted analytically (forward x3 for forward+backward): the BERT layers' matmuls
and attention over the 96-token sequence, the video MLP, and the masked-token loss logits (vocabulary +
in-batch negatives). Sizes: tiny (2x64), default (MiniLM 6x384, pretrained), base (BERT-base 12x768, random).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures as fig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlmbench.model.layout import MAX_LEN  # noqa: E402
from vlmbench.model.masking import corrupt  # noqa: E402
from vlmbench.model.text import pack  # noqa: E402
from vlmbench.model.vlm import VLM, VLMConfig  # noqa: E402
from vlmbench.train.optim import adam  # noqa: E402
from vlmbench.train.pretrain import Objective  # noqa: E402


def build(size: str) -> VLM:
    if size in ("tiny", "default"):
        return VLM.from_backbone(size, seed=0)
    from transformers import BertConfig, BertModel

    cfg = BertConfig()  # bert-base-uncased shape: 12 x 768, 12 heads, 3072
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return VLM(VLMConfig(backbone="base-random", bert=cfg.to_diff_dict()), BertModel(cfg, add_pooling_layer=False))


def batch(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vmask = torch.zeros(b, 32, dtype=torch.bool)
    lengths = torch.randint(8, 33, (b,), generator=g)
    vmask[torch.arange(32)[None] < lengths[:, None]] = True
    video = torch.randn(b, 32, 512, generator=g) * vmask[..., None]
    toks = [
        torch.randint(1000, 29000, (int(n),), generator=g).tolist() for n in torch.randint(8, 62, (b,), generator=g)
    ]
    ids, tmask = pack(toks)
    c = corrupt(video, vmask, ids, 0.5, generator=g)
    return [video, vmask, c.text_ids, ids, tmask, c.video_masked, c.text_masked], c


def step_flops(model: VLM, b: int, c) -> float:
    cfg = model.bert.config
    h, f, layers, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    tokens = b * MAX_LEN
    per_layer = 2 * tokens * (4 * h * h + 2 * h * f) + 2 * 2 * b * MAX_LEN * MAX_LEN * h
    mlp = 2 * b * 32 * (512 * h + h * h) * 2  # video MLP, run for the inputs and the targets
    rows = int(c.video_masked.sum() + c.text_masked.sum())
    negatives = int((~c.video_masked).sum())
    head = 2 * rows * (h * h + (v + negatives) * h)
    return 3.0 * (layers * per_layer + mlp + head)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 50 if device.type == "cuda" else 10
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(size: str, b: int, device: torch.device, bf16: bool, steps: int) -> dict:
    model = build(size).to(device).train()
    objective = Objective(model, "vlm")
    opt = adam(model.parameters(), 1e-4)
    tensors, c = batch(b)
    tensors = [t.to(device) for t in tensors]
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def one():
        opt.zero_grad(set_to_none=True)
        with ctx:
            loss = objective(*tensors)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()

    one()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    dt = (time.perf_counter() - t) / steps
    tokens = int(tensors[1].sum() + tensors[4].sum()) + 2 * b
    return {
        "size": size,
        "batch": b,
        "s_per_step": dt,
        "clips_per_s": b / dt,
        "tokens_per_s": tokens / dt,
        "flops_per_step": step_flops(model, b, c),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", default="tiny,default")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--bf16", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_peak(device, dtype)
    print(
        f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
        f"{'bf16' if args.bf16 else 'fp32'} matmul peak measured: {peak / 1e12:.3f} TFLOP/s"
    )
    print(f"{'size':8} {'batch':>5} {'s/step':>8} {'clips/s':>9} {'tokens/s':>10} {'TFLOP/step':>10} {'MFU':>6}")
    figures = []
    for size in args.sizes.split(","):
        r = measure(size, args.batch, device, args.bf16, args.steps)
        mfu = r["flops_per_step"] / r["s_per_step"] / peak
        print(
            f"{r['size']:8} {r['batch']:5d} {r['s_per_step']:8.3f} {r['clips_per_s']:9.1f} {r['tokens_per_s']:10.0f} "
            f"{r['flops_per_step'] / 1e12:10.3f} {mfu:6.1%}"
        )
        goal = (40.0 if device.type == "cuda" else 55.0) if size == "default" else None  # issue 24's goals
        figures.append(
            fig.figure(
                f"pretrain_mfu_{size}",
                f"pre-training step, {size} shape: model FLOP utilisation vs measured matmul peak",
                100 * mfu,
                goal,
                unit="%",
                detail=f"batch {r['batch']}, {r['s_per_step']:.3f} s/step",
            )
        )
    fig.write("pretrain", figures)


if __name__ == "__main__":
    main()
