"""Radially averaged power spectra: does a super-resolved image have the HR image's texture?

Convention:

* Each image is mean-subtracted, multiplied by a 2-D Hann window (outer product of
  ``numpy.hanning``) and Fourier transformed; the power ``|FFT|^2`` is divided by
  ``sum(window**2)``, so white noise of variance ``sigma**2`` has a flat spectrum at ``sigma**2``
  (units: image units squared).
* The power is averaged azimuthally in annuli of integer wavenumber: for an image whose shorter
  side has ``N`` pixels, the bin of a Fourier mode with spatial frequency ``|f|`` (cycles per
  pixel) is ``round(|f| * N)``; bins ``1 .. N // 2`` are kept (DC is dropped), so ``k = bin / N``
  runs from ``1/N`` up to the Nyquist frequency 0.5 cycles per pixel.
* :func:`power_spectrum_ratio` averages the spectra over all images first and then divides:
  ``ratio(k) = <P_SR(k)> / <P_HR(k)>`` (1 is perfect, < 1 means missing small-scale power, i.e.
  a blurry result, > 1 means extra small-scale power: noise or invented structure).
* The **hallucination number** is ``mean_k |log10 ratio(k)|`` over all bins up to Nyquist
  (bins where either spectrum is exactly zero are skipped). 0 means the SR images have the HR
  power spectrum at every scale; 0.3 means a typical factor 2 off.
* **Background spectra** (:func:`taper_weights`, :func:`masked_radial_power_spectrum`,
  :func:`band_powers`): the power spectrum of part of an image only, e.g. its sky background.
  The image minus the median of its selected pixels is multiplied by a weight map that is 0
  outside the selection and rises from 0 to 1 with a cosine over ``taper_px`` pixels inside it
  (also at the image border, so the periodic FFT sees no edge); the power is divided by
  ``sum(weights**2)``, so white noise still has a flat spectrum at ``sigma**2``. The annuli are
  those above. :func:`band_powers` integrates the radial spectrum over frequency bands (sum of
  the power of every Fourier mode in the band, i.e. each annulus weighted by its mode count).
  :func:`background_mask` selects the sky background of an HR image from the image itself
  (pixels far from any light above a multiple of the sky noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _as_stack(images: np.ndarray, dtype: type | None = np.float64) -> tuple[np.ndarray, bool]:
    """``(N, H, W)`` view of ``(H, W)`` or ``(N, H, W)`` images and whether it was one image;
    ``dtype=None`` keeps the input's type (a large stack is not copied)."""
    arr = np.asarray(images, dtype=dtype)
    if arr.ndim == 2:
        return arr[None], True
    if arr.ndim == 3:
        return arr, False
    raise ValueError(f"expected (H, W) or (N, H, W) images, got shape {arr.shape}")


