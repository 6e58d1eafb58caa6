"""The re-observation bootstrap (lenssr.inference.bootstrap): zero for an image its observation
fully explains, quadratic in the residuals for a linear model, the same image gives the same
map wherever it sits in a batch, bounded batches change nothing, and ``upscale`` feeds it to a
variance network with bootstrap features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lenssr.inference import bootstrap as bs
from lenssr.inference import variance_net as vn
from lenssr.inference.api import load_model
from lenssr.inference.consistency import blur_sigma, reobserve

FWHM, HR_FWHM = 2.0, 1.74


def nearest(batch: np.ndarray, noise: float) -> np.ndarray:
    """A linear x2 'model': nearest-neighbour upsampling."""
    return np.repeat(np.repeat(batch, 2, -2), 2, -1)


def observe(sr: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(sr[:, None].astype(np.float64))
    return reobserve(t, 2, blur_sigma(FWHM, 2, HR_FWHM))[:, 0].numpy()


def sky(n: int = 2, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    ring = np.exp(-0.5 * ((np.hypot(yy - size / 2, xx - size / 2) - size / 4) / 2.0) ** 2)
    return np.stack([(k + 1) * 10.0 * ring for k in range(n)])


def test_an_image_its_observation_explains_has_no_spread() -> None:
    sr = sky()
    lr = observe(sr)  # no noise: A(sr) = lr, so every redrawn observation is lr itself
    b2, bn2 = bs.bootstrap_terms(lambda b, s: np.repeat(sr[:1], len(b), 0), lr[:1], sr[:1], 2,
                                 FWHM, HR_FWHM, np.ones(1))  # fmt: skip
    assert np.abs(b2).max() < 1e-9 and np.abs(bn2).max() < 1e-9


def test_a_linear_model_spreads_quadratically_in_the_residuals() -> None:
    noise = np.random.default_rng(0).normal(size=(2, 16, 16))
    terms = []
    for c in (1.0, 3.0):
        lr = c * noise
        terms.append(bs.bootstrap_terms(nearest, lr, nearest(lr, c), 2, FWHM, HR_FWHM,
                                        np.full(2, c)))  # fmt: skip
    (b1, n1), (b3, n3) = terms
    assert b1.max() > 0.1 and n1.max() > 0.1
    # with sr = L(lr): sr*_k - sr = L((eps_k - 1) r), r = lr - A(L(lr)) linear in lr, so both
    # terms scale as c^2
    np.testing.assert_allclose(b3, 9.0 * b1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(n3, 9.0 * n1, rtol=1e-4, atol=1e-6)
    assert np.all(n1 <= b1 * 8 / 7 + 1e-6)  # the noise part is within the total (ddof 1)


def test_batch_position_and_bounded_batches_change_nothing(monkeypatch) -> None:
    sr = sky(3)
    lr = observe(sr) + np.random.default_rng(1).normal(size=(3, 16, 16))
    full = bs.bootstrap_terms(nearest, lr, sr, 2, FWHM, HR_FWHM, np.ones(3), draws=6)
    alone = bs.bootstrap_terms(nearest, lr[2:], sr[2:], 2, FWHM, HR_FWHM, np.ones(1), draws=6)
    np.testing.assert_array_equal(full[0][2], alone[0][0])
    monkeypatch.setattr(bs, "_MAX_DRAW_PIXELS", 32 * 32)  # one draw per call
    calls = []

    def counted(batch, noise):
        calls.append(len(batch))
        return nearest(batch, noise)

    small = bs.bootstrap_terms(counted, lr, sr, 2, FWHM, HR_FWHM, np.ones(3), draws=6)
    assert max(calls) == 1 and len(calls) == 18
    for a, b in zip(full, small, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="at least 2 draws"):
        bs.bootstrap_terms(nearest, lr, sr, 2, FWHM, HR_FWHM, np.ones(3), draws=1)


def test_upscale_runs_the_bootstrap_for_the_variance_net(tmp_path: Path) -> None:
    """A variance network with bootstrap features: ``upscale(return_sigma=True)`` is
    deterministic, independent of the batch, keeps what it reported about the instrument, and
    its factor moves with the bootstrap channel."""
    from test_variance_net import BOOT, attach, lr_images, tiny_checkpoint

    path = tiny_checkpoint(tmp_path)
    torch.manual_seed(0)
    net = vn.VarianceEnsemble(2, in_ch=len(vn.FEATURES) + len(vn.BOOT_FEATURES))
    for m in net.members:  # the factor follows the bootstrap's rms shift
        torch.nn.init.zeros_(m.out.weight)
        torch.nn.init.zeros_(m.inp.weight)
        with torch.no_grad():
            m.inp.weight[:, 5, 1, 1] = 1.0
            m.out.weight[:] = 0.05
    attach(path, net, BOOT)
    model = load_model(path, device="cpu", backend="torch")
    lr = lr_images(2)
    kw = {"psf_fwhm": 0.18, "pixel_scale": 0.1, "return_sigma": True}
    sr, sig = model.upscale(lr, **kw)
    assert model.last_instrument["psf_fwhm_pix"] == pytest.approx(1.8)
    _, again = model.upscale(lr, **kw)
    np.testing.assert_array_equal(sig, again)
    _, second = model.upscale(lr[1:], **kw)
    np.testing.assert_allclose(second[0], sig[1], rtol=1e-5)
    assert np.all(np.isfinite(sig)) and np.all(sig > 0)
    plain = load_model(path, device="cpu", backend="torch")
    plain.uncertainty.pop("variance_net")
    _, three_term = plain.upscale(lr, **kw)
    assert np.std(np.log(sig / three_term)) > 1e-3  # the factor varies per pixel
