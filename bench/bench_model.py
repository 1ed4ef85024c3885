"""Benchmarks of the model registry (results in docs/model.md).

1. ``sizes``: params and GFLOPs of every registered b0/b1/b2 model at 512x512 with 2 (RGB-D) and 4 (RGB-D-E-L)
   modalities, beside the published peers.
2. ``step``: CPU training-step time (fwd + bwd + AdamW, batch 2, 256x256, 2 threads) of each b0 model on RGB-D,
   divided by the same step of segmentation_models_pytorch's ``Segformer(mit_b0)`` on RGB alone, measured in the
   same run (each model timed right after the baseline, median of the paired ratios over rounds, so load from
   other users drifting during the run hurts both alike).
3. ``efficiency``: achieved GFLOP/s of that step (3x the forward FLOPs of FlopCounterMode) / measured fp32
   ``torch.matmul`` peak on the same machine and threads.

Usage: ``.venv/bin/python bench/bench_model.py [--part sizes|step|all] [--rounds 3] [--steps 3]``.
Needs the ``bench`` extra (segmentation-models-pytorch) for the step baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from equiseg.models import FAMILIES, create_model
from equiseg.models.summary import summarize_model

PUBLISHED = [
    ("CMNeXt-B2, RGB-D-E-L (CVPR 2023)", "58.73 M", "65.42 (fvcore, = GMACs)"),
    ("MAGIC, MiT-B2 (ECCV 2024)", "24.73 M", "n/a"),
    ("SegFormer-B0, ADE20K 512x512 (paper Table 1)", "3.8 M", "8.4 (fvcore, = GMACs)"),
    ("SegFormer-B2, ADE20K 512x512 (paper Table 1)", "27.5 M", "62.4 (fvcore, = GMACs)"),
]
NUM_CLASSES = 25  # DeLiVER


def bench_sizes() -> None:
    """Markdown table: params and GMACs/GFLOPs at 512x512 for every family and b0/b1/b2 variant."""
    print("| model | modalities | params (M) | GMACs (papers' 'GFLOPs') | GFLOPs (2/MAC) |")
    print("| --- | --- | ---: | ---: | ---: |")
    for variant in ("b0", "b1", "b2"):
        for family in (*FAMILIES, "equiseg+shared"):
            for mods in (("rgb", "depth"), ("rgb", "depth", "event", "lidar")):
                shared = family.endswith("+shared")
                model = create_model(
                    f"{family.removesuffix('+shared')}_{variant}",
                    num_classes=NUM_CLASSES,
                    modalities=mods,
                    share_encoder_weights=shared,
                )
                s = summarize_model(model, 512)
                print(
                    f"| {s.name}{' (shared encoder)' if shared else ''} | {'-'.join(m[0].upper() for m in mods)} | "
                    f"{s.params / 1e6:.2f} | {s.gmacs:.2f} | {s.gflops:.2f} |",
                    flush=True,
                )
    print("\nPublished peers (for comparison):\n")
    print("| model | params | GFLOPs |\n| --- | ---: | ---: |")
    for name, params, flops in PUBLISHED:
        print(f"| {name} | {params} | {flops} |")


def matmul_peak_gflops(n: int = 1024, repeats: int = 20) -> float:
    """Best fp32 ``torch.matmul`` GFLOP/s on this machine and thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


StepFn = Callable[[], None]


