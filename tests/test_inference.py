"""lenssr.inference: load_model, SRModel.upscale (units, scales, TTA, tiling, padding, NaNs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lenssr.data.augment import dihedral
from lenssr.errors import LenssrError
from lenssr.inference.api import SRModel, load_model
from lenssr.inference.tiling import blend_weights_1d, tile_starts
from lenssr.models.checkpoint import save_checkpoint
from lenssr.models.registry import create_model


class TinyConvSR(nn.Module):
    """x2 SR with a receptive field of 2 LR + 1 HR pixels (5 HR pixels) and a bicubic skip.

    Records the largest input it was called with (batch, height, width).
    """

    size_multiple = 1

    def __init__(self, feat: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.scale, self.scales = 2, (2,)
        self.c1 = nn.Conv2d(1, feat, 3, padding=1)
        self.c2 = nn.Conv2d(feat, 4 * feat, 3, padding=1)
        self.c3 = nn.Conv2d(feat, 1, 3, padding=1)
        self.max_input = (0, 0, 0)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        assert scale in (None, 2), scale
        b, _, h, w = x.shape
        self.max_input = tuple(max(a, c) for a, c in zip(self.max_input, (b, h, w), strict=True))
        y = self.c3(F.pixel_shuffle(self.c2(torch.relu(self.c1(x))), 2))
        return F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False) + y


class NeedsMultiple(TinyConvSR):
    """Rejects inputs whose sides are not multiples of 8 (like a windowed transformer)."""

    size_multiple = 8

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0, x.shape
        return super().forward(x, scale)


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A lensing-like positive image: Gaussian blobs on a faint background, float32."""
    h, w = shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(shape, dtype=np.float64) + 0.05
    for _ in range(6):
        cy, cx, sig = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 8)
        out += rng.uniform(0.2, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
    return (out + 0.01 * rng.standard_normal(shape)).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)


def test_bicubic_shapes_and_units(rng: np.random.Generator) -> None:
    model = load_model("bicubic", device="cpu")
    assert model.name == "bicubic" and model.scale == 2 and 4 in model.scales
    const = model.upscale(np.full((75, 75), 3.7e4, dtype=np.float32))
    assert const.shape == (150, 150) and const.dtype == np.float32
    np.testing.assert_allclose(const, 3.7e4, rtol=1e-6)
    stack = rng.random((3, 20, 33)).astype(np.float32) * 50 + 10
    out = model.upscale(stack)
    assert out.shape == (3, 40, 66)
    # surface brightness: the mean is kept (to bicubic accuracy) in the input's units
    np.testing.assert_allclose(out.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), rtol=2e-2)
    assert model.upscale(stack, scale=4).shape == (3, 80, 132)
    assert model.upscale(np.ones((1, 1))).shape == (2, 2)


def test_affine_equivariance_random_model(rng: np.random.Generator) -> None:
    model = SRModel(TinyConvSR(), device="cpu")
    x = smooth_field(rng, (2, 31, 24))
    a, b = 37.5, -1200.0
    fx = model.upscale(x)
    np.testing.assert_allclose(model.upscale(a * x + b), a * fx + b, rtol=1e-5, atol=1e-3)
    single = model.upscale(x[1])
    np.testing.assert_allclose(single, fx[1], rtol=1e-6, atol=1e-6)
    # not simply bicubic: the random network changes the image
    assert np.abs(fx - load_model("bicubic", device="cpu").upscale(x)).max() > 1e-3


def test_tta_bicubic_equals_plain(rng: np.random.Generator) -> None:
    model = load_model("bicubic", device="cpu")
    x = smooth_field(rng, (2, 30, 41)) * 1e3
    plain, tta = model.upscale(x), model.upscale(x, tta=True)
    assert np.abs(tta - plain).max() <= 1e-5 * np.abs(plain).max()


def test_tta_is_rotation_invariant_for_random_model(rng: np.random.Generator) -> None:
    model = SRModel(TinyConvSR(), device="cpu")
    x = smooth_field(rng, (27, 34))
    out = model.upscale(x, tta=True)
    for k in (1, 5, 6):
        rotated = model.upscale(np.ascontiguousarray(dihedral(x, k)), tta=True)
        np.testing.assert_allclose(rotated, dihedral(out, k), atol=1e-5)
    # without TTA the random network is not rotation-equivariant, so the test means something
    plain_rot = model.upscale(np.rot90(x).copy())
    assert np.abs(plain_rot - np.rot90(model.upscale(x))).max() > 1e-3


def test_tile_starts_and_weights_cover() -> None:
    assert tile_starts(100, 48, 6) == [0, 42, 52]
    assert tile_starts(40, 48, 6) == [0]
    w = blend_weights_1d(42, 48, 100, 6, 2)
    assert w.shape == (96,) and w[0] == 0 and w[5] == 0 and 0 < w[6] < 0.5 and w[48] == 1


