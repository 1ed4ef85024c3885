"""One-shot GPU check of the training step: throughput, peak memory, MFU and a loss-decrease sanity check.

Runs from a plain checkout with only torch, numpy and pyarrow installed (``PYTHONPATH=. python
bench/gpu_check.py``): it imports ``equiseg.models`` and ``equiseg.training.losses`` only, and makes its own
synthetic batch. Budget: well under 10 minutes on one H100/H200.

What it does, for ``equiseg_b2`` on RGB-D-T at 512x512 (defaults):

1. **Throughput**: bf16 autocast + ``channels_last`` training steps (forward with SGM losses, OHEM-CE, backward,
   clipping, AdamW) after warm-up; images/s over ``--steps`` timed steps (CUDA-synchronised).
2. **Peak memory**: ``torch.cuda.max_memory_allocated`` over the timed steps.
3. **MFU**: FLOPs of one step counted with ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward, matmuls
   and convolutions) times steps/s, divided by the card's dense bf16 peak (table below, or ``--peak-tflops``).
4. **Sanity**: ``--overfit-steps`` steps on one fixed batch whose labels are a function of the inputs; the mean of
   the last three losses must fall below 60 % of the first, else the script exits 1.

Smoke mode on CPU: ``python bench/gpu_check.py --device cpu --size 64 --steps 2`` (fp32, batch 2, 8 overfit steps,
MFU not reported). Prints one JSON object; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a plain checkout, not installed

from equiseg.models import create_model
from equiseg.training.losses import segmentation_loss

#: Dense bf16 tensor-core peak in TFLOP/s (vendor data sheets, without sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
}


def card_peak_tflops(name: str) -> float | None:
    """Peak bf16 TFLOP/s for a device name (longest matching key), or None when unknown."""
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return BF16_PEAK_TFLOPS[key]
    return None


def synthetic_batch(
    batch: int, size: int, num_classes: int, device: torch.device, seed: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """RGB-D-T tensors and labels that depend on them (learnable), so the loss can fall."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (batch, 1, max(1, size // 16), max(1, size // 16)), generator=generator)
    labels = torch.nn.functional.interpolate(coarse.float(), size=(size, size), mode="nearest").long()[:, 0]
    level = labels.float().unsqueeze(1) / max(1, num_classes - 1)
    noise = 0.05 * torch.randn(batch, 5, size, size, generator=generator)
    inputs = {
        "rgb": (level.repeat(1, 3, 1, 1) - 0.45) / 0.225 + noise[:, :3],
        "depth": level + noise[:, 3:4],
        "thermal": 1.0 - level + noise[:, 4:5],
    }
    return {k: v.to(device) for k, v in inputs.items()}, labels.to(device)


def main() -> int:
    """Run the check; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="equiseg_b2")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=None, help="default 8 on CUDA, 2 on CPU")
    parser.add_argument("--classes", type=int, default=25, help="25 = DeLiVER")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--overfit-steps", type=int, default=None, help="default 40 on CUDA, 8 on CPU")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the card's bf16 peak")
    parser.add_argument("--no-amp", action="store_true", help="fp32 even on CUDA")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (8 if cuda else 2)
    args.overfit_steps = args.overfit_steps or (40 if cuda else 8)
    if cuda and not torch.cuda.is_available():
        print("no CUDA device visible; use --device cpu for the smoke mode", file=sys.stderr)
        return 2
    amp = cuda and not args.no_amp
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    torch.manual_seed(0)
    modalities = ("rgb", "depth", "thermal")
    model = create_model(args.model, num_classes=args.classes, modalities=modalities).to(device)
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5, weight_decay=0.01)
    inputs, labels = synthetic_batch(args.batch, args.size, args.classes, device)
    inputs = {k: v.contiguous(memory_format=memory_format) for k, v in inputs.items()}

    def step(lr: float = 6e-5) -> torch.Tensor:
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            output = model(inputs, labels)
        loss = segmentation_loss(output.logits, labels, kind="ohem") + sum(
            (v.float() for v in output.aux_losses.values()), torch.zeros((), device=device)
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.detach()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    report: dict[str, Any] = {
        "model": args.model,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": torch.__version__,
        "size": args.size,
        "batch": args.batch,
        "precision": "bf16 autocast" if amp else "fp32",
        "channels_last": cuda,
    }

    # FLOPs of one forward + backward, counted once (outside the timed loop).
    from torch.utils.flop_counter import FlopCounterMode

    def count_flops() -> float:
        counter = FlopCounterMode(display=False)
        with counter:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
                output = model(inputs, labels)
            loss = segmentation_loss(output.logits, labels, kind="ohem") + sum(
                (v.float() for v in output.aux_losses.values()), torch.zeros((), device=device)
            )
            loss.backward()
        optimizer.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())

    while True:  # halve the batch until it fits (the report says which batch ran)
        try:
            flops_per_step = count_flops()
            for _ in range(args.warmup):
                step()
            sync()
            break
        except torch.cuda.OutOfMemoryError:
            if args.batch == 1:
                raise
            args.batch //= 2
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            inputs, labels = synthetic_batch(args.batch, args.size, args.classes, device)
            inputs = {k: v.contiguous(memory_format=memory_format) for k, v in inputs.items()}
            print(f"out of memory; retrying with batch {args.batch}", file=sys.stderr)
    report["batch"] = args.batch
    report["gflops_per_step"] = round(flops_per_step / 1e9, 2)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    elapsed = time.perf_counter() - started
    steps_per_s = args.steps / elapsed
    report["step_ms"] = round(1000 * elapsed / args.steps, 2)
    report["images_per_s"] = round(args.batch * steps_per_s, 2)
    report["achieved_tflops"] = round(flops_per_step * steps_per_s / 1e12, 3)
    if cuda:
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        peak = args.peak_tflops or card_peak_tflops(report["device"])
        report["card_bf16_peak_tflops"] = peak
        report["mfu"] = round(flops_per_step * steps_per_s / (peak * 1e12), 4) if peak else None
    else:
        report["peak_memory_gib"] = None
        report["mfu"] = None

    # Loss-decrease sanity: a fresh model overfits the fixed, learnable batch.
    torch.manual_seed(1)
    model = create_model(args.model, num_classes=args.classes, modalities=modalities).to(device)
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.0)
    losses = [float(step(lr=6e-4)) for _ in range(args.overfit_steps)]
    tail = sum(losses[-3:]) / len(losses[-3:])
    report["overfit_steps"] = args.overfit_steps
    report["overfit_first_loss"] = round(losses[0], 4)
    report["overfit_last3_mean_loss"] = round(tail, 4)
    passed = all(math.isfinite(v) for v in losses) and tail < 0.6 * losses[0]
    report["loss_decrease_ok"] = passed

    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