def _bins(shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Integer annulus index of every FFT mode (shape (H, W)) and the number of bins kept."""
    h, w = shape
    n = min(h, w)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    idx = np.rint(np.hypot(fy, fx) * n).astype(np.int64)
    return idx, n // 2


def radial_power_spectrum(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power spectrum of each image.

    Args:
        images: (H, W) or (N, H, W), any units; both sides >= 2 pixels.

    Returns:
        ``k`` (K,) in cycles per pixel (``1/min(H, W)`` .. 0.5) and ``power`` (K,) for one image
        or (N, K) for a stack, in image units squared.
    """
    stack, single = _as_stack(images)
    h, w = stack.shape[-2:]
    if min(h, w) < 2:
        raise ValueError(f"images must be at least 2x2 for a power spectrum, got {h}x{w}")
    window = np.outer(np.hanning(h), np.hanning(w))
    centred = stack - stack.mean(axis=(-2, -1), keepdims=True)
    power2d = np.abs(np.fft.fft2(centred * window)) ** 2 / np.sum(window**2)
    k, power = _radial_average(power2d)
    return k, (power[0] if single else power)


def _radial_average(power2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Annulus means ``(N, K)`` of ``(N, H, W)`` FFT-mode powers, and ``k`` (K,)."""
    n_img, h, w = power2d.shape
    idx, n_bins = _bins((h, w))
    flat_idx = idx.ravel()
    keep = flat_idx <= n_bins
    counts = np.bincount(flat_idx[keep], minlength=n_bins + 1)
    power = np.empty((n_img, n_bins), dtype=np.float64)
    for i, p in enumerate(power2d.reshape(n_img, -1)):
        sums = np.bincount(flat_idx[keep], weights=p[keep], minlength=n_bins + 1)
        power[i] = sums[1:] / counts[1:]
    return np.arange(1, n_bins + 1) / min(h, w), power


def mode_counts(shape: tuple[int, int]) -> np.ndarray:
    """Number of Fourier modes in each annulus ``1 .. min(H, W) // 2`` of an (H, W) image."""
    idx, n_bins = _bins(shape)
    flat = idx.ravel()
    return np.bincount(flat[flat <= n_bins], minlength=n_bins + 1)[1:]


def taper_weights(mask: np.ndarray, taper_px: float = 4.0) -> np.ndarray:
    """Weight map of the pixels selected by ``mask``, tapered at the selection's edges.

    ``w = 0.5 * (1 - cos(pi * min(d / taper_px, 1)))``, where ``d`` is the Euclidean distance
    [pixels] from a selected pixel to the nearest pixel that is not selected or lies outside the
    image; ``w = 0`` outside the selection, 1 deeper than ``taper_px`` inside it.

    Args:
        mask: (H, W) or (N, H, W) booleans (True = use this pixel).
        taper_px: width of the cosine taper [pixels], > 0.

    Returns:
        float32 weights of the shape of ``mask`` in [0, 1].
    """
    from scipy.ndimage import distance_transform_edt

    if taper_px <= 0:
        raise ValueError(f"taper_px must be > 0, got {taper_px}")
    stack, single = _as_stack(mask, dtype=bool)
    out = np.zeros(stack.shape, dtype=np.float32)
    for i, m in enumerate(stack):
        if not m.any():
            continue
        d = distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]  # outside the image = unselected
        out[i] = 0.5 * (1.0 - np.cos(np.pi * np.minimum(d / taper_px, 1.0)))
    return out[0] if single else out


def masked_radial_power_spectrum(
    images: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthally averaged power spectrum of the weighted part of each image.

    Each image minus the median of its pixels with ``weights > 0`` is multiplied by its weights
    (e.g. :func:`taper_weights`), Fourier transformed, and ``|FFT|^2 / sum(weights**2)`` is
    averaged in the annuli of :func:`radial_power_spectrum`. Images are transformed one at a
    time (a large stack is not copied to float64).

    Args:
        images: (H, W) or (N, H, W), any units.
        weights: the same shape (or (H, W) for every image), >= 0.

    Returns:
        ``k`` (K,) in cycles per pixel and ``power`` (K,) or (N, K) in image units squared;
        ``nan`` for an image whose weights are all zero.
    """
    stack, single = _as_stack(images, dtype=None)
    h, w = stack.shape[-2:]
    if min(h, w) < 2:
        raise ValueError(f"images must be at least 2x2 for a power spectrum, got {h}x{w}")
    wts = np.asarray(weights)
    if wts.shape not in (stack.shape, (h, w)):
        raise ValueError(f"weights of shape {wts.shape} do not match images {stack.shape}")
    n_bins = min(h, w) // 2
    power = np.full((stack.shape[0], n_bins), np.nan)
    for i in range(stack.shape[0]):
        wi = np.asarray(wts if wts.ndim == 2 else wts[i], dtype=np.float64)
        sel = wi > 0
        if not sel.any():
            continue
        img = np.asarray(stack[i], dtype=np.float64)
        centred = (img - np.median(img[sel])) * wi
        p2d = np.abs(np.fft.fft2(centred)) ** 2 / np.sum(wi**2)
        power[i] = _radial_average(p2d[None])[1][0]
    k = np.arange(1, n_bins + 1) / min(h, w)
    return k, (power[0] if single else power)


def background_mask(
    hr: np.ndarray,
    sigma: float,
    k_sigma: float = 1.0,
    smooth_px: float = 2.0,
    grow_px: int = 2,
) -> np.ndarray:
    """Sky-background pixels of HR images: where the light, estimated from the image, is faint.

    The light is estimated by smoothing each image with a Gaussian of ``smooth_px`` pixels
    (standard deviation); pixels where the estimate is at least ``k_sigma * sigma`` are light,
    and every pixel within ``grow_px`` pixels (chessboard distance) of a light pixel is excluded
    too. The rest is background.

    Args:
        hr: (H, W) or (N, H, W) HR images [image units].
        sigma: per-pixel noise standard deviation of the empty sky [image units], > 0.
        k_sigma: light threshold in units of ``sigma``.
        smooth_px: Gaussian smoothing of the light estimate [pixels], >= 0.
        grow_px: exclusion margin around light pixels [pixels], >= 0.

    Returns:
        Booleans of the shape of ``hr`` (True = background).
    """
    from scipy.ndimage import binary_dilation, gaussian_filter

    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    stack, single = _as_stack(hr, dtype=None)
    out = np.zeros(stack.shape, dtype=bool)
    for i in range(stack.shape[0]):
        img = np.asarray(stack[i], dtype=np.float64)
        light = gaussian_filter(img, smooth_px, mode="nearest") if smooth_px > 0 else img
        lit = light >= k_sigma * sigma
        if grow_px > 0 and lit.any():
            lit = binary_dilation(lit, structure=np.ones((3, 3), bool), iterations=grow_px)
        out[i] = ~lit
    return out[0] if single else out


def band_powers(
    k: np.ndarray,
    power: np.ndarray,
    bands: Mapping[str, tuple[float, float]],
    shape: tuple[int, int],
) -> dict[str, np.ndarray]:
    """Power integrated over frequency bands: the sum of the power of every mode in the band.

    Args:
        k: (K,) annulus frequencies [cycles per pixel] of :func:`radial_power_spectrum`.
        power: (K,) or (N, K) annulus-mean powers.
        bands: name -> ``(k_lo, k_hi)``; an annulus belongs to a band when
            ``k_lo <= k < k_hi`` (use ``k_hi > 0.5`` to include the Nyquist annulus).
        shape: the (H, W) of the images (gives the number of modes per annulus).

    Returns:
        name -> float (or (N,)) band power [image units squared x modes].
    """
    counts = mode_counts(shape).astype(np.float64)
    k = np.asarray(k, dtype=np.float64)
    power = np.asarray(power, dtype=np.float64)
    if power.shape[-1] != len(counts) or len(k) != len(counts):
        raise ValueError(f"power has {power.shape[-1]} bins, images of {shape} have {len(counts)}")
    out = {}
    for name, (lo, hi) in bands.items():
        sel = (k >= lo) & (k < hi)
        band = np.sum(power[..., sel] * counts[sel], axis=-1)
        out[name] = float(band) if np.ndim(band) == 0 else band
    return out


def ratio_from_power(p_sr: np.ndarray, p_hr: np.ndarray) -> np.ndarray:
    """``p_sr / p_hr`` per bin, ``nan`` where either is zero (those bins are skipped later)."""
    p_sr = np.asarray(p_sr, dtype=np.float64)
    p_hr = np.asarray(p_hr, dtype=np.float64)
    ok = (p_sr > 0) & (p_hr > 0)
    out = np.full(np.broadcast(p_sr, p_hr).shape, np.nan)
    np.divide(p_sr, p_hr, out=out, where=ok)
    return out


def hallucination_from_ratio(ratio: np.ndarray) -> float:
    """``mean |log10 ratio|`` over the finite bins of a (K,) power-spectrum ratio."""
    ratio = np.asarray(ratio, dtype=np.float64)
    ok = np.isfinite(ratio) & (ratio > 0)
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(np.log10(ratio[ok]))))


def power_spectrum_ratio(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ratio of the image-averaged radial power spectra of SR and HR.

    Args:
        sr, hr: (H, W) or (N, H, W), same shape and units.

    Returns:
        ``k`` (K,) in cycles per pixel and ``ratio`` (K,) = ``<P_SR(k)> / <P_HR(k)>``.
    """
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"sr and hr shapes differ: {np.shape(sr)} vs {np.shape(hr)}")
    k, p_sr = radial_power_spectrum(sr)
    _, p_hr = radial_power_spectrum(hr)
    if p_sr.ndim == 2:
        p_sr, p_hr = p_sr.mean(axis=0), p_hr.mean(axis=0)
    return k, ratio_from_power(p_sr, p_hr)


def hallucination_number(sr: np.ndarray, hr: np.ndarray) -> float:
    """``mean_k |log10(<P_SR(k)> / <P_HR(k)>)|`` up to Nyquist; 0 for identical images.

    ``sr``, ``hr``: (H, W) or (N, H, W), same shape and units. Dimensionless (decades).
    """
    _, ratio = power_spectrum_ratio(sr, hr)
    return hallucination_from_ratio(ratio)


def plot_power_spectrum_ratio(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    scale: int | None = None,
    title: str = "Power spectrum ratio SR / HR",
) -> Path:
    """Plot ``ratio(k)`` for several models on a log axis and save a PNG.

    Args:
        curves: model name -> ``(k, ratio)`` as returned by :func:`power_spectrum_ratio`.
        path: output PNG file.
        scale: upscaling factor; when given, the LR Nyquist frequency ``0.5 / scale`` (in HR
            cycles per pixel) is marked: to its right the SR model had no LR information.
        title: figure title.

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    ax = fig.add_subplot()
    for name, (k, ratio) in curves.items():
        ok = np.isfinite(ratio) & (ratio > 0)
        ax.plot(np.asarray(k)[ok], np.asarray(ratio)[ok], label=name, lw=1.5)
    ax.axhline(1.0, color="k", lw=0.8, ls="-")
    if scale:
        ax.axvline(0.5 / scale, color="0.5", lw=0.8, ls="--", label="LR Nyquist")
    ax.set_yscale("log")
    ax.set_xlim(0.0, 0.5)
    ax.set_xlabel("spatial frequency k [cycles / HR pixel]")
    ax.set_ylabel(r"$\langle P_{SR}(k)\rangle / \langle P_{HR}(k)\rangle$")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
