"""EQUISeg and its baselines behind one model registry (docs/model.md; contract in docs/design.md, "Models").

One module per architecture (``equiseg_model``, ``segformer_rgb``, ``early_fusion``, ``cmnext_like``,
``mean_fusion``), each a :class:`SegmentationModel` that builds its encoder, fusion and decoder; ``forward``,
``forward_features`` and ``feature_info`` are shared.

>>> from equiseg.models import create_model
>>> model = create_model("equiseg_tiny", num_classes=8, modalities=("rgb", "depth"))
>>> out = model({"rgb": rgb, "depth": depth})          # doctest: +SKIP
>>> out.logits.shape                                     # doctest: +SKIP
torch.Size([B, 8, H, W])

This package imports neither mlflow nor kfp: it runs where only torch and numpy exist. The names alone
(:mod:`equiseg.models.catalog`: ``list_models``, ``model_family``, ``VARIANTS``, ``COMMON_OVERRIDES``) need not even
torch: the torch-side names below load on first use (PEP 562), so ``equiseg model list`` starts in well under a
second instead of paying for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from equiseg.lazy import lazy_namespace
from equiseg.models.catalog import COMMON_OVERRIDES, VARIANTS, list_models, model_family

if TYPE_CHECKING:
    from equiseg.models.base import FusedFeatures, SegmentationModel, SegmentationOutput
    from equiseg.models.registry import FAMILIES, create_model, supports_missing_modalities
    from equiseg.models.summary import summarize_model

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
    "summarize_model",
    "supports_missing_modalities",
]

#: torch-side public name -> the submodule that defines it (imported on first attribute access).
_LAZY: dict[str, str] = {
    "FusedFeatures": "equiseg.models.base",
    "SegmentationModel": "equiseg.models.base",
    "SegmentationOutput": "equiseg.models.base",
    "FAMILIES": "equiseg.models.registry",
    "create_model": "equiseg.models.registry",
    "supports_missing_modalities": "equiseg.models.registry",
    "summarize_model": "equiseg.models.summary",
}

__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
