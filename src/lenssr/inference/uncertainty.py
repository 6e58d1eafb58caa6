"""Per-pixel uncertainty of SR images: calibration and coverage.

Estimates of the 1-sigma of an SR pixel:

- ``head``: the model's sigma head (a Gaussian likelihood trained beside the image),
  ``upscale(..., return_sigma=True)``, calibrated as below;
- ``tta``: the spread (standard deviation) of the 8 rotated/flipped predictions, for any model
  (one calibration factor);
- ``head+tta``: both in quadrature (``upscale(..., tta=True, return_sigma=True)``).

Calibration of the head (:func:`fit_calibration`, stored in the descriptor's ``uncertainty``
section, applied by :func:`calibrated_sigma` inside ``upscale``) models the variance of
``hr - sr`` as a sum of three terms::

    sigma^2 = a^2 sigma_head^2 + b^2 sigma_target^2(sr) + c^2 sr^2

- ``sigma_head``: the head's 1-sigma; the network sees normalised images, so it knows the LR
  noise only relative to the image's range;
- ``sigma_target``: the noise of the HR target instrument of the training data at the SR value
  (Poisson + sky + read, :func:`lenssr.simulation.instrument.noise_sigma`): an HR observation
  holds its own noise, in absolute units the normalised network cannot see;
- ``c sr``: a fractional error of bright structure (the model's own error on morphologies
  and PSFs it was not trained on).

Each coefficient is ``exp(k0 + k1 (u - U0))``, a smooth function of the relative LR noise
``u = log10(noise_sigma / (hi - lo))`` of the conditioning vector. The six numbers are fitted on
held-out pairs (never the test pairs) by the Gaussian likelihood of ``hr - sr`` over all pixels
(``objective="nll"``, the default), or by the distance of the 1- and 2-sigma coverages (the
fraction of pixels whose true HR value lies within 1 and 2 sigma of the SR value) from the
Gaussian 68.27% and 95.45% in bins of ``u`` (``objective="coverage"``; on the instrument grid it
generalised worse, see ``docs/uncertainty``).

Units: the target term is in the training data's units (e-/s/arcsec^2 with the HR instrument
of the descriptor); the other terms are in the image's units.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lenssr.inference.base import N_DIHEDRAL, Upscaler

__all__ = [
    "GAUSS_1SIGMA",
    "GAUSS_2SIGMA",
    "TERMS",
    "U0",
    "calibrate",
    "calibrated_sigma",
    "calibration_factor",
    "coverage",
    "fit_calibration",
    "predict_with_sigma",
    "raw_predictions",
    "relative_noise",
    "reliability",
    "render_calibration_set",
    "variance_terms",
    "write_calibration",
]

GAUSS_1SIGMA = 0.682689492
GAUSS_2SIGMA = 0.954499736
#: The variance terms of the calibrated head sigma.
TERMS: tuple[str, ...] = ("head", "target", "signal")
#: Reference relative noise level (log10) of the coefficients' slopes.
U0 = -2.5
#: Weight of the 2-sigma coverage in the calibration loss (its target band is half as wide).
_W2 = 4.0


def predict_with_sigma(
    model: Upscaler, lr: np.ndarray, method: str = "head", **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(sr, sigma)`` ``(N, H, W)`` of ``lr`` ``(N, h, w)`` by ``method`` (``head``,
    ``head+tta`` or ``tta``); ``tta`` is uncalibrated (factor 1)."""
    if method == "head":
        return model.upscale(lr, return_sigma=True, **kw)
    if method == "head+tta":
        return model.upscale(lr, return_sigma=True, tta=True, **kw)
    if method == "tta":
        from lenssr.data.augment import dihedral, inverse_dihedral

        outs = [
            inverse_dihedral(model.upscale(np.ascontiguousarray(dihedral(lr, k)), **kw), k)
            for k in range(N_DIHEDRAL)
        ]
        stack = np.stack(outs).astype(np.float64)
        return stack.mean(0).astype(np.float32), stack.std(0).astype(np.float32)
    raise ValueError(f"unknown uncertainty method {method!r} (head, head+tta, tta)")


