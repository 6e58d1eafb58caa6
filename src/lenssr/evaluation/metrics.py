"""Image-quality metrics: MSE, PSNR and SSIM under one stated convention.

Convention (the same for every model, table and figure in lenssr):

* Both the super-resolved image ``sr`` and the ground truth ``hr`` are mapped with the **HR
  image's own** ``lo, hi = min(hr), max(hr)`` to ``(x - lo) / (hi - lo)``, so the HR image spans
  exactly ``[0, 1]`` and ``data_range = 1``. The metrics are therefore independent of the physical
  units (e-/s/arcsec^2, counts, ...) and of any offset, and comparable between images of very
  different brightness. A constant HR image (``hi == lo``) uses ``hi = lo + 1``.
* ``mse`` is the mean of the squared difference of the mapped images.
* ``psnr = 10 log10(1 / mse)`` in dB. For identical images (``mse == 0``) it is ``inf``;
  summaries (:mod:`lenssr.evaluation.evaluator`) average PSNR over the *finite* values only,
  report how many images were infinite, and write ``inf`` as ``null`` in JSON.
* ``ssim`` follows scikit-image's ``structural_similarity`` defaults exactly: a 7x7 uniform
  window, ``K1 = 0.01``, ``K2 = 0.03``, sample covariance (``N / (N - 1)`` with ``N = 49``), the
  SSIM map averaged over the pixels whose window lies fully inside the image (a 3-pixel border is
  ignored). Images must be at least 7x7.

All numpy functions accept one image ``(H, W)`` (returning a ``float``) or a batch ``(N, H, W)``
(returning ``(N,)`` float64), and compute in float64. The torch versions take ``(B, 1, H, W)``
and return ``(B,)``; they match the numpy ones to better than 1e-6.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
DATA_RANGE = 1.0
_EPS = 1e-12

CONVENTIONS = {
    "normalisation": "SR and HR mapped with the HR image's own min..max to [0, 1]; data_range = 1",
    "mse": "mean squared difference of the mapped images",
    "psnr": "10*log10(1/mse) dB; inf for identical images (excluded from means, counted, null "
    "in JSON)",
    "ssim": "scikit-image structural_similarity defaults: 7x7 uniform window, K1=0.01, K2=0.03, "
    "sample covariance, mean over the valid (fully-windowed) region",
}


def _as_batch(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return float64 ``(N, H, W)`` copies of both images and whether the input was a single one."""
    sr = np.asarray(sr, dtype=np.float64)
    hr = np.asarray(hr, dtype=np.float64)
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr shapes differ: {sr.shape} vs {hr.shape}")
    if sr.ndim == 2:
        return sr[None], hr[None], True
    if sr.ndim == 3:
        return sr, hr, False
    raise ValueError(f"expected (H, W) or (N, H, W) images, got shape {sr.shape}")


