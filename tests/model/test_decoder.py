"""The decoder's cheap order computes SegFormer's textbook all-MLP head, outputs and gradients alike."""

from __future__ import annotations

import pytest
import torch

from equiseg.models.decoder import SegFormerHead


def _feats(batch: int, dims: tuple[int, ...], side: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, dim, side >> i, side >> i, generator=generator) for i, dim in enumerate(dims)]


@pytest.mark.parametrize("train", [True, False])
def test_reordered_head_matches_the_textbook_order(train: bool) -> None:
    torch.manual_seed(0)
    dims = (16, 32, 64, 128)
    head = SegFormerHead(dims, decoder_dim=48, num_classes=5, dropout=0.0).double()
    head.train(train)
    feats = [f.double().requires_grad_() for f in _feats(2, dims, 24)]
    fast = head(feats)
    fast_grads = torch.autograd.grad(fast.square().sum(), [*feats, *head.parameters()])
    slow = head.forward_reference(feats)
    slow_grads = torch.autograd.grad(slow.square().sum(), [*feats, *head.parameters()])
    assert fast.shape == (2, 5, 24, 24)
    torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-9)
    for got, want in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-9)


def test_state_dict_keys_are_the_textbook_heads() -> None:
    head = SegFormerHead((32, 64, 160, 256), decoder_dim=256, num_classes=8)
    assert {k.split(".")[0] for k in head.state_dict()} == {"project", "fuse", "classify"}
    assert head.fuse[0].weight.shape == (256, 1024, 1, 1)
