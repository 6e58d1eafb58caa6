"""An image-based Einstein-radius estimator: the radius of the ring of arc light.

One fixed, documented procedure, applied identically to HR, bicubic and SR images (all on the
HR pixel grid), so that differences in its error measure how well each image preserves the
lens geometry:

1. **Smooth** the image with a Gaussian of ``SMOOTH_PIX`` = 1 pixel (suppresses pixel noise).
2. **Lens centre**: the light-weighted centroid of ``smoothed - median(smoothed)`` (positive
   part) within ``CENTRE_RADIUS`` = 0.25 arcsec of the image centre, iterated 3 times around
   the new centre. The lens galaxy's light peak dominates there; arcs lie further out.
3. **Remove the lens light** with a band-pass (difference of Gaussians): ``residual =
   G(SMOOTH_PIX) * image - G(LENS_LIGHT_SIGMA) * image`` with ``LENS_LIGHT_SIGMA`` = 0.25 arcsec.
   The wide Gaussian is a model of the smooth, centrally concentrated lens light (and the sky);
   thin arcs and rings survive the subtraction as positive ridges.
4. **Sector profiles**: the mean residual in annuli of width ``BIN_PIX`` = 0.5 pixel around the
   centre, for radii from ``R_MIN`` = 0.35 arcsec to the largest circle that fits in the image,
   in each of ``N_SECTORS`` = 16 azimuthal sectors; and the azimuthal mean over all sectors.
5. **Ring radius**: in each sector, the radius of the maximum residual, refined by a parabola
   through it and its two neighbours. A sector holds an arc when that maximum exceeds
   ``ARC_SIGMA`` = 3 times the robust noise (1.4826 MAD) of the residual image. For an SIS the
   two images of a source lie on opposite sides of the lens at ``theta_E + beta`` and
   ``theta_E - beta``, so every pair of opposite sectors that both hold arcs gives
   ``theta_E = (r_1 + r_2) / 2``; the estimate is the median over such pairs. Without any pair
   (a single arc), the parabola-refined maximum of the azimuthal mean profile is used.

The tests check the estimate on SIS rings and doubles of known radius (exact ray tracing, with
lens light, PSF and noise) to better than one HR pixel (0.05 arcsec). On the default preset's HR
images (SIE + shear, extended sources) its median absolute error is ~0.05 arcsec; the HR row
of the report gives this floor, so differences between input types are what matters.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

SMOOTH_PIX = 1.0
CENTRE_RADIUS = 0.25  # arcsec
LENS_LIGHT_SIGMA = 0.25  # arcsec
BIN_PIX = 0.5
R_MIN = 0.35  # arcsec
N_SECTORS = 16
ARC_SIGMA = 3.0

ESTIMATOR_DESCRIPTION = (
    "radius of the ring of maximal arc light: Gaussian smoothing (1 px), lens centre = "
    "light-weighted centroid within 0.25 arcsec of the image centre, lens light removed by a "
    "difference of Gaussians (1 px minus 0.25 arcsec), residual profiles in 0.5 px annuli from "
    "0.35 arcsec outwards in 16 sectors, peak radii refined by a parabola; theta_E = median of "
    "(r1 + r2) / 2 over opposite sector pairs that both hold a 3-sigma arc, else the peak of "
    "the azimuthal mean"
)


def lens_centre(image: np.ndarray, pixel_scale: float) -> tuple[float, float]:
    """Lens centre ``(y, x)`` in pixels (array index coordinates) of an ``(H, W)`` image."""
    sm = gaussian_filter(np.asarray(image, dtype=np.float64), SMOOTH_PIX)
    h, w = sm.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r_pix = CENTRE_RADIUS / pixel_scale
    y0, x0 = cy, cx
    for _ in range(3):
        mask = (yy - y0) ** 2 + (xx - x0) ** 2 <= r_pix**2
        wgt = np.clip(sm - np.median(sm), 0.0, None) * mask
        total = wgt.sum()
        if total <= 0:
            break
        y0, x0 = float((wgt * yy).sum() / total), float((wgt * xx).sum() / total)
        if np.hypot(y0 - cy, x0 - cx) > r_pix:  # stay near the image centre
            y0, x0 = cy, cx
            break
    return y0, x0


def _residual(img: np.ndarray, pixel_scale: float) -> np.ndarray:
    """Step 3: small-scale light minus the wide-Gaussian lens-light model."""
    return gaussian_filter(img, SMOOTH_PIX) - gaussian_filter(img, LENS_LIGHT_SIGMA / pixel_scale)


def _profiles(
    residual: np.ndarray, pixel_scale: float, centre: tuple[float, float], n_sectors: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean residual in annuli (``BIN_PIX`` wide, r >= ``R_MIN``) of each azimuthal sector.

    Returns ``radius`` (K,) arcsec and ``profile`` (n_sectors, K) (nan for empty cells).
    """
    y0, x0 = centre
    h, w = residual.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(yy - y0, xx - x0)
    sector = np.floor((np.arctan2(yy - y0, xx - x0) + np.pi) / (2 * np.pi) * n_sectors)
    sector = np.clip(sector.astype(np.int64), 0, n_sectors - 1)
    r_max = min(y0, x0, h - 1 - y0, w - 1 - x0)
    n_bins = max(int(r_max / BIN_PIX), 0)
    idx = np.floor(r / BIN_PIX).astype(np.int64)
    keep = idx < n_bins
    cell = (sector * n_bins + idx)[keep]
    counts = np.bincount(cell, minlength=n_sectors * n_bins).reshape(n_sectors, n_bins)
    sums = np.bincount(cell, weights=residual[keep], minlength=n_sectors * n_bins)
    radius = (np.arange(n_bins) + 0.5) * BIN_PIX * pixel_scale
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = sums.reshape(n_sectors, n_bins) / counts
    ok = radius >= R_MIN
    return radius[ok], profile[:, ok]


