"""Shipping a checkpoint (weights + descriptor with test metrics + model card) and generating a
config's data on first use."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lenssr.inference import load_model
from lenssr.models import create_model, save_checkpoint, shipped_models
from lenssr.simulation import simulate
from lenssr.training import load_config
from lenssr.training.data_prep import ensure_data
from lenssr.training.ship import ship_model


@pytest.fixture(scope="module")
def test_pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ship") / "test.h5"
    simulate("default", n=4, out=path, seed=5, workers=1, progress=False)
    return path


def test_ship_writes_weights_card_and_metrics(test_pairs: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("srcnn", scale=2, num_feat=8, num_feat2=4)
    run = save_checkpoint(
        tmp_path / "run" / "best",
        model,
        extra={
            "normalization": {"kind": "minmax"},
            "training": {"step": 7, "wall_time_s": 12.0, "data": {"train": "x.h5"}},
        },
    )
    weights = tmp_path / "weights"
    path = ship_model(
        run, "tiny", test_pairs, weights_dir=weights, figures_dir=tmp_path / "fig", device="cpu"
    )
    assert path == weights / "tiny.safetensors"
    assert set(shipped_models(weights)) == {"tiny"}
    desc = json.loads((weights / "tiny.json").read_text())
    metrics = desc["metrics"]
    assert metrics["n_test"] == 4
    assert np.isfinite(metrics["psnr"]["mean"]) and np.isfinite(metrics["bicubic"]["psnr"]["mean"])
    assert desc["training"]["step"] == 7
    card = (weights / "tiny.md").read_text()
    assert "| bicubic |" in card and "| tiny |" in card
    assert "lenssr train --config configs/tiny.yaml" in card
    assert (tmp_path / "fig" / "examples.png").stat().st_size > 0
    # The shipped file loads by path and gives the same output as the trained module.
    sr = load_model(path, device="cpu")
    lr = np.random.default_rng(0).random((9, 11)).astype(np.float32)
    ref = load_model(run, device="cpu")
    np.testing.assert_allclose(sr.upscale(lr), ref.upscale(lr), rtol=0, atol=0)


def _ship_card(run: Path, name: str, test_pairs: Path, tmp_path: Path, config: str) -> str:
    """Ship ``run`` as ``name`` into ``tmp_path`` and return its model card."""
    weights = tmp_path / "weights"
    ship_model(
        run, name, test_pairs, config_path=config, weights_dir=weights,
        figures_dir=tmp_path / "fig", device="cpu",
    )  # fmt: skip
    return (weights / f"{name}.md").read_text()


def test_ship_card_of_a_gan_checkpoint_gives_the_gan_chain(test_pairs: Path, tmp_path: Path):
    model = create_model("srcnn", scale=2, num_feat=8, num_feat2=4)
    training = {
        "kind": "gan",
        "step": 3,
        "init": "runs/hybrid-pretrained/best.safetensors",
        "discriminator": {"name": "patchgan", "batch_norm": False},
        "adversarial": "wgan-gp",
        "perceptual": "encoder",
        "weights": "ema",
        "config": {"gan": {"weights": {"pixel": 1.0, "adversarial": 0.005}}},
    }
    run = save_checkpoint(tmp_path / "run" / "generator", model, extra={"training": training})
    card = _ship_card(run, "tiny-gan", test_pairs, tmp_path, "configs/gan-hybrid.yaml")
    assert "make weights-gan" in card and "lenssr gan --config configs/gan-hybrid.yaml" in card
    assert "discriminator `patchgan`" in card and "adversarial loss `wgan-gp`" in card
    assert "Best validation PSNR" not in card


def test_ship_card_of_a_two_stage_training_lists_both_stages(
    test_pairs: Path, tmp_path: Path
) -> None:
    from lenssr.training.tasks.supervised import init_training

    model = create_model("srcnn", scale=2, num_feat=8, num_feat2=4)
    first = save_checkpoint(
        tmp_path / "runs" / "hybrid-mix" / "best",
        model,
        extra={"training": {"step": 4000, "wall_time_s": 1200.0}},
    )
    stage = init_training(first)
    assert stage["step"] == 4000 and stage["checkpoint_dir"] == str(first.parent)
    assert init_training(tmp_path / "none.safetensors") is None
    training = {"step": 6000, "wall_time_s": 1800.0, "init_training": {**stage,
                "checkpoint_dir": "runs/hybrid-mix"}}  # fmt: skip
    run = save_checkpoint(tmp_path / "run2" / "best", model, extra={"training": training})
    card = _ship_card(run, "tiny2", test_pairs, tmp_path, "configs/hybrid-mix-continue.yaml")
    # the first stage's config is found by its checkpoint folder, and comes first
    first_cmd = "lenssr train --config configs/hybrid-mix.yaml   # simulates data/"
    second_cmd = "lenssr train --config configs/hybrid-mix-continue.yaml\n"
    assert first_cmd in card and second_cmd in card
    assert card.index(first_cmd) < card.index(second_cmd)
    assert "In all 10000 steps, 50.0 min." in card


def test_ensure_data_simulates_missing_files_once(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        f"""
model: {{name: srcnn}}
data:
  train: {tmp_path / "train.h5"}
  val: {tmp_path / "val.h5"}
  patch_size: 8
  simulate: {{preset: default, n_train: 3, n_val: 2, seed_train: 0, seed_val: 1, workers: 1}}
budget: {{steps: 1}}
"""
    )
    cfg = load_config(cfg_path)
    written = ensure_data(cfg, progress=False)
    assert written == [tmp_path / "train.h5", tmp_path / "val.h5"]
    with h5py.File(tmp_path / "train.h5") as f:
        assert f["lr"].shape == (3, 75, 75) and f["hr"].shape == (3, 150, 150)
    assert ensure_data(cfg, progress=False) == []  # present: nothing simulated again


def test_ensure_data_is_off_without_a_preset(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(
        f"model: {{name: srcnn}}\ndata: {{train: {tmp_path / 'nope.h5'}, patch_size: 8}}\n"
        "budget: {steps: 1}\n"
    )
    assert ensure_data(load_config(cfg_path), progress=False) == []
    assert not (tmp_path / "nope.h5").exists()
