"""EQUISeg and its baselines behind one model registry (docs/model.md; contract in docs/design.md, "Models").

One module per architecture (``equiseg_model``, ``segformer_rgb``, ``early_fusion``, ``cmnext_like``,
``mean_fusion``), each a :class:`SegmentationModel` that builds its encoder, fusion and decoder; ``forward``,
``forward_features`` and ``feature_info`` are shared.

>>> from equiseg.models import create_model
>>> model = create_model("equiseg_tiny", num_classes=8, modalities=("rgb", "depth"))
>>> out = model({"rgb": rgb, "depth": depth})          # doctest: +SKIP
>>> out.logits.shape                                     # doctest: +SKIP
torch.Size([B, 8, H, W])

This package imports neither mlflow nor kfp: it runs where only torch, timm and numpy exist.
"""

from __future__ import annotations

from equiseg.models.base import FusedFeatures, SegmentationModel, SegmentationOutput
from equiseg.models.encoder import VARIANTS
from equiseg.models.registry import (
    COMMON_OVERRIDES,
    FAMILIES,
    create_model,
    list_models,
    model_family,
    supports_missing_modalities,
)

__all__ = [
    "COMMON_OVERRIDES",
    "FAMILIES",
    "VARIANTS",
    "FusedFeatures",
    "SegmentationModel",
    "SegmentationOutput",
    "create_model",
    "list_models",
    "model_family",
    "supports_missing_modalities",
]
