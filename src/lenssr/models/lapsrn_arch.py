"""LapSRN (Lai et al. 2017): a Laplacian pyramid of x2 levels, every level an output."""

from __future__ import annotations

import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.arch_util import (
    SRNet,
    bicubic_upsample,
    check_scale,
    pyramid_levels,
    pyramid_scales,
)
from lenssr.models.registry import register_model


def _bilinear_kernel(size: int) -> torch.Tensor:
    """``(size, size)`` bilinear interpolation filter for a transposed convolution."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    return filt[:, None] * filt[None, :]


@register_model("lapsrn")
class LapSRN(SRNet):
    """LapSRN with a feature branch and an image branch.

    Feature branch: conv(1 -> F) + LeakyReLU, then per level ``num_conv`` conv+LeakyReLU layers
    and a x2 feature upsampling (``upsample="deconv"``: 4x4 stride-2 transposed conv as in the
    paper, or ``"pixelshuffle"``). Each level predicts a residual image (conv F -> 1) added to the
    x2-upsampled image of the previous level (``image_upsample="bicubic"``, or ``"deconv"``: a
    learned transposed conv initialised to bilinear as in the paper).

    ``forward(x (B, 1, h, w), scale=None) -> (B, 1, s*h, s*w)`` computes only the levels needed;
    ``forward_pyramid(x) -> [x2, x4, ...]``. Defaults: 64 features, 10 conv per level, 2 levels
    (scales 2 and 4), default output scale 2.
    """

    def __init__(
        self,
        scale: int = 2,
        num_levels: int = 2,
        num_feat: int = 64,
        num_conv: int = 10,
        upsample: str = "deconv",
        image_upsample: str = "bicubic",
    ) -> None:
        super().__init__()
        if num_levels < 1:
            raise LenssrError(f"lapsrn: num_levels must be >= 1, got {num_levels}")
        if upsample not in ("deconv", "pixelshuffle"):
            raise LenssrError(
                f"lapsrn: upsample must be 'deconv' or 'pixelshuffle', not {upsample!r}"
            )
        if image_upsample not in ("bicubic", "deconv"):
            raise LenssrError(
                f"lapsrn: image_upsample must be 'bicubic' or 'deconv', not {image_upsample!r}"
            )
        self.scales = pyramid_scales(num_levels)
        self.scale = check_scale(self, scale)
        self.image_upsample = image_upsample

        def lrelu() -> nn.Module:
            return nn.LeakyReLU(0.2, inplace=True)

        self.conv_in = nn.Sequential(nn.Conv2d(1, num_feat, 3, 1, 1), lrelu())
        self.feature_levels = nn.ModuleList()
        self.residual_convs = nn.ModuleList()
        self.image_ups = nn.ModuleList()
        for _ in range(num_levels):
            layers: list[nn.Module] = []
            for _ in range(num_conv):
                layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), lrelu()]
            if upsample == "deconv":
                layers += [nn.ConvTranspose2d(num_feat, num_feat, 4, 2, 1), lrelu()]
            else:
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2), lrelu()]
            self.feature_levels.append(nn.Sequential(*layers))
            self.residual_convs.append(nn.Conv2d(num_feat, 1, 3, 1, 1))
            if image_upsample == "deconv":
                deconv = nn.ConvTranspose2d(1, 1, 4, 2, 1, bias=False)
                with torch.no_grad():
                    deconv.weight.copy_(_bilinear_kernel(4)[None, None])
                self.image_ups.append(deconv)

    def _up_image(self, level: int, img: torch.Tensor) -> torch.Tensor:
        if self.image_upsample == "deconv":
            return self.image_ups[level](img)
        return bicubic_upsample(img, 2)

    def forward_pyramid(self, x: torch.Tensor, num_levels: int | None = None) -> list[torch.Tensor]:
        """``(B, 1, h, w) -> [(B, 1, 2h, 2w), (B, 1, 4h, 4w), ...]`` (all levels by default)."""
        n = len(self.feature_levels) if num_levels is None else num_levels
        feat = self.conv_in(x)
        img = x
        outputs = []
        for level in range(n):
            feat = self.feature_levels[level](feat)
            img = self._up_image(level, img) + self.residual_convs[level](feat)
            outputs.append(img)
        return outputs

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 1, s*h, s*w)`` for ``s`` in ``self.scales`` (default ``scale``)."""
        return self.forward_pyramid(x, pyramid_levels(self, scale))[-1]
