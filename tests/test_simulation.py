"""Physics tests of lenssr.simulation: presets, ray tracing, FFT substructure, degrade."""

from __future__ import annotations

import numpy as np
import pytest

from lenssr.errors import ConfigError
from lenssr.simulation import load_preset, parse_overrides
from lenssr.simulation.degrade import degrade_array
from lenssr.simulation.instrument import noise_sigma
from lenssr.simulation.render import Renderer
from lenssr.simulation.sampling import CLASSES, sample_system
from lenssr.simulation.substructure import cic_deposit, sample_masses, vortex_half_length

# Documented in docs/simulation.md: (HR num_pix, HR pixel, LR num_pix, LR pixel) [pix, arcsec]
DOCUMENTED = {
    "default": (150, 0.05, 75, 0.10),
    "deeplense-model-i": (150, 0.05, 75, 0.10),
    "deeplense-model-ii": (128, 0.0505, 64, 0.101),
    "deeplense-model-iii": (128, 0.04, 64, 0.08),
}


@pytest.fixture(scope="module")
def default_renderer() -> Renderer:
    return Renderer(load_preset("default"))


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_preset_sizes_and_pixel_scales(name: str) -> None:
    hr_n, hr_px, lr_n, lr_px = DOCUMENTED[name]
    preset = load_preset(name)
    assert (preset.hr.num_pix, preset.lr.num_pix, preset.scale) == (hr_n, lr_n, 2)
    assert preset.hr.pixel_scale == pytest.approx(hr_px)
    assert preset.lr.pixel_scale == pytest.approx(lr_px)
    r = Renderer(preset)
    for label in range(3):
        obs = r.observe(sample_system(preset, np.random.default_rng([1, label]), label), r_rng())
        assert obs.hr.shape == (hr_n, hr_n) and obs.lr.shape == (lr_n, lr_n)
        assert obs.hr.dtype == np.float32 and obs.lr.dtype == np.float32
        assert np.isfinite(obs.hr).all() and obs.hr_clean.max() > 0
        # same sky in both: total flux of the noiseless images agrees (surface brightness units)
        f_hr = obs.hr_clean.sum() * hr_px**2
        f_lr = obs.lr_clean.sum() * lr_px**2
        assert f_lr == pytest.approx(f_hr, rel=1e-2)  # PSF wings leave the field differently