def normalize_pair(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ``sr`` and ``hr`` ((H, W) or (N, H, W)) with each HR image's min..max to [0, 1].

    Returns float64 arrays of the input's shape; the HR image spans exactly [0, 1].
    """
    lo = np.min(hr, axis=(-2, -1), keepdims=True).astype(np.float64)
    hi = np.max(hr, axis=(-2, -1), keepdims=True).astype(np.float64)
    span = np.where(hi - lo > _EPS, hi - lo, 1.0)
    return (np.asarray(sr, np.float64) - lo) / span, (np.asarray(hr, np.float64) - lo) / span


def _unbatch(values: np.ndarray, single: bool) -> float | np.ndarray:
    return float(values[0]) if single else values


def mse(sr: np.ndarray, hr: np.ndarray) -> float | np.ndarray:
    """Mean squared error after the HR-min..max mapping (dimensionless, in units of the HR range^2).

    ``sr``, ``hr``: (H, W) -> float, or (N, H, W) -> (N,) float64.
    """
    sr, hr, single = _as_batch(sr, hr)
    srn, hrn = normalize_pair(sr, hr)
    return _unbatch(np.mean((srn - hrn) ** 2, axis=(-2, -1)), single)


def psnr(sr: np.ndarray, hr: np.ndarray) -> float | np.ndarray:
    """Peak signal-to-noise ratio in dB with ``data_range = 1`` after the HR-min..max mapping.

    ``inf`` where the mapped images are identical. (H, W) -> float, (N, H, W) -> (N,).
    """
    err = np.asarray(mse(sr, hr), dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(err > 0, 10.0 * np.log10(DATA_RANGE**2 / np.maximum(err, 1e-300)), np.inf)
    return float(out) if out.ndim == 0 else out


def ssim(sr: np.ndarray, hr: np.ndarray) -> float | np.ndarray:
    """Mean structural similarity (scikit-image default convention) after the HR mapping.

    ``sr``, ``hr``: (H, W) -> float, or (N, H, W) -> (N,) float64; both sides >= 7 pixels.
    """
    sr, hr, single = _as_batch(sr, hr)
    if min(sr.shape[-2:]) < WIN_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE}, got {sr.shape[-2:]}"
        )
    x, y = normalize_pair(sr, hr)
    size = (1, WIN_SIZE, WIN_SIZE)
    ux = uniform_filter(x, size=size)
    uy = uniform_filter(y, size=size)
    uxx = uniform_filter(x * x, size=size)
    uyy = uniform_filter(y * y, size=size)
    uxy = uniform_filter(x * y, size=size)
    s_map = _ssim_map(ux, uy, uxx, uyy, uxy)
    pad = (WIN_SIZE - 1) // 2
    valid = s_map[:, pad : s_map.shape[1] - pad, pad : s_map.shape[2] - pad]
    return _unbatch(valid.mean(axis=(-2, -1)), single)


def _ssim_map(ux, uy, uxx, uyy, uxy):
    """SSIM map from local means and second moments (numpy arrays or torch tensors)."""
    n_win = WIN_SIZE * WIN_SIZE
    cov_norm = n_win / (n_win - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    a1 = 2 * ux * uy + c1
    a2 = 2 * vxy + c2
    b1 = ux**2 + uy**2 + c1
    b2 = vx + vy + c2
    return (a1 * a2) / (b1 * b2)


def _normalize_torch(sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, H, W) tensors -> float64 copies mapped with each HR image's min..max."""
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 1:
        raise ValueError(f"expected matching (B, 1, H, W) tensors, got {sr.shape} and {hr.shape}")
    sr = sr.detach().to(torch.float64)
    hr = hr.detach().to(torch.float64)
    flat = hr.flatten(1)
    lo = flat.amin(1)[:, None, None, None]
    hi = flat.amax(1)[:, None, None, None]
    span = torch.where(hi - lo > _EPS, hi - lo, torch.ones_like(hi))
    return (sr - lo) / span, (hr - lo) / span


@torch.no_grad()
def mse_torch(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Batched :func:`mse`: (B, 1, H, W) -> (B,) float64, no gradient."""
    x, y = _normalize_torch(sr, hr)
    return ((x - y) ** 2).mean(dim=(1, 2, 3))


@torch.no_grad()
def psnr_torch(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Batched :func:`psnr` in dB: (B, 1, H, W) -> (B,) float64 (``inf`` for identical images)."""
    err = mse_torch(sr, hr)
    return 10.0 * torch.log10(DATA_RANGE**2 / err)


@torch.no_grad()
def ssim_torch(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Batched :func:`ssim`: (B, 1, H, W) -> (B,) float64, computed on the tensors' device.

    The 7x7 uniform window is an ``avg_pool2d`` without padding, which is exactly the valid
    region scikit-image averages over.
    """
    if min(sr.shape[-2:]) < WIN_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE}, got {sr.shape[-2:]}"
        )
    x, y = _normalize_torch(sr, hr)

    def box(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, WIN_SIZE, stride=1)

    s_map = _ssim_map(box(x), box(y), box(x * x), box(y * y), box(x * y))
    return s_map.mean(dim=(1, 2, 3))
