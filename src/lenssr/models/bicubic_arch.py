"""Bicubic interpolation as a (parameter-free) model: the reference every network must beat."""

from __future__ import annotations

import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.arch_util import bicubic_upsample, check_scale
from lenssr.models.registry import register_model


@register_model("bicubic")
class Bicubic(nn.Module):
    """``F.interpolate(mode="bicubic", align_corners=False)`` by an integer factor.

    ``forward(x (B, 1, h, w), scale=None) -> (B, 1, s*h, s*w)``; any positive integer ``scale``
    works, ``scales`` lists the usual ones. No parameters, nothing to train.
    """

    size_multiple = 1
    any_scale = True

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        if int(scale) < 1:
            raise LenssrError(f"bicubic: scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.scales = tuple(sorted({2, 4, self.scale}))

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        return bicubic_upsample(x, check_scale(self, scale))