def ring_profile(
    image: np.ndarray, pixel_scale: float, centre: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal mean of the lens-light-subtracted residual (steps 1-4 of the module docstring).

    Args:
        image: ``(H, W)`` surface brightness (any units).
        pixel_scale: arcsec per pixel of ``image``.
        centre: lens centre ``(y, x)`` in pixels; found by :func:`lens_centre` when None.

    Returns:
        ``radius`` (K,) in arcsec (annulus centres) and ``profile`` (K,) in image units.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {img.shape}")
    centre = lens_centre(img, pixel_scale) if centre is None else centre
    radius, prof = _profiles(_residual(img, pixel_scale), pixel_scale, centre, 1)
    return radius, prof[0]


def _peak(radius: np.ndarray, profile: np.ndarray) -> tuple[float, float]:
    """Radius (parabola-refined) and height of the maximum of a radial profile."""
    k = int(np.nanargmax(profile))
    if 0 < k < len(profile) - 1:
        a, b, c = profile[k - 1], profile[k], profile[k + 1]
        denom = a - 2.0 * b + c
        shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
        step = radius[1] - radius[0]
        return float(radius[k] + np.clip(shift, -0.5, 0.5) * step), float(b)
    return float(radius[k]), float(profile[k])


def einstein_radius(
    image: np.ndarray, pixel_scale: float, centre: tuple[float, float] | None = None
) -> float:
    """Estimate the Einstein radius (arcsec) of one ``(H, W)`` lensing image.

    See the module docstring for the procedure. ``pixel_scale`` in arcsec per pixel; ``centre``
    ``(y, x)`` in pixels overrides the lens-centre search. Returns ``nan`` if the image is too
    small to hold a ring beyond ``R_MIN``.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {img.shape}")
    y0, x0 = lens_centre(img, pixel_scale) if centre is None else centre
    residual = _residual(img, pixel_scale)
    radius, profile = _profiles(residual, pixel_scale, (y0, x0), N_SECTORS)
    if len(radius) < 3:
        return float("nan")
    ring, _ = _peak(radius, np.nanmean(profile, axis=0))
    noise = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    peaks = [_peak(radius, p) if np.isfinite(p).sum() >= 3 else (np.nan, -np.inf) for p in profile]
    r = np.array([pk[0] for pk in peaks])
    arc = np.array([pk[1] for pk in peaks]) > ARC_SIGMA * max(noise, 1e-30)
    half = N_SECTORS // 2
    pairs = [0.5 * (r[k] + r[k + half]) for k in range(half) if arc[k] and arc[k + half]]
    return float(np.median(pairs)) if pairs else ring


def einstein_radii(images: np.ndarray, pixel_scale: float) -> np.ndarray:
    """:func:`einstein_radius` of every image of an ``(N, H, W)`` stack -> ``(N,)`` arcsec."""
    return np.array([einstein_radius(im, pixel_scale) for im in np.asarray(images)])
