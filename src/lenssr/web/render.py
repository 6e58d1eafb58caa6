"""Server-side preview rendering: float images -> asinh-stretched 8-bit PNG (display only).

The pipeline itself never quantises; only these previews are 8-bit. The LR and SR images of a
pair share one stretch (taken from the LR image) so their brightness is directly comparable, and
the LR image is shown nearest-neighbour upsampled to the SR size (its true pixels, no smoothing).
A 1-sigma map is shown on a linear scale from 0 to :func:`sigma_limit`.
"""

from __future__ import annotations

import io

import numpy as np

#: Softening of the asinh stretch, as a fraction of the display range (smaller = more contrast
#: for faint arcs).
ASINH_SOFTENING = 0.05


def stretch_limits(reference: np.ndarray) -> tuple[float, float]:
    """Display range ``(lo, hi)`` of an image: its 0.5th and 99.9th percentiles of finite pixels."""
    finite = reference[np.isfinite(reference)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [0.5, 99.9])
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def asinh_stretch(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``image`` mapped to ``[0, 1]`` by ``asinh((x - lo) / (hi - lo) / a) / asinh(1 / a)``
    (clipped; NaN -> 0), ``a = ASINH_SOFTENING``."""
    x = (np.asarray(image, dtype=np.float64) - lo) / (hi - lo)
    x = np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)
    return np.arcsinh(x / ASINH_SOFTENING) / np.arcsinh(1.0 / ASINH_SOFTENING)


def upsample_nearest(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` -> ``shape`` by pixel replication (each LR pixel becomes a block)."""
    h, w = image.shape
    rows = np.minimum((np.arange(shape[0]) * h) // shape[0], h - 1)
    cols = np.minimum((np.arange(shape[1]) * w) // shape[1], w - 1)
    return image[rows[:, None], cols[None, :]]


def to_png(unit: np.ndarray) -> bytes:
    """A ``[0, 1]`` array as 8-bit grayscale PNG bytes."""
    from PIL import Image

    pixels = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def render_pair(lr: np.ndarray, sr: np.ndarray) -> tuple[bytes, bytes]:
    """PNG bytes ``(lr_png, sr_png)``, both of SR size, with one shared asinh stretch.

    Args:
        lr: ``(h, w)`` LR image in any units.
        sr: ``(s*h, s*w)`` SR image in the same units.
    """
    lo, hi = stretch_limits(lr)
    lr_big = upsample_nearest(lr, sr.shape)
    return to_png(asinh_stretch(lr_big, lo, hi)), to_png(asinh_stretch(sr, lo, hi))


def sigma_limit(sigma: np.ndarray) -> float:
    """Top of a 1-sigma map's linear display range: its 99.5th percentile of finite pixels
    (the image's units; 1.0 for an empty or zero map)."""
    finite = sigma[np.isfinite(sigma)]
    top = float(np.percentile(finite, 99.5)) if finite.size else 0.0
    return top if top > 0 else 1.0


def render_sigma(sigma: np.ndarray) -> bytes:
    """PNG bytes of a 1-sigma map, linear from 0 (black) to :func:`sigma_limit` (white)."""
    unit = np.nan_to_num(np.asarray(sigma, dtype=np.float64) / sigma_limit(sigma), nan=0.0)
    return to_png(unit)
