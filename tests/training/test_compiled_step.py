"""The training step's fast path (docs/training.md, "Speed"): one graph, no host reads, compiled = eager.

``forward_loss`` (model forward with the SGM losses + CE/OHEM) must trace with no graph break: a break is a host read
(``bool(tensor)``, ``.item()``) or a data-dependent shape, each a GPU sync that stalls the step. The compiled step
(``train.compile``) must train like the eager one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch._dynamo

from equiseg.config import EquisegConfig
from equiseg.training.distributed import DistInfo
from equiseg.training.epoch import Progress, build_model, build_optimizer, forward_loss, train_one_epoch


def _batch(cfg: EquisegConfig, seed: int, ignore_all: bool = False) -> dict[str, object]:
    gen = torch.Generator().manual_seed(seed)
    size = cfg.data.image_size
    channels = {"rgb": 3, "depth": 1, "thermal": 1}
    inputs = {m: torch.randn(2, channels[m], size, size, generator=gen) for m in cfg.data.modalities}
    label = torch.randint(0, cfg.data.num_classes, (2, size, size), generator=gen)
    if ignore_all:
        label.fill_(cfg.data.ignore_index)
    return {"inputs": inputs, "label": label}


@pytest.mark.parametrize("loss", ["ce", "ohem"])
def test_forward_loss_is_one_graph_without_host_reads(tiny_cfg: Callable[..., EquisegConfig], loss: str) -> None:
    cfg = tiny_cfg(f"train.loss={loss}")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = _batch(cfg, 0)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(forward_loss)(model, batch["inputs"], batch["label"], cfg, False)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_all_ignored_batch_gives_zero_losses_and_finite_gradients(tiny_cfg: Callable[..., EquisegConfig]) -> None:
    cfg = tiny_cfg("train.loss=ohem")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = _batch(cfg, 1, ignore_all=True)
    total, main, aux = forward_loss(model, batch["inputs"], batch["label"], cfg, False)
    assert float(main.detach()) == 0.0 and float(aux.detach()) == 0.0 and float(total.detach()) == 0.0
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.slow  # inductor compiles forward and backward: about a minute on a quiet 2-core machine
def test_compiled_step_trains_like_the_eager_step(tiny_cfg: Callable[..., EquisegConfig]) -> None:
    """``train.compile=true`` on CPU (inductor): same losses and weights as eager after a few steps."""
    batches = [_batch(tiny_cfg(), seed) for seed in range(3)]
    results = {}
    for compiled in (False, True):
        cfg = tiny_cfg(f"train.compile={str(compiled).lower()}", "train.modality_dropout=0.0")
        torch.manual_seed(0)
        model = build_model(cfg)
        initial = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        optimizer = build_optimizer(model, cfg.train.lr, cfg.train.weight_decay)
        metrics = train_one_epoch(model, iter(batches), optimizer, cfg, epoch=0, start_step=0, steps_per_epoch=3,
                                  progress=Progress(), info=DistInfo(), show_progress=False)  # fmt: skip
        results[compiled] = (metrics, torch.nn.utils.parameters_to_vector(model.parameters()).detach())
    (eager, eager_w), (comp, comp_w) = results[False], results[True]
    assert comp["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)
    assert comp["train_aux_loss"] == pytest.approx(eager["train_aux_loss"], rel=1e-3, abs=1e-5)
    # AdamW's normalised updates turn float rounding into at most a fraction of one step (lr) per weight
    assert float((comp_w - eager_w).abs().max()) < tiny_cfg().train.lr
    assert not torch.allclose(eager_w, initial)  # the steps did train
