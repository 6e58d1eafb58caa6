"""Registry and every architecture: shapes, finiteness, scales, errors, the `models` command."""

from __future__ import annotations

import pytest
import torch

from lenssr.errors import LenssrError
from lenssr.models import count_parameters, create_model, list_models, register_model
from lenssr.models.arch_util import bicubic_upsample, pad_to_multiple

PYRAMID = ("lapsrn", "hybrid")
SIZES = [(2, 75, 75), (2, 64, 64), (1, 33, 50), (1, 5, 3)]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_registry_lists_every_builtin_architecture(tiny_configs: dict[str, dict]) -> None:
    assert list_models() == sorted(tiny_configs)


def test_create_model_records_name_and_full_config() -> None:
    model = create_model("edsr", num_feat=8, num_block=2)
    assert model.arch_name == "edsr"
    assert model.config == {"scale": 2, "num_feat": 8, "num_block": 2, "res_scale": 1.0}
    rebuilt = create_model(model.arch_name, **model.config)
    assert count_parameters(rebuilt) == count_parameters(model)
    assert create_model("EDSR", num_feat=8, num_block=2).arch_name == "edsr"


def test_unknown_model_name_lists_available() -> None:
    with pytest.raises(LenssrError, match=r"unknown model architecture 'nope'.*edsr.*hybrid"):
        create_model("nope")


def test_unknown_config_key_is_a_clear_error() -> None:
    with pytest.raises(LenssrError, match=r"unknown config key\(s\) for model 'edsr': num_feats"):
        create_model("edsr", num_feats=8)


def test_register_model_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_model("edsr")
        class Other(torch.nn.Module):
            pass


@pytest.mark.parametrize("shape", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_x2_output_shape_and_finite(
    tiny_arch: str, shape: tuple[int, int, int], tiny_configs: dict[str, dict]
) -> None:
    model = create_model(tiny_arch, scale=2, **tiny_configs[tiny_arch]).eval()
    assert model.scale == 2 and 2 in model.scales
    b, h, w = shape
    with torch.no_grad():
        y = model(torch.rand(b, 1, h, w))
    assert y.shape == (b, 1, 2 * h, 2 * w)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["bicubic", "srcnn", "edsr", "esrgan"])
def test_x4_single_scale_models(name: str, tiny_configs: dict[str, dict]) -> None:
    model = create_model(name, scale=4, **tiny_configs[name]).eval()
    assert model.scale == 4
    with torch.no_grad():
        y = model(torch.rand(1, 1, 33, 50))
    assert y.shape == (1, 1, 132, 200) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", PYRAMID)
def test_pyramid_models_serve_x2_and_x4(name: str, tiny_configs: dict[str, dict]) -> None:
    model = create_model(name, **tiny_configs[name]).eval()
    assert model.scale == 2 and model.scales == (2, 4)
    x = torch.rand(2, 1, 33, 50)
    with torch.no_grad():
        x2, x4 = model.forward_pyramid(x)
        assert x2.shape == (2, 1, 66, 100) and x4.shape == (2, 1, 132, 200)
        # forward(scale=s) is the matching pyramid level; default scale is x2
        torch.testing.assert_close(model(x), x2)
        torch.testing.assert_close(model(x, scale=4), x4)
    with pytest.raises(LenssrError, match="scale 3 not supported"):
        model(x, scale=3)
    x4_default = create_model(name, scale=4, **tiny_configs[name])
    assert x4_default.scale == 4 and x4_default.scales == (2, 4)


def test_pyramid_with_three_levels_gives_x8(tiny_configs: dict[str, dict]) -> None:
    model = create_model("lapsrn", num_levels=3, **tiny_configs["lapsrn"]).eval()
    assert model.scales == (2, 4, 8)
    with torch.no_grad():
        outs = model.forward_pyramid(torch.rand(1, 1, 9, 7))
    assert [o.shape[-2:] for o in outs] == [(18, 14), (36, 28), (72, 56)]


@pytest.mark.parametrize("variant", [{"upsample": "pixelshuffle"}, {"image_upsample": "deconv"}])
def test_lapsrn_variants(variant: dict, tiny_configs: dict[str, dict]) -> None:
    model = create_model("lapsrn", **tiny_configs["lapsrn"], **variant).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 1, 11, 13), scale=4)
    assert y.shape == (1, 1, 44, 52) and torch.isfinite(y).all()


