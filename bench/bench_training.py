"""CPU training throughput of the training loop per registered model (results in docs/training.md).

For each profile (``smoke``: 64 px, batch 4; ``cpu``: 128 px, batch 8) and each model family at the profile's
variant, two numbers measured in the same run, interleaved:

* ``loop``: images/s of :func:`equiseg.training.train_one_epoch` on a synthetic manifest: PNG decoding,
  augmentation, modality dropout, the LR schedule, CE/OHEM + SGM losses, clipping and AdamW;
* ``bare``: images/s of a bare ``forward + backward + AdamW`` step of the same model on tensors already in memory.

The ratio ``loop / bare`` is the share of the bare model throughput the full loop keeps (1.0 = no overhead). Rounds
are interleaved and the best round per measurement is kept, so load from other processes hurts both alike.

Usage: ``.venv/bin/python bench/bench_training.py [--profiles smoke,cpu] [--models equiseg_tiny,...] [--steps 3]
[--rounds 2] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from equiseg.config import EquisegConfig, load_config
from equiseg.data.synthetic import generate_synthetic
from equiseg.models import FAMILIES, model_family
from equiseg.training.distributed import DistInfo
from equiseg.training.epoch import Progress, build_model, build_optimizer, train_one_epoch
from equiseg.training.loaders import epoch_loader, split_dataset


def loop_images_per_s(cfg: EquisegConfig, manifest: Path, root: Path, steps: int) -> float:
    """Images/s of ``train_one_epoch`` over ``steps`` steps (after one warm-up step)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg.train.lr, cfg.train.weight_decay)
    dataset = split_dataset(cfg, manifest, root, "train")
    info = DistInfo()
    loader, steps_per_epoch = epoch_loader(dataset, cfg, info, epoch=0, skip_steps=0)
    batches = iter(loader)
    warm = [next(batches)]
    train_one_epoch(model, warm, optimizer, cfg, epoch=0, start_step=0, steps_per_epoch=steps_per_epoch,
                    progress=Progress(), info=info, show_progress=False)  # fmt: skip
    started = time.perf_counter()
    loader, _ = epoch_loader(dataset, cfg, info, epoch=1, skip_steps=0)
    train_one_epoch(model, itertools.islice(loader, steps), optimizer, cfg, epoch=1, start_step=0,
                    steps_per_epoch=steps_per_epoch, progress=Progress(), info=info, show_progress=False)  # fmt: skip
    return steps * cfg.train.batch_size / (time.perf_counter() - started)


def bare_images_per_s(cfg: EquisegConfig, steps: int) -> float:
    """Images/s of forward + backward + AdamW on in-memory tensors of the same shape."""
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    size, batch = cfg.data.image_size, cfg.train.batch_size
    inputs = {m: torch.randn(batch, c, size, size) for m, c in model.in_chans.items()}  # type: ignore[union-attr]
    labels = torch.randint(0, cfg.data.num_classes, (batch, size, size))

    def step() -> None:
        output = model(inputs, labels)
        loss = F.cross_entropy(output.logits, labels) + sum(output.aux_losses.values(), torch.zeros(()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    """Print a Markdown table of loop and bare images/s and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="smoke,cpu")
    parser.add_argument("--models", default="", help="comma-separated names; default: every family at the "
                        "profile's variant")  # fmt: skip
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} steps x {args.rounds} rounds (best)")
    print("| profile | size | batch | model | loop img/s | bare img/s | loop / bare |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="equiseg-bench-") as tmp:
        for profile in args.profiles.split(","):
            base = load_config(profile, ["train.device=cpu", "data.num_workers=0"])
            _, variant = model_family(base.model.name)
            names = args.models.split(",") if args.models else [f"{family}_{variant}" for family in FAMILIES]
            samples = int((args.steps + 1) * base.train.batch_size / (1 - base.data.val_fraction)) + 2
            root = Path(tmp) / profile
            manifest = generate_synthetic(root, samples=samples, size=base.data.image_size,
                                          modalities=base.data.modalities, seed=0, progress=False)  # fmt: skip
            for name in names:
                cfg = base.replace(**{"model.name": name})
                loop_best, bare_best = 0.0, 0.0
                for _ in range(args.rounds):
                    loop_best = max(loop_best, loop_images_per_s(cfg, manifest, root, args.steps))
                    bare_best = max(bare_best, bare_images_per_s(cfg, args.steps))
                print(f"| {profile} | {base.data.image_size} | {base.train.batch_size} | {name} | {loop_best:.2f} | "
                      f"{bare_best:.2f} | {loop_best / bare_best:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