def _hr_instrument(target: dict[str, Any] | None):
    from lenssr.simulation.presets import Instrument

    if not target:
        return None
    keys = ("pixel_scale", "exposure_time", "sky_brightness", "read_noise")
    return Instrument(
        num_pix=1, psf_fwhm=1.0, supersampling=1, **{k: float(target[k]) for k in keys}
    )


def variance_terms(
    sr: np.ndarray, sigma_head: np.ndarray, target: dict[str, Any] | None
) -> dict[str, np.ndarray]:
    """The variance terms of :data:`TERMS` (float64, the shape of ``sr``): ``head``
    ``sigma_head^2``; ``target`` the HR target instrument's noise variance at ``max(sr, 0)``
    (zero without ``target``, a dict of ``pixel_scale`` [arcsec], ``exposure_time`` [s],
    ``sky_brightness`` [e-/s/arcsec^2], ``read_noise`` [e-]); ``signal`` ``max(sr, 0)^2``."""
    from lenssr.simulation.instrument import noise_sigma

    pos = np.clip(np.nan_to_num(np.asarray(sr, np.float64)), 0.0, None)
    inst = _hr_instrument(target)
    return {
        "head": np.asarray(sigma_head, np.float64) ** 2,
        "target": noise_sigma(pos, inst) ** 2 if inst is not None else np.zeros_like(pos),
        "signal": pos**2,
    }


def _combine(
    terms: dict[str, np.ndarray], coef: dict[str, Any], u: np.ndarray, u0: float = U0
) -> np.ndarray:
    var = np.zeros_like(terms["head"])
    for name in TERMS:
        k0, k1 = coef.get(name, (-np.inf, 0.0)) if name != "head" else coef.get("head", (0.0, 0.0))
        if np.isfinite(k0):
            var = var + np.exp(2.0 * (k0 + k1 * (u - u0))) * terms[name]
    return var


def calibrated_sigma(
    sr: np.ndarray,
    sigma_head: np.ndarray,
    log10_noise: np.ndarray | float | None,
    uncertainty: dict[str, Any] | None,
) -> np.ndarray:
    """The calibrated 1-sigma ``(N, H, W)`` float32 of the head's raw ``sigma_head`` for SR
    images ``sr`` ``(N, H, W)`` with relative LR noise ``log10_noise`` ``(N,)`` (the
    conditioning vector's; None: ``U0``), by the descriptor's ``uncertainty`` section: the
    three-term model of ``coefficients`` when present, else ``sigma_head`` unchanged (the one
    factor ``sigma_scale`` of older descriptors is applied by ``Upscaler.sigma_scale``)."""
    unc = uncertainty or {}
    coef = unc.get("coefficients")
    if not coef:
        return np.asarray(sigma_head, dtype=np.float32)
    sr = np.asarray(sr)
    u = np.full(sr.shape[0] if sr.ndim == 3 else 1, U0) if log10_noise is None else log10_noise
    u = np.asarray(u, np.float64).reshape(-1, *([1] * (sr.ndim - 1)))
    terms = variance_terms(sr, sigma_head, unc.get("target_noise"))
    var = _combine(terms, coef, u, float(unc.get("u0", U0)))
    return np.sqrt(var).astype(np.float32)


def coverage(
    sr: np.ndarray, sigma: np.ndarray, hr: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, float]:
    """Fractions of (masked) pixels with ``|hr - sr| <= k sigma`` for k = 1, 2."""
    z = np.abs(np.asarray(hr, np.float64) - sr) / np.maximum(np.asarray(sigma, np.float64), 1e-30)
    if mask is not None:
        z = z[np.asarray(mask, bool)]
    z = z[np.isfinite(z)]
    return {"cov1": float(np.mean(z <= 1.0)), "cov2": float(np.mean(z <= 2.0)), "n": int(z.size)}


def calibration_factor(sr: np.ndarray, sigma: np.ndarray, hr: np.ndarray) -> float:
    """The factor ``c`` minimising ``(cov1(c) - 68.27%)^2 + (cov2(c) - 95.45%)^2`` over all
    pixels, where ``cov_k(c)`` is the coverage of ``c * sigma`` (a 1-D search on a log grid)."""
    z = np.abs(np.asarray(hr, np.float64) - sr) / np.maximum(np.asarray(sigma, np.float64), 1e-30)
    z = np.sort(z[np.isfinite(z)].ravel())
    if z.size == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 2401))
    c1 = np.searchsorted(z, grid, side="right") / z.size
    c2 = np.searchsorted(z, 2.0 * grid, side="right") / z.size
    loss = (c1 - GAUSS_1SIGMA) ** 2 + (c2 - GAUSS_2SIGMA) ** 2
    return float(grid[int(np.argmin(loss))])


