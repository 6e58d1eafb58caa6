"""The post-hoc variance network: it starts from the calibrated sigma, learns a per-pixel
factor, sees at inference exactly the features it was trained on, tiles large images without
seams, and travels with its model (descriptor, ship, CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lenssr.errors import LenssrError
from lenssr.inference import variance_net as vn
from lenssr.inference.api import load_model
from lenssr.inference.uncertainty import coverage, raw_predictions, write_calibration
from lenssr.models import create_model, save_checkpoint

TARGET = {"pixel_scale": 0.05, "exposure_time": 20000.0, "sky_brightness": 2.0, "read_noise": 3.0}
TINY = {"num_feat": 8, "num_res_blocks": 2, "embed_dim": 16, "depth": 1, "num_heads": 2,
        "pos_grid": 4, "cond_dim": 2, "sigma_head": True}  # fmt: skip
COEF = {"head": [0.3, -0.4], "target": [-0.5, 0.2], "signal": [-3.0, 1.0]}


def tiny_checkpoint(folder: Path) -> Path:
    """A calibrated instrument-aware sigma-head model ``folder/m.safetensors``."""
    torch.manual_seed(0)
    module = create_model("hybrid", **TINY)
    cond = {"inputs": ["psf_fwhm_pix", "log10_noise"], "range": {"psf_fwhm_pix": [1.0, 3.5]}}
    path = save_checkpoint(
        folder / "m", module, {"normalization": {"kind": "noise"}, "conditioning": cond}
    )
    write_calibration(path, {"coefficients": COEF, "target_noise": TARGET, "n": 2})
    return Path(path)


BOOT = {"draws": 4, "seed": 0, "hr_psf_fwhm_pix": 1.74}


def attach(path: Path, net: vn.VarianceEnsemble, boot: dict | None = None) -> None:
    """Save ``net`` beside checkpoint ``path`` and name it in the descriptor (``boot``: with the
    bootstrap features)."""
    names = list(vn.FEATURES) + (list(vn.BOOT_FEATURES) if boot else [])
    section = {"file": vn.sigma_path(path).name, "features": names,
               "members": len(net.members), "channels": 32,
               "dilations": [1, 2, 4, 8, 16], "bootstrap": boot}  # fmt: skip
    vn.save_variance_net(vn.sigma_path(path), net, section)
    desc_path = path.with_suffix(".json")
    desc = json.loads(desc_path.read_text())
    desc["uncertainty"]["variance_net"] = section
    desc_path.write_text(json.dumps(desc))


def lr_images(n: int = 2, size: int = 18) -> np.ndarray:
    rng = np.random.default_rng(2)
    lr = (rng.normal(0, 1.0, (n, size, size)) + 5.0).astype(np.float32)
    lr[:, 6:11, 5:12] += 40.0
    return lr


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_the_factor_multiplies_the_calibrated_sigma(tmp_path: Path, backend: str) -> None:
    """Zero-initialised members keep the three-term sigma exactly; an output bias of log 2 in
    every member doubles it, on either backend (ONNX Runtime for the image, PyTorch for sigma)."""
    path = tiny_checkpoint(tmp_path)
    lr = lr_images()
    kw = {"psf_fwhm": 0.18, "pixel_scale": 0.1, "return_sigma": True}
    sr0, sig0 = load_model(path, device="cpu", backend=backend).upscale(lr, **kw)
    torch.manual_seed(1)
    net = vn.VarianceEnsemble(2)
    attach(path, net)
    model = load_model(path, device="cpu", backend=backend)
    assert model.uncertainty["variance_net"]["file"] == "m.sigma.safetensors"
    sr1, sig1 = model.upscale(lr, **kw)
    np.testing.assert_array_equal(sr1, sr0)
    np.testing.assert_allclose(sig1, sig0, rtol=1e-6)
    for m in net.members:
        torch.nn.init.constant_(m.out.bias, float(np.log(2.0)))
    attach(path, net)
    _, sig2 = load_model(path, device="cpu", backend=backend).upscale(lr, **kw)
    np.testing.assert_allclose(sig2, 2.0 * sig0, rtol=1e-5)
    plain = load_model(path, device="cpu", backend=backend).upscale(lr[0])  # no sigma asked
    np.testing.assert_allclose(plain, sr0[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("boot", [None, BOOT])
def test_inference_sees_the_training_features(tmp_path: Path, monkeypatch, boot) -> None:
    """``set_tensors`` (training) and ``upscale(return_sigma=True)`` (inference) build the same
    features from the same LR images, the bootstrap's included."""
    path = tiny_checkpoint(tmp_path)
    names = len(vn.FEATURES) + (len(vn.BOOT_FEATURES) if boot else 0)
    attach(path, vn.VarianceEnsemble(1, in_ch=names), boot)
    model = load_model(path, device="cpu", backend="torch")
    lr = lr_images(3)
    fwhm = np.array([1.5, 1.8, 2.6])
    saw = []
    real = vn.log_factor

    def spy(net, x, batch_size=8):
        saw.append(x.copy())
        return real(net, x, batch_size)

    monkeypatch.setattr(vn, "log_factor", spy)
    for k in range(3):
        model.upscale(lr[k], psf_fwhm=float(fwhm[k]), pixel_scale=1.0, return_sigma=True)
    model.uncertainty.pop("variance_net")  # raw predictions without the factor
    sr, sig, u = raw_predictions(model, lr, fwhm)
    zeros = np.zeros((3, 36, 36))
    d = {"lr": lr, "hr": zeros, "arc": zeros.astype(bool), "sr": sr, "sig": sig, "u": u,
         "fwhm": fwhm}  # fmt: skip
    if boot:
        d.update(vn.set_bootstrap(model, d, boot))
    x, r, ls, arc = vn.set_tensors(model, d)
    assert x.shape == (3, names, 36, 36)
    np.testing.assert_allclose(np.concatenate(saw), x.numpy(), rtol=1e-4, atol=1e-4)
    assert np.ptp(x.numpy()[:, 4]) > 0.3  # the PSF channel differs between the images
    if boot:
        assert np.all(np.isfinite(x.numpy())) and np.ptp(x.numpy()[:, 5]) > 0.1


