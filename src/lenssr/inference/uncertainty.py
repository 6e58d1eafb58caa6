"""Per-pixel uncertainty of SR images: calibration and coverage.

Two estimates of the 1-sigma of an SR pixel are available:

- ``head``: the model's sigma head (a Gaussian likelihood trained beside the image, so it holds
  both the propagated observation noise and the model's own error), ``upscale(...,
  return_sigma=True)``;
- ``tta``: the spread (standard deviation) of the 8 rotated/flipped predictions, for any model.

Either is multiplied by one calibration factor fitted on held-out pairs, chosen so that the
1-sigma and 2-sigma coverages (the fraction of pixels whose true HR value lies within
1 and 2 sigma of the SR value) are together closest to the Gaussian 68.27% and 95.45%.
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
    "calibrate",
    "calibration_factor",
    "coverage",
    "predict_with_sigma",
    "reliability",
    "write_calibration",
]

GAUSS_1SIGMA = 0.682689492
GAUSS_2SIGMA = 0.954499736


def predict_with_sigma(
    model: Upscaler, lr: np.ndarray, method: str = "head", **kw: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(sr, sigma)`` ``(N, H, W)`` of ``lr`` ``(N, h, w)`` by ``method`` (``head``,
    ``head+tta`` or ``tta``), uncalibrated for ``tta`` (factor 1)."""
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


def reliability(
    sr: np.ndarray,
    sigma: np.ndarray,
    hr: np.ndarray,
    mask: np.ndarray | None = None,
    levels: int = 10,
) -> list[tuple[float, float]]:
    """``(expected, observed)`` coverage of central Gaussian intervals at ``levels`` confidence
    levels (0.1 ... 0.95 style, evenly spaced in (0, 1)): the reliability diagram."""
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


def calibrate(
    checkpoint: str | Path, data: str | Path, n: int | None = 200, write: bool = True
) -> dict[str, Any]:
    """Fit the sigma head's calibration factor of ``checkpoint`` on the pairs of ``data``
    (held-out pairs the model was not trained on; each pair's recorded LR instrument is given
    to the model) and, with ``write``, store it in the checkpoint's descriptor.

    Returns ``{"sigma_scale", "n", "data", "before": coverage, "after": coverage}``.
    """
    from lenssr.data import open_pairs
    from lenssr.errors import LenssrError
    from lenssr.evaluation.evaluator import upscale_pairs
    from lenssr.inference.api import SRModel
    from lenssr.models import load_checkpoint

    module, descriptor = load_checkpoint(checkpoint)  # the sigma head runs in PyTorch
    model = SRModel(module, descriptor, name=Path(checkpoint).stem, device="cpu")
    if not model.has_sigma:
        raise LenssrError(f"{checkpoint}: the model has no sigma head to calibrate")
    model.sigma_scale = 1.0
    source = open_pairs(data)
    count = len(source) if n is None else min(int(n), len(source))
    pairs = [source[i] for i in range(count)]
    lr = np.stack([p[0] for p in pairs])
    hr = np.stack([p[1] for p in pairs])
    sr, sigma = upscale_pairs(model, lr, source, range(count), return_sigma=True)
    factor = calibration_factor(sr, sigma, hr)
    info = {
        "sigma_scale": factor,
        "n": count,
        "data": str(data),
        "before": coverage(sr, sigma, hr),
        "after": coverage(sr, factor * sigma, hr),
    }
    if write:
        write_calibration(checkpoint, factor, {k: v for k, v in info.items() if k != "sigma_scale"})
    return info


def write_calibration(checkpoint: str | Path, factor: float, info: dict[str, Any]) -> Path:
    """Store ``uncertainty: {sigma_scale, method, calibration}`` in a checkpoint's descriptor."""
    path = Path(checkpoint)
    desc_path = path.with_suffix(".json")
    desc = json.loads(desc_path.read_text())
    desc["uncertainty"] = {"sigma_scale": float(factor), "method": "head", "calibration": info}
    desc_path.write_text(json.dumps(desc, indent=1))
    return desc_path
