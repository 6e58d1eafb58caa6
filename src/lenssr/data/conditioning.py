"""The instrument as a network input: one place that turns what is known of an LR observation
into the conditioning vector of the instrument-aware models.

The vector has two entries (:data:`CONDITION_NAMES`):

- ``psf_fwhm_pix``: the LR PSF FWHM in LR pixels (``psf_fwhm [arcsec] / pixel_scale [arcsec]``);
- ``log10_noise``: ``log10(noise_sigma / (hi - lo))``, the noise level in the normalised units the
  network sees (``lo, hi`` from :class:`lenssr.data.normalize.Normalization`).

Both are in pixel / relative units, so a model trained at one pixel scale and flux unit serves
any other: only the ratios matter. The HR target of those models is fixed in HR pixels (the
training preset's HR PSF, e.g. ``default``'s 0.087" at 0.05" = 1.74 HR pixels).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONDITION_NAMES", "DEFAULT_INSTRUMENT", "condition_vector", "psf_fwhm_pixels"]

CONDITION_NAMES: tuple[str, ...] = ("psf_fwhm_pix", "log10_noise")

#: The instrument assumed when nothing is known: the ``default`` preset's LR camera.
DEFAULT_INSTRUMENT = {"psf_fwhm": 0.18, "pixel_scale": 0.10}


def psf_fwhm_pixels(psf_fwhm: float | None, pixel_scale: float | None) -> float:
    """LR PSF FWHM in LR pixels; the default instrument's where a value is missing."""
    fwhm = DEFAULT_INSTRUMENT["psf_fwhm"] if psf_fwhm is None else float(psf_fwhm)
    pix = DEFAULT_INSTRUMENT["pixel_scale"] if pixel_scale is None else float(pixel_scale)
    if not (fwhm > 0 and pix > 0):
        raise ValueError(f"psf_fwhm and pixel_scale must be > 0 (got {fwhm}, {pix})")
    return fwhm / pix


def relative_log_noise(noise_sigma: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``log10(noise_sigma / (hi - lo))`` ``(N,)``, clipped to [1e-6, 10] before the log: the
    relative noise of the conditioning vector and of the variance network's features."""
    sig = np.asarray(noise_sigma, dtype=np.float64).reshape(-1)
    span = (np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)).reshape(-1)
    return np.log10(np.clip(sig / np.where(span > 0, span, 1.0), 1e-6, 10.0))


def condition_vector(
    psf_fwhm_pix: float | np.ndarray, noise_sigma: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Conditioning vectors ``(N, 2)`` float32 of ``N`` images.

    Args:
        psf_fwhm_pix: LR PSF FWHM [LR pixels], one number or ``(N,)``.
        noise_sigma: ``(N,)`` noise sigma in the images' units.
        lo, hi: the normalisation's ``(N, 1, 1)`` (or ``(N,)``) offsets and tops.
    """
    rel = relative_log_noise(noise_sigma, lo, hi)
    fwhm = np.broadcast_to(np.asarray(psf_fwhm_pix, dtype=np.float64), rel.shape)
    return np.stack([fwhm, rel], axis=-1).astype(np.float32)