def test_tiles_match_the_whole_image_within_the_receptive_field() -> None:
    """Without the global-average branch the network is local (radius 32 HR pixels), so the
    blended tiles of an image above the tiling threshold equal the whole-image pass."""
    torch.manual_seed(3)
    net = vn.VarianceEnsemble(1)
    member = net.members[0]
    torch.nn.init.normal_(member.out.weight, std=0.3)
    torch.nn.init.zeros_(member.glob.weight)
    torch.nn.init.zeros_(member.glob.bias)
    x = np.random.default_rng(4).normal(size=(1, len(vn.FEATURES), 530, 520)).astype(np.float32)
    tiled = vn.log_factor(net, x)
    with torch.no_grad():
        whole = net(torch.from_numpy(x))[0].numpy()
    assert np.std(whole) > 0.05
    np.testing.assert_allclose(tiled[0], whole, atol=2e-5)


def test_training_learns_a_per_pixel_scale() -> None:
    """Residuals whose scale follows one feature pixel by pixel: the trained member's sigma
    covers them as a Gaussian should, where the starting sigma does not."""
    rng = np.random.default_rng(5)
    n, size = 48, 40
    x = rng.uniform(-1.0, 1.0, (n, len(vn.FEATURES), size, size)).astype(np.float32)
    true_log = 1.0 * x[:, 0]
    r = (np.exp(true_log) * rng.normal(size=true_log.shape)).astype(np.float32)
    ls = np.zeros_like(r)
    arc = (x[:, 1] > 0.5).astype(np.float32)
    data = tuple(torch.from_numpy(a) for a in (x, r, ls, arc))
    torch.manual_seed(0)
    net = vn.VarianceNet()
    cfg = {**vn.DEFAULTS, "steps": 300, "crop": 24, "batch_size": 8, "lr": 3e-3}
    log = vn.train_member(net, data, data, cfg, seed=0)
    assert log[-1][2] < log[0][2] - 0.3  # validation likelihood improves
    sig = np.exp(vn.log_factor(net, x))
    zero = np.zeros_like(r)
    before, after = coverage(zero, np.ones_like(r), r), coverage(zero, sig, r)
    assert abs(before["cov1"] - 0.683) > 0.04 or abs(before["cov2"] - 0.954) > 0.02
    assert abs(after["cov1"] - 0.683) < 0.03 and abs(after["cov2"] - 0.954) < 0.015
    corr = np.corrcoef(np.log(sig).ravel(), true_log.ravel())[0, 1]
    assert corr > 0.9