def r_rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_sis_ring_at_einstein_radius() -> None:
    theta_e = 1.2
    preset = load_preset(
        "default",
        {
            "lens": {"theta_e": theta_e, "q": 1.0, "gamma": 0.0, "center": 0.0},
            "lens_light.amp": 0.0,
            "source": {"r_sersic": 0.03, "n_sersic": 1.0, "q": 1.0, "amp": 100.0},
            "source.position.r_max": 0.0,
            "source.clumps.n": 0,
        },
    )
    r = Renderer(preset)
    system = sample_system(preset, np.random.default_rng(0), 0)
    img = r.render(system).hr_clean
    n, px = preset.hr.num_pix, preset.hr.pixel_scale
    c = (np.arange(n) - (n - 1) / 2) * px
    rad = np.hypot(*np.meshgrid(c, c))
    width = px / 2
    k = np.floor(rad.ravel() / width).astype(int)
    prof = np.bincount(k, weights=img.ravel()) / np.maximum(np.bincount(k), 1)
    r_peak = (np.argmax(prof) + 0.5) * width
    assert abs(r_peak - theta_e) < px
    # a ring: bright at theta_E in every direction, dark at the centre
    on_ring = np.abs(rad - theta_e) < px
    ang = np.arctan2(*np.meshgrid(c, c)[::-1])[on_ring]
    quadrant_means = [
        img[on_ring][(ang >= a) & (ang < a + np.pi / 2)].mean()
        for a in (-np.pi, -np.pi / 2, 0, np.pi / 2)
    ]
    assert min(quadrant_means) > 0.8 * max(quadrant_means)
    assert img[n // 2, n // 2] < 0.01 * img.max()


def _far_mask(r: Renderer, x: np.ndarray, y: np.ndarray, pixels: float = 4.0) -> np.ndarray:
    d2 = np.min((r.x[:, None] - x[None]) ** 2 + (r.y[:, None] - y[None]) ** 2, axis=1)
    return d2 > (pixels * r.pixel_scale) ** 2


def test_fft_point_mass_deflection_matches_lenstronomy() -> None:
    from lenstronomy.LensModel.lens_model import LensModel

    preset = load_preset("default", {"subhalos.n": 40})
    r = Renderer(preset)
    system = sample_system(preset, np.random.default_rng(3), CLASSES.index("cdm"))
    ax, ay = r.substructure_deflection(system)
    theta = r.distances.einstein_radius(system.sub_mass)
    kwargs = [
        {"theta_E": float(t), "center_x": float(x), "center_y": float(y)}
        for t, x, y in zip(theta, system.sub_x, system.sub_y, strict=True)
    ]
    rx, ry = LensModel(["POINT_MASS"] * len(kwargs)).alpha(r.x, r.y, kwargs)
    far = _far_mask(r, system.sub_x, system.sub_y)
    err = np.hypot(ax.ravel() - rx, ay.ravel() - ry)[far]
    # tolerance: 1% of the largest deflection, > 4 fine pixels (0.1") from every subhalo
    assert err.max() < 0.01 * np.hypot(rx, ry)[far].max()
    assert np.median(err / np.hypot(rx, ry)[far]) < 1e-4


@pytest.mark.parametrize("profile", ["nfw", "tnfw"])
def test_fft_nfw_deflection_matches_lenstronomy(profile: str) -> None:
    from lenstronomy.LensModel.lens_model import LensModel

    preset = load_preset("default", {"subhalos": {"profile": profile, "n": 12}})
    r = Renderer(preset)
    system = sample_system(preset, np.random.default_rng(5), CLASSES.index("cdm"))
    edges, reps = r.nfw_bins()

    def compare(masses: np.ndarray, pixels: float) -> tuple[float, float]:
        system.sub_mass = masses
        ax, ay = r.substructure_deflection(system)
        kwargs = []
        for m, x, y in zip(masses, system.sub_x, system.sub_y, strict=True):
            kw = r.nfw_parameters(float(m))
            if profile == "nfw":
                kw.pop("r_trunc")
            kwargs.append({**kw, "center_x": float(x), "center_y": float(y)})
        rx, ry = LensModel([profile.upper()] * len(kwargs)).alpha(r.x, r.y, kwargs)
        far = _far_mask(r, system.sub_x, system.sub_y, pixels)
        err = np.hypot(ax.ravel() - rx, ay.ravel() - ry)[far]
        ref = np.hypot(rx, ry)[far]
        return err.max() / ref.max(), float(np.median(err / ref))

    # masses at the bin centres: the binned kernels are exact up to CIC smoothing
    exact = compare(reps[np.arange(len(system.sub_mass)) % len(reps)], 4.0)
    assert exact[0] < 0.01 and exact[1] < 1e-3
    # random masses: one kernel per log-mass bin approximates each profile's shape
    masses = sample_masses(np.random.default_rng(1), len(system.sub_mass), 1e6, 1e10, -1.9)
    # (per-bin weights match each deflection at 1"; tolerance 15% of the max beyond 0.25")
    approx = compare(masses, 10.0)
    assert approx[0] < 0.15 and approx[1] < 0.02


def test_cic_deposit_conserves_weight_and_vortex_length() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50)
    w = rng.uniform(0.5, 2.0, 50)
    dens = cic_deposit(x, y, w, 64, 0.05)
    assert dens.sum() == pytest.approx(w.sum(), rel=1e-12)
    assert vortex_half_length(1e-22) == pytest.approx(0.03)
    assert vortex_half_length(1e-24) == pytest.approx(3.0)
    m = sample_masses(rng, 20000, 1e6, 1e10, -1.9)
    assert m.min() >= 1e6 and m.max() <= 1e10
    # dN/dm ~ m^-1.9: the fraction below 1e7 is (1e6^-0.9 - 1e7^-0.9) / (1e6^-0.9 - 1e10^-0.9)
    expected = (1e6**-0.9 - 1e7**-0.9) / (1e6**-0.9 - 1e10**-0.9)
    assert np.mean(m < 1e7) == pytest.approx(expected, abs=0.01)


def test_axion_vortex_deflects(default_renderer: Renderer) -> None:
    preset = default_renderer.preset
    system = sample_system(preset, np.random.default_rng(2), CLASSES.index("axion"))
    p = system.params
    assert np.isfinite(p["axion_mass"]) and p["vortex_half_length"] > 0
    ax, ay = default_renderer.substructure_deflection(system)
    # far from a line of mass M the deflection tends to the point-mass value theta_E(M)^2 / r
    theta2 = p["vortex_mass"] * default_renderer.distances.theta_e2_per_msun
    corner = np.hypot(default_renderer.x[0] - p["lens_x"], default_renderer.y[0] - p["lens_y"])
    assert np.hypot(ax.flat[0], ay.flat[0]) == pytest.approx(theta2 / corner, rel=0.15)
    none = sample_system(preset, np.random.default_rng(2), CLASSES.index("no_sub"))
    assert default_renderer.substructure_deflection(none) is None


