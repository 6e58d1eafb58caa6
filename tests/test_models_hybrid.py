"""The hybrid architecture: stages, any-size inputs, positional embeddings, ablations."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from lenssr.errors import LenssrError
from lenssr.models import count_parameters, create_model
from lenssr.models.arch_util import bicubic_upsample
from lenssr.models.hybrid_arch import MultiHeadSelfAttention, TransformerStage


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_default_config_is_small() -> None:
    model = create_model("hybrid")
    cfg = model.config
    assert (cfg["num_feat"], cfg["num_res_blocks"], cfg["patch_size"]) == (48, 4, 4)
    assert (cfg["embed_dim"], cfg["depth"], cfg["num_heads"], cfg["mlp_ratio"]) == (96, 2, 4, 2.0)
    assert cfg["shallow_kernel"] == 9 and cfg["dropout"] == 0.0
    assert model.scale == 2 and model.scales == (2, 4)
    assert model.shallow[0].kernel_size == (9, 9)
    assert count_parameters(model) * 4 < 4e6  # < 4 MB of float32 weights


@pytest.mark.parametrize(
    ("patch_size", "h", "w"),
    [(4, 75, 75), (4, 33, 50), (4, 1, 1), (4, 2, 7), (3, 10, 11), (5, 64, 64), (1, 6, 5)],
)
def test_sizes_not_divisible_by_patch_size(
    patch_size: int, h: int, w: int, tiny_configs: dict[str, dict]
) -> None:
    model = create_model("hybrid", patch_size=patch_size, **tiny_configs["hybrid"]).eval()
    with torch.no_grad():
        x2, x4 = model.forward_pyramid(torch.rand(1, 1, h, w))
    assert x2.shape == (1, 1, 2 * h, 2 * w) and x4.shape == (1, 1, 4 * h, 4 * w)
    assert torch.isfinite(x2).all() and torch.isfinite(x4).all()


def _stage(**changes: Any) -> TransformerStage:
    """A small transformer stage (8 features, 16-d tokens, 2 heads, no dropout) with ``changes``."""
    sizes = {"num_feat": 8, "patch_size": 4, "embed_dim": 16, "depth": 2, "num_heads": 2}
    rest = {"mlp_ratio": 2.0, "dropout": 0.0, "attn_dropout": 0.0, "pos_grid": 16}
    return TransformerStage(**{**sizes, **rest, **changes})


def test_transformer_stage_keeps_shape_and_is_a_skip_connection() -> None:
    stage = _stage(depth=1)
    feat = torch.rand(2, 8, 19, 13)
    out = stage(feat)
    assert out.shape == feat.shape
    torch.nn.init.zeros_(stage.unembed.weight)
    torch.nn.init.zeros_(stage.unembed.bias)
    torch.testing.assert_close(stage(feat), feat)  # zero branch -> identity through the skip


def test_positional_embedding_interpolation() -> None:
    stage = _stage(pos_grid=4)
    base = stage.pos_embed
    # the base grid is returned unchanged
    torch.testing.assert_close(stage.positional_embedding(4, 4), base.flatten(2).transpose(1, 2))
    # a bigger, non-square grid: right shape; a ramp along x stays a monotone ramp in range
    with torch.no_grad():
        base.copy_(torch.linspace(0, 1, 4).view(1, 1, 1, 4).expand_as(base))
    pos = stage.positional_embedding(10, 24)
    assert pos.shape == (1, 240, 16)
    grid = pos.transpose(1, 2).reshape(1, 16, 10, 24)
    assert torch.all(grid[..., 1:] - grid[..., :-1] >= -1e-6)
    assert grid.min() >= -1e-6 and grid.max() <= 1 + 1e-6
    assert grid[..., 0].max() < 0.05 and grid[..., -1].min() > 0.95
    torch.testing.assert_close(grid[:, :, 0], grid[:, :, 9])  # rows identical


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer stage starts as the identity (its output conv is zero); give that conv
    non-zero weights, as after training, so the stage's own parameters matter."""
    torch.nn.init.normal_(model.transformer.fuse.weight, std=0.1)
    return model


