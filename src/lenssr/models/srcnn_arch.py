"""SRCNN (Dong et al. 2014, 9-5-5 variant) on the bicubic-upsampled image, residual to bicubic."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.arch_util import SRNet, bicubic_upsample, check_scale, quiet_init
from lenssr.models.registry import register_model


@register_model("srcnn")
class SRCNN(SRNet):
    """Three convolutions (patch extraction, non-linear mapping, reconstruction).

    ``x (B, 1, h, w)`` is upsampled bicubically to ``(B, 1, s*h, s*w)``; the network predicts a
    residual added to it. Default: 64-32 filters with kernels 9-5-5 ("SRCNN 9-5-5"), 57 k
    parameters. Zero padding keeps the size ("same" convolutions).
    """

    def __init__(
        self,
        scale: int = 2,
        num_feat: int = 64,
        num_feat2: int = 32,
        kernel_sizes: Sequence[int] = (9, 5, 5),
    ) -> None:
        super().__init__()
        ks = tuple(int(k) for k in kernel_sizes)
        if len(ks) != 3 or any(k % 2 == 0 or k < 1 for k in ks):
            raise LenssrError(f"srcnn: kernel_sizes must be three odd integers, got {ks}")
        if int(scale) < 1:
            raise LenssrError(f"srcnn: scale must be a positive integer, got {scale}")
        self.scale = int(scale)
        self.scales = (self.scale,)
        self.body = nn.Sequential(
            nn.Conv2d(1, num_feat, ks[0], padding=ks[0] // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat, num_feat2, ks[1], padding=ks[1] // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat2, 1, ks[2], padding=ks[2] // 2),
        )
        quiet_init(self.body[-1], std=1e-3)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 1, s*h, s*w)`` (``scale``: None or ``self.scale``)."""
        up = bicubic_upsample(x, check_scale(self, scale))
        return up + self.body(up)
