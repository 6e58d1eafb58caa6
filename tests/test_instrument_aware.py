"""Instrument-aware SR: the survey mixture, source families, noise-aware normalisation,
the conditioning vector, on-the-fly instrument draws, the FiLM hybrid with a sigma head, and
the instrument in ``upscale`` (Python, FITS headers, ONNX)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenssr.data import MixturePairDataset, Normalization, PairDataset, open_pairs
from lenssr.data.conditioning import condition_vector, psf_fwhm_pixels
from lenssr.data.normalize import background_level, noise_sigma_mad
from lenssr.inference.api import SRModel
from lenssr.inference.instrument import header_instrument
from lenssr.models import create_model, load_checkpoint, save_checkpoint
from lenssr.simulation import load_preset
from lenssr.simulation.degrade import degrade_array
from lenssr.simulation.sampling import (
    SOURCE_FAMILIES,
    lr_instrument,
    sample_lr_instrument,
    sample_system,
)
from lenssr.simulation.writer import render_samples


@pytest.fixture(scope="module")
def mix_pairs(tmp_path_factory: pytest.TempPathFactory):
    """12 rendered survey-mix pairs (one HDF5 file)."""
    from lenssr.simulation import simulate

    path = tmp_path_factory.mktemp("mix") / "mix.h5"
    simulate("survey-mix", n=12, out=path, seed=3, workers=1, progress=False)
    return path


def test_survey_mix_draws_each_system_an_instrument_in_range() -> None:
    preset = load_preset("survey-mix")
    spec = preset.config["lr_mixture"]
    fwhms, exposures = [], []
    for i in range(200):
        drawn = sample_lr_instrument(spec, np.random.default_rng([0, i]), preset)
        inst = lr_instrument(preset, drawn)
        fwhms.append(inst.psf_fwhm / preset.lr.pixel_scale)
        exposures.append(inst.exposure_time)
    assert 1.0 <= min(fwhms) < 1.3 and 3.2 < max(fwhms) <= 3.5
    assert 150 <= min(exposures) < 400 and 8000 < max(exposures) <= 20000
    # the default preset keeps its one LR camera
    default = load_preset("default")
    assert (
        sample_lr_instrument(default.config.get("lr_mixture"), np.random.default_rng(0), default)
        == {}
    )
    assert lr_instrument(default, {}) is default.lr


def test_survey_mix_mixes_lens_light_slopes_and_families() -> None:
    preset = load_preset("survey-mix")
    systems = [sample_system(preset, np.random.default_rng([1, i]), i % 3) for i in range(120)]
    off = [s.params["lens_light_off"] for s in systems]
    assert 0.3 < np.mean(off) < 0.7
    assert all(s.params["lens_light_amp"] == 0 for s in systems if s.params["lens_light_off"])
    slopes = {s.params["subhalo_slope"] for s in systems if s.label == 1}
    assert slopes == {-1.9, -0.9}
    families = {SOURCE_FAMILIES[int(s.params["source_family"])] for s in systems}
    assert families == {"sersic", "grf", "spiral", "multi"}  # shapelets held out (weight 0)
    # every system has the same parameter names (one HDF5 table)
    assert len({tuple(sorted(s.params)) for s in systems}) == 1


@pytest.mark.parametrize("family", SOURCE_FAMILIES)
def test_each_source_family_renders_a_positive_finite_arc(family: str) -> None:
    weights = {f: float(f == family) for f in SOURCE_FAMILIES}
    preset = load_preset(
        "survey-mix", {"source.morphology.families": weights, "lens_light.p_off": 1.0}
    )
    block = render_samples(preset, seed=0, indices=range(3), classes=(0,))
    assert set(block["params"]["source_family"]) == {float(SOURCE_FAMILIES.index(family))}
    hr = block["hr"]
    assert np.isfinite(hr).all()
    # lensed light well above the HR noise, no lens light
    assert all(im.max() > 20 * noise_sigma_mad(im) for im in hr)


def test_textured_families_differ_from_the_plain_sersic() -> None:
    base = {f: 0.0 for f in SOURCE_FAMILIES}
    images = {}
    for family in ("sersic", "grf", "spiral"):
        preset = load_preset(
            "survey-mix",
            {"source.morphology.families": {**base, family: 1.0}, "lens_light.p_off": 1.0},
        )
        from lenssr.simulation.render import Renderer

        r = Renderer(preset)
        system = sample_system(preset, np.random.default_rng(5), 0)
        images[family] = r.render(system).hr_clean
    for family in ("grf", "spiral"):
        a, b = images[family], images["sersic"]
        rel = np.abs(a / a.max() - b / b.max()).max()
        assert rel > 0.05, family


def test_noise_estimate_and_background_on_a_galaxy_image() -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:75, :75] - 37.0
    galaxy = 400.0 * np.exp(-np.hypot(x, y) / 3.0)  # its wings fade well inside the field
    image = 3.0 + galaxy + rng.normal(0.0, 0.5, galaxy.shape)
    assert noise_sigma_mad(image) == pytest.approx(0.5, rel=0.08)
    assert background_level(image) == pytest.approx(3.0, abs=0.3)
    assert noise_sigma_mad(np.full((9, 9), 2.0)) == 0.0


def test_noise_normalisation_floor_and_round_trip() -> None:
    rng = np.random.default_rng(1)
    faint = 10.0 + rng.normal(0.0, 1.0, (2, 40, 40))
    norm = Normalization("noise")
    lo, hi = norm.stats(faint)
    assert lo.shape == (2, 1, 1)
    assert np.all(np.abs(lo - 10.0) < 0.2)
    assert np.all(hi - lo >= 5.0 * 0.9)  # at least ~5 sigma, not the noise's own max-min
    x = norm.forward(faint, lo, hi)
    np.testing.assert_allclose(norm.inverse(x, lo, hi), faint, rtol=0, atol=1e-9)
    # a known sigma is used as given
    lo2, hi2 = norm.stats(faint, noise_sigma=10.0)
    assert np.all(hi2 - lo2 >= 50.0 - 1e-9)


def test_condition_vector() -> None:
    cond = condition_vector(
        2.5, np.array([0.1, 1.0]), np.zeros((2, 1, 1)), np.full((2, 1, 1), 10.0)
    )
    np.testing.assert_allclose(cond, [[2.5, -2.0], [2.5, -1.0]], atol=1e-6)
    assert psf_fwhm_pixels(0.3, 0.1) == pytest.approx(3.0)
    assert psf_fwhm_pixels(None, None) == pytest.approx(1.8)
    with pytest.raises(ValueError):
        psf_fwhm_pixels(-1.0, 0.1)


def test_degrade_with_a_drawn_instrument_conserves_flux() -> None:
    preset = load_preset("survey-mix")
    inst = lr_instrument(
        preset, sample_lr_instrument(preset.config["lr_mixture"], np.random.default_rng(2), preset)
    )
    y, x = np.mgrid[:60, :60] - 29.5
    hr = np.exp(-(x**2 + y**2) / 20.0)
    lr = degrade_array(hr, preset, noise=False, lr=inst)
    assert lr.shape == (30, 30)
    assert lr.sum() * 4 == pytest.approx(hr.sum(), rel=1e-3)


def test_mixture_dataset_draws_per_epoch_and_is_reproducible(mix_pairs) -> None:
    src = open_pairs(mix_pairs)
    ds = MixturePairDataset(src, "survey-mix", patch_size=16, augment=True, seed=0)
    lr, hr, cond = ds[0]
    assert lr.shape == (1, 16, 16) and hr.shape == (1, 32, 32) and cond.shape == (2,)
    assert 1.0 <= float(cond[0]) <= 3.5
    again = ds[0]
    torch.testing.assert_close(again[0], lr)
    ds.set_epoch(1)
    other = ds[0]
    assert not torch.equal(other[2], cond)  # a new instrument in a new epoch
    # validation pairs carry their rendered per-pair instrument
    val = PairDataset(src, normalization=Normalization("noise"), conditioned=True)
    _, _, vcond = val[4]
    assert float(vcond[0]) == pytest.approx(src.lr_psf_fwhm[4] / 0.1, rel=1e-5)


def test_film_starts_as_identity_and_conditions_after_training(tiny_cond: dict) -> None:
    torch.manual_seed(0)
    model = create_model("hybrid", **tiny_cond).eval()
    x = torch.rand(2, 1, 12, 12)
    a = torch.tensor([[1.2, -2.0], [1.2, -2.0]])
    b = torch.tensor([[3.0, -1.0], [3.0, -1.0]])
    with torch.no_grad():
        torch.testing.assert_close(model(x, cond=a), model(x, cond=b))
        for head in model.condition.heads:
            torch.nn.init.normal_(head.weight, std=0.1)
        assert not torch.allclose(model(x, cond=a), model(x, cond=b))
        both = model.forward_with_sigma(x, cond=a)
    assert both.shape == (2, 2, 24, 24)
    torch.testing.assert_close(both[:, :1], model(x, cond=a))


def test_shipped_single_instrument_checkpoints_still_load() -> None:
    import lenssr

    m = lenssr.load_model("hybrid-fast")
    assert not m.conditioned and m.normalization.kind == "minmax"
    out = m.upscale(np.random.default_rng(0).random((20, 20), dtype=np.float32))
    assert out.shape == (40, 40)


@pytest.fixture(scope="module")
def cond_model(tmp_path_factory: pytest.TempPathFactory, tiny_cond: dict) -> SRModel:
    torch.manual_seed(0)
    module = create_model("hybrid", **tiny_cond)
    for head in module.condition.heads:
        torch.nn.init.normal_(head.weight, std=0.1)
    path = tmp_path_factory.mktemp("ckpt") / "cond"
    save_checkpoint(
        path,
        module,
        {
            "normalization": {"kind": "noise"},
            "conditioning": {
                "inputs": ["psf_fwhm_pix", "log10_noise"],
                "range": {"psf_fwhm_pix": [1.0, 3.5], "log10_noise": [-4.0, -0.5]},
            },
            "uncertainty": {"sigma_scale": 2.0},
        },
    )
    mod, desc = load_checkpoint(path)
    return SRModel(mod, desc, name="cond", device="cpu")


def test_upscale_takes_the_instrument_and_reports_what_it_assumed(cond_model: SRModel) -> None:
    rng = np.random.default_rng(3)
    lr = (5.0 + rng.normal(0, 1, (2, 16, 16))).astype(np.float32)
    lr[:, 6:10, 6:10] += 50.0
    default = cond_model.upscale(lr)
    assert cond_model.last_instrument["assumed"] == {"psf_fwhm": 0.18, "pixel_scale": 0.1}
    wide = cond_model.upscale(lr, psf_fwhm=0.3, pixel_scale=0.1)
    assert "assumed" not in cond_model.last_instrument
    assert cond_model.last_instrument["psf_fwhm_pix"] == pytest.approx(3.0)
    assert not np.allclose(default, wide)
    same = cond_model.upscale(lr, psf_fwhm=0.36, pixel_scale=0.2)  # 1.8 pixels again
    np.testing.assert_allclose(same, default, rtol=0, atol=1e-5 * float(np.ptp(default)))
    cond_model.upscale(lr, psf_fwhm=0.6, pixel_scale=0.1)
    assert "outside the range" in cond_model.last_instrument["warning"]


def test_upscale_keeps_the_input_units(cond_model: SRModel) -> None:
    rng = np.random.default_rng(4)
    lr = (rng.normal(0, 1, (16, 16)) + 30.0 * np.exp(-((np.arange(16) - 8.0) ** 2) / 8.0)).astype(
        np.float32
    )
    a = cond_model.upscale(lr, psf_fwhm=0.2, pixel_scale=0.1)
    b = cond_model.upscale(1000.0 * lr + 7.0, psf_fwhm=0.2, pixel_scale=0.1)
    np.testing.assert_allclose(b, 1000.0 * a + 7.0, rtol=2e-4, atol=2e-3 * 1000)


def test_sigma_map_is_positive_calibrated_and_in_units(cond_model: SRModel) -> None:
    lr = np.random.default_rng(5).normal(10, 1, (16, 16)).astype(np.float32)
    hr, sigma = cond_model.upscale(lr, return_sigma=True)
    assert hr.shape == sigma.shape == (32, 32)
    assert np.all(sigma > 0)
    _, sigma10 = cond_model.upscale(10.0 * lr, return_sigma=True)
    np.testing.assert_allclose(sigma10, 10.0 * sigma, rtol=1e-3)
    # the stored calibration factor (a descriptor without variance terms) multiplies the raw one
    cond_model.sigma_scale = 1.0
    try:
        _, raw = cond_model.upscale(lr, return_sigma=True)
    finally:
        cond_model.sigma_scale = 2.0
    np.testing.assert_allclose(sigma, 2.0 * raw, rtol=1e-5)
    _, sig_tta = cond_model.upscale(lr, return_sigma=True, tta=True)
    assert sig_tta.shape == (32, 32) and np.all(np.isfinite(sig_tta))
    _, sig_tiled = cond_model.upscale(lr, return_sigma=True, tile=8, overlap=4)
    assert sig_tiled.shape == (32, 32) and np.all(sig_tiled > 0)


def test_header_instrument_reads_wcs_and_psf_keywords() -> None:
    from astropy.io import fits

    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CDELT1"], h["CDELT2"] = -0.2 / 3600, 0.2 / 3600
    h["CRVAL1"], h["CRVAL2"], h["CRPIX1"], h["CRPIX2"] = 150.0, 2.0, 10.0, 10.0
    h["SEEING"] = 0.55
    got = header_instrument(h)
    assert got["pixel_scale"] == pytest.approx(0.2, rel=1e-6)
    assert got["psf_fwhm"] == pytest.approx(0.55)
    plain = fits.Header()
    plain["PIXSCALE"] = 0.262
    plain["FWHMPIX"] = 4.0
    got = header_instrument(plain)
    assert got == pytest.approx({"pixel_scale": 0.262, "psf_fwhm": 1.048})
    assert header_instrument(fits.Header()) == {}


def test_onnx_export_of_a_conditioned_model_matches_torch(cond_model: SRModel, tmp_path) -> None:
    from lenssr.inference.onnx_export import OnnxSRModel, export_onnx

    path = export_onnx(cond_model, tmp_path / "cond.onnx")
    ort = OnnxSRModel(path, device="cpu")
    assert ort.conditioned
    lr = np.random.default_rng(6).normal(10, 1, (2, 20, 18)).astype(np.float32)
    ref = cond_model.upscale(lr, psf_fwhm=0.25, pixel_scale=0.1)
    got = ort.upscale(lr, psf_fwhm=0.25, pixel_scale=0.1)
    assert np.max(np.abs(got - ref)) <= 1e-4 * float(np.ptp(ref))


def test_calibration_factor_and_coverage_on_gaussian_errors() -> None:
    from lenssr.inference.uncertainty import calibration_factor, coverage, reliability

    rng = np.random.default_rng(7)
    hr = rng.normal(0.0, 1.0, (4, 64, 64))
    sr = hr + rng.normal(0.0, 2.0, hr.shape)  # true error sigma 2
    sigma = np.ones_like(hr)  # predicted 1: too small by 2
    assert calibration_factor(sr, sigma, hr) == pytest.approx(2.0, rel=0.03)
    cov = coverage(sr, 2.0 * sigma, hr)
    assert cov["cov1"] == pytest.approx(0.6827, abs=0.01)
    assert cov["cov2"] == pytest.approx(0.9545, abs=0.005)
    mask = np.zeros(hr.shape, bool)
    mask[:, :8] = True
    assert coverage(sr, sigma, hr, mask)["n"] == mask.sum()
    diagram = reliability(sr, 2.0 * sigma, hr)
    assert len(diagram) == 10
    assert all(abs(expected - observed) < 0.02 for expected, observed in diagram)


def test_calibrate_writes_the_variance_terms_into_the_descriptor(
    mix_pairs, tmp_path, tiny_cond: dict
) -> None:
    import json

    from lenssr.inference.uncertainty import calibrate

    torch.manual_seed(1)
    module = create_model("hybrid", **tiny_cond)
    path = tmp_path / "m"
    cond = {"inputs": ["psf_fwhm_pix", "log10_noise"], "range": {"psf_fwhm_pix": [1.0, 3.5]}}
    save_checkpoint(path, module, {"normalization": {"kind": "noise"}, "conditioning": cond})
    info = calibrate(path.with_suffix(".safetensors"), mix_pairs, n=6)
    unc = json.loads(path.with_suffix(".json").read_text())["uncertainty"]
    assert unc["coefficients"] == info["coefficients"]
    assert set(unc["coefficients"]) == {"head", "target", "signal"}
    assert unc["target_noise"]["exposure_time"] == 20000.0  # the pairs' HR instrument

    def miss(c: dict) -> float:
        return (c["cov1"] - 0.6827) ** 2 + (c["cov2"] - 0.9545) ** 2

    assert miss(info["after"]) < miss(info["before"])
    _, reloaded = load_checkpoint(path)
    assert (
        SRModel(module, reloaded, device="cpu").uncertainty["coefficients"] == unc["coefficients"]
    )


def test_bad_model_key_fails_before_any_data_is_simulated(tmp_path) -> None:
    from lenssr.errors import ConfigError
    from lenssr.training import train

    train_file = tmp_path / "never.h5"
    cfg = {
        "model": {"name": "hybrid", "nosuch": 3},
        "data": {"train": str(train_file), "simulate": {"preset": "default", "n_train": 8}},
        "checkpoint": {"dir": str(tmp_path / "run")},
        "budget": {"steps": 1},
    }
    with pytest.raises(ConfigError, match="nosuch"):
        train(cfg, quiet=True)
    assert not train_file.exists()
    cfg["model"] = {"name": "hybrid"}
    cfg["data"]["mixture"] = "no-such-preset"
    with pytest.raises(ConfigError, match="unknown preset"):
        train(cfg, quiet=True)
    assert not train_file.exists()


def test_upscale_uncertainty_writes_sigma_maps_beside_every_format(cond_model, tmp_path) -> None:
    from astropy.io import fits
    from PIL import Image

    from lenssr.inference.upscale import upscale_path

    rng = np.random.default_rng(8)
    src = tmp_path / "in"
    src.mkdir()
    img = (20.0 + rng.normal(0, 1, (16, 16))).astype(np.float32)
    np.save(src / "a.npy", img)
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CDELT1"], h["CDELT2"] = -0.1 / 3600, 0.1 / 3600
    h["CRPIX1"], h["CRPIX2"], h["CRVAL1"], h["CRVAL2"] = 8.5, 8.5, 150.0, 2.0
    fits.PrimaryHDU(img, header=h).writeto(src / "b.fits")
    Image.fromarray((img * 1000).astype(np.uint16)).save(src / "c.png")
    report = upscale_path(src, tmp_path / "out", model=cond_model, uncertainty=True, progress=False)
    assert sorted(report.processed) == ["a.npy", "b.fits", "c.png"]
    out = tmp_path / "out"
    sig_npy = np.load(out / "a_sigma.npy")
    assert sig_npy.shape == (32, 32) and sig_npy.dtype == np.float32 and np.all(sig_npy > 0)
    with fits.open(out / "b.fits") as hdul:
        assert hdul["SIGMA"].data.shape == (32, 32)
        assert hdul["SIGMA"].header["CRPIX1"] == hdul[0].header["CRPIX1"]
        assert hdul["SIGMA"].header["CDELT2"] == pytest.approx(hdul[0].header["CDELT2"])
    import tifffile

    sig_tif = tifffile.imread(out / "c_sigma.tif")
    assert sig_tif.dtype == np.float32 and sig_tif.shape == (32, 32)
    # the plain upscale writes no maps and a model without a sigma head refuses the option
    upscale_path(src, tmp_path / "plain", model=cond_model, progress=False)
    assert not list((tmp_path / "plain").glob("*_sigma*"))
    from lenssr.errors import LenssrError

    with pytest.raises(LenssrError, match="no sigma head"):
        upscale_path(src, tmp_path / "bic", model="bicubic", uncertainty=True, progress=False)
