"""Forward "degrade" model: any HR image -> its LR observation under a preset's instruments.

The HR image already carries the HR PSF, so the extra blur is a Gaussian of
``sigma = sqrt(sigma_LR^2 - sigma_HR^2)``; then ``scale x scale`` block means (surface
brightness kept, so total flux ``sum * pixel_scale**2`` is conserved) and the LR instrument's
Poisson + background noise.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from lenssr.errors import ConfigError, InputError
from lenssr.simulation.instrument import add_noise, bin_mean, noise_sigma
from lenssr.simulation.presets import Instrument, Preset, resolve_preset

__all__ = ["degrade_array", "degrade_path"]


def degrade_array(
    hr: np.ndarray,
    preset: Preset | str = "default",
    rng: np.random.Generator | None = None,
    noise: bool = True,
    hr_pixel_scale: float | None = None,
    lr: Instrument | None = None,
    with_noise_sigma: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Observe an HR surface-brightness image with the preset's LR instrument.

    Args:
        hr: ``(H, W)`` or ``(N, H, W)`` surface brightness [e-/s/arcsec^2]. Rows/columns beyond a
            multiple of ``preset.scale`` are cropped (at the end).
        preset: preset or its name (``preset.scale``, PSFs, LR noise).
        rng: random generator for the noise (a fresh one when None).
        noise: add the LR instrument's noise; False is deterministic and conserves total flux.
        hr_pixel_scale: HR pixel [arcsec]; defaults to ``preset.hr.pixel_scale``. The LR pixel is
            ``preset.scale * hr_pixel_scale``.
        lr: the LR instrument (PSF, exposure, sky, read noise) instead of ``preset.lr``, e.g. one
            drawn from a survey mixture (:func:`lenssr.simulation.sampling.lr_instrument`).

        with_noise_sigma: also return the per-pixel noise standard deviation of that
            instrument at the noiseless observation (Poisson + sky + read, same units), the
            weights of a data-consistency chi-squared.

    Returns:
        float32 ``(H // s, W // s)`` or ``(N, H // s, W // s)`` LR observation (and, with
        ``with_noise_sigma``, its noise sigma of the same shape).
    """
    preset = resolve_preset(preset)
    arr = np.asarray(hr, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ConfigError(f"degrade expects (H, W) or (N, H, W), got shape {arr.shape}")
    s = preset.scale
    if arr.shape[-1] < s or arr.shape[-2] < s:
        raise ConfigError(f"image {arr.shape[-2]}x{arr.shape[-1]} is smaller than the scale {s}")
    px = float(hr_pixel_scale) if hr_pixel_scale is not None else preset.hr.pixel_scale
    if px <= 0:
        raise ConfigError("hr_pixel_scale must be > 0")
    lr_inst = preset.lr if lr is None else lr
    sigma = np.sqrt(max(lr_inst.psf_sigma**2 - preset.hr.psf_sigma**2, 0.0)) / px
    h, w = (arr.shape[-2] // s) * s, (arr.shape[-1] // s) * s
    arr = arr[..., :h, :w]
    if sigma > 0:
        from scipy.ndimage import gaussian_filter

        axes = (arr.ndim - 2, arr.ndim - 1)
        arr = gaussian_filter(arr, sigma=sigma, mode="reflect", truncate=5.0, axes=axes)
    out = bin_mean(arr, s)
    inst = dataclasses.replace(lr_inst, pixel_scale=s * px)
    sigma_map = noise_sigma(out, inst).astype(np.float32) if with_noise_sigma else None
    if noise:
        out = add_noise(out, inst, rng if rng is not None else np.random.default_rng())
    return (out.astype(np.float32), sigma_map) if with_noise_sigma else out.astype(np.float32)


def degrade_path(
    inp: str | Path,
    out: str | Path,
    preset: Preset | str = "default",
    seed: int = 0,
    noise: bool = True,
    progress: bool = True,
):
    """Degrade a file, a folder or a zip of images (.npy, FITS, PNG, TIFF) with the same layout.

    Each image gets its own noise stream ``default_rng([seed, crc32(name)])``, so results do not
    depend on the processing order. Returns the :class:`lenssr.io.BatchReport`.
    """
    from lenssr.io import process_path

    preset = resolve_preset(preset)

    def fn(img) -> np.ndarray:
        data = np.asarray(img.data, dtype=np.float64)
        if data.ndim != 2:
            raise InputError(img.name, f"expected a 2-D image, got shape {data.shape}")
        if min(data.shape) < preset.scale:
            raise InputError(img.name, f"image smaller than the scale factor {preset.scale}")
        rng = np.random.default_rng([seed, zlib.crc32(str(img.name).encode())])
        return degrade_array(data, preset, rng=rng, noise=noise)

    history = f"lenssr degrade --preset {preset.name} --seed {seed}"
    if not noise:
        history += " --no-noise"
    return process_path(
        Path(inp),
        Path(out),
        fn,
        scale=1.0 / preset.scale,
        description="degrade",
        progress=progress,
        history=history,
    )
