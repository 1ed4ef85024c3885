"""Our MiT branches against timm's own ``pvt_v2`` forward for the same weights (docs/model.md, "Registry").

``encoder.MiTBranch`` runs timm's stages one by one and, for the CMTB, splits a stage's last block around the
cross-attention. Both paths must give what timm's stage forward gives when nothing is inserted.
"""

from __future__ import annotations

import pytest
import torch
from timm.models.pvt_v2 import PyramidVisionTransformerV2

from equiseg.models import VARIANTS
from equiseg.models.encoder import EncoderSpec, MiTBranch, ModalityEncoders


def timm_twin(spec: EncoderSpec, in_chans: int, branch: MiTBranch) -> PyramidVisionTransformerV2:
    """A timm model of the same architecture holding ``branch``'s weights."""
    model = PyramidVisionTransformerV2(
        in_chans=in_chans,
        num_classes=0,
        depths=spec.depths,
        embed_dims=spec.embed_dims,
        num_heads=spec.num_heads,
        sr_ratios=spec.sr_ratios,
        mlp_ratios=(4.0, 4.0, 4.0, 4.0),
    )
    missing, unexpected = model.load_state_dict(branch.state_dict(), strict=False)
    assert not unexpected and all(not key.startswith(("patch_embed", "stages")) for key in missing), missing
    return model.eval()


@pytest.mark.parametrize("variant", ["tiny", "b0"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_branch_stage_matches_timm_stage_forward(variant: str, in_chans: int) -> None:
    spec = VARIANTS[variant]
    torch.manual_seed(0)
    branch = MiTBranch(spec, in_chans).eval()
    twin = timm_twin(spec, in_chans, branch)
    x = torch.randn(2, in_chans, 64, 96)
    with torch.no_grad():
        expected = twin.forward_intermediates(x, intermediates_only=True)
        h = twin.patch_embed(x)
        torch.testing.assert_close(branch.stem(x), h, rtol=0, atol=0)
        ours = branch(x)
        assert len(ours) == len(expected) == 4
        for index, (stage_out, timm_out) in enumerate(zip(ours, expected, strict=True)):
            torch.testing.assert_close(stage_out, timm_out, rtol=0, atol=0)
            # the CMTB split (nothing inserted between the halves) against timm's stage forward on the same input
            tokens, size = branch.stage_before_cross(index, h)
            split = branch.stage_after_cross(index, tokens, size)
            h = twin.stages[index](h)
            torch.testing.assert_close(split, h, rtol=0, atol=0)
            assert split.shape[1] == branch.feature_info[index]["num_chs"] == spec.embed_dims[index]


def test_shared_stages_batch_modalities_like_separate_timm_runs() -> None:
    spec = VARIANTS["tiny"]
    torch.manual_seed(0)
    encoders = ModalityEncoders(spec, {"rgb": 3, "depth": 1}, share_weights=True).eval()
    assert encoders.shared is not None
    inputs = {"rgb": torch.randn(2, 3, 64, 64), "depth": torch.randn(2, 1, 64, 64)}
    with torch.no_grad():
        feats = encoders.stem(inputs)
        expected = dict(feats)
        for index in range(4):
            feats = encoders.stage(index, feats)
            expected = {name: encoders.shared.stages[index](h) for name, h in expected.items()}
            for name in inputs:
                torch.testing.assert_close(feats[name], expected[name], rtol=1e-5, atol=1e-5)