def make_step(model: nn.Module, forward: Callable[[], Tensor | tuple[Tensor, Tensor]]) -> StepFn:
    """One fwd + bwd + AdamW step; ``forward`` returns the total loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        loss = forward()
        assert isinstance(loss, Tensor)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def equiseg_step(name: str, modalities: tuple[str, ...], size: int, batch: int) -> tuple[StepFn, Callable[[], Tensor]]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, modalities=modalities)
    inputs = {m: torch.randn(batch, c, size, size) for m, c in model.in_chans.items()}
    labels = torch.randint(0, NUM_CLASSES, (batch, size, size))

    def loss() -> Tensor:
        out = model(inputs, labels)
        total = F.cross_entropy(out.logits, labels)
        return total + sum(out.aux_losses.values(), torch.zeros(()))

    return make_step(model, loss), loss


def smp_step(size: int, batch: int) -> tuple[StepFn, Callable[[], Tensor]]:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Segformer(encoder_name="mit_b0", encoder_weights=None, classes=NUM_CLASSES)
    image = torch.randn(batch, 3, size, size)
    labels = torch.randint(0, NUM_CLASSES, (batch, size, size))

    def loss() -> Tensor:
        return F.cross_entropy(model(image), labels)

    return make_step(model, loss), loss


def train_flops(loss: Callable[[], Tensor]) -> int:
    """FLOPs of one training step, counted as 3x the forward (backward = 2x forward, the usual convention).

    FlopCounterMode's own ``convolution_backward`` count is about 6x the forward conv FLOPs for MiT's strided convs,
    which would flatter every model's GFLOP/s; 3x forward keeps the efficiency ratio honest.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        loss()
    return 3 * int(counter.get_total_flops())


def bench_step(
    rounds: int, steps: int, families: list[str], size: int = 256, batch: int = 2, clock: str = "wall", threads: int = 2
) -> None:
    """Step-time ratios against SMP Segformer(mit_b0) and achieved GFLOP/s against the matmul peak.

    ``clock="process"`` times with the process's CPU time instead of the wall clock: less sensitive to other users'
    load on a shared machine (it still counts the time OpenMP threads spin), but not the issue's wall-clock protocol.
    """
    torch.set_num_threads(threads)
    now = time.perf_counter if clock == "wall" else time.process_time
    mods = ("rgb", "depth")
    runs: dict[str, tuple[StepFn, Callable[[], Tensor]]] = {"smp Segformer(mit_b0) RGB": smp_step(size, batch)}
    for family in families:
        name = f"{family}_b0"
        runs[f"{name} {'RGB' if family == 'segformer_rgb' else 'RGB-D'}"] = equiseg_step(
            name, ("rgb",) if family == "segformer_rgb" else mods, size, batch
        )
    flops = {label: train_flops(loss) for label, (_, loss) in runs.items()}
    for step, _ in runs.values():
        step()  # warm-up
    base_label = "smp Segformer(mit_b0) RGB"
    base_step = runs[base_label][0]

    def timed(step: StepFn) -> float:
        start = now()
        for _ in range(steps):
            step()
        return (now() - start) / steps

    # Each model is timed right after the baseline, round after round: the median of these paired ratios is robust
    # to the load of other users drifting during the run, which a ratio of independent minima is not.
    times: dict[str, list[float]] = {label: [] for label in runs}
    ratios: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(rounds):
        for label, (step, _) in runs.items():
            base_time = timed(base_step)
            model_time = base_time if label == base_label else timed(step)
            times[base_label].append(base_time)
            if label != base_label:
                times[label].append(model_time)
            ratios[label].append(model_time / base_time)
    peak = matmul_peak_gflops()
    print(
        f"\nCPU train step ({clock} clock), batch {batch}, {size}x{size}, {torch.get_num_threads()} threads, "
        f"{rounds} paired rounds x "
        f"{steps} steps; fp32 matmul peak {peak:.1f} GFLOP/s\n"
    )
    print("| model | best step (s) | median ratio vs SMP Segformer-B0 (IQR) | train GFLOP | best GFLOP/s | ÷ peak |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label in runs:
        best = min(times[label])
        achieved = flops[label] / best / 1e9
        low, _, high = statistics.quantiles(ratios[label], n=4) if len(ratios[label]) > 1 else [ratios[label][0]] * 3
        print(
            f"| {label} | {best:.3f} | {statistics.median(ratios[label]):.2f} ({low:.2f}-{high:.2f}) | "
            f"{flops[label] / 1e9:.1f} | {achieved:.1f} | {achieved / peak:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("sizes", "step", "all"), default="all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "process"), default="wall", help="wall time or process CPU time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated families for the step part")
    args = parser.parse_args()
    if args.part in ("sizes", "all"):
        bench_sizes()
    if args.part in ("step", "all"):
        families = [f for f in args.families.split(",") if f]
        bench_step(args.rounds, args.steps, families, clock=args.clock, threads=args.threads)


if __name__ == "__main__":
    main()
