"""Training throughput and model FLOP utilisation (MFU), EQUISeg against SMP's SegFormer, in one run (docs/training.md).

Measured in the same process, on the same device, interleaved round by round:

* ``equiseg_<variant>`` on RGB-D-T and segmentation_models_pytorch ``Segformer(mit_<variant>)`` on RGB, each
  **eager** and **compiled** (``torch.compile`` of forward + losses, as ``train.compile`` does): images/s of a full
  training step (forward with the SGM losses, cross-entropy, backward, clipping, AdamW; bf16 autocast, channels_last
  and fused AdamW on CUDA; fp32 on CPU);
* **MFU** = achieved model FLOP/s ÷ the FLOP/s of a large matmul measured in this run (bf16 on CUDA, fp32 on CPU).
  Model FLOPs of a step = 3 × the forward FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` (backward
  = 2 × forward, the usual convention; the counter's own ``convolution_backward`` count flatters strided convs);
* the **loader alone**: images/s of the real training ``DataLoader`` (PNG decode, augmentation, collation; pinned
  memory on CUDA) over a synthetic RGB-D-T dataset of the same size, with ``data.num_workers`` workers.

Defaults: CUDA: b2, 512², batch 8; CPU: b0, 128², batch 2 (the same code at CPU size). Prints a Markdown table and
one JSON line (``--out FILE`` writes the JSON).

Usage: ``PYTHONPATH=. python bench/bench_speed.py [--device auto|cpu|cuda] [--variant b2] [--size 512] [--batch 8]
[--steps 10] [--rounds 3] [--modes eager,compiled] [--workers 8] [--out speed.json]``.
Needs the ``bench`` extra (segmentation-models-pytorch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a plain checkout, not installed

from equiseg.config import load_config
from equiseg.models import create_model
from equiseg.training.epoch import forward_loss

NUM_CLASSES = 25  # DeLiVER
MODALITIES = ("rgb", "depth", "thermal")
LossFn = Callable[[], Tensor]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, seconds: float = 2.0) -> float:
    """FLOP/s of a square matmul (bf16 8192² on CUDA, fp32 2048² on CPU): the denominator of MFU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or count < 3:
        a @ b
        count += 1
        if count % 10 == 0:
            sync(device)
    sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start)


def make_inputs(batch: int, size: int, device: torch.device) -> tuple[dict[str, Tensor], Tensor]:
    gen = torch.Generator().manual_seed(0)
    channels = {"rgb": 3, "depth": 1, "thermal": 1}
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    inputs = {
        m: torch.randn(batch, channels[m], size, size, generator=gen).to(device).contiguous(memory_format=fmt)
        for m in MODALITIES
    }
    return inputs, torch.randint(0, NUM_CLASSES, (batch, size, size), generator=gen).to(device)