def test_calibrate_trains_saves_and_ships_the_network(tmp_path: Path) -> None:
    """``train_variance_net`` on rendered pairs writes the weights and the descriptor section;
    ``ship_model`` carries them, renamed, to the shipped model."""
    from lenssr.simulation import simulate
    from lenssr.training.ship import ship_model

    path = tiny_checkpoint(tmp_path)
    recipe = tmp_path / "vn.yaml"
    recipe.write_text(
        "sets:\n  - {name: a, preset: survey-mix, n: 6, seed: 3}\n"
        f"n_val: 2\nmembers: 2\nsteps: 6\ncrop: 40\nbatch_size: 2\ncache: {tmp_path / 'c'}\n"
        "threads: 1\n"
    )
    section = vn.train_variance_net(path, recipe)
    assert section["members"] == 2 and len(section["training_log"]) == 2
    assert set(section["validation"]) == {"variance_net", "three_term"}
    assert vn.sigma_path(path).is_file()
    desc = json.loads(path.with_suffix(".json").read_text())
    assert desc["uncertainty"]["variance_net"]["file"] == "m.sigma.safetensors"
    assert desc["uncertainty"]["coefficients"] == COEF  # the three-term model is kept
    assert (tmp_path / "c" / "a-6-3.npz").is_file()  # cached for the next run
    lr = lr_images()
    kw = {"psf_fwhm": 0.18, "pixel_scale": 0.1, "return_sigma": True}
    _, sig = load_model(path, device="cpu").upscale(lr, **kw)

    test = tmp_path / "test.h5"
    simulate("default", n=2, out=test, seed=5, workers=1, progress=False)
    shipped = ship_model(path, "tinyvar", test, weights_dir=tmp_path / "w",
                         figures_dir=tmp_path / "fig", device="cpu")  # fmt: skip
    assert (tmp_path / "w" / "tinyvar.sigma.safetensors").is_file()
    desc = json.loads(shipped.with_suffix(".json").read_text())
    assert desc["uncertainty"]["variance_net"]["file"] == "tinyvar.sigma.safetensors"
    _, sig_shipped = load_model(shipped, device="cpu").upscale(lr, **kw)
    np.testing.assert_allclose(sig_shipped, sig, rtol=1e-6)


def test_recipe_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 10\nwidth: 3\n")
    with pytest.raises(LenssrError, match="unknown variance-net keys: width"):
        vn.load_recipe(bad)
    path = tiny_checkpoint(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "lenssr.cli", "calibrate", str(path), "--variance-net",
         str(tmp_path / "missing.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode != 0
    assert "config file not found" in res.stderr and "missing.yaml" in res.stderr
    assert "Traceback" not in res.stderr
    attach(path, vn.VarianceEnsemble(1))
    vn.sigma_path(path).unlink()
    with pytest.raises(LenssrError, match="variance network weights not found"):
        load_model(path, device="cpu").upscale(lr_images(), return_sigma=True)


REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs/uncertainty").rglob("*.yaml"))


@pytest.mark.parametrize(
    "recipe", [p.relative_to(REPO).as_posix() for p in RECIPES if "preset" not in p.name]
)
def test_every_recipe_loads_and_keeps_the_held_out_family_out(recipe: str, monkeypatch) -> None:
    """The shipped recipe and its variants parse, and none trains on the test grid's source
    family: every preset they render gives ``shapelets`` no weight."""
    from lenssr.simulation.presets import load_preset

    monkeypatch.chdir(REPO)  # the recipes name their presets from the repository root
    cfg = vn.load_recipe(recipe)
    assert cfg["sets"], recipe
    for spec in cfg["sets"]:
        families = load_preset(str(spec["preset"])).section("source")["morphology"]["families"]
        assert float(families.get("shapelets", 0.0)) == 0.0, (recipe, spec["name"])
        assert sum(float(w) for w in families.values()) > 0