def test_transformer_stage_starts_as_the_identity(tiny_configs: dict[str, dict]) -> None:
    stage = create_model("hybrid", **tiny_configs["hybrid"]).transformer
    feat = torch.rand(2, stage.fuse.in_channels, 13, 10)
    torch.testing.assert_close(stage(feat), feat)


def test_positional_embedding_gets_gradients_on_a_bigger_image(
    tiny_configs: dict[str, dict],
) -> None:
    model = trained_like(create_model("hybrid", **tiny_configs["hybrid"]))
    x = torch.rand(1, 1, 40, 72)  # 10x18 tokens vs a 4x4 base grid
    model(x).mean().backward()
    grad = model.transformer.pos_embed.grad
    assert grad is not None and grad.abs().sum() > 0


def test_embed_dim_must_be_divisible_by_num_heads() -> None:
    with pytest.raises(LenssrError, match=r"embed_dim \(30\) must be divisible by num_heads \(4\)"):
        create_model("hybrid", embed_dim=30, num_heads=4)


def test_attention_matches_explicit_softmax_attention() -> None:
    attn = MultiHeadSelfAttention(embed_dim=8, num_heads=2).eval()
    x = torch.rand(2, 5, 8)
    q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(4), dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(attn(x), expected)


def test_dropout_only_in_training(tiny_configs: dict[str, dict]) -> None:
    model = trained_like(
        create_model("hybrid", dropout=0.5, attn_dropout=0.5, **tiny_configs["hybrid"])
    )
    x = torch.rand(1, 1, 16, 16)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("use_residual", [True, False])
@pytest.mark.parametrize("use_transformer", [True, False])
@pytest.mark.parametrize("use_pyramid", [True, False])
def test_ablation_flags_build_and_run(
    use_residual: bool, use_transformer: bool, use_pyramid: bool, tiny_configs: dict[str, dict]
) -> None:
    model = create_model(
        "hybrid",
        scale=4,
        use_residual=use_residual,
        use_transformer=use_transformer,
        use_pyramid=use_pyramid,
        **tiny_configs["hybrid"],
    ).eval()
    assert (model.residual is not None) == use_residual
    assert (model.transformer is not None) == use_transformer
    assert model.scales == ((2, 4) if use_pyramid else (4,))
    with torch.no_grad():
        y = model(torch.rand(2, 1, 9, 14))
    assert y.shape == (2, 1, 36, 56) and torch.isfinite(y).all()


def test_ablations_remove_parameters(tiny_configs: dict[str, dict]) -> None:
    full = count_parameters(create_model("hybrid", **tiny_configs["hybrid"]))
    for flag in ("use_residual", "use_transformer", "use_pyramid"):
        assert (
            count_parameters(create_model("hybrid", **{flag: False}, **tiny_configs["hybrid"]))
            < full
        )


def test_without_pyramid_a_single_pixel_shuffle_to_the_target_scale(
    tiny_configs: dict[str, dict],
) -> None:
    model = create_model("hybrid", scale=4, use_pyramid=False, **tiny_configs["hybrid"])
    assert len(model.upsamplers) == 1 and model.config["use_pyramid"] is False
    shuffles = [m for m in model.upsamplers[0] if isinstance(m, torch.nn.PixelShuffle)]
    assert [s.upscale_factor for s in shuffles] == [4]
    with pytest.raises(LenssrError, match="scale 2 not supported"):
        model(torch.rand(1, 1, 8, 8), scale=2)


def test_x4_level_not_computed_for_x2(
    monkeypatch: pytest.MonkeyPatch, tiny_configs: dict[str, dict]
) -> None:
    model = create_model("hybrid", **tiny_configs["hybrid"]).eval()

    def boom(*args: object) -> None:
        raise AssertionError("x4 level computed for an x2 request")

    monkeypatch.setattr(model.upsamplers[1], "forward", boom)
    with torch.no_grad():
        assert model(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)
        with pytest.raises(AssertionError, match="x4 level computed"):
            model(torch.rand(1, 1, 8, 8), scale=4)


