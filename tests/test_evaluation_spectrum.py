"""Radial power spectra, their SR/HR ratio and the hallucination number."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from lenssr.evaluation.spectrum import (
    hallucination_number,
    plot_power_spectrum_ratio,
    power_spectrum_ratio,
    radial_power_spectrum,
)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).normal(0.0, 2.0, (48, 64, 64))


def test_white_noise_is_flat_at_its_variance(noise: np.ndarray) -> None:
    k, power = radial_power_spectrum(noise)
    assert power.shape == (48, 32)
    np.testing.assert_allclose(k, np.arange(1, 33) / 64)
    assert k[-1] == 0.5  # up to Nyquist, in cycles per pixel
    mean = power.mean(axis=0) / 4.0  # sigma^2 = 4
    assert np.all(np.abs(mean - 1.0) < 0.15)
    assert abs(mean.mean() - 1.0) < 0.05
    # a constant offset is removed before the transform
    _, shifted = radial_power_spectrum(noise[0] + 1000.0)
    np.testing.assert_allclose(shifted, power[0], rtol=1e-6)


def test_blur_gives_falling_ratio_below_one(noise: np.ndarray) -> None:
    sigma = 1.5
    blurred = gaussian_filter(noise, (0, sigma, sigma), mode="wrap")
    k, ratio = power_spectrum_ratio(blurred, noise)
    assert np.all(ratio[k > 0.1] < 1.0)
    assert np.all(np.diff(ratio) < 0)
    assert np.all(ratio[k > 0.3] < 1e-2)
    # the Gaussian's transfer function |G(k)|^2 = exp(-4 pi^2 sigma^2 k^2), where resolvable
    expected = np.exp(-4 * np.pi**2 * sigma**2 * k**2)
    sel = (k >= 0.05) & (k <= 0.25)
    np.testing.assert_allclose(ratio[sel], expected[sel], rtol=0.15)
    assert hallucination_number(blurred, noise) > 1.0


def test_hallucination_number(noise: np.ndarray) -> None:
    assert hallucination_number(noise, noise) == 0.0
    assert hallucination_number(noise[0], noise[0]) == 0.0
    # twice the amplitude = 4x the power at every k: log10(4) decades
    assert hallucination_number(2.0 * noise, noise) == pytest.approx(np.log10(4.0), abs=1e-9)
    # non-square images: bins follow the shorter side
    k, ratio = power_spectrum_ratio(noise[:, :40, :], noise[:, :40, :])
    assert len(k) == 20 and np.all(ratio == 1.0)


def test_plot(tmp_path, noise: np.ndarray) -> None:
    curves = {
        "same": power_spectrum_ratio(noise, noise),
        "blur": power_spectrum_ratio(gaussian_filter(noise, (0, 1, 1)), noise),
    }
    path = plot_power_spectrum_ratio(curves, tmp_path / "ps.png", scale=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
