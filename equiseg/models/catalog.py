"""The model names without the models: variants, families and their options, torch-free (docs/model.md).

``equiseg model list``, config checks and experiment plans need only names; importing the builders costs torch
(seconds). :mod:`equiseg.models.registry` attaches the builders to these entries. Names are
``<family>_<variant>``: families ``equiseg``, ``equiseg_nosgm``, the controls ``equiseg_shared``, ``equiseg_sgm_ce``,
``equiseg_sgm_logit``, ``late_fusion``, and the baselines ``segformer_rgb``, ``early_fusion``, ``cmnext_like``,
``mean_fusion``; variants ``tiny`` (CPU tests), ``b0``, ``b1``, ``b2`` (MiT-B0/B1/B2 widths, SegFormer
arXiv 2105.15203, Table 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMMON_OVERRIDES",
    "FAMILY_INFO",
    "VARIANTS",
    "EncoderSpec",
    "FamilyInfo",
    "list_models",
    "model_family",
]


@dataclass(frozen=True)
class EncoderSpec:
    """Widths and depths of one MiT variant plus the SegFormer decoder width that goes with it."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int]
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    decoder_dim: int = 256


#: ``tiny`` is ours (CPU tests and experiments); ``b0``/``b1``/``b2`` are MiT-B0/B1/B2 (SegFormer Table 6).
VARIANTS: dict[str, EncoderSpec] = {
    "tiny": EncoderSpec((16, 32, 64, 128), (1, 1, 1, 1), (1, 1, 2, 4), decoder_dim=64),
    "b0": EncoderSpec((32, 64, 160, 256), (2, 2, 2, 2), (1, 2, 5, 8), decoder_dim=256),
    "b1": EncoderSpec((64, 128, 320, 512), (2, 2, 2, 2), (1, 2, 5, 8), decoder_dim=256),
    "b2": EncoderSpec((64, 128, 320, 512), (3, 4, 6, 3), (1, 2, 5, 8), decoder_dim=768),
}

#: ``ModelConfig`` fields every model accepts as keyword overrides (ignored by the models where they mean nothing).
COMMON_OVERRIDES: tuple[str, ...] = ("share_encoder_weights", "sgm_weight", "drop_path_rate")


@dataclass(frozen=True)
class FamilyInfo:
    """A model family without its builder: the keyword options it uses, a one-line description, fixed options."""

    options: tuple[str, ...]
    description: str
    fixed: Mapping[str, Any] | None = None


FAMILY_INFO: dict[str, FamilyInfo] = {
    "equiseg": FamilyInfo(
        ("share_encoder_weights", "sgm_weight", "drop_path_rate", "ignore_index"),
        "EQUISeg: per-modality MiT branches, CMTB cross-attention + hierarchical selection each stage, SGM",
    ),
    "equiseg_nosgm": FamilyInfo(
        ("share_encoder_weights", "drop_path_rate", "ignore_index"),
        "EQUISeg without the Self-guided Module (ablation)",
        fixed={"use_sgm": False},
    ),
    "equiseg_shared": FamilyInfo(
        ("sgm_weight", "drop_path_rate", "ignore_index"),
        "EQUISeg with one set of encoder weights for all modalities (capacity control)",
        fixed={"share_encoder_weights": True},
    ),
    "equiseg_sgm_ce": FamilyInfo(
        ("share_encoder_weights", "sgm_weight", "drop_path_rate", "ignore_index"),
        "EQUISeg, SGM ablation step 1: per-branch supervision only (no guidance)",
        fixed={"sgm_terms": ("ce",)},
    ),
    "equiseg_sgm_logit": FamilyInfo(
        ("share_encoder_weights", "sgm_weight", "drop_path_rate", "ignore_index"),
        "EQUISeg, SGM ablation step 2: per-branch supervision + logit guidance (no prototype guidance)",
        fixed={"sgm_terms": ("ce", "logit")},
    ),
    "segformer_rgb": FamilyInfo(("drop_path_rate",), "SegFormer on RGB only (other inputs ignored)"),
    "early_fusion": FamilyInfo(("drop_path_rate",), "channel concat of all modalities into one MiT"),
    "cmnext_like": FamilyInfo(
        ("drop_path_rate",), "RGB-primary MiT + shared auxiliary branch + self-query hub (RGB-dominant)"
    ),
    "mean_fusion": FamilyInfo(("drop_path_rate",), "shared MiT, per-stage mean over present modalities"),
    "late_fusion": FamilyInfo(
        ("drop_path_rate",), "one MiT per modality, no CMTB, per-stage mean over present modalities (capacity control)"
    ),
}


def list_models() -> list[str]:
    """Every registered name, e.g. ``['cmnext_like_b0', ..., 'segformer_rgb_tiny']`` (sorted)."""
    return sorted(f"{family}_{variant}" for family in FAMILY_INFO for variant in VARIANTS)


def model_family(name: str) -> tuple[str, str]:
    """Split a registered name into ``(family, variant)``; raises ``KeyError`` listing valid names."""
    family, _, variant = name.rpartition("_")
    if family not in FAMILY_INFO or variant not in VARIANTS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return family, variant
