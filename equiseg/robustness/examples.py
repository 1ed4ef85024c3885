"""Prediction examples for the robustness report: a few samples, their labels and predictions under chosen slices.

The inputs are transformed exactly as by the runner (:mod:`~equiseg.robustness.suites`), seeded by ``(seed, slice,
sample)``, each sample on its own; ``write_robustness_report`` draws them as ``examples.png``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from equiseg.modalities import to_unit
from equiseg.robustness.runner import model_logits
from equiseg.robustness.suites import plan_suite, slice_seed

__all__ = ["DEFAULT_EXAMPLE_SLICES", "PredictionExample", "collect_examples"]

DEFAULT_EXAMPLE_SLICES: tuple[str, ...] = ("clean", "nm/mid", "corrupt/rgb/fog/s3")


@dataclass
class PredictionExample:
    """One sample for the prediction grid: what the first modality shows, the label and per-slice predictions."""

    sample_id: str
    conditions: tuple[str, ...]
    image: NDArray[np.float32]  # (H, W, 3) in [0, 1]: the first modality, grey modalities repeated
    label: NDArray[np.int64]  # (H, W), ignore index kept
    predictions: dict[str, NDArray[np.int64]] = field(default_factory=dict)  # slice name -> (H, W)


def _display_image(x: torch.Tensor, modality: str) -> NDArray[np.float32]:
    unit = to_unit(x.float(), modality).clamp(0, 1)
    if unit.shape[0] != 3:
        unit = unit[:1].expand(3, -1, -1)
    return unit.permute(1, 2, 0).cpu().numpy().astype(np.float32)


def collect_examples(
    model: Any,
    batches: Iterable[Mapping[str, Any]],
    *,
    modalities: Sequence[str],
    slices: Sequence[str] = DEFAULT_EXAMPLE_SLICES,
    per_condition: int = 1,
    max_examples: int = 6,
    seed: int = 0,
    device: str | torch.device = "cpu",
    missing: str = "zero",
) -> list[PredictionExample]:
    """Predictions of ``model`` on a few samples (one per condition tag, plus untagged ones) under ``slices``.

    Slice names are those of the suites (``clean``, ``emm/<kept>``, ``rmm/r0.5/<missing>``, ``nm/<level>``,
    ``corrupt/<modality>/<name>/s<k>``); names a suite cannot produce for these modalities are skipped. The inputs
    are transformed exactly as by the runner, seeded by ``(seed, slice, sample)``, each sample on its own.
    """
    mods = tuple(modalities)
    dev = torch.device(device)
    specs = {s.name: s for s in plan_suite(mods, "full", missing="drop" if missing == "drop" else "zero")}
    specs.update({s.name: s for s in plan_suite(mods, "quick", missing="drop" if missing == "drop" else "zero")})
    wanted = [name for name in slices if name in specs]
    chosen: list[tuple[dict[str, torch.Tensor], torch.Tensor, str, tuple[str, ...]]] = []
    seen: dict[str, int] = {}
    for batch in batches:
        for i, sample_id in enumerate(batch["sample_id"]):
            tags = tuple(batch.get("conditions", [()] * len(batch["sample_id"]))[i])
            key = tags[0] if tags else "(none)"
            if seen.get(key, 0) >= per_condition:
                continue
            seen[key] = seen.get(key, 0) + 1
            inputs = {m: batch["inputs"][m][i : i + 1].to(dev, torch.float32) for m in mods}
            chosen.append((inputs, batch["label"][i], str(sample_id), tags))
            if len(chosen) >= max_examples:
                break
        if len(chosen) >= max_examples:
            break
    examples: list[PredictionExample] = []
    was_training = bool(getattr(model, "training", False))
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.inference_mode():
            for index, (inputs, label, sample_id, tags) in enumerate(chosen):
                example = PredictionExample(
                    sample_id=sample_id,
                    conditions=tags,
                    image=_display_image(inputs[mods[0]][0], mods[0]),
                    label=label.cpu().numpy().astype(np.int64),
                )
                for name in wanted:
                    spec = specs[name]
                    x = inputs
                    if spec.transform is not None:
                        generator = torch.Generator(device=dev)
                        generator.manual_seed(slice_seed(seed, "example/" + name, index))
                        x = spec.transform(inputs, generator)
                    logits = model_logits(model(x))
                    if logits.shape[-2:] != label.shape[-2:]:
                        logits = F.interpolate(logits, size=tuple(label.shape[-2:]), mode="bilinear")
                    example.predictions[name] = logits.argmax(1)[0].cpu().numpy().astype(np.int64)
                examples.append(example)
    finally:
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()
    return examples
