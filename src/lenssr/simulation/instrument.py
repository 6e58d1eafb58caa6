"""Instrument model: Gaussian PSF (FFT), block-mean binning, Poisson + background noise.

All images are surface brightness in e-/s/arcsec^2. Block-mean binning keeps surface brightness,
so ``sum(image) * pixel_scale**2`` (total flux, e-/s) is conserved by binning.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from lenssr.simulation.presets import Instrument

__all__ = ["add_noise", "bin_mean", "gaussian_otf", "padded_shape"]


def padded_shape(n: int, sigma_pix: float) -> int:
    """FFT size for a zero-padded (non-periodic) Gaussian convolution of an ``n``-pixel axis."""
    return sfft.next_fast_len(n + 2 * int(np.ceil(5.0 * sigma_pix)) + 2, real=True)


def gaussian_otf(shape: tuple[int, int], sigma_pix: float) -> np.ndarray:
    """Transfer function of a unit-sum Gaussian PSF for ``scipy.fft.rfft2`` spectra.

    Args:
        shape: padded real-space shape ``(P0, P1)``.
        sigma_pix: PSF standard deviation [pixels of that grid].

    Returns:
        float32 array ``(P0, P1 // 2 + 1)``: ``exp(-2 pi^2 sigma^2 |k|^2)`` (k in cycles/pixel);
        its value at k = 0 is 1, so convolution conserves flux.
    """
    ky = sfft.fftfreq(shape[0])[:, None]
    kx = sfft.rfftfreq(shape[1])[None, :]
    otf = np.exp(-2.0 * np.pi**2 * sigma_pix**2 * (kx**2 + ky**2))
    return otf.astype(np.float32)


def bin_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of the last two axes (keeps surface brightness).

    Args:
        image: ``(..., H, W)`` with H and W multiples of ``factor``.
        factor: block side in pixels.

    Returns:
        ``(..., H // factor, W // factor)``.
    """
    if factor == 1:
        return image
    *lead, h, w = image.shape
    return image.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def add_noise(image: np.ndarray, inst: Instrument, rng: np.random.Generator) -> np.ndarray:
    """Observe a noiseless image with ``inst``: Poisson (source + sky) and Gaussian read noise.

    Args:
        image: noiseless surface brightness [e-/s/arcsec^2] on the instrument's pixel grid,
            any shape.
        inst: the instrument (pixel_scale, exposure_time, sky_brightness, read_noise).
        rng: random generator.

    Returns:
        float32 noisy surface brightness [e-/s/arcsec^2]: electrons = image * pixel_area *
        exposure_time; add the sky's electrons, draw Poisson, subtract the sky mean, add read
        noise, divide back by pixel_area * exposure_time.
    """
    to_e = inst.pixel_area * inst.exposure_time
    sky_e = inst.sky_brightness * to_e
    lam = np.clip(np.asarray(image, dtype=np.float64) * to_e, 0.0, None) + sky_e
    counts = rng.poisson(lam).astype(np.float64) - sky_e
    if inst.read_noise > 0:
        counts += rng.normal(0.0, inst.read_noise, size=counts.shape)
    return (counts / to_e).astype(np.float32)


def noise_sigma(image: np.ndarray, inst: Instrument) -> np.ndarray:
    """Per-pixel noise standard deviation [e-/s/arcsec^2] of :func:`add_noise` for ``image``."""
    to_e = inst.pixel_area * inst.exposure_time
    var_e = np.clip(image, 0.0, None) * to_e + inst.sky_brightness * to_e + inst.read_noise**2
    return np.sqrt(var_e) / to_e
