"""Science training losses: the data-consistency term on mixture batches, the task-driven
feature loss of a saved substructure classifier, and a training run with both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenssr.data import MixturePairDataset, open_pairs
from lenssr.errors import ConfigError
from lenssr.inference.consistency import chi2_loss, edge_margin
from lenssr.science.classifier import SubstructureResNet, load_classifier, save_classifier
from lenssr.training.config import validate_config
from lenssr.training.science_losses import FeatureLoss


def consistency_loss(sr, lr, noise, blur, scale):
    """The training term of ``loss.chi2_weight``."""
    return chi2_loss(sr, lr, noise, scale, blur, margin=None, excess=True)


@pytest.fixture(scope="module")
def mix_pairs(tmp_path_factory: pytest.TempPathFactory):
    """8 rendered survey-mix pairs (one HDF5 file)."""
    from lenssr.simulation import simulate

    path = tmp_path_factory.mktemp("mixloss") / "mix.h5"
    simulate("survey-mix", n=8, out=path, seed=5, workers=1, progress=False)
    return path


def _batch(mix_pairs, patch: int) -> list[torch.Tensor]:
    ds = MixturePairDataset(open_pairs(mix_pairs), "survey-mix", patch_size=patch, seed=0)
    ds.conditioned = True
    ds.consistency = True
    items = [ds[j] for j in range(len(ds))]
    return [torch.stack([it[k] for it in items]) for k in range(len(items[0]))]


def test_the_true_hr_is_consistent_and_a_blurred_one_is_not(mix_pairs) -> None:
    lr, hr, cond, noise, blur = _batch(mix_pairs, patch=32)
    assert noise.shape == lr.shape and blur.shape == (len(lr),)
    assert bool((noise > 0).all()) and bool((blur > 0).all())
    # the HR target itself, re-observed: chi2_red ~ 1 (its excess is the noise's scatter)
    truth = float(consistency_loss(hr, lr, noise, blur, 2))
    assert truth < 0.1
    # the same patches blurred further (lost detail) or brighter: far from the data
    wide = torch.nn.functional.avg_pool2d(hr, 5, stride=1, padding=2, count_include_pad=False)
    assert float(consistency_loss(wide, lr, noise, blur, 2)) > max(0.2, 5 * truth)
    assert float(consistency_loss(1.3 * hr, lr, noise, blur, 2)) > 1.0
    assert edge_margin(blur, 2) >= 2


def test_degrade_gives_its_noise_sigma_without_changing_the_draw() -> None:
    from lenssr.simulation import load_preset
    from lenssr.simulation.degrade import degrade_array
    from lenssr.simulation.instrument import noise_sigma

    preset = load_preset("survey-mix")
    hr = np.random.default_rng(0).random((40, 40)) * 50.0
    plain = degrade_array(hr, preset, rng=np.random.default_rng(1))
    lr, sigma = degrade_array(hr, preset, rng=np.random.default_rng(1), with_noise_sigma=True)
    np.testing.assert_array_equal(lr, plain)
    clean = degrade_array(hr, preset, noise=False)
    np.testing.assert_allclose(sigma, noise_sigma(clean, preset.lr), rtol=1e-5)


def test_consistency_loss_pulls_towards_the_data(mix_pairs) -> None:
    lr, hr, _, noise, blur = _batch(mix_pairs, patch=32)
    x = (1.3 * hr).clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=1e-3)
    first = float(consistency_loss(x.detach(), lr, noise, blur, 2))
    for _ in range(20):
        opt.zero_grad()
        loss = consistency_loss(x, lr, noise, blur, 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([x], 1.0)
        opt.step()
    assert float(consistency_loss(x.detach(), lr, noise, blur, 2)) < first


def test_classifier_feature_loss_is_zero_at_hr_and_grows(tmp_path) -> None:
    torch.manual_seed(0)
    clf = SubstructureResNet((8, 8, 8, 8))
    path = save_classifier(clf, tmp_path / "clf", {"trained_on": "test"})
    loaded = load_classifier(path)
    assert not any(p.requires_grad for p in loaded.parameters())
    loss = FeatureLoss(loaded, "classifier")
    hr = torch.rand(2, 1, 32, 32)
    assert float(loss(hr, hr)) == pytest.approx(0.0, abs=1e-6)
    near, far = hr + 0.01 * torch.randn_like(hr), hr + 0.2 * torch.randn_like(hr)
    assert 0 < float(loss(near, hr)) < float(loss(far, hr))
    sr = near.clone().requires_grad_(True)
    loss(sr, hr).backward()
    assert sr.grad is not None and float(sr.grad.abs().sum()) > 0
    with pytest.raises(ConfigError, match="not found"):
        load_classifier(tmp_path / "missing")


def test_config_checks_the_science_losses() -> None:
    base = {"model": {"name": "srcnn"}, "data": {"train": "x.h5", "patch_size": 8},
            "budget": {"steps": 10}}  # fmt: skip
    with pytest.raises(ConfigError, match="needs loss.features"):
        validate_config({**base, "loss": {"feature_weight": 0.1}})
    with pytest.raises(ConfigError, match="needs data.mixture"):
        validate_config({**base, "loss": {"chi2_weight": 0.1}})
    full = validate_config({**base, "loss": {"feature_weight": 0.1, "features": "encoder"}})
    assert full["loss"]["feature_weight"] == 0.1


def _run(mix_pairs, out, steps: int) -> dict:
    """The data, validation, logging and budget sections of a tiny mixture run."""
    return {
        "data": {"train": str(mix_pairs), "val": str(mix_pairs), "patch_size": 16,
                 "batch_size": 4, "normalization": "noise", "mixture": "survey-mix"},
        "val": {"every_steps": steps, "max_images": 2, "batch_size": 2},
        "checkpoint": {"dir": str(out)},
        "log": {"every_steps": 1, "tensorboard": False},
        "budget": {"steps": steps},
        "threads": 1,
    }  # fmt: skip


def test_training_with_both_science_losses(mix_pairs, tmp_path, monkeypatch) -> None:
    from lenssr.models import load_checkpoint
    from lenssr.training import train

    torch.manual_seed(0)
    clf = save_classifier(SubstructureResNet((8, 8, 8, 8)), tmp_path / "clf")
    cfg = _run(mix_pairs, tmp_path / "run", steps=4)
    cfg["model"] = {"name": "hybrid", "scale": 2, "num_levels": 1, "num_feat": 8,
                    "num_res_blocks": 1, "embed_dim": 16, "depth": 1, "num_heads": 2,
                    "patch_size": 4, "cond_dim": 2, "sigma_head": True}  # fmt: skip
    cfg["loss"] = {"type": "l1", "sigma_weight": 0.01, "chi2_weight": 0.01,
                   "feature_weight": 0.1, "features": str(clf)}  # fmt: skip
    best = train(cfg, quiet=True)
    _, desc = load_checkpoint(best)
    assert np.isfinite(desc["training"]["best_val_psnr"])
    assert desc["conditioning"]["range"]["mixture"] == "survey-mix"
    # the generic perceptual loss: the frozen encoder of the init weights
    enc_cfg = {**_run(mix_pairs, tmp_path / "enc", steps=2), "init": str(best)}
    enc_cfg["model"], enc_cfg["loss"] = cfg["model"], {"feature_weight": 0.1, "features": "encoder"}
    assert load_checkpoint(train(enc_cfg, quiet=True))[1]["training"]["init"] == str(best)
    # the GAN fine-tuning of that conditioned generator feeds it each item's instrument
    from lenssr.training import train_gan

    gan_cfg = {**_run(mix_pairs, tmp_path / "gan", steps=2), "init": str(best)}
    gan_cfg["gan"] = {"discriminator": {"num_feat": 8, "num_layers": 2},
                      "weights": {"perceptual": 0.0, "adversarial": 0.01}}  # fmt: skip
    seen: list[torch.Tensor | None] = []
    from lenssr.models.hybrid_arch import HybridSR

    original = HybridSR.encode

    def spy(self, x, cond=None):
        seen.append(cond)
        return original(self, x, cond)

    monkeypatch.setattr(HybridSR, "encode", spy)
    generator = train_gan(gan_cfg, quiet=True)
    assert seen and all(c is not None and c.shape[-1] == 2 for c in seen)
    _, gdesc = load_checkpoint(generator)
    assert gdesc["conditioning"]["range"]["mixture"] == "survey-mix"
