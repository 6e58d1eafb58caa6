"""Flux consistency: re-observed, the super-resolved image must reproduce the LR input.

An SR image is a claim about the sky at high resolution. Passing it through the instrument's
forward model (the preset's :func:`lenssr.simulation.degrade_array` with ``noise=False``: PSF
convolution and pixel binning, flux conserving) gives the LR image that this sky *would* have
produced, ``D(SR)``. Comparing it with the observed LR image tests the SR result against the data
it was made from, without any HR ground truth, so the test also works on real observations.

Two numbers per image, both dimensionless (sums over the LR pixel grid; both images share the
LR pixel scale, so ``sum * pixel_scale**2`` cancels):

Data whose LR instrument varies per system (a survey mixture such as ``survey-mix``) record each
pair's LR PSF FWHM (``PairSource.lr_psf_fwhm``); ``D`` then uses each pair's own PSF
(``lr_psf_fwhm=``), never the preset's fixed one. Noise does not enter ``D``, so the PSF is the
only part of the per-pair instrument that matters here.


``flux_error``
    Relative total-flux error ``|sum(D(SR)) - sum(LR)| / |sum(LR)|``. Sensitive to a global
    brightness bias (a model that loses or invents light). Zero-mean noise averages out, so a
    correct SR image gives ~0 (the noise floor is ``~ sqrt(sum(var)) / |sum(LR)|``).

``flux_residual``
    Normalised RMS residual ``||D(SR) - LR||_2 / ||LR||_2``. Sensitive to misplaced light
    (arcs moved, blurred or sharpened wrongly). Because the LR image contains noise and ``D(SR)``
    does not, even the true HR image does not reach 0: its value is the noise floor.
    :func:`lenssr.evaluation.evaluate` therefore also reports both numbers for the HR ground truth
    itself (row ``reference: HR truth``); an SR model is flux-consistent when it is close to it.

README text:

    *Flux consistency.* We re-observe each SR image with the simulator's noiseless instrument
    model (PSF + pixel binning) and compare it with the LR input: ``flux_error`` is the relative
    error of the total flux, ``flux_residual = ||D(SR) - LR|| / ||LR||`` the normalised residual.
    The same numbers for the HR ground truth give the floor set by the LR noise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

Degrade = Callable[[np.ndarray], np.ndarray]

_EPS = 1e-30

FLUX_CONVENTIONS = {
    "flux_error": "|sum(D(SR)) - sum(LR)| / |sum(LR)|, D = the preset's degrade with noise off "
    "(PSF + pixel binning, flux conserving; each pair's own LR PSF where the data record one)",
    "flux_residual": "||D(SR) - LR||_2 / ||LR||_2; the LR noise sets a floor, reported for the "
    "HR truth under 'reference'",
}


def reobserve(
    sr: np.ndarray,
    preset: Any = "default",
    hr_pixel_scale: float | None = None,
    degrade: Degrade | None = None,
    lr_psf_fwhm: np.ndarray | None = None,
) -> np.ndarray:
    """Noise-free LR observation of SR images: (H, W) or (N, H, W) -> (H/s, W/s) or (N, ...).

    Uses ``degrade`` when given (any flux-conserving forward model of the user's instrument),
    otherwise ``lenssr.simulation.degrade_array(sr, preset, noise=False)``, with each image's
    own LR PSF FWHM [arcsec] when ``lr_psf_fwhm`` (one value per image) is given.
    """
    if degrade is not None:
        return np.asarray(degrade(sr), dtype=np.float64)
    from lenssr.simulation import degrade_array
    from lenssr.simulation.presets import resolve_preset

    images = np.asarray(sr, dtype=np.float32)
    if lr_psf_fwhm is None:
        out = degrade_array(images, preset, noise=False, hr_pixel_scale=hr_pixel_scale)
        return np.asarray(out, dtype=np.float64)
    preset = resolve_preset(preset)
    fwhm = np.atleast_1d(np.asarray(lr_psf_fwhm, dtype=np.float64))
    stack = images[None] if images.ndim == 2 else images
    if len(fwhm) != len(stack):
        raise ValueError(f"{len(fwhm)} LR PSF values for {len(stack)} images")
    out = np.stack(
        [
            degrade_array(
                img,
                preset,
                noise=False,
                hr_pixel_scale=hr_pixel_scale,
                lr=dataclasses.replace(preset.lr, psf_fwhm=float(f)),
            )
            for img, f in zip(stack, fwhm, strict=True)
        ]
    ).astype(np.float64)
    return out[0] if images.ndim == 2 else out


def flux_metrics(reobserved: np.ndarray, lr: np.ndarray) -> dict[str, float | np.ndarray]:
    """``flux_error`` and ``flux_residual`` (see module docstring) of re-observed vs LR images.

    Args:
        reobserved: ``D(SR)``, (h, w) or (N, h, w).
        lr: observed LR images of the same shape and units.

    Returns:
        ``{"flux_error": ..., "flux_residual": ...}``: floats for one image, (N,) arrays for N.
    """
    d = np.asarray(reobserved, dtype=np.float64)
    lr = np.asarray(lr, dtype=np.float64)
    if d.shape != lr.shape:
        raise ValueError(
            f"re-observed SR has shape {d.shape} but the LR input has {lr.shape}: the preset's "
            "instrument does not match the data (choose the preset the data was simulated with)"
        )
    axes = (-2, -1)
    total_lr = lr.sum(axis=axes)
    flux_error = np.abs(d.sum(axis=axes) - total_lr) / np.maximum(np.abs(total_lr), _EPS)
    norm_lr = np.sqrt(np.sum(lr**2, axis=axes))
    residual = np.sqrt(np.sum((d - lr) ** 2, axis=axes)) / np.maximum(norm_lr, _EPS)
    if d.ndim == 2:
        return {"flux_error": float(flux_error), "flux_residual": float(residual)}
    return {"flux_error": flux_error, "flux_residual": residual}


def flux_consistency(
    sr: np.ndarray,
    lr: np.ndarray,
    preset: Any = "default",
    hr_pixel_scale: float | None = None,
    degrade: Degrade | None = None,
    lr_psf_fwhm: np.ndarray | None = None,
) -> dict[str, float | np.ndarray]:
    """Re-observe SR images and compare them with their LR inputs.

    Args:
        sr: super-resolved images (H, W) or (N, H, W), surface brightness in the LR's units.
        lr: the LR inputs, (H/s, W/s) or (N, H/s, W/s).
        preset: simulation preset (name or ``Preset``) whose instrument made the LR images.
        hr_pixel_scale: HR pixel scale in arcsec if it differs from the preset's.
        degrade: optional forward model replacing the preset (HR -> noiseless LR).
        lr_psf_fwhm: per-image LR PSF FWHM [arcsec] (data whose LR instrument varies per
            system record it, ``PairSource.lr_psf_fwhm``); None: the preset's ``lr.psf_fwhm``.

    Returns:
        ``{"flux_error": ..., "flux_residual": ...}`` (dimensionless; floats or (N,) arrays).
    """
    return flux_metrics(reobserve(sr, preset, hr_pixel_scale, degrade, lr_psf_fwhm), lr)
