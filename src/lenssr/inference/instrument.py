"""What an input file says about its LR instrument: PSF FWHM and pixel scale [arcsec].

Order of precedence for each image: the value given by the user (``--psf-fwhm``,
``--pixel-scale``), then the FITS header, then the model's assumed default instrument (the
``default`` preset's LR camera, 0.18" PSF on 0.10" pixels; :data:`DEFAULT_INSTRUMENT`).

FITS headers:

- **pixel scale**: from the celestial WCS (``CDi_j`` or ``CDELTi`` + ``PCi_j``, the mean of
  the two axes' pixel sides, degrees -> arcsec), else the first of :data:`PIXEL_SCALE_KEYS`
  (arcsec);
- **PSF FWHM**: the first of :data:`PSF_FWHM_KEYS` (arcsec), else the first of
  :data:`PSF_FWHM_PIXEL_KEYS` (LR pixels, multiplied by the pixel scale).
"""

from __future__ import annotations

import warnings
from typing import Any

from lenssr.data.conditioning import DEFAULT_INSTRUMENT

__all__ = [
    "PIXEL_SCALE_KEYS",
    "PSF_FWHM_KEYS",
    "PSF_FWHM_PIXEL_KEYS",
    "DEFAULT_INSTRUMENT",
    "header_instrument",
]

#: Header keywords read as the PSF FWHM in arcsec (first present wins).
PSF_FWHM_KEYS: tuple[str, ...] = ("PSF_FWHM", "PSFFWHM", "FWHM_PSF", "SEEING", "SEEFWHM", "FWHM")
#: Header keywords read as the PSF FWHM in pixels.
PSF_FWHM_PIXEL_KEYS: tuple[str, ...] = ("FWHMPIX", "PSF_FWHMPIX", "FWHM_PIX")
#: Header keywords read as the pixel scale in arcsec when there is no celestial WCS.
PIXEL_SCALE_KEYS: tuple[str, ...] = ("PIXSCALE", "PIXSCAL1", "PIXSCAL", "SECPIX", "PIXELSCL")


def _positive(header: Any, key: str) -> float | None:
    try:
        value = float(header[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if value > 0 and value == value and value != float("inf") else None


def header_instrument(header: Any) -> dict[str, float]:
    """``{"psf_fwhm": arcsec, "pixel_scale": arcsec}`` as far as a FITS header tells (keys
    absent when unknown). Never raises: an unreadable WCS is treated as absent."""
    out: dict[str, float] = {}
    if header is None:
        return out
    try:
        from astropy.wcs import WCS
        from astropy.wcs.utils import proj_plane_pixel_scales

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
            if wcs.has_celestial:
                scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
                if len(scales) == 2 and all(s > 0 for s in scales):
                    out["pixel_scale"] = float(sum(scales) / 2.0)
    except Exception:  # noqa: BLE001 - a broken WCS is only missing information here
        pass
    if "pixel_scale" not in out:
        for key in PIXEL_SCALE_KEYS:
            value = _positive(header, key)
            if value is not None:
                out["pixel_scale"] = value
                break
    for key in PSF_FWHM_KEYS:
        value = _positive(header, key)
        if value is not None:
            out["psf_fwhm"] = value
            return out
    for key in PSF_FWHM_PIXEL_KEYS:
        value = _positive(header, key)
        if value is not None:
            pix = out.get("pixel_scale", DEFAULT_INSTRUMENT["pixel_scale"])
            out["psf_fwhm"] = value * pix
            return out
    return out
