"""Flux consistency: the re-observed SR image against the LR input."""

from __future__ import annotations

import numpy as np
import pytest

from lenssr.evaluation.flux import flux_consistency, flux_metrics


def block_mean(hr: np.ndarray, s: int = 2) -> np.ndarray:
    """A flux-conserving x2 instrument for surface brightness: mean over s x s blocks."""
    h, w = hr.shape[-2:]
    return hr.reshape(*hr.shape[:-2], h // s, s, w // s, s).mean(axis=(-3, -1))


def ring(n: int = 32) -> np.ndarray:
    y, x = np.mgrid[:n, :n] + 0.5
    r = np.hypot(x - n / 2, y - n / 2)
    return (30 * np.exp(-0.5 * ((r - 9) / 1.5) ** 2) + 50 * np.exp(-r / 2)).astype(np.float32)


def test_exact_inverse_is_flux_consistent() -> None:
    hr = ring()
    lr = block_mean(hr)
    out = flux_consistency(hr, lr, degrade=block_mean)
    assert out["flux_error"] == pytest.approx(0.0, abs=1e-12)
    assert out["flux_residual"] == pytest.approx(0.0, abs=1e-12)


def test_brightness_bias_and_misplaced_light() -> None:
    hr = ring()
    lr = block_mean(hr)
    brighter = flux_consistency(1.1 * hr, lr, degrade=block_mean)
    assert brighter["flux_error"] == pytest.approx(0.1, rel=1e-5)
    assert brighter["flux_residual"] == pytest.approx(0.1, rel=1e-5)
    moved = flux_consistency(np.roll(hr, 3, axis=0), lr, degrade=block_mean)
    assert moved["flux_error"] < 1e-5  # same total flux ...
    assert moved["flux_residual"] > 0.1  # ... in the wrong place


def test_batch_and_noise_floor() -> None:
    rng = np.random.default_rng(0)
    hr = np.stack([ring(), 2.0 * ring()])
    sigma = 0.5
    lr = block_mean(hr) + rng.normal(0, sigma, (2, 16, 16))
    out = flux_consistency(hr, lr, degrade=block_mean)
    assert out["flux_error"].shape == (2,) and out["flux_residual"].shape == (2,)
    floor = sigma * 16 / np.sqrt(np.sum(lr**2, axis=(1, 2)))  # ||noise|| / ||LR||
    np.testing.assert_allclose(out["flux_residual"], floor, rtol=0.15)
    assert np.all(out["flux_error"] < 5 * sigma * 16 / lr.sum(axis=(1, 2)))


def test_shape_mismatch_names_the_preset() -> None:
    with pytest.raises(ValueError, match="preset"):
        flux_metrics(np.zeros((16, 16)), np.zeros((15, 15)))


def test_with_the_simulators_degrade_model() -> None:
    from lenssr.simulation import degrade_array, load_preset

    preset = load_preset("default")
    s = preset.scale
    hr = ring(16 * s)
    lr_clean = degrade_array(hr, preset, noise=False)
    exact = flux_consistency(hr, lr_clean, preset)
    assert exact["flux_error"] < 1e-6 and exact["flux_residual"] < 1e-6
    lr = degrade_array(hr, preset, rng=np.random.default_rng(0))
    truth = flux_consistency(hr, lr, "default")
    brighter = flux_consistency(1.2 * hr, lr, "default")
    assert brighter["flux_error"] > truth["flux_error"] + 0.1
    assert brighter["flux_residual"] > truth["flux_residual"]


def test_survey_mix_pairs_are_reobserved_with_their_own_lr_psf(tmp_path) -> None:
    """A survey mixture draws the LR PSF per system; the flux metric uses the one each pair
    records (the HR truth then sits closer to the noise floor than with the preset's fixed PSF),
    and evaluate says so."""
    from lenssr.data import open_pairs
    from lenssr.evaluation import evaluate
    from lenssr.simulation import simulate

    path = simulate("survey-mix", n=4, out=tmp_path / "mix.h5", seed=3, workers=1, progress=False)
    src = open_pairs(path)
    assert src.preset_config["name"] == "survey-mix"
    assert src.lr_psf_fwhm is not None and np.ptp(src.lr_psf_fwhm) > 0.05
    lr = np.stack([src[i][0] for i in range(len(src))])
    hr = np.stack([src[i][1] for i in range(len(src))])
    own = flux_consistency(hr, lr, "survey-mix", lr_psf_fwhm=src.lr_psf_fwhm)["flux_residual"]
    fixed = flux_consistency(hr, lr, "survey-mix")["flux_residual"]
    assert np.all(own <= fixed + 1e-9) and own.mean() < fixed.mean()
    result = evaluate([], path, device="cpu")
    assert result.flux_psf == "per-pair" and result.to_dict()["flux_psf"] == "per-pair"
    np.testing.assert_allclose(result.reference["flux_residual"], own, rtol=1e-5)
