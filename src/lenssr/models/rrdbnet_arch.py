"""RRDBNet, the ESRGAN generator (Wang et al. 2018), single channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.arch_util import SRNet, bicubic_upsample, check_scale, default_init_weights
from lenssr.models.registry import register_model


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; ``x + 0.2 * out``. ``(B, F, H, W) -> (B, F, H, W)``."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        g = num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * g, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        default_init_weights([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs and a ``0.2``-scaled skip."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


@register_model("esrgan")
class RRDBNet(SRNet):
    """ESRGAN generator: conv, ``num_block`` RRDBs + long skip, nearest-neighbour x2 steps.

    ``forward(x (B, 1, h, w), scale=None) -> (B, 1, s*h, s*w)``, ``scale`` 2 or 4. With
    ``global_residual=True`` (default) the output is ``bicubic(x) + network``, which makes
    training converge fast; ``False`` is the original ESRGAN output. Default sizes are the
    CPU-sized variant (``num_feat=32, num_block=6, num_grow_ch=16``); the paper's generator is
    ``64, 23, 32``.
    """

    def __init__(
        self,
        scale: int = 2,
        num_feat: int = 32,
        num_block: int = 6,
        num_grow_ch: int = 16,
        global_residual: bool = True,
    ) -> None:
        super().__init__()
        if scale not in (2, 4):
            raise LenssrError(f"esrgan: scale must be 2 or 4, got {scale}")
        self.scale = int(scale)
        self.scales = (self.scale,)
        self.global_residual = global_residual
        self.conv_first = nn.Conv2d(1, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_ups = nn.ModuleList(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1) for _ in range(self.scale.bit_length() - 1)
        )
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, 1, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 1, s*h, s*w)`` (``scale``: None or ``self.scale``)."""
        check_scale(self, scale)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self.conv_ups:
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        if self.global_residual:
            out = out + bicubic_upsample(x, self.scale)
        return out
