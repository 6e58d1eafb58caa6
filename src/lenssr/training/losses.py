"""Losses for supervised SR training: L1, MSE, Charbonnier, MSE + SSIM, and the pyramid loss.

All losses take ``(B, 1, H, W)`` tensors in normalised units (the LR's min..max mapped to
[0, 1]) and return a scalar tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenssr.errors import ConfigError, LenssrError
from lenssr.evaluation.metrics import psnr_torch
from lenssr.registry import Registry

LossFn = Callable[[Tensor, Tensor], Tensor]


def ssim_map(x: Tensor, y: Tensor, data_range: float | Tensor = 1.0, win_size: int = 7) -> Tensor:
    """SSIM map with a ``win_size`` uniform window, as scikit-image computes it.

    ``x, y``: ``(B, C, H, W)``; ``data_range``: a number or a ``(B, 1, 1, 1)`` tensor.
    Returns the map over the valid region (borders of ``(win_size - 1) // 2`` pixels cropped,
    as scikit-image does before averaging), shape ``(B, C, H - win_size + 1, W - win_size + 1)``.
    Uses the sample covariance (``N / (N - 1)``), ``K1 = 0.01``, ``K2 = 0.03``.
    """
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {x.shape}")
    x = x.float()
    y = y.float()
    n = win_size * win_size
    cov_norm = n / (n - 1)
    mu_x = F.avg_pool2d(x, win_size, stride=1)
    mu_y = F.avg_pool2d(y, win_size, stride=1)
    xx = F.avg_pool2d(x * x, win_size, stride=1)
    yy = F.avg_pool2d(y * y, win_size, stride=1)
    xy = F.avg_pool2d(x * y, win_size, stride=1)
    vx = cov_norm * (xx - mu_x * mu_x)
    vy = cov_norm * (yy - mu_y * mu_y)
    vxy = cov_norm * (xy - mu_x * mu_y)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * vxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (vx + vy + c2)
    return num / den


def ssim_torch(sr: Tensor, hr: Tensor) -> Tensor:
    """Per-image SSIM ``(B,)`` with the project convention: SR and HR mapped with the HR image's
    own min..max to [0, 1], ``data_range = 1``, 7x7 uniform window (scikit-image defaults).
    """
    lo = hr.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = hr.flatten(1).amax(1).view(-1, 1, 1, 1)
    span = torch.where(hi - lo > 1e-12, hi - lo, torch.ones_like(hi))
    return ssim_map((sr - lo) / span, (hr - lo) / span).flatten(1).mean(1)


def psnr_batch(sr: Tensor, hr: Tensor) -> Tensor:
    """Per-image PSNR ``(B,)`` in dB with the project convention (HR min..max to [0, 1]): the
    float32 version of :func:`lenssr.evaluation.metrics.psnr_torch`."""
    return psnr_torch(sr.float(), hr.float())


def charbonnier(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier loss ``mean(sqrt((x - y)^2 + eps^2))`` (a smooth L1)."""
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def mse_ssim(x: Tensor, y: Tensor, ssim_weight: float = 0.1) -> Tensor:
    """``MSE + w * (1 - SSIM)`` with SSIM on the normalised images (``data_range = 1``)."""
    mse = F.mse_loss(x, y)
    if ssim_weight == 0 or min(x.shape[-2:]) < 7:
        return mse
    return mse + ssim_weight * (1 - ssim_map(x, y).mean())


#: Pixel losses by ``loss.type``: each entry builds the loss from the ``loss`` section.
LOSSES = Registry("loss.type")


@LOSSES.register("l1")
def _l1(cfg: dict) -> LossFn:
    return F.l1_loss


@LOSSES.register("mse")
def _mse(cfg: dict) -> LossFn:
    return F.mse_loss


@LOSSES.register("charbonnier")
def _charbonnier(cfg: dict) -> LossFn:
    eps = float(cfg.get("charbonnier_eps", 1e-3))
    return lambda x, y: charbonnier(x, y, eps)


@LOSSES.register("mse_ssim")
def _mse_ssim(cfg: dict) -> LossFn:
    w = float(cfg.get("ssim_weight", 0.1))
    return lambda x, y: mse_ssim(x, y, w)


