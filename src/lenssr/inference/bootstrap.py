"""The re-observation bootstrap: how much an SR image moves when its own observation is redrawn.

The SR image plays the true sky. It is re-observed by the LR instrument without noise
(:func:`lenssr.inference.consistency.reobserve`: the PSF difference, then the pixel binning),
and the residuals of the real observation, ``r = lr - A(sr)``, are given random signs (a wild
bootstrap: every LR pixel keeps its own noise level, Poisson noise of arcs and lens light
included, with no noise model and in any units). The network super-resolves each of the
``draws`` new observations ``A(sr) + eps_k r``, and the spread of ``sr*_k - sr`` is measured
per HR pixel:

- ``b2``: ``mean_k (sr*_k - sr)^2``, the noise response plus the loss of the image's own detail;
- ``bn2``: the variance of the ``sr*_k`` around their mean, the noise response alone.

Both follow the image's own morphology, PSF and noise, which a network trained on other sources
and instruments cannot know; the post-hoc variance network (:mod:`lenssr.inference.
variance_net`) takes them as features. Each is smoothed by a Gaussian of :data:`SMOOTH` HR
pixels (a few draws give a noisy variance per pixel). The signs come from ``seed`` alone, so
the same image gives the same map wherever it sits in a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from lenssr.inference.consistency import blur_sigma, reobserve

__all__ = ["SMOOTH", "bootstrap_terms"]

#: Gaussian smoothing [HR pixels] of the per-pixel bootstrap variances.
SMOOTH = 1.0
#: Most HR pixels of draws super-resolved in one call (bounded memory on large images).
_MAX_DRAW_PIXELS = 8 * 160 * 160


def bootstrap_terms(
    upscale: Callable[[np.ndarray, float], np.ndarray],
    lr: np.ndarray,
    sr: np.ndarray,
    scale: int,
    psf_fwhm_pix: float,
    hr_fwhm_pix: float,
    noise_sigma: np.ndarray,
    draws: int = 8,
    seed: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(b2, bn2)`` ``(N, H, W)`` float32 of the module docstring, in the image's units squared.

    Args:
        upscale: ``upscale(lr_batch (K, h, w), noise_sigma) -> (K, H, W)``, the model exactly as
            it made ``sr`` (same instrument, no sigma).
        lr: the LR images ``(N, h, w)`` (finite), any units.
        sr: their SR images ``(N, H, W)``, same units, ``H = scale h``.
        scale: SR scale.
        psf_fwhm_pix: LR PSF FWHM [LR pixels].
        hr_fwhm_pix: the HR target's PSF FWHM [HR pixels].
        noise_sigma: ``(N,)`` LR noise sigma of each image (the conditioning's).
        draws: bootstrap draws per image (at least 2).
        seed: seed of the residuals' signs (``numpy.random.default_rng``'s), the same for every
            image.
    """
    if draws < 2:
        raise ValueError(f"the bootstrap needs at least 2 draws, got {draws}")
    lr = np.asarray(lr, np.float64)
    sr64 = np.asarray(sr, np.float64)
    n, hh, ww = sr64.shape
    blur = blur_sigma(float(psf_fwhm_pix), scale, float(hr_fwhm_pix))
    with torch.no_grad():
        mu = reobserve(torch.from_numpy(sr64[:, None]), scale, blur)[:, 0].numpy()
    per_call = max(1, _MAX_DRAW_PIXELS // (hh * ww))
    b2 = np.zeros((n, hh, ww))
    bn2 = np.zeros((n, hh, ww))
    for i in range(n):
        base, resid = mu[i], lr[i] - mu[i]
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(draws, *resid.shape))
        acc, acc2 = np.zeros((hh, ww)), np.zeros((hh, ww))
        for k0 in range(0, draws, per_call):
            batch = (base[None] + signs[k0 : k0 + per_call] * resid[None]).astype(np.float32)
            d = np.asarray(upscale(batch, float(noise_sigma[i])), np.float64) - sr64[i][None]
            acc += d.sum(0)
            acc2 += (d * d).sum(0)
        mean = acc / draws
        b2[i] = acc2 / draws
        bn2[i] = np.clip(b2[i] - mean * mean, 0.0, None) * draws / (draws - 1)
    b2 = gaussian_filter(b2, (0, SMOOTH, SMOOTH))
    bn2 = gaussian_filter(bn2, (0, SMOOTH, SMOOTH))
    return b2.astype(np.float32), bn2.astype(np.float32)
