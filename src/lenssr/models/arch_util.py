"""Building blocks shared by the architectures (BasicSR ``arch_util`` style).

All tensors are ``(B, C, H, W)`` feature maps or ``(B, 1, H, W)`` images in normalised units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.scales import check_scale, pyramid_levels, pyramid_scales

__all__ = [
    "ChannelAttention",
    "PixelShuffleUpsample",
    "ResidualBlockNoBN",
    "SRNet",
    "bicubic_upsample",
    "check_scale",
    "count_parameters",
    "crop_to",
    "default_init_weights",
    "make_layer",
    "pad_to_multiple",
    "pyramid_levels",
    "pyramid_scales",
    "quiet_init",
]


class SRNet(nn.Module):
    """Base of the super-resolution architectures: the attributes the rest of lenssr reads.

    The constructor sets ``scale`` (the default output scale) and ``scales`` (every scale
    ``forward(x, scale)`` serves, see :func:`check_scale`). ``size_multiple``: the input's sides
    must be multiples of it (1: any size); inference pads to it and checkpoints record it.
    """

    size_multiple = 1
    scale: int
    scales: tuple[int, ...]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def default_init_weights(module: nn.Module | list[nn.Module], scale: float = 1.0) -> None:
    """Kaiming-normal init of conv/linear weights, multiplied by ``scale`` (biases to zero).

    A ``scale`` below 1 (e.g. 0.1 in residual blocks) keeps deep residual stacks stable at the
    start of training.
    """
    modules = module if isinstance(module, list) else [module]
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.zero_()


@torch.no_grad()
def quiet_init(module: nn.Module, std: float = 0.0, bias: float = 0.0) -> None:
    """Start a layer (nearly) silent: weight ``N(0, std)`` (zero when ``std`` is 0), bias
    ``bias``.

    A residual branch, FiLM head or output head initialised like this leaves the network's
    skip path (the identity, the bicubic image) in charge at the start of training.
    """
    if std > 0:
        nn.init.normal_(module.weight, std=std)
    else:
        nn.init.zeros_(module.weight)
    if module.bias is not None:
        nn.init.constant_(module.bias, bias)


def make_layer(block: Callable[[], nn.Module], num: int) -> nn.Sequential:
    """``num`` fresh copies of ``block()`` in a ``nn.Sequential``."""
    return nn.Sequential(*(block() for _ in range(num)))


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic interpolation by an integer ``scale``: ``(B, C, h, w) -> (B, C, s*h, s*w)``.

    ``align_corners=False`` (pixel-area convention), no antialiasing, no clamping: values keep
    the input's (normalised) units and may slightly overshoot next to sharp edges.
    """
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def pad_to_multiple(
    x: torch.Tensor, multiple: int, mode: str = "reflect"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` on the bottom/right so ``H`` and ``W`` are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` (give it to :func:`crop_to`).
    ``mode="reflect"`` needs a pad smaller than the side; tiny inputs (e.g. 1x1, 2x2) fall back
    to ``"replicate"`` so no size is ever rejected.
    """
    h, w = x.shape[-2:]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    if mode == "reflect" and (pad_h >= h or pad_w >= w):
        mode = "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int], scale: int = 1) -> torch.Tensor:
    """Crop ``(B, C, H, W)`` back to ``(scale*size[0], scale*size[1])`` (top-left anchored)."""
    return x[..., : size[0] * scale, : size[1] * scale]


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (RCAN): ``x * sigmoid(MLP(avgpool(x)))``.

    ``(B, C, H, W) -> (B, C, H, W)``; global average pooling makes it size independent.
    """

    def __init__(self, num_feat: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(1, num_feat // reduction)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_feat, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class ResidualBlockNoBN(nn.Module):
    """EDSR residual block without batch norm: ``x + res_scale * [CA](conv(relu(conv(x))))``.

    ``(B, C, H, W) -> (B, C, H, W)``. With ``channel_attention=True`` a squeeze-excitation
    :class:`ChannelAttention` reweights the residual (RCAN's RCAB).
    """

    def __init__(
        self,
        num_feat: int = 64,
        res_scale: float = 1.0,
        channel_attention: bool = False,
        reduction: int = 8,
    ) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.attention = ChannelAttention(num_feat, reduction) if channel_attention else None
        default_init_weights([self.conv1, self.conv2], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.conv2(self.relu(self.conv1(x)))
        if self.attention is not None:
            res = self.attention(res)
        return x + res * self.res_scale


class PixelShuffleUpsample(nn.Sequential):
    """Sub-pixel upsampler: ``(B, C, h, w) -> (B, C, s*h, s*w)``.

    Powers of two use ``log2(s)`` steps of conv(C -> 4C) + PixelShuffle(2); 3 uses one step of
    conv(C -> 9C) + PixelShuffle(3). ``act`` (e.g. LeakyReLU) follows each step when given.
    """

    def __init__(self, scale: int, num_feat: int, act: Callable[[], nn.Module] | None = None):
        layers: list[nn.Module] = []
        if scale >= 1 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
                if act is not None:
                    layers.append(act())
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
            if act is not None:
                layers.append(act())
        else:
            raise LenssrError(f"upsampling scale {scale} is not supported (use 2, 3, 4 or 8)")
        super().__init__(*layers)
