"""The model registry: ``create_model(name, ...)`` for EQUISeg and its baselines (docs/design.md, "Models").

Names are ``<family>_<variant>``: families ``equiseg``, ``equiseg_nosgm``, ``segformer_rgb``, ``early_fusion``,
``cmnext_like``, ``mean_fusion``; variants ``tiny`` (CPU tests), ``b0``, ``b1``, ``b2`` (MiT-B0/B1/B2 widths).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from equiseg.models.base import SegmentationModel
from equiseg.models.cmnext_like import CMNeXtLike
from equiseg.models.early_fusion import EarlyFusion
from equiseg.models.encoder import VARIANTS, EncoderSpec
from equiseg.models.equiseg_model import EQUISeg
from equiseg.models.mean_fusion import MeanFusion
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

#: ``ModelConfig`` fields every model accepts as keyword overrides (ignored by the models where they mean nothing).
COMMON_OVERRIDES: tuple[str, ...] = ("share_encoder_weights", "sgm_weight", "drop_path_rate")


@dataclass(frozen=True)
class Family:
    """A model family: its builder, the keyword options it uses, and a one-line description."""

    builder: Callable[..., SegmentationModel]
    options: tuple[str, ...]
    description: str
    fixed: Mapping[str, Any] | None = None


FAMILIES: dict[str, Family] = {
    "equiseg": Family(
        EQUISeg,
        ("share_encoder_weights", "sgm_weight", "drop_path_rate", "ignore_index"),
        "EQUISeg: per-modality MiT branches, CMTB cross-attention + hierarchical selection each stage, SGM",
    ),
    "equiseg_nosgm": Family(
        EQUISeg,
        ("share_encoder_weights", "drop_path_rate", "ignore_index"),
        "EQUISeg without the Self-guided Module (ablation)",
        fixed={"use_sgm": False},
    ),
    "segformer_rgb": Family(SegFormerRGB, ("drop_path_rate",), "SegFormer on RGB only (other inputs ignored)"),
    "early_fusion": Family(EarlyFusion, ("drop_path_rate",), "channel concat of all modalities into one MiT"),
    "cmnext_like": Family(
        CMNeXtLike, ("drop_path_rate",), "RGB-primary MiT + shared auxiliary branch + self-query hub (RGB-dominant)"
    ),
    "mean_fusion": Family(MeanFusion, ("drop_path_rate",), "shared MiT, per-stage mean over present modalities"),
}


def list_models() -> list[str]:
    """Every registered name, e.g. ``['cmnext_like_b0', ..., 'segformer_rgb_tiny']`` (sorted)."""
    return sorted(f"{family}_{variant}" for family in FAMILIES for variant in VARIANTS)


def supports_missing_modalities(name: str) -> bool:
    """Whether the registered model ``name`` fuses any subset of its modalities (absent ones left out of the input)."""
    family, _ = model_family(name)
    return bool(getattr(FAMILIES[family].builder, "supports_missing_modalities", False))


def model_family(name: str) -> tuple[str, str]:
    """Split a registered name into ``(family, variant)``; raises ``KeyError`` listing valid names."""
    family, _, variant = name.rpartition("_")
    if family not in FAMILIES or variant not in VARIANTS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return family, variant


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
