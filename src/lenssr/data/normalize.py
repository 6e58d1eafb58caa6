"""Per-image normalisation stored with every model and inverted on output.

Convention (``kind="noise"``, the instrument-aware models): ``lo`` is the image's background
level (sigma-clipped median, :func:`background_level`) and ``hi - lo`` is the brightest pixel's
height above it, but never less than ``5 sigma`` of the noise (:func:`noise_sigma_mad`), so a
faint, lens-light-free image is not stretched until its noise fills the range; the network is
told the noise level separately (:func:`lenssr.data.conditioning.condition_vector`).

Convention (``kind="minmax"``, the single-instrument models): for each LR input image,
``lo = min(LR)`` and ``hi = max(LR)``; the network sees ``(x - lo) / (hi - lo)`` and its
output ``y`` is returned as ``y * (hi - lo) + lo``.

Both kinds apply the LR image's ``lo, hi`` to the HR target during training, so the mapping is
scale- and offset-equivariant: a model trained on surface brightness in e-/s/arcsec^2 works
unchanged on counts, 16-bit PNG or FITS data, and its output comes back in the input's units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

_EPS = 1e-12


@dataclass(frozen=True)
class Normalization:
    """Per-image affine normalisation computed from the LR image."""

    kind: str = "minmax"

    def __post_init__(self) -> None:
        if self.kind not in ("minmax", "noise"):
            raise ValueError(f"unknown normalisation kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Normalization:
        return cls(**(d or {}))

    def stats(
        self, lr: ArrayLike, noise_sigma: ArrayLike | float | None = None
    ) -> tuple[ArrayLike, ArrayLike]:
        """``(lo, hi)`` per image over the last two axes, shaped to broadcast (``(..., 1, 1)``).

        ``noise_sigma`` (``kind="noise"`` only): the known noise level in the image's units
        (a number or one per image); estimated from the image when None.
        """
        if self.kind == "noise":
            arr = np.asarray(lr.detach().cpu() if isinstance(lr, torch.Tensor) else lr)
            flat = arr.reshape(-1, *arr.shape[-2:]).astype(np.float64)
            lo = np.array([background_level(im) for im in flat])
            if noise_sigma is None:
                sig = np.array([noise_sigma_mad(im) for im in flat])
            else:
                sig = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), lo.shape)
            peak = flat.max(axis=(-2, -1)) - lo
            span = np.maximum(peak, NOISE_FLOOR_SIGMAS * sig)
            span = np.where(span > _EPS, span, 1.0)
            shape = (*arr.shape[:-2], 1, 1)
            return lo.reshape(shape), (lo + span).reshape(shape)
        if isinstance(lr, torch.Tensor):
            flat = lr.flatten(-2)
            lo = flat.amin(-1)[..., None, None]
            hi = flat.amax(-1)[..., None, None]
            hi = torch.where(hi - lo > _EPS, hi, lo + 1.0)
        else:
            lo = np.min(lr, axis=(-2, -1), keepdims=True)
            hi = np.max(lr, axis=(-2, -1), keepdims=True)
            hi = np.where(hi - lo > _EPS, hi, lo + 1.0)
        return lo, hi

    @staticmethod
    def forward(x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
        return (x - lo) / (hi - lo)

    @staticmethod
    def inverse(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
        return y * (hi - lo) + lo


#: ``hi - lo`` is at least this many noise sigmas (``kind="noise"``).
NOISE_FLOOR_SIGMAS = 5.0


def background_level(image: np.ndarray, n_sigma: float = 3.0, iterations: int = 5) -> float:
    """Sigma-clipped median of a 2-D image (the sky / background level), in its units.

    Pixels further than ``n_sigma`` robust sigmas (1.4826 MAD) from the median are dropped, for
    ``iterations`` rounds; non-finite pixels are ignored.
    """
    data = np.asarray(image, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        return 0.0
    med = float(np.median(data))
    for _ in range(iterations):
        mad = 1.4826 * float(np.median(np.abs(data - med)))
        if mad <= 0:
            break
        keep = np.abs(data - med) < n_sigma * mad
        if keep.all() or keep.sum() < 8:
            break
        data = data[keep]
        med = float(np.median(data))
    return med


def noise_sigma_mad(image: np.ndarray, faint_fraction: float = 0.5) -> float:
    """Robust background noise sigma of a 2-D image, in its units.

    1.4826 MAD of the differences between horizontally and vertically adjacent pixels, divided
    by sqrt(2), over the pairs where both pixels are among the image's faintest
    ``faint_fraction`` (ranked by their 5x5 box mean): smooth light nearly cancels in the
    differences while uncorrelated pixel noise adds in quadrature, and keeping the faint pixels
    measures the sky-dominated noise rather than the Poisson noise of the lens galaxy. 0 for a
    constant image.
    """
    data = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return 0.0
    from scipy.ndimage import uniform_filter

    # select faint regions on a 5x5 box mean, so that the selection hardly biases the noise
    smooth = uniform_filter(np.where(finite, data, np.nanmedian(data)), size=5, mode="reflect")
    cut = np.quantile(smooth[finite], faint_fraction)
    faint = finite & (smooth <= cut)
    diffs = []
    if data.shape[-1] > 1:
        pair = faint[:, 1:] & faint[:, :-1]
        diffs.append((data[:, 1:] - data[:, :-1])[pair])
    if data.shape[-2] > 1:
        pair = faint[1:, :] & faint[:-1, :]
        diffs.append((data[1:, :] - data[:-1, :])[pair])
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    if d.size < 8:  # tiny or almost constant images: all finite neighbour pairs
        d = np.concatenate([np.diff(data, axis=-1).ravel(), np.diff(data, axis=-2).ravel()])
        d = d[np.isfinite(d)]
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))
