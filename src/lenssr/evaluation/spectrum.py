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
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _as_stack(images: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.asarray(images, dtype=np.float64)
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
    idx, n_bins = _bins((h, w))
    flat_idx = idx.ravel()
    keep = flat_idx <= n_bins
    counts = np.bincount(flat_idx[keep], minlength=n_bins + 1)
    power = np.empty((stack.shape[0], n_bins), dtype=np.float64)
    for i, p in enumerate(power2d.reshape(stack.shape[0], -1)):
        sums = np.bincount(flat_idx[keep], weights=p[keep], minlength=n_bins + 1)
        power[i] = sums[1:] / counts[1:]
    k = np.arange(1, n_bins + 1) / min(h, w)
    return k, (power[0] if single else power)


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
