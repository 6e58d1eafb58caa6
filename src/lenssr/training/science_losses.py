"""Training losses for substructure science: data consistency and task-driven features.

Both are extra terms of the supervised loss (``loss:`` section of a training config), added to
the pixel loss on the SR image (the mean, for sigma-head models):

- ``chi2_weight`` x :func:`consistency_loss`: the SR patch re-observed by the LR instrument of
  its item (the project's degrade model without noise,
  :func:`lenssr.inference.consistency.reobserve`) must reproduce the LR patch within its noise.
  The term is the excess of the reduced chi-squared over 1 (a hinge, so an SR patch already
  consistent with the data is not pushed to fit the noise), averaged over the batch. Needs a
  mixture dataset that knows each item's instrument (``data.mixture``).
- ``feature_weight`` x :class:`FeatureLoss`: the distance of SR and HR in the feature space of a
  frozen network: ``features: PATH`` a substructure classifier trained on HR images
  (:func:`lenssr.science.classifier.save_classifier`, the task-driven perceptual loss) or
  ``features: encoder`` the frozen encoder of the ``init`` hybrid (the generic, lensing-image
  perceptual loss of the GAN).

Units: everything in the batch's normalised units; the noise maps are per-pixel LR sigma in the
same units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenssr.errors import ConfigError
from lenssr.inference.consistency import reobserve

__all__ = ["FeatureLoss", "consistency_loss", "crop_margin"]


def crop_margin(blur: Tensor | float, scale: int) -> int:
    """LR pixels at each patch edge where the re-observation sees the mirrored padding: the
    blur kernel's half width (5 sigma, as :func:`reobserve` truncates it) in LR pixels, plus one
    for the binning."""
    b = float(torch.as_tensor(blur).max()) if isinstance(blur, Tensor) else float(blur)
    return int(math.ceil((5.0 * b + 0.5) / scale)) + 1


def consistency_loss(sr: Tensor, lr: Tensor, noise: Tensor, blur: Tensor, scale: int) -> Tensor:
    """Batch mean of ``max(chi2_red - 1, 0)``, ``chi2_red`` the mean of
    ``((lr - A(sr)) / noise)^2`` over the patch interior (:func:`crop_margin`).

    ``sr (B, 1, s*p, s*p)``, ``lr`` and ``noise (B, 1, p, p)``, ``blur (B,)`` [HR pixels]. When
    the patch is too small for an interior, the whole patch is used.
    """
    pred = reobserve(sr.float(), scale, blur.double())
    m = crop_margin(blur, scale)
    if 2 * m >= lr.shape[-1] - 2 or 2 * m >= lr.shape[-2] - 2:
        m = 0
    inner = (slice(None), slice(None), slice(m, lr.shape[-2] - m), slice(m, lr.shape[-1] - m))
    z = (lr.float()[inner] - pred[inner]) / noise.float()[inner].clamp_min(1e-12)
    chi2 = (z * z).mean(dim=(1, 2, 3))
    return (chi2 - 1.0).clamp_min(0.0).mean()


class FeatureLoss(nn.Module):
    """``sum_l mean|phi_l(sr) - phi_l(hr)| / mean|phi_l(hr)|`` over the feature maps ``phi_l`` of
    a frozen network (each layer's distance relative to the HR features' size, so layers of
    any scale weigh alike).

    ``kind="classifier"``: ``network`` a :class:`~lenssr.science.classifier.SubstructureResNet`
    (its :meth:`features`); SR and HR are first mapped with the HR patch's own min..max to
    [0, 1], the classifier's input convention. ``kind="encoder"``: ``network`` a hybrid's
    frozen encoder (one feature map), on the normalised images as they are.
    """

    def __init__(self, network: nn.Module, kind: str) -> None:
        super().__init__()
        if kind not in ("classifier", "encoder"):
            raise ConfigError(f"loss.features kind must be classifier or encoder, got {kind!r}")
        self.network = network
        self.kind = kind
        self.network.requires_grad_(False)
        self.network.eval()

    def train(self, mode: bool = True) -> FeatureLoss:
        return super().train(False)  # the feature network stays frozen (BatchNorm statistics)

    def _features(self, x: Tensor) -> list[Tensor]:
        if self.kind == "classifier":
            return list(self.network.features(x))
        return [self.network(x)]

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        sr, hr = sr.float(), hr.float()
        if self.kind == "classifier":
            lo = hr.flatten(1).amin(1).view(-1, 1, 1, 1)
            span = (hr.flatten(1).amax(1).view(-1, 1, 1, 1) - lo).clamp_min(1e-12)
            sr, hr = (sr - lo) / span, (hr - lo) / span
        with torch.no_grad():
            target = self._features(hr)
        total = sr.new_zeros(())
        for f_sr, f_hr in zip(self._features(sr), target, strict=True):
            total = total + F.l1_loss(f_sr, f_hr) / f_hr.abs().mean().clamp_min(1e-8)
        return total


def build_feature_loss(spec: str, init_model: nn.Module | None) -> FeatureLoss:
    """The :class:`FeatureLoss` of ``loss.features``: ``encoder`` (needs the ``init`` hybrid)
    or the path of a saved substructure classifier."""
    if spec == "encoder":
        from lenssr.training.perceptual import EncoderFeatures

        if init_model is None:
            raise ConfigError("loss.features: encoder needs init (a pretrained hybrid)")
        return FeatureLoss(EncoderFeatures(init_model), "encoder")
    from lenssr.science.classifier import load_classifier

    return FeatureLoss(load_classifier(spec), "classifier")
