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
   ``tail="lr"`` (the efficient form): the last level predicts its ``factor**2`` sub-pixels of
   the residual image (and of the log 1-sigma) at LR, one 3x3 conv to ``factor**2`` channels
   and one pixel shuffle, instead of upsampling ``num_feat`` feature channels to HR first
   (``tail="hr"``): about 17% of the multiply-adds of the 8-block default, and the largest
   pixel-shuffle, disappear. ``up_feat`` (``tail="hr"``): the channels of the last level's HR
   feature map (default ``num_feat``); a thin one (16, say) keeps a nonlinearity and a 3x3 conv
   at HR for about a third of the cost of the full one.

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
    SRNet,
    bicubic_upsample,
    check_scale,
    crop_to,
    pad_to_multiple,
    pyramid_levels,
    pyramid_scales,
    quiet_init,
)
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
    """Pre-norm ViT block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``; ``(B, N, E)``.

    The sizes are :class:`HybridSR`'s arguments of the same names (their defaults live there).
    """

    def __init__(
        self, embed_dim: int, num_heads: int, mlp_ratio: float, dropout: float, attn_dropout: float
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

    The sizes are :class:`HybridSR`'s arguments of the same names (their defaults live there).
    """

    def __init__(
        self,
        num_feat: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        dropout: float,
        attn_dropout: float,
        pos_grid: int,
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
        quiet_init(self.fuse)

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


class ConditionEncoder(nn.Module):
    """Instrument conditioning (FiLM): ``cond (B, cond_dim) -> [(gamma, beta)] * num_blocks``.

    An MLP embeds the conditioning vector (:mod:`lenssr.data.conditioning`: PSF FWHM in LR
    pixels and log10 relative noise, centred by ``cond_center``) and one zero-initialised linear
    head per modulated block gives a per-channel scale ``1 + gamma`` and shift ``beta``
    ``(B, F, 1, 1)``, so an untrained encoder leaves the network unconditioned.
    """

    def __init__(self, cond_dim: int, num_feat: int, num_blocks: int, hidden: int = 64) -> None:
        super().__init__()
        center = [2.0, -1.5][:cond_dim] + [0.0] * max(0, cond_dim - 2)
        self.register_buffer("center", torch.tensor(center), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(cond_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, 2 * num_feat) for _ in range(num_blocks))
        for head in self.heads:
            quiet_init(head)

    def forward(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        h = self.mlp(cond - self.center)
        out = []
        for head in self.heads:
            gamma, beta = head(h)[..., None, None].chunk(2, dim=1)
            out.append((gamma, beta))
        return out


class ModulatedResidualBlock(ResidualBlockNoBN):
    """:class:`ResidualBlockNoBN` whose residual is modulated by FiLM ``(gamma, beta)`` before
    the channel attention: ``x + res_scale * CA(conv(relu(conv(x))) * (1 + gamma) + beta)``."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, film: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        res = self.conv2(self.relu(self.conv1(x)))
        if film is not None:
            res = res * (1.0 + film[0]) + film[1]
        if self.attention is not None:
            res = self.attention(res)
        return x + res * self.res_scale


def _out(conv: nn.Module, feat: torch.Tensor, shuffle: int) -> torch.Tensor:
    """An output conv, its channels pixel-shuffled by ``shuffle`` (the LR tail) or not (1)."""
    out = conv(feat)
    return F.pixel_shuffle(out, shuffle) if shuffle > 1 else out


@register_model("hybrid")
class HybridSR(SRNet):
    """The lenssr hybrid network (see the module docstring for the four stages).

    ``forward(x (B, 1, h, w), scale=None) -> (B, 1, s*h, s*w)`` for ``s`` in ``scales``
    (``(2, 4)`` with the default 2 pyramid levels); only the levels up to ``s`` are computed.
    ``forward_pyramid(x) -> [x2, x4, ...]``. Default: 0.72 M parameters (2.9 MB float32).
    """

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
        cond_dim: int = 0,
        sigma_head: bool = False,
        tail: str = "hr",
        up_feat: int | None = None,
    ) -> None:
        super().__init__()
        if tail not in ("hr", "lr"):
            raise LenssrError(f"hybrid: tail must be 'hr' or 'lr', got {tail!r}")
        if shallow_kernel < 1 or shallow_kernel % 2 == 0:
            raise LenssrError(f"hybrid: shallow_kernel must be odd, got {shallow_kernel}")
        if use_pyramid:
            if num_levels < 1:
                raise LenssrError(f"hybrid: num_levels must be >= 1, got {num_levels}")
            self.scales = pyramid_scales(num_levels)
            check_scale(self, scale)
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
        # (blocks..., tail conv) in one Sequential, so checkpoint keys stay residual.<k>.*
        self.residual: nn.Sequential | None = None
        if use_residual:
            self.residual = nn.Sequential(
                *(
                    ModulatedResidualBlock(num_feat, res_scale, True, ca_reduction)
                    for _ in range(num_res_blocks)
                ),
                nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            )
        # instrument conditioning of the residual blocks (cond_dim = 0: none)
        self.cond_dim = int(cond_dim)
        self.condition: ConditionEncoder | None = None
        if self.cond_dim > 0 and use_residual and num_res_blocks > 0:
            self.condition = ConditionEncoder(self.cond_dim, num_feat, num_res_blocks)
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
        self.factor = factor
        n_up = len(self.scales) if use_pyramid else 1
        lr_tail = tail == "lr"
        # with the LR tail the last level needs no feature upsampler: its output convs work at
        # the level's input resolution and emit factor**2 sub-pixels each
        n_feat_up = n_up - 1 if lr_tail else n_up
        # channels of each level's upsampled feature map: num_feat, but up_feat at the last
        # level (a thin HR feature map: the output convs keep one nonlinearity at HR for a
        # fraction of the cost)
        up_feat = int(up_feat or num_feat)
        if up_feat < 1:
            raise LenssrError(f"hybrid: up_feat must be >= 1, got {up_feat}")
        feats = [num_feat] * (n_up - 1) + [up_feat]
        self.upsamplers = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(num_feat, feats[k] * factor * factor, 3, 1, 1),
                nn.PixelShuffle(factor),
                lrelu(),
            )
            for k in range(n_feat_up)
        )

        def out_conv(level: int) -> nn.Conv2d:
            if lr_tail and level == n_up - 1:
                return nn.Conv2d(num_feat, factor * factor, 3, 1, 1)
            return nn.Conv2d(feats[level], 1, 3, 1, 1)

        self.to_image = nn.ModuleList(out_conv(k) for k in range(n_up))
        # per-pixel log 1-sigma (normalised units) of every output level, from the same features
        self.to_log_sigma: nn.ModuleList | None = None
        if sigma_head:
            self.to_log_sigma = nn.ModuleList(out_conv(k) for k in range(n_up))
            for conv in self.to_log_sigma:
                quiet_init(conv, bias=-4.0)
        #: the conditioning used when a conditioned model is called without one (the default
        #: preset's LR camera, 1.8 LR pixels, at a typical relative noise)
        self.register_buffer(
            "default_cond", torch.tensor([1.8, -2.0][: max(self.cond_dim, 0)]), persistent=False
        )

    def _levels(self, scale: int | None) -> int:
        """Output levels computed for ``scale`` (checked; 1 without the pyramid)."""
        if self.use_pyramid:
            return pyramid_levels(self, scale)
        check_scale(self, scale)
        return 1

    @property
    def has_sigma(self) -> bool:
        """Whether the model predicts a per-pixel 1-sigma map (:meth:`forward_with_sigma`)."""
        return self.to_log_sigma is not None

    def encode(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Stages 1-3: ``(B, 1, h, w) -> (B, num_feat, h, w)`` features.

        ``cond``: ``(B, cond_dim)`` instrument conditioning (conditioned models; None uses
        ``default_cond``).
        """
        feat = self.shallow(x)
        if self.residual is not None:
            films: list | None = None
            if self.condition is not None:
                if cond is None:
                    cond = self.default_cond.expand(x.shape[0], -1)
                films = self.condition(cond.to(x.dtype))
            res = feat
            *blocks, tail = self.residual
            for k, block in enumerate(blocks):
                res = block(res, films[k] if films is not None else None)
            feat = feat + tail(res)
        if self.transformer is not None:
            feat = self.transformer(feat)
        return feat

    def decode_pyramid(
        self,
        feat: torch.Tensor,
        x: torch.Tensor,
        num_levels: int | None = None,
        with_sigma: bool = False,
    ) -> list[torch.Tensor]:
        """Stage 4 from features ``(B, F, h, w)`` and the input image ``x (B, 1, h, w)``.

        Returns ``[(B, 1, 2h, 2w), (B, 1, 4h, 4w), ...]`` up to ``num_levels`` (all by default);
        without the pyramid a single ``[(B, 1, s*h, s*w)]``. ``with_sigma`` (sigma-head models):
        each entry is ``(B, 2, ...)``, the image and its log 1-sigma.
        """
        n = len(self.to_image) if num_levels is None else num_levels
        factor = self.factor
        img = x
        outputs = []
        for level in range(n):
            at_lr = level >= len(self.upsamplers)  # the LR tail's last level
            if not at_lr:
                feat = self.upsamplers[level](feat)
            shuffle = factor if at_lr else 1
            img = bicubic_upsample(img, factor) + _out(self.to_image[level], feat, shuffle)
            if with_sigma and self.to_log_sigma is not None:
                log_sigma = _out(self.to_log_sigma[level], feat, shuffle)
                outputs.append(torch.cat([img, log_sigma], dim=1))
            else:
                outputs.append(img)
        return outputs

    def forward_pyramid(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """All outputs: ``(B, 1, h, w) -> [(B, 1, 2h, 2w), (B, 1, 4h, 4w), ...]``."""
        return self.decode_pyramid(self.encode(x, cond), x)

    def forward_with_sigma(
        self, x: torch.Tensor, scale: int | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 2, s*h, s*w)``: the SR image and its log 1-sigma (normalised
        units, before calibration). Needs ``sigma_head=True``."""
        if self.to_log_sigma is None:
            raise LenssrError("this hybrid has no sigma head (sigma_head=False)")
        levels = self._levels(scale)
        return self.decode_pyramid(self.encode(x, cond), x, levels, with_sigma=True)[-1]

    def forward(
        self, x: torch.Tensor, scale: int | None = None, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, 1, h, w) -> (B, 1, s*h, s*w)`` for ``s`` in ``self.scales`` (default ``scale``);
        ``cond (B, cond_dim)``: the instrument (conditioned models)."""
        return self.decode_pyramid(self.encode(x, cond), x, self._levels(scale))[-1]
