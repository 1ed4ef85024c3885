"""Checkpoints: self-describing round trip, atomic writes, and clear refusal of corrupted or foreign files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from equiseg.models import create_model
from equiseg.training import CheckpointError, load_checkpoint, load_model_from_checkpoint, save_checkpoint
from equiseg.training import checkpoint as checkpoint_module

MODALITIES = ("rgb", "depth")


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("equiseg_tiny", num_classes=4, modalities=MODALITIES)


def _inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "rgb": torch.randn(2, 3, 32, 32, generator=generator),
        "depth": torch.rand(2, 1, 32, 32, generator=generator),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, torch.nn.Module]:
    """One checkpoint written once for the module (bytes) and its model."""
    model = _model().eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(_inputs()).logits.sum().backward()
    optimizer.step()
    path = save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "ckpt.pt",
        model=model,
        optimizer=optimizer,
        config={"train": {"lr": 1e-3}},
        epoch=3,
        epoch_step=2,
        global_step=14,
        best_metric=41.5,
        metrics={"val_miou": 40.0},
    )
    return path.read_bytes(), model


@pytest.fixture()
def saved(trained: tuple[bytes, torch.nn.Module], tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(trained[0])
    return path, trained[1]


def test_round_trip_rebuilds_the_same_model(saved: tuple[Path, torch.nn.Module]) -> None:
    path, model = saved
    rebuilt, ckpt = load_model_from_checkpoint(path)
    assert ckpt["model_name"] == "equiseg_tiny" and ckpt["epoch"] == 3 and ckpt["epoch_step"] == 2
    assert ckpt["global_step"] == 14 and ckpt["best_metric"] == 41.5 and ckpt["config"]["train"]["lr"] == 1e-3
    assert ckpt["optimizer"]["state"], "optimizer moments must be stored for resuming"
    assert set(ckpt["rng"]) >= {"python", "numpy", "torch"}
    assert not rebuilt.training
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(_inputs()).logits, model(_inputs()).logits, rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"], "no temporary files may be left behind"


def test_truncated_checkpoint_is_refused(saved: tuple[Path, torch.nn.Module]) -> None:
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_model_from_checkpoint(path)


def test_flipped_bytes_in_weights_are_detected(saved: tuple[Path, torch.nn.Module]) -> None:
    path, _ = saved
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain_state_dict.pt"
    torch.save(_model().state_dict(), plain)
    with pytest.raises(CheckpointError, match="not an equiseg checkpoint"):
        load_checkpoint(plain)
    code = tmp_path / "pickled_code.pt"
    torch.save({"format": "equiseg-checkpoint", "payload": pickle.PickleError("not a tensor")}, code)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(code)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_of_another_architecture_do_not_load(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = saved
    ckpt = load_checkpoint(path)
    other = create_model("equiseg_tiny", num_classes=6, modalities=MODALITIES)  # different head
    forged = save_checkpoint(tmp_path / "forged.pt", model=other)
    payload = load_checkpoint(forged)
    payload["model"] = ckpt["model"]  # weights of a 4-class model under a 6-class description
    payload["digest"] = checkpoint_module.state_digest({k: v for k, v in payload.items() if k != "digest"})
    torch.save(payload, forged)
    with pytest.raises(CheckpointError, match="does not fit equiseg_tiny"):
        load_model_from_checkpoint(forged)


def test_crash_during_write_keeps_previous_checkpoint(
    saved: tuple[Path, torch.nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, model = saved
    before = path.read_bytes()

    def dying_save(obj: object, handle: object) -> None:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpoint_module.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model=model, epoch=9)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]