def make_pixel_loss(cfg: dict) -> LossFn:
    """The per-level loss named by ``cfg["type"]`` (one of ``LOSSES.names()``)."""
    try:
        return LOSSES.get(cfg["type"])(cfg)
    except LenssrError as exc:
        raise ConfigError(str(exc)) from None


def downsample_to(hr: Tensor, size: tuple[int, int]) -> Tensor:
    """Area (average-pooling) downsampling of ``hr`` ``(B, C, H, W)`` to ``size = (h, w)``.

    An exact integer factor uses ``avg_pool2d`` (each output pixel is the mean of a k x k block);
    other ratios use adaptive average pooling.
    """
    big = hr.shape[-2:]
    if tuple(big) == tuple(size):
        return hr
    if big[0] % size[0] == 0 and big[0] // size[0] == big[1] / size[1]:
        return F.avg_pool2d(hr, big[0] // size[0])
    return F.adaptive_avg_pool2d(hr, size)


def pyramid_loss(
    outputs: Sequence[Tensor],
    hr: Tensor,
    loss_fn: LossFn,
    weights: Sequence[float] | None = None,
) -> Tensor:
    """Multi-scale loss of a Laplacian-pyramid model.

    ``outputs``: the pyramid levels (x2, x4, ...), each ``(B, 1, h_l, w_l)``; every level no
    larger than ``hr`` is compared with ``hr`` area-downsampled to that level's size, and the
    weighted sum ``sum_l w_l * loss(out_l, down_l(hr)) / sum_l w_l`` is returned. Levels larger
    than ``hr`` have no target and are skipped (their weights are ignored).
    """
    if weights is not None and len(weights) != len(outputs):
        raise ConfigError(
            f"loss.pyramid_weights has {len(weights)} values but the model has "
            f"{len(outputs)} pyramid levels"
        )
    ws = list(weights) if weights is not None else [1.0] * len(outputs)
    total = hr.new_zeros(())
    wsum = 0.0
    for out, w in zip(outputs, ws, strict=True):
        h, wd = out.shape[-2:]
        if h > hr.shape[-2] or wd > hr.shape[-1] or w == 0:
            continue
        total = total + w * loss_fn(out.float(), downsample_to(hr, (h, wd)).float())
        wsum += w
    if wsum == 0:
        raise ConfigError("pyramid loss: no pyramid level matches the HR target size")
    return total / wsum


def gaussian_nll(mean: Tensor, log_sigma: Tensor, target: Tensor) -> Tensor:
    """Mean Gaussian negative log-likelihood ``0.5 ((target - mean) / sigma)^2 + log sigma``
    (constant dropped); ``log_sigma`` is clamped to [-12, 3] for stability. All ``(B, 1, H, W)``.
    """
    ls = log_sigma.float().clamp(-12.0, 3.0)
    z = (target.float() - mean.float()) * torch.exp(-ls)
    return (0.5 * z * z + ls).mean()


class SRLoss(nn.Module):
    """The training loss: ``model(lr)`` against ``hr`` (or every pyramid level when asked)."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.pixel = make_pixel_loss(cfg)
        self.pyramid = bool(cfg.get("pyramid", False))
        self.weights = cfg.get("pyramid_weights")
        self.sigma_weight = float(cfg.get("sigma_weight", 0.0) or 0.0)

    def forward(self, outputs: Tensor | Sequence[Tensor], hr: Tensor) -> Tensor:
        """``outputs``: the SR batch, or the list of pyramid levels when ``pyramid`` is on; a
        ``(B, 2, H, W)`` batch (sigma-head models) is the image and its log 1-sigma."""
        if not self.pyramid and outputs.shape[1] == 2:
            mean, log_sigma = outputs[:, :1], outputs[:, 1:]
            loss = self.pixel(mean.float(), hr.float())
            if self.sigma_weight > 0:
                loss = loss + self.sigma_weight * gaussian_nll(mean.detach(), log_sigma, hr)
            return loss
        if self.pyramid:
            return pyramid_loss(list(outputs), hr, self.pixel, self.weights)
        return self.pixel(outputs.float(), hr.float())
