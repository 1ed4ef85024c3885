"""The model registry: ``create_model(name, ...)`` for EQUISeg and its baselines (docs/design.md, "Models").

The names, variants and family options live torch-free in :mod:`equiseg.models.catalog`; here each family gets its
builder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from equiseg.models.base import SegmentationModel
from equiseg.models.catalog import COMMON_OVERRIDES, FAMILY_INFO, VARIANTS, EncoderSpec, list_models, model_family
from equiseg.models.cmnext_like import CMNeXtLike
from equiseg.models.early_fusion import EarlyFusion
from equiseg.models.equiseg_model import EQUISeg
from equiseg.models.mean_fusion import LateFusion, MeanFusion
from equiseg.models.segformer_rgb import SegFormerRGB

__all__ = [
    "COMMON_OVERRIDES",
    "FAMILIES",
    "create_model",
    "list_models",
    "model_family",
    "supports_missing_modalities",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """A model family: its builder, the keyword options it uses, and a one-line description."""

    builder: Callable[..., SegmentationModel]
    options: tuple[str, ...]
    description: str
    fixed: Mapping[str, Any] | None = None


_BUILDERS: dict[str, Callable[..., SegmentationModel]] = {
    "equiseg": EQUISeg,
    "equiseg_nosgm": EQUISeg,
    "equiseg_shared": EQUISeg,
    "equiseg_sgm_ce": EQUISeg,
    "equiseg_sgm_logit": EQUISeg,
    "segformer_rgb": SegFormerRGB,
    "early_fusion": EarlyFusion,
    "cmnext_like": CMNeXtLike,
    "mean_fusion": MeanFusion,
    "late_fusion": LateFusion,
}

#: The torch-free :data:`equiseg.models.catalog.FAMILY_INFO` with each family's builder attached.
FAMILIES: dict[str, Family] = {
    name: Family(_BUILDERS[name], info.options, info.description, info.fixed) for name, info in FAMILY_INFO.items()
}


def supports_missing_modalities(name: str) -> bool:
    """Whether the registered model ``name`` fuses any subset of its modalities (absent ones left out of the input)."""
    family, _ = model_family(name)
    return bool(getattr(FAMILIES[family].builder, "supports_missing_modalities", False))


def create_model(
    name: str,
    *,
    num_classes: int,
    modalities: Sequence[str],
    in_chans: Mapping[str, int] | None = None,
    **overrides: Any,
) -> SegmentationModel:
    """Build a registered model (random init; no weights are downloaded).

    Args:
        name: a name from :func:`list_models`, e.g. ``"equiseg_b0"``.
        num_classes: output classes ``K``.
        modalities: the modalities the model is built for; inputs may be any non-empty subset.
        in_chans: channels per modality where they differ from ``equiseg.modalities.MODALITY_CHANNELS``.
        **overrides: family options. ``None`` values are dropped. ``share_encoder_weights``, ``sgm_weight`` and
            ``drop_path_rate`` (the ``ModelConfig`` fields) are accepted by every model and ignored where the
            family has no such knob; ``ignore_index`` (label value the SGM skips) by ``equiseg*``.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
        TypeError: an option this family does not know (the message lists the accepted ones).
    """
    family_name, variant = model_family(name)
    family = FAMILIES[family_name]
    spec: EncoderSpec = VARIANTS[variant]
    kwargs = {key: value for key, value in overrides.items() if value is not None}
    unknown = sorted(set(kwargs) - set(family.options) - set(COMMON_OVERRIDES))
    if unknown:
        accepted = ", ".join(sorted({*family.options, *COMMON_OVERRIDES}))
        raise TypeError(f"{name} does not take option(s) {unknown}; accepted: {accepted}")
    ignored = sorted(key for key in kwargs if key not in family.options)
    if ignored:
        logger.debug("%s ignores option(s) %s (no such knob in this family)", name, ignored)
    used = {key: value for key, value in kwargs.items() if key in family.options}
    return family.builder(
        model_name=name,
        spec=spec,
        num_classes=num_classes,
        modalities=tuple(modalities),
        in_chans=in_chans,
        **used,
        **(family.fixed or {}),
    )
