"""The lenssr hybrid: SRCNN-like stem -> residual blocks with channel attention -> vision
transformer -> LapSRN-style progressive upsampling.

Stages (each sized by the constructor; ``use_*`` flags switch stages off for ablations):

1. shallow features: conv ``shallow_kernel`` x ``shallow_kernel`` (1 -> F) + ReLU + conv 3x3;
2. ``num_res_blocks`` EDSR blocks (no batch norm, ``res_scale``) with squeeze-excitation
   channel attention, a conv, and a long skip (``use_residual``);
3. a ViT stage on the feature map (``use_transformer``): ``patch_size`` patches -> tokens of
   ``embed_dim``, learned positional embeddings on a ``pos_grid`` x ``pos_grid`` grid bilinearly
   resized to the token grid (any image size), ``depth`` pre-norm blocks (multi-head
   self-attention via ``F.scaled_dot_product_attention`` + GELU MLP), tokens -> feature map by a
   linear layer and pixel shuffle, then a zero-initialised 3x3 conv (so the stage starts as the
   identity), added to the stage input. Sizes that are not multiples of ``patch_size`` are
   reflect-padded and cropped back;
4. a Laplacian pyramid of ``num_levels`` x2 levels (``use_pyramid``): each level upsamples the
   features (conv + pixel shuffle + LeakyReLU), predicts a residual image and adds it to the
   bicubic x2 of the previous level's image, so one model serves x2, x4, ... Without the
   pyramid: one conv + pixel shuffle straight to ``scale``, added to ``bicubic(x, scale)``.

:meth:`HybridSR.encode` (stages 1-3) and :meth:`HybridSR.decode_pyramid` (stage 4) are the
encoder/decoder split used by the denoising-autoencoder pretraining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lenssr.errors import LenssrError
from lenssr.models.arch_util import (
    ResidualBlockNoBN,
    bicubic_upsample,
    crop_to,
    pad_to_multiple,
)
from lenssr.models.lapsrn_arch import check_pyramid_scale, pyramid_scales
from lenssr.models.registry import register_model


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over tokens ``(B, N, E) -> (B, N, E)``.

    Uses ``F.scaled_dot_product_attention`` (fused / memory-efficient kernels where available);
    ``attn_dropout`` drops attention weights during training, ``proj_dropout`` the output.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0, proj_dropout: float = 0.0
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise LenssrError(
                f"hybrid: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, e = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, e // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_dropout if self.training else 0.0
        )
        out = out.transpose(1, 2).reshape(b, n, e)
        return self.proj_drop(self.proj(out))


class TransformerBlock(nn.Module):
    """Pre-norm ViT block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``; ``(B, N, E)``."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = max(1, int(round(embed_dim * mlp_ratio)))
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadSelfAttention(embed_dim, num_heads, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, embed_dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerStage(nn.Module):
    """ViT on a feature map with a skip connection: ``(B, F, H, W) -> (B, F, H, W)``, any H, W.

    Patch embedding ``Conv2d(F, E, p, stride=p)`` gives a ``(ceil(H/p), ceil(W/p))`` token grid
    (input reflect-padded to multiples of ``p``); positional embeddings live on a
    ``pos_grid`` x ``pos_grid`` grid and are bilinearly resized to the token grid; after ``depth``
    blocks and a LayerNorm, ``Linear(E, F*p*p)`` + ``PixelShuffle(p)`` maps tokens back to pixels,
    cropped to ``(H, W)``, smoothed by a zero-initialised 3x3 conv and added to the input.
    """

    def __init__(
        self,
        num_feat: int,
        patch_size: int = 4,
        embed_dim: int = 96,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        pos_grid: int = 16,
    ) -> None:
        super().__init__()
        if patch_size < 1 or pos_grid < 1 or depth < 0:
            raise LenssrError(
                f"hybrid: need patch_size >= 1, pos_grid >= 1, depth >= 0 "
                f"(got {patch_size}, {pos_grid}, {depth})"
            )
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(num_feat, embed_dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, pos_grid, pos_grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, num_heads, mlp_ratio, dropout, attn_dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.unembed = nn.Linear(embed_dim, num_feat * patch_size * patch_size)
        # A 3x3 conv smooths the patch-block structure of the unembedded tokens before the skip;
        # it starts at zero, so the stage starts as the identity and only adds what helps.
        self.fuse = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def positional_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Positional embeddings for a ``grid_h`` x ``grid_w`` token grid: ``(1, N, E)``.

        The learned base grid is bilinearly resized (``align_corners=False``) when the token
        grid differs from it, so any image size works.
        """
        pos = self.pos_embed
        if pos.shape[-2:] != (grid_h, grid_w):
            pos = F.interpolate(pos, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        return pos.flatten(2).transpose(1, 2)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        padded, size = pad_to_multiple(feat, p, mode="reflect")
        tokens = self.patch_embed(padded)  # (B, E, gh, gw)
        b, _, gh, gw = tokens.shape
        x = tokens.flatten(2).transpose(1, 2) + self.positional_embedding(gh, gw)
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        x = self.unembed(self.norm(x))  # (B, N, F*p*p)
        x = x.transpose(1, 2).reshape(b, -1, gh, gw)
        out = F.pixel_shuffle(x, p) if p > 1 else x
        return feat + self.fuse(crop_to(out, size))


@register_model("hybrid")
class HybridSR(nn.Module):
    """The lenssr hybrid network (see the module docstring for the four stages).

    ``forward(x (B, 1, h, w), scale=None) -> (B, 1, s*h, s*w)`` for ``s`` in ``scales``
    (``(2, 4)`` with the default 2 pyramid levels); only the levels up to ``s`` are computed.
    ``forward_pyramid(x) -> [x2, x4, ...]``. Default: 0.72 M parameters (2.9 MB float32).
    """

    size_multiple = 1

    def __init__(
        self,
        scale: int = 2,
        num_levels: int = 2,
        num_feat: int = 48,
        shallow_kernel: int = 9,
        num_res_blocks: int = 4,
        res_scale: float = 1.0,
        ca_reduction: int = 8,
        patch_size: int = 4,
        embed_dim: int = 96,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        pos_grid: int = 16,
        use_residual: bool = True,
        use_transformer: bool = True,
        use_pyramid: bool = True,
    ) -> None:
        super().__init__()
        if shallow_kernel < 1 or shallow_kernel % 2 == 0:
            raise LenssrError(f"hybrid: shallow_kernel must be odd, got {shallow_kernel}")
        if use_pyramid:
            if num_levels < 1:
                raise LenssrError(f"hybrid: num_levels must be >= 1, got {num_levels}")
            self.scales = pyramid_scales(num_levels)
            check_pyramid_scale("hybrid", scale, self.scales)
        else:
            if scale not in (2, 3, 4, 8):
                raise LenssrError(f"hybrid: scale must be 2, 3, 4 or 8, got {scale}")
            self.scales = (int(scale),)
        self.scale = int(scale)
        self.use_pyramid = use_pyramid

        # 1. shallow, SRCNN-like feature extraction
        self.shallow = nn.Sequential(
            nn.Conv2d(1, num_feat, shallow_kernel, 1, shallow_kernel // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
        )
        # 2. residual blocks with channel attention + conv, long skip
        self.residual: nn.Sequential | None = None
        if use_residual:
            self.residual = nn.Sequential(
                *(
                    ResidualBlockNoBN(num_feat, res_scale, True, ca_reduction)
                    for _ in range(num_res_blocks)
                ),
                nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            )
        # 3. vision transformer (has its own skip)
        self.transformer: TransformerStage | None = None
        if use_transformer:
            self.transformer = TransformerStage(
                num_feat,
                patch_size,
                embed_dim,
                depth,
                num_heads,
                mlp_ratio,
                dropout,
                attn_dropout,
                pos_grid,
            )

        # 4. progressive upsampling (or a single sub-pixel step)
        def lrelu() -> nn.Module:
            return nn.LeakyReLU(0.2, inplace=True)

        factor = 2 if use_pyramid else self.scale
        n_up = len(self.scales) if use_pyramid else 1
        self.upsamplers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(num_feat, num_feat * factor * factor, 3, 1, 1),
                nn.PixelShuffle(factor),
                lrelu(),
            )
            for _ in range(n_up)
        )
        self.to_image = nn.ModuleList(nn.Conv2d(num_feat, 1, 3, 1, 1) for _ in range(n_up))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Stages 1-3: ``(B, 1, h, w) -> (B, num_feat, h, w)`` features."""
        feat = self.shallow(x)
        if self.residual is not None:
            feat = feat + self.residual(feat)
        if self.transformer is not None:
            feat = self.transformer(feat)
        return feat

    def decode_pyramid(
        self, feat: torch.Tensor, x: torch.Tensor, num_levels: int | None = None
    ) -> list[torch.Tensor]:
        """Stage 4 from features ``(B, F, h, w)`` and the input image ``x (B, 1, h, w)``.

        Returns ``[(B, 1, 2h, 2w), (B, 1, 4h, 4w), ...]`` up to ``num_levels`` (all by default);
        without the pyramid a single ``[(B, 1, s*h, s*w)]``.
        """
        if not self.use_pyramid:
            up = self.to_image[0](self.upsamplers[0](feat))
            return [bicubic_upsample(x, self.scale) + up]
        n = len(self.upsamplers) if num_levels is None else num_levels
        img = x
        outputs = []
        for level in range(n):
            feat = self.upsamplers[level](feat)
            img = bicubic_upsample(img, 2) + self.to_image[level](feat)
            outputs.append(img)
        return outputs

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All outputs: ``(B, 1, h, w) -> [(B, 1, 2h, 2w), (B, 1, 4h, 4w), ...]``."""
        return self.decode_pyramid(self.encode(x), x)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 1, s*h, s*w)`` for ``s`` in ``self.scales`` (default ``scale``)."""
        s = self.scale if scale is None else int(scale)
        levels = check_pyramid_scale("hybrid", s, self.scales)
        return self.decode_pyramid(self.encode(x), x, levels)[-1]