def test_degrade_conserves_flux_without_noise() -> None:
    rng = np.random.default_rng(0)
    hr = rng.gamma(2.0, 5.0, size=(3, 150, 150)).astype(np.float32)
    lr = degrade_array(hr, "default", noise=False)
    assert lr.shape == (3, 75, 75) and lr.dtype == np.float32
    f_hr = hr.sum(axis=(1, 2)) * 0.05**2
    f_lr = lr.sum(axis=(1, 2)) * 0.10**2
    np.testing.assert_allclose(f_lr, f_hr, rtol=1e-3)
    single = degrade_array(hr[1], "default", noise=False)
    np.testing.assert_allclose(single, lr[1], rtol=1e-5)
    # deterministic without noise, random with it
    np.testing.assert_array_equal(degrade_array(hr[0], noise=False), lr[0])
    a = degrade_array(hr[0], rng=np.random.default_rng(1))
    b = degrade_array(hr[0], rng=np.random.default_rng(2))
    assert not np.array_equal(a, b)
    with pytest.raises(ConfigError):
        degrade_array(np.zeros(5))


def test_degrade_matches_simulated_lr(default_renderer: Renderer) -> None:
    preset = default_renderer.preset
    for i in range(3):
        system = sample_system(preset, np.random.default_rng([7, i]), i)
        obs = default_renderer.render(system)
        lr = degrade_array(obs.hr_clean, preset, noise=False)
        assert np.abs(lr - obs.lr_clean).max() < 0.03 * obs.lr_clean.max()
        assert lr.sum() == pytest.approx(obs.lr_clean.sum(), rel=2e-3)


def test_default_lr_peak_snr_mostly_between_15_and_50(default_renderer: Renderer) -> None:
    preset = default_renderer.preset
    snr, resid = [], []
    for i in range(30):
        rng = np.random.default_rng([11, i])
        obs = default_renderer.observe(sample_system(preset, rng, i % 3), rng)
        snr.append(obs.lr_peak_snr)
        resid.append((obs.lr - obs.lr_clean) / noise_sigma(obs.lr_clean, preset.lr))
    snr = np.array(snr)
    inside = np.mean((snr > 15) & (snr < 50))
    assert inside >= 0.7, snr
    assert 15 < np.median(snr) < 50
    # the noise has the predicted per-pixel standard deviation
    assert np.std(np.concatenate([r.ravel() for r in resid])) == pytest.approx(1.0, abs=0.03)


def test_overrides_dict_yaml_and_strings(tmp_path) -> None:
    parsed = parse_overrides(["lr.psf_fwhm=0.2", "subhalos.n=500", "lens.q=[0.7, 0.9]"])
    assert parsed == {"lr": {"psf_fwhm": 0.2}, "subhalos": {"n": 500}, "lens": {"q": [0.7, 0.9]}}
    p = load_preset("default", parsed)
    assert p.lr.psf_fwhm == 0.2 and p.config["subhalos"]["n"] == 500
    assert load_preset("default").lr.psf_fwhm == 0.18  # shipped preset unchanged
    yml = tmp_path / "over.yaml"
    yml.write_text("lr:\n  read_noise: 9.5\nsubhalos.m_max: 1.0e9\n")
    p = load_preset("default", yml)
    assert p.lr.read_noise == 9.5 and p.config["subhalos"]["m_max"] == 1e9
    with pytest.raises(ConfigError, match="lr.bogus"):
        load_preset("default", {"lr.bogus": 1})
    with pytest.raises(ConfigError, match="nope"):
        load_preset("default", parse_overrides(["nope.x=1"]))
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("no-such-preset")
    with pytest.raises(ConfigError, match="integer"):
        load_preset("default", {"lr.pixel_scale": 0.13})


def test_preset_file_starts_from_the_preset_its_defaults_names(tmp_path) -> None:
    path = tmp_path / "fixed.yaml"
    path.write_text("defaults: survey-mix\nname: fixed\nlr_mixture:\n  exposure_time: 300\n")
    preset = load_preset(str(path))
    base = load_preset("survey-mix")
    assert preset.name == "fixed"
    assert preset.config["lr_mixture"]["exposure_time"] == 300
    assert preset.config["source"] == base.config["source"]  # survey-mix's, not default's
    plain = tmp_path / "plain.yaml"
    plain.write_text("lr:\n  exposure_time: 300\n")
    assert "lr_mixture" not in load_preset(str(plain)).config  # no defaults: the default preset
    (tmp_path / "loop.yaml").write_text(f"defaults: {tmp_path / 'loop.yaml'}\n")
    with pytest.raises(ConfigError, match="itself"):
        load_preset(str(tmp_path / "loop.yaml"))
