"""Behaviour of every registered model family on CPU at 64x64 (contract in docs/design.md and docs/model.md)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from equiseg.models import FAMILIES, VARIANTS, SegmentationModel, SegmentationOutput, create_model, list_models

TINY = [f"{family}_tiny" for family in FAMILIES]
EQUISEG = {"equiseg_tiny", "equiseg_nosgm_tiny", "equiseg_shared_tiny", "equiseg_sgm_ce_tiny", "equiseg_sgm_logit_tiny"}
SGM_TERMS = {  # the loss terms each SGM arm returns
    "equiseg_tiny": {"sgm_aux_ce", "sgm_logit_kl", "sgm_proto_kl"},
    "equiseg_shared_tiny": {"sgm_aux_ce", "sgm_logit_kl", "sgm_proto_kl"},
    "equiseg_sgm_ce_tiny": {"sgm_aux_ce"},
    "equiseg_sgm_logit_tiny": {"sgm_aux_ce", "sgm_logit_kl"},
}
WEIGHTED = EQUISEG | {"mean_fusion_tiny", "late_fusion_tiny"}  # families that report modality weights
RGB_BOUND = {"segformer_rgb_tiny", "cmnext_like_tiny"}
NUM_CLASSES = 5
SIZE = 64
# 2, 3 and 4 modalities with mixed channel counts (1, 2 and 3), one of them given through in_chans.
MODALITY_SETS = {
    2: (("rgb", "depth"), None),
    3: (("rgb", "depth", "thermal"), None),
    4: (("rgb", "depth", "event", "hha"), {"event": 2}),
}


def make_inputs(model: torch.nn.Module, names: tuple[str, ...], batch: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(batch, model.in_chans[name], SIZE, SIZE, generator=generator) for name in names}


def make_labels(batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, NUM_CLASSES, (batch, SIZE, SIZE), generator=generator)
    labels[:, :4] = 255  # some ignored pixels, as real labels have
    return labels


def build(name: str, modalities: tuple[str, ...] = ("rgb", "depth", "thermal"), seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_model(name, num_classes=NUM_CLASSES, modalities=modalities, **kwargs)


def test_registry_has_every_family_in_every_variant() -> None:
    names = list_models()
    assert len(names) == len(set(names)) == len(FAMILIES) * len(VARIANTS)
    families = ("equiseg", "equiseg_nosgm", "segformer_rgb", "early_fusion", "cmnext_like", "mean_fusion")
    controls = ("equiseg_shared", "equiseg_sgm_ce", "equiseg_sgm_logit", "late_fusion")
    for family in families + controls:
        for variant in ("tiny", "b0", "b1", "b2"):
            assert f"{family}_{variant}" in names


def test_unknown_name_error_lists_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        create_model("equiseg_b9", num_classes=3, modalities=("rgb",))
    message = str(info.value)
    assert "equiseg_b9" in message and "equiseg_b0" in message and "cmnext_like_tiny" in message


@pytest.mark.parametrize("name", TINY)
def test_model_config_overrides_are_accepted_and_none_dropped(name: str) -> None:
    model = build(name, share_encoder_weights=True, sgm_weight=0.5, drop_path_rate=0.1, ignore_index=None)
    assert model.model_name == name and model.num_classes == NUM_CLASSES
    assert model.modalities == ("rgb", "depth", "thermal")
    assert model.build_kwargs["drop_path_rate"] == pytest.approx(0.1)
    with pytest.raises(TypeError, match="accepted"):
        build(name, not_an_option=1)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("count", sorted(MODALITY_SETS))
def test_forward_shapes_with_mixed_channels(name: str, count: int) -> None:
    modalities, in_chans = MODALITY_SETS[count]
    model = build(name, modalities, in_chans=in_chans).eval()
    if in_chans:
        assert model.in_chans["event"] == 2
    with torch.no_grad():
        out = model(make_inputs(model, modalities))
    assert isinstance(out, SegmentationOutput)
    assert out.logits.shape == (2, NUM_CLASSES, SIZE, SIZE)
    assert torch.isfinite(out.logits).all()
    assert out.aux_losses == {}
    if name in WEIGHTED:
        assert sorted(out.modality_weights) == ["stage1", "stage2", "stage3", "stage4"]
        for weights in out.modality_weights.values():
            assert weights.shape == (2, count)
            torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("name", TINY)
def test_every_non_empty_subset_at_inference(name: str) -> None:
    modalities = ("rgb", "depth", "thermal")
    model = build(name, modalities).eval()
    full = make_inputs(model, modalities)
    outputs = {}
    for count in range(1, len(modalities) + 1):
        for subset in itertools.combinations(modalities, count):
            with torch.no_grad():
                out = model({m: full[m] for m in subset})
            assert out.logits.shape == (2, NUM_CLASSES, SIZE, SIZE), subset
            assert torch.isfinite(out.logits).all(), subset
            if name in WEIGHTED:
                assert all(w.shape == (2, count) for w in out.modality_weights.values()), subset
            outputs[subset] = out.logits
    assert model.supports_missing_modalities == (name in WEIGHTED)
    if name == "segformer_rgb_tiny":  # ignores everything but RGB
        torch.testing.assert_close(outputs[("rgb",)], outputs[("rgb", "depth", "thermal")])
    else:  # the other modalities change the prediction
        assert not torch.allclose(outputs[("rgb",)], outputs[("rgb", "depth", "thermal")])


@pytest.mark.parametrize("name", TINY)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    modalities = ("rgb", "depth", "thermal")
    model = build(name, modalities).train()
    labels = make_labels()
    out = model(make_inputs(model, modalities), labels)
    if name in SGM_TERMS:
        assert set(out.aux_losses) == SGM_TERMS[name]
    else:
        assert out.aux_losses == {}
    loss = F.cross_entropy(out.logits, labels, ignore_index=255) + sum(out.aux_losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    zero = [n for n, p in model.named_parameters() if not bool(p.grad.abs().sum() > 0)]
    assert not zero, f"parameters with an all-zero gradient: {zero}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", TINY)
def test_deterministic_under_a_seed(name: str) -> None:
    modalities = ("rgb", "depth")
    first = build(name, modalities, seed=3).eval()
    second = build(name, modalities, seed=3).eval()
    inputs = make_inputs(first, modalities)
    with torch.no_grad():
        torch.testing.assert_close(first(inputs).logits, second(inputs).logits, rtol=0, atol=0)
    other = build(name, modalities, seed=4).eval()
    with torch.no_grad():
        assert not torch.allclose(first(inputs).logits, other(inputs).logits)


@pytest.mark.parametrize("name", TINY)
def test_self_describing_checkpoint_round_trip(name: str, tmp_path: Path) -> None:
    modalities = ("rgb", "depth", "thermal")
    model = build(name, modalities, in_chans={"thermal": 3}, drop_path_rate=0.05).eval()
    path = tmp_path / "model.pt"
    torch.save({"model_name": model.model_name, "build_kwargs": model.build_kwargs, "state": model.state_dict()}, path)
    checkpoint = torch.load(path, weights_only=True)
    torch.manual_seed(123)  # a different init, overwritten by the load
    rebuilt = create_model(checkpoint["model_name"], **checkpoint["build_kwargs"]).eval()
    rebuilt.load_state_dict(checkpoint["state"], strict=True)
    assert rebuilt.in_chans == {"rgb": 3, "depth": 1, "thermal": 3}
    inputs = make_inputs(model, modalities)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(inputs).logits, model(inputs).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", TINY)
def test_three_modality_model_refuses_a_fourth(name: str) -> None:
    three = build(name, ("rgb", "depth", "thermal")).eval()
    inputs = make_inputs(three, ("rgb", "depth", "thermal"))
    inputs["event"] = torch.zeros(2, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"built for modalities \['rgb', 'depth', 'thermal'\].*\['event'\]"):
        three(inputs)
    if name != "segformer_rgb_tiny":  # segformer_rgb has the same weights whatever the modality list
        four = build(name, ("rgb", "depth", "thermal", "event"))
        with pytest.raises(RuntimeError):
            four.load_state_dict(three.state_dict(), strict=True)


@pytest.mark.parametrize("name", TINY)
def test_bad_inputs_are_refused_with_the_fix(name: str) -> None:
    model = build(name, ("rgb", "depth")).eval()
    with pytest.raises(ValueError, match="at least one"):
        model({})
    with pytest.raises(ValueError, match="1 channels"):
        model({"rgb": torch.zeros(1, 3, SIZE, SIZE), "depth": torch.zeros(1, 3, SIZE, SIZE)})
    with pytest.raises(ValueError, match="share batch and spatial size"):
        model({"rgb": torch.zeros(1, 3, SIZE, SIZE), "depth": torch.zeros(1, 1, SIZE // 2, SIZE // 2)})


@pytest.mark.parametrize("name", sorted(RGB_BOUND))
def test_rgb_primary_models_need_rgb(name: str) -> None:
    with pytest.raises(ValueError, match="no 'rgb'"):
        build(name, ("depth", "thermal"))


def test_sgm_losses_only_when_training_with_labels_and_scale_with_weight() -> None:
    modalities = ("rgb", "depth")
    labels = make_labels()
    losses = {}
    for weight in (1.0, 2.0):
        model = build("equiseg_tiny", modalities, sgm_weight=weight)
        inputs = make_inputs(model, modalities)
        assert model.train()(inputs).aux_losses == {}  # no labels
        assert model.eval()(inputs, labels).aux_losses == {}  # not training
        losses[weight] = {k: v.detach() for k, v in model.train()(inputs, labels).aux_losses.items()}
    assert set(losses[1.0]) == {"sgm_aux_ce", "sgm_logit_kl", "sgm_proto_kl"}
    for key, value in losses[1.0].items():
        assert value > 0
        torch.testing.assert_close(losses[2.0][key], 2 * value)
    single = build("equiseg_tiny", modalities).train()({"depth": torch.randn(2, 1, SIZE, SIZE)}, labels)
    assert set(single.aux_losses) == {"sgm_aux_ce"}  # nobody to be guided by
    all_ignored = build("equiseg_tiny", modalities).train()(inputs, torch.full_like(labels, 255))
    assert all(float(v.detach()) == 0.0 for v in all_ignored.aux_losses.values())
    nosgm = build("equiseg_nosgm_tiny", modalities, sgm_weight=3.0).train()
    assert nosgm(inputs, labels).aux_losses == {} and "sgm_weight" not in nosgm.build_kwargs


def test_sharing_encoder_weights_shrinks_equiseg_but_not_the_fixed_designs() -> None:
    def params(name: str, share: bool) -> int:
        return sum(p.numel() for p in build(name, share_encoder_weights=share).parameters())

    assert params("equiseg_tiny", True) < 0.6 * params("equiseg_tiny", False)
    assert params("mean_fusion_tiny", True) == params("mean_fusion_tiny", False)
    # equiseg_shared is equiseg_tiny with share_encoder_weights fixed on; late_fusion has equiseg's branches
    assert params("equiseg_shared_tiny", False) == params("equiseg_tiny", True)
    assert params("late_fusion_tiny", False) < params("equiseg_nosgm_tiny", False) < params("equiseg_tiny", False)
    assert params("late_fusion_tiny", False) > 2.5 * params("mean_fusion_tiny", False)


def test_equiseg_learns_a_task_only_depth_can_solve() -> None:
    """Labels are a blocky depth map while RGB is noise: a working fusion model must fit them in a few steps."""
    torch.manual_seed(0)
    model = create_model("equiseg_tiny", num_classes=2, modalities=("rgb", "depth"))
    generator = torch.Generator().manual_seed(0)
    cells = (torch.rand(4, 1, 4, 4, generator=generator) > 0.5).float()
    depth = F.interpolate(cells, size=(32, 32), mode="nearest")
    labels = depth[:, 0].long()
    inputs = {"rgb": torch.randn(4, 3, 32, 32, generator=generator), "depth": depth}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(20):
        out = model(inputs, labels)
        (F.cross_entropy(out.logits, labels) + sum(out.aux_losses.values())).backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        accuracy = (model.eval()(inputs).logits.argmax(dim=1) == labels).float().mean()
    assert accuracy > 0.9, float(accuracy)


def test_models_package_imports_neither_mlflow_nor_kfp() -> None:
    code = "import sys, equiseg.models; bad = {'mlflow', 'kfp'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_models() if not n.endswith("_tiny")])
def test_full_size_variants_forward_and_backward(name: str) -> None:
    modalities = ("rgb", "depth", "thermal")
    model = build(name, modalities).train()
    labels = make_labels()
    out = model(make_inputs(model, modalities), labels)
    assert out.logits.shape == (2, NUM_CLASSES, SIZE, SIZE)
    loss = F.cross_entropy(out.logits, labels, ignore_index=255) + sum(out.aux_losses.values())
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_class_prototypes_are_masked_class_means() -> None:
    from equiseg.models.sgm import class_masks, class_prototypes

    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 2  # right half class 2, left half class 0, class 1 absent
    labels[:, 0, 0] = 255  # ignored
    feat = torch.zeros(1, 3, 8, 8)
    feat[:, :, :, 4:] = torch.tensor([1.0, 2.0, 3.0])[:, None, None]
    feat[:, :, 0, 0] = 100.0  # must not leak into class 0 through the ignored pixel
    masks = class_masks(labels, (8, 8), num_classes=3, ignore_index=255)
    protos, present = class_prototypes(feat, masks)
    assert present.tolist() == [[True, False, True]]
    torch.testing.assert_close(protos[0, 0], torch.zeros(3))
    torch.testing.assert_close(protos[0, 2], torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("name", TINY)
def test_non_square_sizes_not_divisible_by_32(name: str) -> None:
    model = build(name, ("rgb", "depth")).eval()
    with torch.no_grad():
        out = model({"rgb": torch.randn(1, 3, 70, 90), "depth": torch.randn(1, 1, 70, 90)})
    assert out.logits.shape == (1, NUM_CLASSES, 70, 90)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("modalities", [("rgb", "depth", "thermal"), ("rgb",)])
def test_feature_info_describes_forward_features(name: str, modalities: tuple[str, ...]) -> None:
    model = build(name, modalities).eval()
    assert type(model).forward is SegmentationModel.forward  # forward is written once, in the base class
    modules = dict(model.named_modules())
    spec = VARIANTS["tiny"]
    assert [info["num_chs"] for info in model.feature_info] == list(spec.embed_dims)
    assert [info["reduction"] for info in model.feature_info] == [4, 8, 16, 32]
    assert all(info["module"] in modules for info in model.feature_info), model.feature_info
    inputs = make_inputs(model, modalities)
    captured: list[torch.Tensor] = []
    handle = model.decoder.register_forward_pre_hook(lambda _module, args: captured.extend(args[0]))
    with torch.no_grad():
        feats = model.forward_features(inputs)
        model(inputs)
    handle.remove()
    assert len(feats) == len(captured) == 4
    for info, feat, seen in zip(model.feature_info, feats, captured, strict=True):
        assert feat.shape == (2, info["num_chs"], SIZE // info["reduction"], SIZE // info["reduction"])
        torch.testing.assert_close(feat, seen, rtol=0, atol=0)


# Top-level state-dict prefixes of every family: checkpoints saved by earlier versions must keep loading.
STATE_PREFIXES = {
    "equiseg_tiny": {"encoders", "cmtb", "selection", "decoder", "sgm"},
    "equiseg_nosgm_tiny": {"encoders", "cmtb", "selection", "decoder"},
    "segformer_rgb_tiny": {"encoder", "decoder"},
    "early_fusion_tiny": {"encoder", "decoder"},
    "cmnext_like_tiny": {"rgb", "aux", "hubs", "fusions", "decoder"},
    "mean_fusion_tiny": {"encoders", "decoder"},
    "late_fusion_tiny": {"encoders", "decoder"},
    "equiseg_shared_tiny": {"encoders", "cmtb", "selection", "decoder", "sgm"},
    "equiseg_sgm_ce_tiny": {"encoders", "cmtb", "selection", "decoder", "sgm"},
    "equiseg_sgm_logit_tiny": {"encoders", "cmtb", "selection", "decoder", "sgm"},
}


@pytest.mark.parametrize("name", TINY)
def test_state_dict_layout_is_stable(name: str) -> None:
    keys = build(name, ("rgb", "depth")).state_dict()
    assert {key.split(".")[0] for key in keys} == STATE_PREFIXES[name]
    branch = "rgb.patch_embed.proj.weight" if name == "cmnext_like_tiny" else None
    if name in ("segformer_rgb_tiny", "early_fusion_tiny"):
        branch = "encoder.stages.3.blocks.0.mlp.fc1.weight"
    elif name == "equiseg_shared_tiny":
        branch = "encoders.shared.stages.0.blocks.0.attn.q.weight"
    elif name.startswith("equiseg") or name == "late_fusion_tiny":
        branch = "encoders.branches.depth.stages.0.blocks.0.attn.q.weight"
    elif name == "mean_fusion_tiny":
        branch = "encoders.stems.depth.proj.weight"
    assert branch in keys


def test_selection_weighs_modalities_per_position() -> None:
    """The hierarchical selection gives every position its own modality weights (not one number per image)."""
    modalities = ("rgb", "depth", "thermal")
    model = build("equiseg_tiny", modalities).eval()
    with torch.no_grad():
        out = model(make_inputs(model, modalities))
    for stage, size in zip(("stage1", "stage2", "stage3", "stage4"), (16, 8, 4, 2), strict=True):
        maps = out.selection_maps[stage]
        assert maps.shape == (2, 3, size, size)
        torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, size, size))
        torch.testing.assert_close(out.modality_weights[stage], maps.mean(dim=(2, 3)))
        spread = maps.flatten(2).std(dim=2)  # (B, N): how much a modality's weight varies across positions
        assert float(spread.max()) > 1e-3, stage


def test_sgm_contribution_weighs_the_fusion_at_inference() -> None:
    """The SGM heads' contribution estimates exist without labels and change when a modality is zeroed or dropped;
    the fusion follows them (equiseg_nosgm has none)."""
    modalities = ("rgb", "depth", "thermal")
    model = build("equiseg_tiny", modalities).eval()
    inputs = make_inputs(model, modalities)
    with torch.no_grad():
        full = model(inputs)
        zeroed = model({**inputs, "depth": torch.zeros_like(inputs["depth"])})
        dropped = model({m: inputs[m] for m in ("rgb", "thermal")})
    assert full.contribution is not None and full.contribution.shape == (2, 3, 16, 16)
    torch.testing.assert_close(full.contribution.sum(dim=1), torch.ones(2, 16, 16))
    assert zeroed.contribution is not None and dropped.contribution is not None
    assert not torch.allclose(full.contribution, zeroed.contribution)
    assert dropped.contribution.shape == (2, 2, 16, 16)
    # the prior acts on the selection: without it (gain 0) the stage-1 weights differ
    with torch.no_grad():
        for select in model.selection:
            select.prior_gain.fill_(0.0)
        unguided = model(inputs)
    assert not torch.allclose(full.selection_maps["stage1"], unguided.selection_maps["stage1"])
    nosgm = build("equiseg_nosgm_tiny", modalities).eval()
    with torch.no_grad():
        assert nosgm(inputs).contribution is None


def test_sgm_heads_read_quarter_resolution_features() -> None:
    modalities = ("rgb", "depth")
    model = build("equiseg_tiny", modalities).eval()
    with torch.no_grad():
        features = model.encode(make_inputs(model, modalities), list(modalities))
    assert set(features.aux_logits) == set(modalities)
    assert all(logits.shape == (2, NUM_CLASSES, SIZE // 4, SIZE // 4) for logits in features.aux_logits.values())
