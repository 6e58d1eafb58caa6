"""Data consistency: the re-observation operator is the degrade model, and the refinement
brings a super-resolved image to the noise level of its LR input."""

from __future__ import annotations

import numpy as np
import torch

from lenssr.inference.consistency import (
    blur_sigma,
    reduced_chi2,
    refine,
    reobserve,
)
from lenssr.simulation.degrade import degrade_array
from lenssr.simulation.instrument import noise_sigma
from lenssr.simulation.presets import load_preset


def _default_blur() -> tuple[object, float]:
    p = load_preset("default")
    return p, blur_sigma(
        p.lr.psf_fwhm / p.lr.pixel_scale, p.scale, p.hr.psf_fwhm / p.hr.pixel_scale
    )


def test_reobserve_is_the_noiseless_degrade_model() -> None:
    preset, sb = _default_blur()
    rng = np.random.default_rng(0)
    for shape in ((2, 40, 40), (1, 7, 9)):  # the second: blur wider than the image, odd size
        hr = rng.random(shape)
        want = degrade_array(hr, preset, noise=False)
        got = reobserve(torch.as_tensor(hr)[:, None], preset.scale, sb)[:, 0].numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_chi2_of_the_truth_is_one_and_refine_reaches_the_noise_level() -> None:
    preset, sb = _default_blur()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:48, :48]
    hr = np.stack([50.0 * np.exp(-((yy - 24 - d) ** 2 + (xx - 20) ** 2) / 30.0) for d in (0, 3)])
    clean = reobserve(torch.as_tensor(hr)[:, None], 2, sb)[:, 0].numpy()
    noise = noise_sigma(clean, preset.lr).astype(np.float32)
    lr = clean + noise * rng.standard_normal(clean.shape)
    assert np.all(np.abs(reduced_chi2(lr, hr, 2, sb, noise) - 1.0) < 0.25)
    wrong = 0.7 * hr  # loses 30% of the light: far from the data
    before = reduced_chi2(lr, wrong, 2, sb, noise)
    assert np.all(before > 1.5)
    fixed, after = refine(lr, wrong, 2, sb, noise)
    assert fixed.shape == wrong.shape and fixed.dtype == np.float32
    assert np.all(after <= 1.0 + 3.0 * np.sqrt(2.0 / lr[0].size))  # the default target
    np.testing.assert_allclose(after, reduced_chi2(lr, fixed, 2, sb, noise), rtol=1e-5)
    flux = hr.sum(axis=(1, 2))
    assert np.all(
        np.abs(fixed.sum(axis=(1, 2)) - flux) < 0.75 * np.abs(wrong.sum(axis=(1, 2)) - flux)
    )
    same, chi = refine(lr, hr, 2, sb, noise, target=2.0)  # already consistent: unchanged
    np.testing.assert_allclose(same, hr.astype(np.float32))


def test_reobserve_takes_one_blur_per_image() -> None:
    rng = np.random.default_rng(2)
    hr = torch.as_tensor(rng.random((3, 1, 30, 30)))
    sigmas = [0.0, 0.8, 2.5]
    both = reobserve(hr, 2, torch.tensor(sigmas))
    for i, s in enumerate(sigmas):
        np.testing.assert_allclose(both[i], reobserve(hr[i : i + 1], 2, s)[0], atol=1e-12)
    assert torch.equal(reobserve(hr[:1], 2, 0.0), torch.nn.functional.avg_pool2d(hr[:1], 2))


def test_chi2_loss_is_differentiable_and_about_one_for_the_truth() -> None:
    from lenssr.inference.consistency import chi2_loss

    rng = np.random.default_rng(3)
    hr = torch.as_tensor(rng.random((2, 1, 32, 32)), dtype=torch.float32)
    sig = torch.tensor([0.9, 1.6])
    noise = torch.full((2, 1, 16, 16), 0.05)
    lr = reobserve(hr, 2, sig) + noise * torch.randn(2, 1, 16, 16)
    assert abs(float(chi2_loss(hr, lr, noise, 2, sig)) - 1.0) < 0.2
    sr = (0.5 * hr).requires_grad_(True)
    loss = chi2_loss(sr, lr, noise, 2, sig)
    loss.backward()
    assert loss.item() > 10.0 and sr.grad is not None and float(sr.grad.abs().sum()) > 0
