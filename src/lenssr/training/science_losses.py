"""The feature loss of supervised training: task-driven (a substructure classifier) or generic.

``loss.feature_weight`` x :class:`FeatureLoss` is added to the pixel loss on the SR image (the
mean, for sigma-head models): the distance of SR and HR in the feature space of a frozen
network, ``loss.features: PATH`` a substructure classifier trained on HR images
(:func:`lenssr.science.classifier.save_classifier`, the task-driven perceptual loss) or
``loss.features: encoder`` the frozen encoder of the ``init`` hybrid (the generic, lensing-image
perceptual loss of the GAN). Its companion for substructure science, the data-consistency term
``loss.chi2_weight``, is :func:`lenssr.inference.consistency.chi2_loss`.

Units: the batch's normalised units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenssr.errors import ConfigError

__all__ = ["FeatureLoss", "build_feature_loss"]


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
