"""Data consistency: a super-resolved image, re-observed by the LR instrument, must reproduce the
LR input within its noise.

The re-observation is the project's degrade model without noise
(:func:`lenssr.simulation.degrade.degrade_array` with ``noise=False``): a Gaussian blur by the
difference of the LR and HR PSFs (``sigma = sqrt(sigma_LR^2 - sigma_HR^2)`` in HR pixels,
half-sample symmetric boundaries, truncated at 5 sigma), then ``scale x scale`` block means. It
is written in PyTorch, so it is differentiable (a training loss) and its adjoint comes from
autograd (the refinement below).

- :func:`reduced_chi2`: ``mean(((LR - A(SR)) / sigma)^2)`` per image; about 1 when SR explains
  the data down to the noise, far above 1 when it invents or loses light.
- :func:`refine`: the smallest change to SR (Landweber iterations on the noise-weighted residual,
  started from SR) that brings the reduced chi-squared down to the noise level (Morozov's
  discrepancy principle: it stops there, so it does not fit the noise). An image already
  consistent within the scatter of chi-squared itself (``1 + 3 sqrt(2 / n)`` for ``n`` LR
  pixels) is left as it is.

Units: every function works in the image's own units (any affine normalisation commutes with the
operator, whose kernel sums to one), with ``sigma`` the per-pixel LR noise in the same units.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["blur_sigma", "chi2_loss", "edge_margin", "reduced_chi2", "refine", "reobserve"]

_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def blur_sigma(lr_fwhm_pix: float, scale: int, hr_fwhm_pix: float) -> float:
    """Extra blur [HR pixels] from the HR target to the LR instrument.

    Args:
        lr_fwhm_pix: LR PSF FWHM [LR pixels].
        scale: SR scale (HR pixels per LR pixel).
        hr_fwhm_pix: HR target PSF FWHM [HR pixels] (``default``: 0.087" / 0.05" = 1.74).
    """
    lr_sigma = lr_fwhm_pix * scale / _FWHM
    hr_sigma = hr_fwhm_pix / _FWHM
    return math.sqrt(max(lr_sigma**2 - hr_sigma**2, 0.0))


def _kernels(sigmas: Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(B, 2R + 1)`` unit-sum Gaussians, each truncated at its own ``5 sigma`` (scipy.ndimage's
    ``truncate=5.0``) and zero beyond, ``R`` the widest radius."""
    radii = (5.0 * sigmas + 0.5).floor()
    r = int(radii.max())
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x[None] / sigmas[:, None]) ** 2) * (x[None].abs() <= radii[:, None])
    return (k / k.sum(dim=1, keepdim=True)).to(dtype=dtype, device=device)


def _symmetric_pad(x: Tensor, pad: int, dim: int) -> Tensor:
    """Half-sample symmetric padding (``d c b a | a b c d | d c b a``, scipy's ``reflect``)."""
    n = x.shape[dim]
    parts = []
    left, right = pad, pad
    while left > 0:  # pads wider than the image repeat the mirrored image
        take = min(left, n)
        flip = x.flip(dim) if len(parts) % 2 == 0 else x
        parts.insert(0, flip.narrow(dim, n - take, take))
        left -= take
    parts.append(x)
    count = 0
    while right > 0:
        take = min(right, n)
        flip = x.flip(dim) if count % 2 == 0 else x
        parts.append(flip.narrow(dim, 0, take))
        right -= take
        count += 1
    return torch.cat(parts, dim=dim)