def test_tiling_matches_whole_image(rng: np.random.Generator) -> None:
    """Receptive field (5 HR px) <= tile margin (48 // 8 // 2 = 3 LR = 6 HR px): exact blend."""
    module = TinyConvSR()
    model = SRModel(module, device="cpu")
    x = smooth_field(rng, (2, 100, 100)) * 1e3
    whole = model.upscale(x, tile=0)
    module.max_input = (0, 0, 0)
    tiled = model.upscale(x, tile=48, batch_size=4)
    assert module.max_input == (4, 48, 48)  # memory bound: never more than 4 tiles of 48x48
    scale_range = x.max() - x.min()
    # bound: 1e-6 of the image's dynamic range everywhere (interior and borders)
    assert np.abs(tiled - whole).max() <= 1e-6 * scale_range
    # seams would show as jumps along tile boundaries: the HR gradient there stays as in `whole`
    for edge in (84, 96, 104):  # HR rows where tile weights start/stop
        jump_t = np.abs(np.diff(tiled[:, edge - 1 : edge + 1], axis=1)).max()
        jump_w = np.abs(np.diff(whole[:, edge - 1 : edge + 1], axis=1)).max()
        assert jump_t <= jump_w + 1e-6 * scale_range


def test_automatic_tiling_above_512(rng: np.random.Generator) -> None:
    module = TinyConvSR(feat=2)
    model = SRModel(module, device="cpu")
    x = rng.random((1, 600, 450)).astype(np.float32)  # 270000 LR pixels > 512**2
    auto = model.upscale(x, batch_size=16)
    assert auto.shape == (1, 1200, 900)
    # 256x256 tiles, at most 4 per call whatever batch_size: <= 512**2 LR pixels per call
    assert module.max_input == (4, 256, 256)
    whole = model.upscale(x, tile=0)
    assert np.abs(auto - whole).max() < 1e-5


def test_size_multiple_padding_and_crop(rng: np.random.Generator) -> None:
    model = SRModel(NeedsMultiple(), device="cpu")
    x = smooth_field(rng, (3, 75, 61))
    out = model.upscale(x)
    assert out.shape == (3, 150, 122) and np.isfinite(out).all()
    assert model.upscale(x[0, :2, :3]).shape == (4, 6)


def test_scale_selection_pyramid() -> None:
    module = create_model("lapsrn", num_feat=4, num_conv=1)
    model = SRModel(module, device="cpu")
    x = np.random.default_rng(0).random((2, 9, 11)).astype(np.float32)
    assert model.upscale(x).shape == (2, 18, 22)
    assert model.upscale(x, scale=4).shape == (2, 36, 44)
    with pytest.raises(LenssrError, match="serves"):
        model.upscale(x, scale=3)
    edsr = SRModel(create_model("edsr", num_feat=4, num_block=1), device="cpu")
    with pytest.raises(LenssrError, match="scale 4"):
        edsr.upscale(x, scale=4)


def test_nan_pixels_stay_nan(rng: np.random.Generator) -> None:
    model = load_model("bicubic", device="cpu")
    x = smooth_field(rng, (20, 20))
    x[5, 7] = np.nan
    out = model.upscale(x)
    assert np.isnan(out[10:12, 14:16]).all() and np.isfinite(out).sum() == out.size - 4
    with pytest.raises(LenssrError, match="no finite"):
        model.upscale(np.full((4, 4), np.nan))


def test_bad_inputs_raise_lenssr_error() -> None:
    model = load_model("bicubic", device="cpu")
    for bad in (np.zeros(5), np.zeros((1, 2, 3, 4)), np.array([["a"]])):
        with pytest.raises(LenssrError):
            model.upscale(bad)
    with pytest.raises(LenssrError, match="unknown model 'nope'.*bicubic"):
        load_model("nope")
    with pytest.raises(LenssrError, match="not found"):
        load_model("missing/model.safetensors")


def test_load_model_from_checkpoint(tmp_path, rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    module = create_model("edsr", num_feat=4, num_block=1)
    path = save_checkpoint(tmp_path / "tiny", module)
    loaded = load_model(path, device="cpu")
    assert loaded.name == "tiny" and loaded.descriptor["arch"] == "edsr"
    x = smooth_field(rng, (2, 16, 16))
    expected = SRModel(module, device="cpu").upscale(x)
    np.testing.assert_allclose(loaded.upscale(x), expected, rtol=1e-6, atol=1e-6)
    by_json = load_model(str(tmp_path / "tiny.json"), device="cpu")
    np.testing.assert_allclose(by_json.upscale(x), expected, rtol=1e-6, atol=1e-6)


def test_the_test_session_caches_onnx_exports_in_a_temporary_folder(onnx_cache) -> None:
    import platformdirs

    from lenssr.inference.backend import cache_dir

    assert cache_dir() == onnx_cache
    assert cache_dir() != Path(platformdirs.user_cache_dir("lenssr")) / "onnx"
