"""Metrics cross-checked against scikit-image under the HR-min..max convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, shift
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from lenssr.evaluation.metrics import mse, psnr, psnr_torch, ssim, ssim_torch


def _reference(sr: np.ndarray, hr: np.ndarray) -> tuple[float, float, float]:
    """scikit-image on images mapped with the HR's own min..max (data_range = 1)."""
    hr64 = hr.astype(np.float64)
    lo, hi = hr64.min(), hr64.max()
    srn = (sr.astype(np.float64) - lo) / (hi - lo)
    hrn = (hr64 - lo) / (hi - lo)
    return (
        mean_squared_error(hrn, srn),
        peak_signal_noise_ratio(hrn, srn, data_range=1.0),
        structural_similarity(hrn, srn, data_range=1.0),
    )


def _ring(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """An Einstein-ring-like image in e-/s/arcsec^2 with a lens-light core and noise."""
    h, w = shape
    y, x = np.mgrid[:h, :w]
    r = np.hypot(x - w / 2 + 0.3, y - h / 2 - 0.7)
    img = 40 * np.exp(-0.5 * ((r - 0.3 * min(h, w)) / 1.5) ** 2) + 100 * np.exp(-r / 3)
    return (img + rng.normal(0, 0.5, shape) + 5.0).astype(np.float32)


def _pairs():
    rng = np.random.default_rng(1)
    out = []
    for shape in [(32, 32), (23, 41), (75, 75), (7, 9)]:
        hr = rng.uniform(-3.0, 8.0, shape).astype(np.float32)
        out.append((hr + rng.normal(0, 1.0, shape).astype(np.float32), hr))
        ring = _ring(shape, rng)
        blurred = gaussian_filter(ring, 1.2)
        out.append((shift(blurred, (0.4, -0.6), mode="nearest") * 1.05, ring))
    return out


@pytest.mark.parametrize("sr,hr", _pairs())
def test_metrics_match_skimage(sr: np.ndarray, hr: np.ndarray) -> None:
    ref_mse, ref_psnr, ref_ssim = _reference(sr, hr)
    assert mse(sr, hr) == pytest.approx(ref_mse, abs=1e-5, rel=1e-5)
    assert psnr(sr, hr) == pytest.approx(ref_psnr, abs=1e-5)
    assert ssim(sr, hr) == pytest.approx(ref_ssim, abs=1e-5)


def test_batch_equals_loop_and_is_unit_free() -> None:
    pairs = [(sr, hr) for sr, hr in _pairs() if sr.shape == (32, 32)]
    sr = np.stack([p[0] for p in pairs])
    hr = np.stack([p[1] for p in pairs])
    for fn in (mse, psnr, ssim):
        batch = fn(sr, hr)
        assert batch.shape == (len(pairs),)
        np.testing.assert_allclose(batch, [fn(a, b) for a, b in pairs], rtol=1e-12)
        # an affine change of units (e.g. counts instead of surface brightness) changes nothing
        np.testing.assert_allclose(fn(3.5 * sr - 7.0, 3.5 * hr - 7.0), batch, rtol=1e-6)
    # SR images that differ more from HR score worse
    worse = sr + 2.0 * np.random.default_rng(0).normal(size=sr.shape)
    assert np.all(psnr(worse, hr) < psnr(sr, hr))
    assert np.all(ssim(worse, hr) < ssim(sr, hr))


def test_identical_images() -> None:
    hr = _ring((20, 20), np.random.default_rng(3))
    assert psnr(hr, hr) == float("inf")
    assert mse(hr, hr) == 0.0
    assert ssim(hr, hr) == pytest.approx(1.0, abs=1e-12)
    out = psnr(np.stack([hr, hr + 1.0]), np.stack([hr, hr]))
    assert np.isinf(out[0]) and np.isfinite(out[1])


def test_errors() -> None:
    with pytest.raises(ValueError, match="7x7"):
        ssim(np.zeros((6, 10)), np.ones((6, 10)))
    with pytest.raises(ValueError, match="shapes differ"):
        mse(np.zeros((8, 8)), np.zeros((8, 9)))


def test_torch_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    hr = np.stack([_ring((29, 37), rng) for _ in range(5)])
    sr = (gaussian_filter(hr, (0, 1.0, 1.0)) + rng.normal(0, 0.3, hr.shape)).astype(np.float32)
    sr[2] = hr[2]  # identical -> inf PSNR, SSIM 1
    t_sr = torch.from_numpy(sr)[:, None]
    t_hr = torch.from_numpy(hr)[:, None]
    p_t, s_t = psnr_torch(t_sr, t_hr), ssim_torch(t_sr, t_hr)
    assert p_t.shape == (5,) and s_t.shape == (5,)
    np.testing.assert_allclose(p_t.numpy(), psnr(sr, hr), atol=1e-4)
    np.testing.assert_allclose(s_t.numpy(), ssim(sr, hr), atol=1e-4)
    assert torch.isinf(p_t[2]) and s_t[2].item() == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError):
        psnr_torch(t_sr[:, 0], t_hr[:, 0])
