"""Calibrated per-pixel sigma: the three-term variance model, its fit, and that every path
(Python API, tiles, the descriptor) gives the same calibrated map."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lenssr.inference.api import SRModel
from lenssr.inference.uncertainty import (
    U0,
    calibrated_sigma,
    coverage,
    fit_calibration,
    raw_predictions,
    variance_terms,
    write_calibration,
)
from lenssr.models import create_model, load_checkpoint, save_checkpoint

#: The HR target instrument of the default / survey-mix presets (0.05" pixels, 20000 s).
TARGET = {"pixel_scale": 0.05, "exposure_time": 20000.0, "sky_brightness": 2.0, "read_noise": 3.0}
TINY = {"num_feat": 8, "num_res_blocks": 2, "embed_dim": 16, "depth": 1, "num_heads": 2,
        "pos_grid": 4, "cond_dim": 2, "sigma_head": True}  # fmt: skip


def test_target_term_is_the_hr_instruments_noise() -> None:
    sr = np.array([[[0.0, 100.0]]])
    t = variance_terms(sr, np.ones_like(sr), TARGET)
    to_e = 0.05**2 * 20000.0  # e- per (e-/s/arcsec^2)
    sky = (2.0 * to_e + 3.0**2) / to_e**2
    np.testing.assert_allclose(t["target"][0, 0], [sky, sky + 100.0 / to_e])
    np.testing.assert_allclose(t["signal"][0, 0], [0.0, 1.0e4])
    assert not variance_terms(sr, sr, None)["target"].any()


def test_calibrated_sigma_combines_the_terms_by_noise_level() -> None:
    rng = np.random.default_rng(0)
    sr = rng.uniform(0, 50, (2, 6, 5))
    head = rng.uniform(0.5, 2.0, sr.shape)
    u = np.array([U0, U0 + 1.0])
    assert np.array_equal(calibrated_sigma(sr, head, u, {}), head.astype(np.float32))
    coef = {"head": [np.log(2.0), np.log(1.5)], "target": [0.0, 0.0], "signal": [np.log(0.1), 0]}
    got = calibrated_sigma(sr, head, u, {"coefficients": coef, "target_noise": TARGET})
    t = variance_terms(sr, head, TARGET)
    a = np.array([2.0, 3.0])[:, None, None]  # exp(k0 + k1 (u - U0))
    want = np.sqrt(a**2 * t["head"] + t["target"] + 0.01 * t["signal"])
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("objective", ["nll", "coverage"])
def test_fit_recovers_the_variance_of_synthetic_errors(objective: str) -> None:
    """Errors drawn from a known three-term variance: the fit gives Gaussian coverage at every
    noise level, where the head alone is too narrow at high noise and too wide at low."""
    rng = np.random.default_rng(1)
    n = 40
    u = rng.uniform(-3.5, -1.0, n)
    sr = rng.gamma(1.0, 10.0, (n, 24, 24))
    head = rng.uniform(0.2, 1.0, sr.shape)
    true = {"head": [np.log(0.8), 0.5], "target": [np.log(1.2), 0.0], "signal": [np.log(0.05), 0]}
    sigma = calibrated_sigma(sr, head, u, {"coefficients": true, "target_noise": TARGET})
    hr = sr + rng.normal(0.0, 1.0, sr.shape) * sigma
    coef = fit_calibration(sr, head, hr, u, None, TARGET, objective=objective, max_pixels=60_000)
    fitted = calibrated_sigma(sr, head, u, {"coefficients": coef, "target_noise": TARGET})
    for sel in (u < -2.5, u >= -2.5):
        cov = coverage(sr[sel], fitted[sel], hr[sel])
        assert cov["cov1"] == pytest.approx(0.683, abs=0.02)
        assert cov["cov2"] == pytest.approx(0.954, abs=0.01)
        raw = coverage(sr[sel], head[sel], hr[sel])
        assert abs(raw["cov1"] - 0.683) > 0.05
    if objective == "nll":
        assert coef["head"][1] == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="objective"):
        fit_calibration(sr, head, hr, u, objective="quantile")


def test_descriptor_calibration_is_applied_by_upscale(tmp_path) -> None:
    """The variance terms written into a descriptor are what ``upscale(return_sigma=True)``
    returns, whole-image and tiled alike."""
    torch.manual_seed(0)
    module = create_model("hybrid", **TINY)
    path = tmp_path / "m"
    cond = {"inputs": ["psf_fwhm_pix", "log10_noise"], "range": {"psf_fwhm_pix": [1.0, 3.5]}}
    save_checkpoint(path, module, {"normalization": {"kind": "noise"}, "conditioning": cond})
    rng = np.random.default_rng(2)
    lr = (rng.normal(0, 1.0, (2, 18, 17)) + 5.0).astype(np.float32)
    lr[:, 6:11, 5:12] += 40.0
    model = SRModel(*load_checkpoint(path), device="cpu")
    sr, raw, u = raw_predictions(model, lr, np.full(2, 1.8))
    coef = {"head": [0.3, -0.4], "target": [-0.5, 0.2], "signal": [-3.0, 1.0]}
    write_calibration(path.with_suffix(".safetensors"),
                      {"coefficients": coef, "target_noise": TARGET, "n": 2})  # fmt: skip
    desc = json.loads(path.with_suffix(".json").read_text())
    assert desc["uncertainty"]["coefficients"] == coef
    model = SRModel(*load_checkpoint(path), device="cpu")
    want = calibrated_sigma(sr, raw, u, desc["uncertainty"])
    got_sr, got = model.upscale(lr, psf_fwhm=0.18, pixel_scale=0.1, return_sigma=True)
    np.testing.assert_allclose(got_sr, sr, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert not np.allclose(got, raw, rtol=0.05)
    _, tiled = model.upscale(lr, psf_fwhm=0.18, pixel_scale=0.1, return_sigma=True, tile=9)
    assert tiled.shape == got.shape and np.all(tiled > 0)