def test_pyramid_levels_add_residuals_to_bicubic_of_previous_level(
    tiny_configs: dict[str, dict],
) -> None:
    model = create_model("hybrid", **tiny_configs["hybrid"]).eval()
    for conv in model.to_image:
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.rand(1, 1, 10, 12)
    with torch.no_grad():
        x2, x4 = model.forward_pyramid(x)
    torch.testing.assert_close(x2, bicubic_upsample(x, 2))
    torch.testing.assert_close(x4, bicubic_upsample(bicubic_upsample(x, 2), 2))


def test_encode_decode_split(tiny_configs: dict[str, dict]) -> None:
    model = create_model("hybrid", **tiny_configs["hybrid"]).eval()
    x = torch.rand(2, 1, 13, 17)
    with torch.no_grad():
        feat = model.encode(x)
        assert feat.shape == (2, 8, 13, 17)
        outs = model.decode_pyramid(feat, x)
        torch.testing.assert_close(outs[-1], model(x, scale=4))


def test_large_input(tiny_configs: dict[str, dict]) -> None:
    model = create_model("hybrid", **tiny_configs["hybrid"]).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, 200, 160))
    assert y.shape == (1, 1, 400, 320) and torch.isfinite(y).all()


def test_lr_tail_predicts_sub_pixels_at_lr(tiny_configs: dict[str, dict]) -> None:
    cfg = {**tiny_configs["hybrid"], "num_levels": 1, "sigma_head": True}
    hr_tail = create_model("hybrid", **cfg)
    model = create_model("hybrid", tail="lr", **cfg).eval()
    assert len(model.upsamplers) == 0 and len(hr_tail.upsamplers) == 1
    assert model.to_image[0].out_channels == 4 and model.to_log_sigma[0].out_channels == 4
    assert count_parameters(model) < count_parameters(hr_tail)
    x = torch.rand(2, 1, 9, 11)
    with torch.no_grad():
        y = model(x)
        ys = model.forward_with_sigma(x)
        feat = model.encode(x)
        sub = model.to_image[0](feat)  # (B, 4, h, w): the 2x2 sub-pixels of every LR pixel
    assert y.shape == (2, 1, 18, 22) and ys.shape == (2, 2, 18, 22)
    torch.testing.assert_close(ys[:, :1], y)
    residual = y - bicubic_upsample(x, 2)
    # sub-pixel (i, j) of LR pixel (r, c) is HR pixel (2r + i, 2c + j)
    torch.testing.assert_close(residual[:, 0, 1::2, 0::2], sub[:, 2])
    torch.testing.assert_close(residual[:, 0, 0::2, 1::2], sub[:, 1])


def test_lr_tail_on_a_two_level_pyramid_and_bad_tail(tiny_configs: dict[str, dict]) -> None:
    model = create_model("hybrid", tail="lr", **tiny_configs["hybrid"]).eval()
    assert len(model.upsamplers) == 1  # the x2 level still upsamples features for the x4 one
    with torch.no_grad():
        x2, x4 = model.forward_pyramid(torch.rand(1, 1, 8, 8))
        assert x2.shape == (1, 1, 16, 16) and x4.shape == (1, 1, 32, 32)
        assert model(torch.rand(1, 1, 8, 8), scale=4).shape == (1, 1, 32, 32)
    with pytest.raises(LenssrError, match="tail must be 'hr' or 'lr'"):
        create_model("hybrid", tail="mid", **tiny_configs["hybrid"])


def test_thin_hr_tail(tiny_configs: dict[str, dict]) -> None:
    cfg = {**tiny_configs["hybrid"], "sigma_head": True}
    model = create_model("hybrid", up_feat=3, **cfg).eval()
    # only the last level's HR feature map is thin; the x2 level of a pyramid keeps num_feat
    assert model.upsamplers[0][0].out_channels == 8 * 4
    assert model.upsamplers[1][0].out_channels == 3 * 4
    assert model.to_image[1].in_channels == 3 and model.to_log_sigma[1].in_channels == 3
    with torch.no_grad():
        assert model.forward_with_sigma(torch.rand(1, 1, 6, 7), scale=4).shape == (1, 2, 24, 28)
    with pytest.raises(LenssrError, match="up_feat must be >= 1"):
        create_model("hybrid", up_feat=-2, **cfg)