def fit_calibration(
    sr: np.ndarray,
    sigma_head: np.ndarray,
    hr: np.ndarray,
    log10_noise: np.ndarray,
    arc: np.ndarray | None = None,
    target: dict[str, Any] | None = None,
    n_bins: int = 4,
    max_pixels: int = 400_000,
    seed: int = 0,
    objective: str = "nll",
) -> dict[str, list[float]]:
    """Coefficients ``{term: [k0, k1]}`` of the three-term variance model (module docstring)
    fitted on held-out ``sr, sigma_head, hr`` ``(N, H, W)`` with relative LR noise
    ``log10_noise`` ``(N,)`` and lensed-arc masks ``arc`` (None: all pixels only).

    Up to ``max_pixels`` pixels are drawn, equally from ``n_bins`` quantile bins of
    ``log10_noise`` (and, with ``arc``, equally from all pixels and the arc pixels of each).
    ``objective="nll"``: the Gaussian negative log-likelihood (L-BFGS). ``"coverage"``: then the
    squared distances of the 1- and 2-sigma coverages from 68.27% and 95.45% (the 2-sigma one
    weighted 4x), summed over the pixel sets, minimised by Nelder-Mead.
    """
    if objective not in ("nll", "coverage"):
        raise ValueError(f"unknown calibration objective {objective!r} (nll, coverage)")
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    u_img = np.asarray(log10_noise, np.float64).reshape(-1)
    edges = np.quantile(u_img, np.linspace(0, 1, n_bins + 1)[1:-1])
    img_bin = np.searchsorted(edges, u_img)
    terms = variance_terms(sr, sigma_head, target)
    r = np.asarray(hr, np.float64) - np.asarray(sr, np.float64)
    shape = r.shape
    sets = []  # (pixel indices, bin) per bin and pixel set

    def pick(mask: np.ndarray, k: int) -> np.ndarray:
        idx = np.flatnonzero(mask.reshape(-1) & np.isfinite(r.reshape(-1)))
        return idx if idx.size <= k else rng.choice(idx, k, replace=False)

    per = max(1000, max_pixels // (2 * n_bins))
    for b in range(n_bins):
        in_bin = np.broadcast_to((img_bin == b)[:, None, None], shape)
        sets.append(pick(in_bin, per))
        if arc is not None:
            sets.append(pick(in_bin & np.asarray(arc, bool), per))
    idx = np.concatenate(sets)
    u = np.broadcast_to(u_img[:, None, None], shape).reshape(-1)[idx]
    t = {k: v.reshape(-1)[idx] for k, v in terms.items()}
    r2 = r.reshape(-1)[idx] ** 2
    bounds = np.cumsum([0] + [len(s) for s in sets])
    use = [n for n in TERMS if np.any(t[n] > 0)]

    def unpack(theta: np.ndarray) -> dict[str, list[float]]:
        return {n: [float(theta[2 * i]), float(theta[2 * i + 1])] for i, n in enumerate(use)}

    def var(theta: np.ndarray) -> np.ndarray:
        return _combine(t, unpack(theta), u) + 1e-30

    def nll(theta: np.ndarray) -> float:
        v = var(theta)
        return float(np.mean(np.log(v) + r2 / v))

    def loss(theta: np.ndarray) -> float:
        z2 = r2 / var(theta)
        out = 0.0
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = z2[lo:hi]
            out += (np.mean(part <= 1.0) - GAUSS_1SIGMA) ** 2
            out += _W2 * (np.mean(part <= 4.0) - GAUSS_2SIGMA) ** 2
        return out + 1e-4 * float(np.sum(theta[1::2] ** 2))

    theta0 = np.array([0.0, 0.0] + [-1.0, 0.0] * (len(use) - 1))
    theta = minimize(nll, theta0, method="L-BFGS-B").x
    if objective == "nll":
        return unpack(theta)
    best = minimize(loss, theta, method="Nelder-Mead",
                    options={"maxiter": 3000, "xatol": 1e-3, "fatol": 1e-7}).x  # fmt: skip
    return unpack(best)


def reliability(
    sr: np.ndarray,
    sigma: np.ndarray,
    hr: np.ndarray,
    mask: np.ndarray | None = None,
    levels: int = 10,
) -> list[tuple[float, float]]:
    """``(expected, observed)`` coverage of central Gaussian intervals at ``levels`` confidence
    levels (0.05, 0.15, ... 0.95 for 10), the reliability diagram."""
    from scipy.stats import norm

    z = np.abs(np.asarray(hr, np.float64) - sr) / np.maximum(np.asarray(sigma, np.float64), 1e-30)
    if mask is not None:
        z = z[np.asarray(mask, bool)]
    z = z[np.isfinite(z)]
    out = []
    for p in (np.arange(1, levels + 1) - 0.5) / levels:
        k = norm.ppf(0.5 + p / 2.0)
        out.append((float(p), float(np.mean(z <= k))))
    return out


def render_calibration_set(
    preset: str = "survey-mix", n: int = 300, seed: int = 7, arc_fraction: float = 0.1
) -> dict[str, Any]:
    """``n`` rendered pairs of ``preset`` (its own LR instrument and source families per
    system; system ``i`` from ``default_rng([seed, i])``) with lensed-arc masks (HR pixels where
    the noiseless lensed source alone is above ``arc_fraction`` of its peak).

    Returns ``{"lr" (N, h, w), "hr" (N, H, W), "arc" (N, H, W) bool, "psf_fwhm" (N,) [arcsec],
    "pixel_scale" [arcsec], "hr_instrument": dict}``.
    """
    import dataclasses

    from lenssr.simulation.grid import render_systems
    from lenssr.simulation.presets import load_preset

    p = load_preset(preset)
    d = render_systems(p, n, seed, arc_fraction)
    keep = {k: d[k] for k in ("lr", "hr", "arc", "psf_fwhm")}
    return {
        **keep,
        "pixel_scale": float(p.lr.pixel_scale),
        "hr_instrument": dataclasses.asdict(p.hr),
    }


def relative_noise(model: Upscaler, lr: np.ndarray, noise_sigma: Any = None) -> np.ndarray:
    """``log10(noise_sigma / (hi - lo))`` ``(N,)`` of LR images ``(N, h, w)`` as ``upscale``
    computes it for the conditioning vector (noise estimated where not given)."""
    from lenssr.data.normalize import noise_sigma_mad

    lr = np.asarray(lr, np.float64)
    if noise_sigma is None:
        sig = np.array([noise_sigma_mad(np.nan_to_num(im)) for im in lr])
    else:
        sig = np.broadcast_to(np.asarray(noise_sigma, np.float64), (lr.shape[0],))
    from lenssr.data.conditioning import relative_log_noise

    lo, hi = model.normalization.stats(lr, noise_sigma=sig)
    return relative_log_noise(sig, lo, hi)


def sigma_predictions(model: Upscaler, lr: np.ndarray, fwhm_pix: np.ndarray) -> tuple:
    """``(sr, sigma)`` of LR images ``(N, h, w)`` exactly as ``upscale(return_sigma=True)``
    gives them, each image with its own PSF ``fwhm_pix`` ``(N,)`` [LR pixels]."""
    srs, sigs = [], []
    for k in range(len(lr)):
        kw = {"psf_fwhm": float(fwhm_pix[k]), "pixel_scale": 1.0} if model.conditioned else {}
        sr, sig = model.upscale(lr[k : k + 1], return_sigma=True, **kw)
        srs.append(sr[0])
        sigs.append(sig[0])
    return np.stack(srs), np.stack(sigs)


def raw_predictions(model: Upscaler, lr: np.ndarray, fwhm_pix: np.ndarray) -> tuple:
    """``(sr, raw head sigma, log10_noise)`` of LR images ``(N, h, w)``, each with its own PSF
    ``fwhm_pix`` ``(N,)`` [LR pixels]; the raw sigma is the head's, before any calibration."""
    unc, scale = model.uncertainty, model.sigma_scale
    model.uncertainty, model.sigma_scale = {}, 1.0
    try:
        sr, sig = sigma_predictions(model, lr, fwhm_pix)
    finally:
        model.uncertainty, model.sigma_scale = unc, scale
    return sr, sig, relative_noise(model, lr)


def calibrate(
    checkpoint: str | Path,
    data: str | Path = "survey-mix",
    n: int | None = 300,
    seed: int = 7,
    write: bool = True,
) -> dict[str, Any]:
    """Fit the sigma head's calibration of ``checkpoint`` and, with ``write``, store it in the
    checkpoint's descriptor.

    ``data``: a preset name (``survey-mix``: ``n`` pairs rendered from ``seed`` with lensed-arc
    masks, each with its own LR instrument; the HR target noise from the preset) or a file of
    held-out pairs (.h5, folder, .zip; all pixels only, the HR target noise from the file's
    recorded preset when there is one). The fit uses all pixels (:func:`fit_calibration`); the
    arc masks only report the arc coverage. Never fit on the pairs a model is tested on.

    Returns ``{"coefficients", "target_noise", "n", "data", "before": coverage, "after":
    coverage}`` (coverage over all pixels; ``*_arc`` keys on the arc pixels where known).
    """
    from lenssr.errors import LenssrError
    from lenssr.inference.api import SRModel
    from lenssr.models import load_checkpoint

    module, descriptor = load_checkpoint(checkpoint)  # the sigma head runs in PyTorch
    model = SRModel(module, descriptor, name=Path(checkpoint).stem, device="cpu")
    if not model.has_sigma:
        raise LenssrError(f"{checkpoint}: the model has no sigma head to calibrate")
    arc = None
    if Path(data).exists():
        from lenssr.data import open_pairs

        source = open_pairs(data)
        count = len(source) if n is None else min(int(n), len(source))
        pairs = [source[i] for i in range(count)]
        lr = np.stack([p[0] for p in pairs])
        hr = np.stack([p[1] for p in pairs])
        fwhm = np.array([source.psf_fwhm_pix(i) for i in range(count)], dtype=np.float64)
        target = _target_of(source)
    else:
        rendered = render_calibration_set(str(data), 300 if n is None else int(n), seed)
        lr, hr, arc = rendered["lr"], rendered["hr"], rendered["arc"]
        fwhm = rendered["psf_fwhm"] / rendered["pixel_scale"]
        target = _target_dict(rendered["hr_instrument"])
        count = len(lr)
    sr, sig, u = raw_predictions(model, lr, fwhm)
    coef = fit_calibration(sr, sig, hr, u, None, target)
    unc = {"coefficients": coef, "target_noise": target}
    cal = calibrated_sigma(sr, sig, u, unc)
    info: dict[str, Any] = {**unc, "n": count, "data": str(data)}
    info["before"], info["after"] = coverage(sr, sig, hr), coverage(sr, cal, hr)
    if arc is not None:
        info["seed"] = seed
        info["before_arc"] = coverage(sr, sig, hr, arc)
        info["after_arc"] = coverage(sr, cal, hr, arc)
    if write:
        write_calibration(checkpoint, info)
    return info


def _target_dict(hr_instrument: dict[str, Any]) -> dict[str, Any]:
    keys = ("pixel_scale", "exposure_time", "sky_brightness", "read_noise")
    return {**{k: float(hr_instrument[k]) for k in keys}, "units": "e-/s/arcsec^2"}


def _target_of(source: Any) -> dict[str, Any] | None:
    hr = (getattr(source, "preset_config", None) or {}).get("hr")
    return _target_dict(hr) if hr else None


def write_calibration(checkpoint: str | Path, info: dict[str, Any]) -> Path:
    """Store ``uncertainty: {method, coefficients, target_noise, u0, calibration}`` in a
    checkpoint's descriptor (``info`` from :func:`calibrate`)."""
    path = Path(checkpoint)
    desc_path = path.with_suffix(".json")
    desc = json.loads(desc_path.read_text())
    rest = {k: v for k, v in info.items() if k not in ("coefficients", "target_noise")}
    desc["uncertainty"] = {
        "method": "head",
        "model": "sigma^2 = sum_t exp(2 (k0 + k1 (u - u0))) term_t; terms head, target, signal",
        "u0": U0,
        "coefficients": info["coefficients"],
        "target_noise": info["target_noise"],
        "calibration": rest,
    }
    desc_path.write_text(json.dumps(desc, indent=2) + "\n")
    return desc_path