def reobserve(hr: Tensor, scale: int, sigma: float | Tensor) -> Tensor:
    """The noiseless LR observation ``A(hr)`` of ``(B, 1, H, W)`` HR images.

    ``sigma`` is :func:`blur_sigma` [HR pixels], one number or one per image (``(B,)``, e.g. the
    instruments of a training batch); ``H`` and ``W`` beyond a multiple of ``scale`` are cropped
    at the end, as :func:`lenssr.simulation.degrade.degrade_array` does.
    """
    h, w = (hr.shape[-2] // scale) * scale, (hr.shape[-1] // scale) * scale
    x = hr[..., :h, :w]
    b = x.shape[0]
    sig = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(b).clone()
    blurred = sig > 0
    if bool(blurred.any()):
        k = _kernels(sig.clamp_min(1e-6), x.dtype, x.device)
        r = (k.shape[1] - 1) // 2
        k = torch.where(blurred[:, None].to(x.device), k, (torch.arange(2 * r + 1) == r).to(k))
        y = _symmetric_pad(x.reshape(1, b, h, w), r, -1)
        y = F.conv2d(y, k.view(b, 1, 1, -1), groups=b)
        y = F.conv2d(_symmetric_pad(y, r, -2), k.view(b, 1, -1, 1), groups=b)
        x = y.reshape(b, 1, h, w)
    return F.avg_pool2d(x, scale) if scale > 1 else x


def edge_margin(sigma: float | Tensor, scale: int) -> int:
    """LR pixels at each edge of a crop where :func:`reobserve` sees its mirrored padding
    instead of the true surroundings: the blur kernel's half width (5 sigma, as it truncates)
    in LR pixels, plus one for the binning (the widest of ``sigma`` [HR pixels])."""
    widest = float(torch.as_tensor(sigma).max())
    return int(math.ceil((5.0 * widest + 0.5) / scale)) + 1


def chi2_loss(
    sr: Tensor,
    lr: Tensor,
    noise: Tensor,
    scale: int,
    sigma: float | Tensor,
    margin: int | None = 0,
    excess: bool = False,
) -> Tensor:
    """Training loss of data consistency: the batch mean of each image's reduced chi-squared
    ``mean(((lr - A(sr)) / noise)^2)``.

    ``sr`` ``(B, 1, H, W)`` and ``lr`` ``(B, 1, h, w)`` in the same (normalised) units, ``noise``
    the per-pixel LR noise sigma in those units (broadcastable to ``lr``), ``sigma`` the blur
    [HR pixels] of each image. ``margin``: LR pixels left out at each edge (None:
    :func:`edge_margin`, for training crops of larger images; the whole image when the crop
    is too small for it). ``excess``: the batch mean of ``max(chi2_red - 1, 0)`` instead, a
    hinge that stops pulling once an image is consistent with its data, so it does not push
    the output to fit the noise. The true HR image scores about 1 (``excess``: about 0).
    """
    pred = reobserve(sr.float(), scale, torch.as_tensor(sigma).double())
    m = edge_margin(sigma, scale) if margin is None else int(margin)
    if 2 * m >= min(lr.shape[-2:]) - 2:
        m = 0
    h, w = lr.shape[-2:]
    z = (lr.float() - pred) / torch.as_tensor(noise).float().clamp_min(1e-12).expand_as(lr)
    chi2 = (z[..., m : h - m, m : w - m] ** 2).mean(dim=(1, 2, 3))
    return (chi2 - 1.0).clamp_min(0.0).mean() if excess else chi2.mean()


def _as_batch(a: np.ndarray | Tensor) -> Tensor:
    t = torch.as_tensor(np.array(a, dtype=np.float64))
    return t.reshape(-1, 1, *t.shape[-2:])


def reduced_chi2(
    lr: np.ndarray, sr: np.ndarray, scale: int, sigma_blur: float, noise: np.ndarray | float
) -> np.ndarray:
    """Reduced chi-squared ``mean(((lr - A(sr)) / noise)^2)`` per image.

    Args:
        lr: ``(h, w)`` or ``(N, h, w)`` LR images.
        sr: ``(s*h, s*w)`` or ``(N, s*h, s*w)`` super-resolved images, same units.
        scale: SR scale.
        sigma_blur: :func:`blur_sigma` [HR pixels].
        noise: per-pixel LR noise sigma (broadcastable to ``lr``), same units.

    Returns:
        ``(N,)`` float64.
    """
    y, x = _as_batch(lr), _as_batch(sr)
    s = _as_batch(np.broadcast_to(np.asarray(noise, dtype=np.float64), np.shape(lr)))
    with torch.no_grad():
        r = (y - reobserve(x, scale, sigma_blur)) / s
    return (r**2).mean(dim=(1, 2, 3)).numpy()


def refine(
    lr: np.ndarray,
    sr: np.ndarray,
    scale: int,
    sigma_blur: float,
    noise: np.ndarray | float,
    target: float | None = None,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Bring ``sr`` to data consistency: Landweber steps ``x += tau A^T W (lr - A x)`` from
    ``x = sr`` (``W = 1 / noise^2``, ``tau = 1 / ||A^T W A||`` bound), per image until its
    reduced chi-squared is at most ``target`` (default ``1 + 3 sqrt(2 / n)``, ``n`` the LR pixels
    of an image: three standard deviations of the reduced chi-squared of pure noise) or after
    ``max_iter`` steps.

    Only what the data constrain changes (the range of ``A^T``: scales the LR image resolves);
    detail beyond the LR band stays the network's. Returns ``(refined, chi2)`` with the final
    reduced chi-squared ``(N,)``; shapes and dtype (float32) as ``sr``.
    """
    shape = np.shape(sr)
    y, x = _as_batch(lr), _as_batch(sr).clone()
    s = _as_batch(np.broadcast_to(np.asarray(noise, dtype=np.float64), np.shape(lr)))
    w = 1.0 / s**2
    if target is None:
        target = 1.0 + 3.0 * math.sqrt(2.0 / (y.shape[-1] * y.shape[-2]))
    # ||A||^2 <= 1 / scale^2 (block mean; the blur's norm is <= 1), so tau * ||A^T W A|| < 2.
    tau = float(scale**2 / w.amax())
    active = torch.ones(x.shape[0], dtype=torch.bool)
    chi2 = torch.empty(x.shape[0], dtype=torch.float64)
    for _ in range(max_iter + 1):
        xa = x[active].requires_grad_(True)
        r = y[active] - reobserve(xa, scale, sigma_blur)
        c = ((r / s[active]) ** 2).mean(dim=(1, 2, 3))
        chi2[active] = c.detach()
        done = c.detach() <= target
        if bool(done.all()) or _ == max_iter:
            break
        (grad,) = torch.autograd.grad(0.5 * (w[active] * r**2).sum(), xa)
        step = torch.where(done.view(-1, 1, 1, 1), 0.0, tau)
        x[active] = (xa - step * grad).detach()
        idx = active.nonzero().view(-1)
        active[idx[done]] = False
    return x.detach().numpy().astype(np.float32).reshape(shape), chi2.numpy()
