"""PatchGAN discriminator (pix2pix ``NLayerDiscriminator``): one real/fake logit per patch.

``num_layers`` stride-2 4x4 convolutions (channels ``num_feat * 2**i``, capped at
``max_feat``), one stride-1 4x4 convolution, and a 4x4 convolution to one channel. Every
output pixel judges a receptive field of ``receptive_field`` input pixels (70 for the classic
``num_layers = 3``); the output map grows with the input: ``(B, 1, ~H / 2**n - 2, ...)``.
"""

from __future__ import annotations

import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.training.discriminators import DISCRIMINATORS


@DISCRIMINATORS.register("patchgan")
class PatchGANDiscriminator(nn.Module):
    """``(B, in_channels, H, W) -> (B, 1, h', w')`` per-patch logits (no sigmoid).

    Args:
        in_channels: image channels (1 for lensing images).
        num_feat: filters of the first convolution (doubling per stride-2 layer).
        num_layers: number of stride-2 layers (the depth).
        max_feat: channel cap.
        batch_norm: batch norm after every convolution but the first and the last (turn it
            off for WGAN-GP, whose penalty is per sample).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_feat: int = 64,
        num_layers: int = 3,
        max_feat: int = 512,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1 or num_feat < 1:
            raise LenssrError("patchgan: need num_layers >= 1 and num_feat >= 1")
        self.num_layers = num_layers

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, num_feat, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = num_feat
        for i in range(1, num_layers):
            nxt = min(num_feat * 2**i, max_feat)
            layers += [nn.Conv2d(ch, nxt, 4, 2, 1, bias=not batch_norm), norm(nxt)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            ch = nxt
        nxt = min(num_feat * 2**num_layers, max_feat)
        layers += [nn.Conv2d(ch, nxt, 4, 1, 1, bias=not batch_norm), norm(nxt)]
        layers += [nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(nxt, 1, 4, 1, 1)]
        self.body = nn.Sequential(*layers)
        self.min_size = self._min_size()

    def output_size(self, size: int) -> int:
        """Side of the logit map for an input side of ``size`` pixels."""
        for _ in range(self.num_layers):
            size = (size + 2 - 4) // 2 + 1
        return size - 2

    def _min_size(self) -> int:
        size = 1
        while self.output_size(size) < 1:
            size += 1
        return size

    @property
    def receptive_field(self) -> int:
        """Input pixels seen by one output logit (per side)."""
        rf = 1 + 3 + 3  # the two stride-1 4x4 convolutions
        for _ in range(self.num_layers):
            rf = (rf - 1) * 2 + 4
        return rf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            raise LenssrError(
                f"patchgan with num_layers={self.num_layers} needs inputs of at least "
                f"{self.min_size}x{self.min_size} px, got {tuple(x.shape[-2:])}"
            )
        return self.body(x)