class Run:
    """One model in one mode: a training step and the loss closure the FLOP counter reads."""

    def __init__(
        self,
        label: str,
        model: nn.Module,
        loss: Callable[[nn.Module], Tensor],
        device: torch.device,
        eager_loss: Callable[[nn.Module], Tensor] | None = None,
    ) -> None:
        self.label = label
        self.eager_loss = eager_loss or loss  # what the FLOP counter runs (it cannot see inside compiled graphs)
        self.model = model.to(device).train()
        if device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.loss = loss
        fused = {"fused": True} if device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, **fused)
        self.device = device
        self.seconds: list[float] = []

    def step(self) -> None:
        loss = self.loss(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()

    def timed(self, steps: int) -> float:
        sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        return (time.perf_counter() - start) / steps


def build_runs(args: argparse.Namespace, device: torch.device) -> list[Run]:
    """equiseg_<variant> RGB-D-T and SMP Segformer(mit_<variant>) RGB, in each requested mode."""
    try:
        import segmentation_models_pytorch as smp  # optional: the [bench] extra
    except ModuleNotFoundError as exc:
        raise SystemExit(
            f"bench_speed.py needs segmentation-models-pytorch for the baseline ({exc.name} missing): pip install "
            "'equiseg[bench]', or on an offline box put a `pip install --target DIR segmentation-models-pytorch` "
            "folder on PYTHONPATH"
        ) from exc

    cfg = load_config("smoke", (f"train.amp={str(device.type == 'cuda').lower()}",))
    inputs, labels = make_inputs(args.batch, args.size, device)
    use_amp = device.type == "cuda"
    compiled_equiseg = torch.compile(forward_loss, mode=args.compile_mode)

    def amp() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else torch.autocast("cpu", enabled=False)

    def smp_loss(model: nn.Module) -> Tensor:
        with amp():
            logits = model(inputs["rgb"])
        return F.cross_entropy(logits.float(), labels)

    compiled_smp = torch.compile(smp_loss, mode=args.compile_mode)
    runs = []
    for mode in args.modes:
        torch.manual_seed(0)
        model = create_model(f"equiseg_{args.variant}", num_classes=NUM_CLASSES, modalities=MODALITIES)
        equiseg_fn = compiled_equiseg if mode == "compiled" else forward_loss

        def equiseg_loss(model: nn.Module, fn: Callable[..., Any] = equiseg_fn) -> Tensor:
            total: Tensor = fn(model, inputs, labels, cfg, use_amp)[0]
            return total

        def equiseg_eager(model: nn.Module) -> Tensor:
            total: Tensor = forward_loss(model, inputs, labels, cfg, use_amp)[0]
            return total

        runs.append(Run(f"equiseg_{args.variant} RGB-D-T {mode}", model, equiseg_loss, device, equiseg_eager))
        torch.manual_seed(0)
        baseline = smp.Segformer(encoder_name=f"mit_{args.variant}", encoder_weights=None, classes=NUM_CLASSES)
        smp_fn = compiled_smp if mode == "compiled" else smp_loss
        runs.append(Run(f"smp Segformer(mit_{args.variant}) RGB {mode}", baseline, smp_fn, device, smp_loss))
    return runs


def forward_flops(run: Run) -> int:
    """Forward FLOPs of one step (no grad, eager: the counter does not see inside compiled graphs)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run.eager_loss(run.model)
    return int(counter.get_total_flops())


def loader_images_per_s(args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of the training DataLoader alone over a synthetic RGB-D-T set at the benchmark's size."""
    from equiseg.data.synthetic import generate_synthetic
    from equiseg.training.distributed import DistInfo
    from equiseg.training.loaders import epoch_loader, split_dataset

    samples = max(4 * args.batch, 32)
    with tempfile.TemporaryDirectory(prefix="equiseg-speed-") as tmp:
        root = Path(tmp)
        # the synthetic world has at most 8 classes; the class count does not change the loader's work
        manifest = generate_synthetic(root, samples=samples, size=args.size, modalities=MODALITIES, seed=0,
                                      num_classes=8, progress=False)  # fmt: skip
        cfg = load_config("smoke", (f"data.image_size={args.size}", f"train.batch_size={args.batch}",
                                    f"data.num_workers={args.workers}", "data.num_classes=8"))  # fmt: skip
        dataset = split_dataset(cfg, manifest, root, "train")
        info = DistInfo(device=device)
        best = 0.0
        for epoch in range(2):  # the first epoch starts the workers; keep the better one
            loader, _ = epoch_loader(dataset, cfg, info, epoch=epoch, skip_steps=0)
            count, start = 0, time.perf_counter()
            for batch in loader:
                batch["label"].to(device, non_blocking=True)
                count += batch["label"].shape[0]
            sync(device)
            best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variant", default=None, help="b0 | b1 | b2 (default: b2 on CUDA, b0 on CPU)")
    parser.add_argument("--size", type=int, default=None, help="square side (default: 512 on CUDA, 128 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 8 on CUDA, 2 on CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default: 10 CUDA, 2 CPU)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode, e.g. max-autotune")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: 8 on CUDA, 0 on CPU)")
    parser.add_argument("--no-loader", action="store_true", help="skip the loader measurement")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device)
    if device.type == "auto":
        device = torch.device("cpu")
    gpu = device.type == "cuda"
    args.variant = args.variant or ("b2" if gpu else "b0")
    args.size = args.size or (512 if gpu else 128)
    args.batch = args.batch or (8 if gpu else 2)
    args.steps = args.steps or (10 if gpu else 2)
    args.workers = args.workers if args.workers is not None else (8 if gpu else 0)
    args.modes = [m for m in args.modes.split(",") if m]
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    runs = build_runs(args, device)
    flops = {run.label: 3 * forward_flops(run) for run in runs}
    compile_s: dict[str, float] = {}
    for run in runs:
        print(f"warm-up {run.label} ...", file=sys.stderr, flush=True)
        compile_s[run.label] = run.timed(args.warmup) * args.warmup
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}", file=sys.stderr, flush=True)
        for run in runs:
            run.seconds.append(run.timed(args.steps))
    peak = matmul_flops(device)
    loader = None if args.no_loader else loader_images_per_s(args, device)

    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    for run in runs:
        step_s = statistics.median(run.seconds)
        achieved = flops[run.label] / step_s
        rows.append({"model": run.label, "step_s": step_s, "images_per_s": args.batch / step_s,
                     "train_gflop": flops[run.label] / 1e9, "achieved_tflops": achieved / 1e12, "mfu": achieved / peak,
                     "warmup_s": compile_s[run.label]})  # fmt: skip
    result = {"device": name, "variant": args.variant, "size": args.size, "batch": args.batch,
              "dtype": "bf16 autocast" if gpu else "fp32", "matmul_tflops": peak / 1e12, "rounds": args.rounds,
              "steps": args.steps, "compile_mode": args.compile_mode, "torch": torch.__version__,
              "loader_images_per_s": loader, "loader_workers": args.workers, "runs": rows}  # fmt: skip
    print(f"\n{name}; {args.size}x{args.size}, batch {args.batch}, {result['dtype']}; matmul {peak / 1e12:.2f} TFLOP/s")
    print("\n| model | step (ms, median) | img/s | train GFLOP | TFLOP/s | MFU | warm-up (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['model']} | {row['step_s'] * 1e3:.1f} | {row['images_per_s']:.1f} | {row['train_gflop']:.1f} | "
              f"{row['achieved_tflops']:.3f} | {row['mfu']:.1%} | {row['warmup_s']:.1f} |")  # fmt: skip
    if loader is not None:
        print(f"\nloader alone ({args.workers} workers): {loader:.1f} img/s")
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