def test_lapsrn_deconv_image_branch_starts_as_bilinear_upsampling(
    tiny_configs: dict[str, dict],
) -> None:
    model = create_model("lapsrn", image_upsample="deconv", **tiny_configs["lapsrn"])
    x = torch.full((1, 1, 8, 8), 3.0)
    up = model.image_ups[0](x)
    # interior of a constant image stays constant under bilinear x2 interpolation
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.full_like(up[..., 1:-1, 1:-1], 3.0))


def test_bicubic_matches_interpolate_and_any_integer_scale() -> None:
    model = create_model("bicubic", scale=3)
    x = torch.rand(2, 1, 10, 7)
    expected = torch.nn.functional.interpolate(x, scale_factor=3, mode="bicubic")
    torch.testing.assert_close(model(x), expected)
    assert model(x, scale=5).shape == (2, 1, 50, 35)
    assert count_parameters(model) == 0
    constant = torch.full((1, 1, 6, 6), 0.25)
    torch.testing.assert_close(model(constant), torch.full((1, 1, 18, 18), 0.25))


@pytest.mark.parametrize("name", ["srcnn", "edsr", "esrgan"])
def test_residual_to_bicubic(name: str, tiny_configs: dict[str, dict]) -> None:
    """With the last conv zeroed, the network output is exactly the bicubic image path."""
    model = create_model(name, **tiny_configs[name]).eval()
    last = model.body[-1] if name == "srcnn" else model.conv_last
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(1, 1, 12, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bicubic_upsample(x, 2))


def test_default_parameter_counts() -> None:
    counts = {name: count_parameters(create_model(name)) for name in list_models()}
    assert counts["bicubic"] == 0
    assert counts["srcnn"] == 57_281  # 9-5-5, 64-32
    assert counts["edsr"] == 1_367_553  # EDSR-baseline 64x16, x2
    assert counts["lapsrn"] == 871_554  # 64 features, 10 conv per level, 2 levels
    assert counts["esrgan"] == 1_108_353  # RRDB 32 feat, 6 blocks, grow 16, x2
    assert counts["hybrid"] * 4 < 20e6  # float32 weights well under 20 MB
    assert counts["hybrid"] < counts["edsr"]


@pytest.mark.parametrize(
    ("name", "config", "pattern"),
    [
        ("edsr", {"scale": 5}, "scale must be 2, 3 or 4"),
        ("esrgan", {"scale": 3}, "scale must be 2 or 4"),
        ("lapsrn", {"scale": 8}, r"scale 8 not supported; this model serves \[2, 4\]"),
        ("lapsrn", {"upsample": "nearest"}, "upsample must be"),
        ("srcnn", {"kernel_sizes": (9, 4, 5)}, "three odd integers"),
        ("bicubic", {"scale": 0}, "positive integer"),
    ],
)
def test_invalid_configs_raise_lenssr_error(name: str, config: dict, pattern: str) -> None:
    with pytest.raises(LenssrError, match=pattern):
        create_model(name, **config)


def test_pad_to_multiple_reflect_and_tiny_fallback() -> None:
    x = torch.arange(15.0).reshape(1, 1, 3, 5)
    padded, size = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 8) and size == (3, 5)
    torch.testing.assert_close(padded[..., :3, :5], x)
    torch.testing.assert_close(padded[..., 3, :5], x[..., 1, :])  # reflect
    tiny, _ = pad_to_multiple(torch.ones(1, 1, 1, 1), 4)  # reflect impossible -> replicate
    torch.testing.assert_close(tiny, torch.ones(1, 1, 4, 4))


def test_models_command_lists_architectures_with_params(tiny_configs: dict[str, dict]) -> None:
    from typer.testing import CliRunner

    from lenssr.cli import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in tiny_configs:
        assert name in result.output
    assert "1,367,553" in result.output  # edsr baseline
    assert "x2,x4" in result.output


@pytest.mark.parametrize("name", ["srcnn", "edsr", "esrgan", "lapsrn", "hybrid"])
def test_every_architecture_takes_scale_and_checks_it_in_one_place(
    name: str, tiny_configs: dict[str, dict]
) -> None:
    from lenssr.models.scales import check_scale

    model = create_model(name, **tiny_configs[name]).eval()
    x = torch.rand(1, 1, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(x, scale=None), model(x, scale=model.scale))
    assert check_scale(model, None) == model.scale
    with pytest.raises(LenssrError, match=rf"{name}: scale 3 not supported; this model serves"):
        model(x, scale=3)
    with pytest.raises(LenssrError, match="scale 3 not supported"):
        check_scale(model, 3)
