"""Our MiT layers against timm's ``pvt_v2``, the reference implementation they replace (docs/model.md, "Registry").

``equiseg.models.mit`` is our own MiT, so the model imports no timm (and no torchvision). It must draw the same
weights as timm for the same seed (so earlier seeds and checkpoints keep their meaning), give timm's outputs for the
same weights, and the CMTB's split of a stage's last block must give the whole stage when nothing is inserted.
"""

from __future__ import annotations

import pytest
import torch
from timm.models.pvt_v2 import PyramidVisionTransformerV2

from equiseg.models import VARIANTS
from equiseg.models.encoder import EncoderSpec, MiTBranch, ModalityEncoders
from equiseg.models.mit import DropPath


def timm_mit(spec: EncoderSpec, in_chans: int, drop_path_rate: float = 0.0) -> PyramidVisionTransformerV2:
    """timm's PVTv2 configured as the MiT of ``spec`` (MLP ratio 4, no classifier)."""
    return PyramidVisionTransformerV2(
        in_chans=in_chans,
        num_classes=0,
        depths=spec.depths,
        embed_dims=spec.embed_dims,
        num_heads=spec.num_heads,
        sr_ratios=spec.sr_ratios,
        mlp_ratios=(4.0, 4.0, 4.0, 4.0),
        drop_path_rate=drop_path_rate,
    )


def timm_twin(spec: EncoderSpec, in_chans: int, branch: MiTBranch) -> PyramidVisionTransformerV2:
    """A timm model of the same architecture holding ``branch``'s weights."""
    model = timm_mit(spec, in_chans)
    missing, unexpected = model.load_state_dict(branch.state_dict(), strict=False)
    assert not unexpected and all(not key.startswith(("patch_embed", "stages")) for key in missing), missing
    return model.eval()


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.1])
@pytest.mark.parametrize("in_chans", [None, 1, 3])
def test_a_seed_draws_the_weights_timm_draws(in_chans: int | None, drop_path_rate: float) -> None:
    spec = VARIANTS["tiny"]
    torch.manual_seed(7)
    branch = MiTBranch(spec, in_chans, drop_path_rate)
    torch.manual_seed(7)
    reference = timm_mit(spec, in_chans or 3, drop_path_rate)
    ours, theirs = branch.state_dict(), reference.state_dict()
    stem_keys = {key for key in theirs if key.startswith("patch_embed")}
    assert set(ours) == set(theirs) - (stem_keys if in_chans is None else set())
    for key, value in ours.items():
        if key != "patch_embed.proj.bias":  # ours is random, not zero (encoder.STEM_BIAS_STD)
            torch.testing.assert_close(value, theirs[key], rtol=0, atol=0, msg=key)
    timm_rates = [getattr(block.drop_path1, "drop_prob", 0.0) for stage in reference.stages for block in stage.blocks]
    our_rates = [getattr(block.drop_path1, "p", 0.0) for stage in branch.stages for block in stage.blocks]
    assert our_rates == pytest.approx(timm_rates)
    assert max(our_rates) == pytest.approx(drop_path_rate)


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


def test_drop_path_drops_whole_samples_and_keeps_the_expected_value() -> None:
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 5)
    torch.manual_seed(0)
    out = drop.train()(x)
    per_sample = out.flatten(1)
    kept = torch.isclose(per_sample, torch.tensor(1 / 0.75))
    assert ((per_sample == 0).all(1) | kept.all(1)).all()  # all or nothing per sample
    assert (per_sample[:, 0] == 0).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
