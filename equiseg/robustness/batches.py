"""The evaluation batches of a robustness run: read once, kept on a device, replayed in order for every slice.

By default the evaluation set is iterated **once** and its batches are kept in memory on the model's device
(evaluation sets are small); every slice then re-uses those clean batches, so a DataLoader with random augmentation
cannot make slices disagree about their inputs. ``cache="cpu"`` keeps them in host memory instead, and
``cache="none"`` re-reads a fixed-order DataLoader for every slice (large sets such as DeLiVER val at 1024 px).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from equiseg.robustness.suites import Inputs

__all__ = ["BatchSource", "CachedBatch", "prepare_batch"]


@dataclass
class CachedBatch:
    """One evaluation batch, ready for the model: float inputs and long labels on one device."""

    inputs: Inputs
    label: torch.Tensor
    sample_ids: list[str]
    conditions: list[tuple[str, ...]]


def prepare_batch(batch: Mapping[str, Any], index: int, modalities: Sequence[str], device: torch.device) -> CachedBatch:
    """A batch dict (``docs/design.md``) -> :class:`CachedBatch` on ``device``; ``KeyError`` if a modality is absent."""
    inputs = batch["inputs"]
    absent = [m for m in modalities if m not in inputs]
    if absent:
        raise KeyError(
            f"batch {index} lacks modalities {absent} (it holds {sorted(inputs)}); evaluate with "
            "modalities= matching the data, or fix the manifest"
        )
    label = batch["label"]
    size = label.shape[0]
    sample_ids = [str(s) for s in batch.get("sample_id", [f"{index}_{i}" for i in range(size)])]
    conditions = [tuple(c) for c in batch.get("conditions", [() for _ in range(size)])]
    return CachedBatch(
        inputs={m: inputs[m].to(device=device, dtype=torch.float32) for m in modalities},
        label=label.to(device=device, dtype=torch.long),
        sample_ids=sample_ids,
        conditions=conditions,
    )


class BatchSource:
    """The evaluation batches on the model's device, once per slice, always in the same order.

    ``cache="device"`` (default) or ``"cpu"`` reads ``batches`` once and keeps the prepared clean batches there;
    ``"none"`` re-iterates ``batches`` for every slice (it must be re-iterable in a fixed order, e.g. a DataLoader
    with ``shuffle=False``) for evaluation sets too large to hold.
    """

    def __init__(
        self, batches: Iterable[Mapping[str, Any]], modalities: Sequence[str], device: torch.device, cache: str
    ) -> None:
        if cache not in ("device", "cpu", "none"):
            raise ValueError(f"cache must be 'device', 'cpu' or 'none', got {cache!r}")
        self.modalities = tuple(modalities)
        self.device = device
        self.cache = cache
        self.sample_ids: list[str] = []
        self.conditions: list[tuple[str, ...]] = []
        self._batches = batches
        self._cached: list[CachedBatch] = []
        self._order: list[list[str]] | None = None
        if cache == "none":
            if iter(batches) is batches:
                raise ValueError(
                    "cache='none' re-reads the data for every slice, but this source can be iterated only once "
                    "(a generator); pass a DataLoader or list, or use cache='device' / 'cpu'"
                )
            return
        store = device if cache == "device" else torch.device("cpu")
        self._cached = [prepare_batch(b, i, self.modalities, store) for i, b in enumerate(batches)]
        self._set_order([b.sample_ids for b in self._cached], [c for b in self._cached for c in b.conditions])

    def _set_order(self, order: list[list[str]], conditions: list[tuple[str, ...]]) -> None:
        if not order:
            raise ValueError("the evaluation data yielded no batches; check the manifest split and data root")
        self._order = order
        self.sample_ids = [s for ids in order for s in ids]
        self.conditions = conditions

    def __len__(self) -> int:
        if self._order is not None:
            return len(self._order)
        return len(self._batches) if hasattr(self._batches, "__len__") else 0  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, CachedBatch]]:
        if self.cache != "none":
            for index, batch in enumerate(self._cached):
                if self.cache == "cpu":
                    batch = CachedBatch(
                        inputs={m: x.to(self.device, non_blocking=True) for m, x in batch.inputs.items()},
                        label=batch.label.to(self.device, non_blocking=True),
                        sample_ids=batch.sample_ids,
                        conditions=batch.conditions,
                    )
                yield index, batch
            return
        order: list[list[str]] = []
        conditions: list[tuple[str, ...]] = []
        for index, raw in enumerate(self._batches):
            batch = prepare_batch(raw, index, self.modalities, self.device)
            if self._order is not None and (index >= len(self._order) or self._order[index] != batch.sample_ids):
                raise RuntimeError(
                    "the evaluation data changed order or content between slices; use a DataLoader with "
                    "shuffle=False (or cache='device')"
                )
            order.append(batch.sample_ids)
            conditions.extend(batch.conditions)
            yield index, batch
        if self._order is None:
            self._set_order(order, conditions)
        elif len(order) != len(self._order):
            raise RuntimeError("the evaluation data yielded a different number of batches between slices")
