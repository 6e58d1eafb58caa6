"""EDSR (Lim et al. 2017): residual blocks without batch norm, sub-pixel upsampling."""

from __future__ import annotations

import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.arch_util import (
    PixelShuffleUpsample,
    ResidualBlockNoBN,
    SRNet,
    bicubic_upsample,
    check_scale,
)
from lenssr.models.registry import register_model


@register_model("edsr")
class EDSR(SRNet):
    """EDSR for single-channel images, output = bicubic(x) + network residual.

    Defaults are EDSR-baseline (``num_feat=64``, ``num_block=16``, ``res_scale=1``; ~1.37 M
    parameters at x2). EDSR-large is ``num_feat=256, num_block=32, res_scale=0.1``.
    ``forward(x (B, 1, h, w), scale=None) -> (B, 1, s*h, s*w)``, ``scale`` in 2, 3, 4.
    """

    def __init__(
        self, scale: int = 2, num_feat: int = 64, num_block: int = 16, res_scale: float = 1.0
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise LenssrError(f"edsr: scale must be 2, 3 or 4, got {scale}")
        self.scale = int(scale)
        self.scales = (self.scale,)
        self.conv_first = nn.Conv2d(1, num_feat, 3, 1, 1)
        self.body = nn.Sequential(
            *(ResidualBlockNoBN(num_feat, res_scale) for _ in range(num_block))
        )
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = PixelShuffleUpsample(self.scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 1, s*h, s*w)`` (``scale``: None or ``self.scale``)."""
        check_scale(self, scale)
        feat = self.conv_first(x)
        feat = feat + self.conv_after_body(self.body(feat))
        return bicubic_upsample(x, self.scale) + self.conv_last(self.upsample(feat))
