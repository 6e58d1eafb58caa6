"""SRGAN-style discriminator (Ledig et al. 2017), made size-agnostic by global pooling.

A 3x3 convolution (``num_feat``) + LeakyReLU(0.2), then ``num_blocks`` blocks of
[3x3 stride-2 conv, (BN), LReLU, 3x3 stride-1 conv doubling the channels, (BN), LReLU],
global average pooling (so any input size works) and a dense head
``Linear(C, dense_feat) -> LReLU -> Linear(dense_feat, 1)``: one logit per image.
"""

from __future__ import annotations

import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.training.discriminators import DISCRIMINATORS


@DISCRIMINATORS.register("srgan")
class SRGANDiscriminator(nn.Module):
    """``(B, in_channels, H, W) -> (B, 1)`` logits (no sigmoid) for any ``H, W >= 1``.

    Args:
        in_channels: image channels (1 for lensing images).
        num_feat: filters of the first convolution (doubling per block, capped at ``max_feat``).
        num_blocks: number of stride-2 blocks (the depth; SRGAN uses 4).
        max_feat: channel cap.
        dense_feat: width of the hidden dense layer (SRGAN: 1024).
        batch_norm: batch norm in the blocks (turn it off for WGAN-GP).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_feat: int = 64,
        num_blocks: int = 4,
        max_feat: int = 512,
        dense_feat: int = 1024,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if num_blocks < 1 or num_feat < 1 or dense_feat < 1:
            raise LenssrError("srgan discriminator: num_blocks, num_feat, dense_feat must be >= 1")

        def norm(c: int) -> nn.Module:
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        def lrelu() -> nn.Module:
            return nn.LeakyReLU(0.2, inplace=True)

        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_feat, 3, 1, 1), lrelu()]
        ch = num_feat
        for i in range(num_blocks):
            nxt = min(num_feat * 2 ** (i + 1), max_feat)
            layers += [nn.Conv2d(ch, ch, 3, 2, 1, bias=not batch_norm), norm(ch), lrelu()]
            layers += [nn.Conv2d(ch, nxt, 3, 1, 1, bias=not batch_norm), norm(nxt), lrelu()]
            ch = nxt
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(ch, dense_feat), lrelu(), nn.Linear(dense_feat, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))
