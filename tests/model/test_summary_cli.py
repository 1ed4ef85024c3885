"""``equiseg model list|summary`` and the size/cost summary behind them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from equiseg.cli.main import cli
from equiseg.models import create_model, list_models
from equiseg.models.summary import summarize


def test_summary_reports_params_flops_and_stage_shapes() -> None:
    small = summarize("equiseg_tiny", ("rgb", "depth"), size=64, num_classes=8)
    model = create_model("equiseg_tiny", num_classes=8, modalities=("rgb", "depth"))
    assert small.params == sum(p.numel() for p in model.parameters())
    assert small.stage_shapes == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]
    assert small.logits_shape == (1, 8, 64, 64)
    assert small.gflops > 0 and small.gmacs == pytest.approx(small.gflops / 2)
    big = summarize("equiseg_tiny", ("rgb", "depth"), size=128, num_classes=8)
    assert 3.0 < big.gflops / small.gflops < 5.0  # cost grows with the pixel count
    more = summarize("equiseg_tiny", ("rgb", "depth", "thermal", "event"), size=64, num_classes=8)
    assert more.gflops > small.gflops and more.params > small.params


def test_segformer_b0_matches_the_published_size() -> None:
    """SegFormer-B0 has 3.7-3.8 M parameters (SegFormer paper, Table 1): our MiT-B0 + all-MLP head must agree."""
    summary = summarize("segformer_rgb_b0", ("rgb",), size=64, num_classes=150)
    assert 3.6e6 < summary.params < 3.9e6


def test_summary_refuses_sizes_below_the_output_stride() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        summarize("equiseg_tiny", ("rgb",), size=16)


def test_cli_model_list() -> None:
    result = CliRunner().invoke(cli, ["model", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == list_models()
    table = CliRunner().invoke(cli, ["model", "list"])
    assert table.exit_code == 0 and "cmnext_like_b2" in table.output and "RGB-dominant" in table.output


def test_cli_model_summary() -> None:
    args = ["model", "summary", "mean_fusion_tiny", "--modalities", "rgb,depth", "--size", "64", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["name"] == "mean_fusion_tiny" and data["modalities"] == ["rgb", "depth"]
    assert data["stage_shapes"][0] == [1, 16, 16, 16] and data["params"] > 0
    text = CliRunner().invoke(cli, ["model", "summary", "--size", "64", "--set", "model.name=early_fusion_tiny"])
    assert text.exit_code == 0, text.output
    assert "early_fusion_tiny" in text.output and "rgb, depth, thermal" in text.output  # profile defaults


def test_cli_model_summary_unknown_name_lists_names() -> None:
    result = CliRunner().invoke(cli, ["model", "summary", "equiseg_huge", "--size", "64"])
    assert result.exit_code == 2
    assert "equiseg_huge" in result.output and "equiseg_b2" in result.output
