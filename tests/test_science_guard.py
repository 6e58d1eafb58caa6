"""The hallucination guard of validate-science: false positives on ``no_sub`` at the HR
operating point, and the power of the sky background (SR / HR)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from lenses import science_report
from lenssr.evaluation.spectrum import (
    background_mask,
    band_powers,
    masked_radial_power_spectrum,
    mode_counts,
    radial_power_spectrum,
    taper_weights,
)
from lenssr.science.report import clean_json, render_markdown
from lenssr.science.stats import (
    bootstrap_indices,
    false_positive_rate,
    interval,
    interval_verdict,
    median_bootstrap,
    operating_point_fprs,
    threshold_at_fpr,
)
from lenssr.science.validate import (
    BG_MIN_FRACTION,
    _background_band_powers,
    _background_summary,
    _false_positive_summary,
    background_bands,
)

# ---------------------------------------------------------------- operating point and FPR


def test_threshold_leaves_ten_percent_of_the_negatives_above():
    scores = np.random.default_rng(0).permutation(np.arange(100.0))
    t = threshold_at_fpr(scores, 0.1)
    assert t == 89.0
    assert false_positive_rate(scores, t) == 0.1
    # 15 negatives: at most floor(1.5) = 1 above
    assert false_positive_rate(np.arange(15.0), threshold_at_fpr(np.arange(15.0), 0.1)) == 1 / 15
    # ties at the threshold never push the rate above the target
    tied = np.r_[np.zeros(80), np.full(20, 1.0)]
    t = threshold_at_fpr(tied, 0.1)
    assert t == 1.0 and false_positive_rate(tied, t) == 0.0
    assert threshold_at_fpr(np.arange(5.0), 0.0) == 4.0  # nothing above the maximum
    assert np.isnan(threshold_at_fpr(np.array([]), 0.1))


def _scores(n=600, seed=1):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    hr = rng.normal(size=n) + (labels > 0) * 2.0
    return labels, hr, rng


def test_operating_point_fprs_known_shifts_and_verdicts():
    labels, hr, rng = _scores()
    neg = labels == 0
    idx = bootstrap_indices(len(labels), 300, seed=0)
    scores = {
        "hr": hr,
        "same": hr.copy(),
        "lower": hr - 0.5,  # fewer no_sub images above the HR threshold
        "higher": hr + 0.8,  # many more
        "redrawn": hr.copy(),
    }
    scores["redrawn"][neg] = rng.normal(size=neg.sum())  # no_sub: the same distribution
    op = operating_point_fprs(neg, scores, "hr", idx, fpr=0.1)
    r = op["inputs"]
    assert r["hr"]["fpr"] == pytest.approx(0.1)
    assert np.all(r["hr"]["boot"] <= 0.1 + 1e-12)  # recalibrated on HR in every resample
    assert r["same"]["diff"] == 0.0 and np.all(r["same"]["diff_boot"] == 0.0)
    assert interval_verdict(*interval(r["same"]["diff_boot"])) == "pass"
    assert interval_verdict(*interval(r["lower"]["diff_boot"])) == "pass"
    assert interval_verdict(*interval(r["higher"]["diff_boot"])) == "fail"
    assert r["higher"]["fpr"] > 0.3
    assert interval_verdict(*interval(r["redrawn"]["diff_boot"])) == "straddles"
    # the threshold is the 90th percentile of the HR no_sub scores
    assert op["threshold"] == pytest.approx(np.quantile(hr[neg], 0.9), abs=0.05)


def test_interval_verdict_cases():
    assert interval_verdict(-0.05, -0.01) == "pass"
    assert interval_verdict(-0.05, 0.0) == "pass"
    assert interval_verdict(0.0, 0.0) == "pass"
    assert interval_verdict(-0.01, 0.02) == "straddles"
    assert interval_verdict(0.0, 0.02) == "straddles"
    assert interval_verdict(0.01, 0.05) == "fail"
    assert interval_verdict(float("nan"), 0.1) == "n/a"


def test_median_bootstrap_skips_nan():
    v = np.r_[np.full(50, np.nan), np.arange(1.0, 52.0)]
    point, boot = median_bootstrap(v, bootstrap_indices(len(v), 200, seed=3))
    assert point == 26.0
    lo, hi = interval(boot)
    assert lo < 26.0 < hi
    point, boot = median_bootstrap(np.full(4, np.nan), bootstrap_indices(4, 5))
    assert np.isnan(point) and np.all(np.isnan(boot))


def test_false_positive_summary_report_rows():
    labels, hr, rng = _scores()
    p_hr = np.zeros((len(labels), 3))
    p_hr[:, 0] = 1.0 / (1.0 + np.exp(hr))  # P(no_sub) falls with the substructure score
    p_hr[:, 1] = p_hr[:, 2] = (1.0 - p_hr[:, 0]) / 2
    p_bad = p_hr.copy()
    p_bad[:, 0] *= 0.3  # lower P(no_sub): a higher substructure score for every image
    p_bad[:, 1:] = (1.0 - p_bad[:, :1]) / 2
    idx = bootstrap_indices(len(labels), 200, seed=0)
    fp = _false_positive_summary(labels, {"hr": p_hr, "bicubic": p_hr, "sr": p_bad}, idx)
    assert fp["target_fpr"] == 0.1 and fp["n_no_sub"] == 200
    assert fp["per_input"]["hr"]["verdict"] == "reference"
    assert fp["per_input"]["bicubic"]["verdict"] == "pass"
    assert fp["per_input"]["sr"]["verdict"] == "fail"
    assert fp["per_input"]["sr"]["diff_vs_hr"] > 0.1
    lo, hi = fp["per_input"]["sr"]["ci95"]
    assert lo <= fp["per_input"]["sr"]["fpr"] <= hi


# ---------------------------------------------------------------- background power


def test_taper_weights_zero_outside_one_inside_cosine_at_edges():
    mask = np.zeros((40, 40), bool)
    mask[:, :20] = True
    w = taper_weights(mask, taper_px=4.0)
    assert w.dtype == np.float32 and w.shape == (40, 40)
    assert np.all(w[:, 20:] == 0.0)
    assert np.all(w[10:30, 5:15] == 1.0)  # deeper than 4 px from every edge
    assert 0.0 < w[20, 19] < 0.2  # 1 px from the unselected half
    assert 0.0 < w[0, 10] < 0.2  # 1 px from the image border
    assert np.all(taper_weights(np.zeros((2, 8, 8), bool)) == 0.0)


def test_masked_spectrum_of_white_noise_is_flat_at_its_variance():
    noise = np.random.default_rng(0).normal(0.0, 2.0, (32, 64, 64))
    mask = np.zeros((64, 64), bool)
    mask[:, :40] = True
    w = taper_weights(mask, 4.0)
    k, power = masked_radial_power_spectrum(noise + 100.0, w)  # the median is removed
    assert power.shape == (32, 32)
    np.testing.assert_allclose(k, radial_power_spectrum(noise[0])[0])
    mean = power.mean(axis=0) / 4.0
    assert np.all(np.abs(mean - 1.0) < 0.15)
    # the band powers of white noise: sigma^2 times the number of modes in the band
    bands = {"low": (0.0, 0.125), "high": (0.25, np.inf), "all": (0.0, np.inf)}
    bp = band_powers(k, power.mean(axis=0), bands, (64, 64))
    counts = mode_counts((64, 64))
    assert bp["all"] == pytest.approx(4.0 * counts.sum(), rel=0.05)
    assert bp["high"] == pytest.approx(4.0 * counts[k >= 0.25].sum(), rel=0.05)
    # an image with no selected pixel has no spectrum
    _, p0 = masked_radial_power_spectrum(noise[:2], np.zeros((2, 64, 64)))
    assert np.all(np.isnan(p0))


def _blobs(shape, n_blobs, rng, amp=3.0, sigma=1.5):
    img = np.zeros(shape)
    ys, xs = rng.integers(4, shape[0] - 4, n_blobs), rng.integers(4, shape[1] - 4, n_blobs)
    img[ys, xs] = amp * 2 * np.pi * sigma**2
    return gaussian_filter(img, sigma)


def test_background_ratio_white_noise_blobs_and_smoothing():
    """Same background as HR -> ratio 1; invented blobs -> > 1; smoothed -> < 1."""
    rng = np.random.default_rng(5)
    n, size, sigma = 40, 96, 0.2
    hr = rng.normal(0.0, sigma, (n, size, size))
    other_noise = rng.normal(0.0, sigma, (n, size, size))  # a second white-noise realisation
    blobs = other_noise + np.stack([_blobs((size, size), 15, rng, amp=3 * sigma) for _ in hr])
    smooth = gaussian_filter(hr, (0, 1.5, 1.5))
    weights = taper_weights(np.ones((n, size, size), bool), 4.0)
    bands = background_bands(2)
    usable = np.ones(n, bool)
    bp = {
        name: _background_band_powers(x, weights, bands)
        for name, x in (("hr", hr), ("noise", other_noise), ("blobs", blobs), ("smooth", smooth))
    }
    idx = bootstrap_indices(n, 300, seed=0)
    s = _background_summary(bp, usable, np.ones(n), bands, sigma, idx)
    r = s["per_input"]
    assert s["n_images"] == n and s["bands"]["high"] == [0.25, 0.5]
    for b in bands:
        assert r["hr"][b]["ratio"] == 1.0 and r["hr"][b]["ci95"] == [1.0, 1.0]
    for b in ("mid", "high", "all"):
        lo, hi = r["noise"][b]["ci95"]
        assert 0.85 < r["noise"][b]["ratio"] < 1.15 and lo < 1.0 < hi
    assert r["noise"]["low"]["ratio"] == pytest.approx(1.0, abs=0.3)  # few modes: noisier
    # blobs of 1.5 px: extra power at low and mid k, none above the LR Nyquist frequency
    assert r["blobs"]["low"]["ci95"][0] > 2.0
    assert r["blobs"]["mid"]["ci95"][0] > 1.1
    assert r["blobs"]["all"]["ci95"][0] > 1.1
    assert 0.95 < r["blobs"]["high"]["ratio"] < 1.05
    assert r["smooth"]["high"]["ci95"][1] < 0.1
    assert r["smooth"]["all"]["ci95"][1] < 0.5
    # images without enough background are left out
    few = usable.copy()
    few[5:] = False
    assert _background_summary(bp, few, np.ones(n), bands, sigma, idx)["n_images"] == 5


def test_background_bands_follow_the_lr_nyquist_frequency():
    b = background_bands(2)
    assert b["low"] == (0.0, 0.125) and b["mid"] == (0.125, 0.25)
    assert b["high"][0] == 0.25 and b["high"][1] > 0.5
    assert background_bands(4)["high"][0] == 0.125


def test_background_mask_excludes_a_bright_source_and_keeps_the_sky():
    rng = np.random.default_rng(2)
    sigma, size = 0.2, 80
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    light = 50 * sigma * np.exp(-0.5 * (yy**2 + xx**2) / 6.0**2)
    img = light + rng.normal(0.0, sigma, (size, size))
    mask = background_mask(img, sigma, k_sigma=1.0, smooth_px=2.0, grow_px=2)
    assert not mask[40, 40] and mask[:5, :5].all() and mask[-5:, -5:].all()
    assert light[mask].max() < 1.5 * sigma  # no pixel with real light in the background
    assert mask.mean() > 0.5
    assert background_mask(img[None], sigma).shape == (1, size, size)
    with pytest.raises(ValueError):
        background_mask(img, 0.0)


def test_background_mask_on_simulated_lenses_keeps_only_faint_noiseless_light():
    """On rendered systems the HR-image mask agrees with the noiseless light (not stored)."""
    from lenssr.simulation.instrument import noise_sigma
    from lenssr.simulation.presets import load_preset
    from lenssr.simulation.render import Renderer
    from lenssr.simulation.sampling import sample_system

    preset = load_preset("default")
    renderer = Renderer(preset)
    sigma = float(noise_sigma(np.zeros(()), preset.hr))
    clean, noisy = [], []
    for i in range(9):
        rng = np.random.default_rng([11, i])
        obs = renderer.observe(sample_system(preset, rng, i % 3, renderer.distances), rng)
        clean.append(obs.hr_clean)
        noisy.append(obs.hr)
    clean, noisy = np.stack(clean), np.stack(noisy)
    mask = background_mask(noisy, sigma, 1.0, 2.0, 2)
    assert mask.any()
    faint = clean[mask] / sigma
    assert np.mean(faint < 1.0) > 0.95 and faint.max() < 1.5
    # the tapered background of some systems is large enough to count
    w = taper_weights(mask, 4.0)
    assert np.any((w**2).sum(axis=(1, 2)) / w[0].size >= BG_MIN_FRACTION)


def test_report_markdown_has_the_guard_tables():
    per = {c: {"auc": 0.7, "ci95": [0.6, 0.8]} for c in ("no_sub", "cdm", "axion")}
    row = {"per_class": per, "macro_auc": 0.8, "macro_ci95": [0.75, 0.85]}
    kinds = ["hr", "bicubic", "hybrid"]
    fp_row = {"fpr": 0.1, "ci95": [0.08, 0.12], "diff_vs_hr": 0.0, "diff_ci95": [0.0, 0.0]}
    bg_row = {b: {"ratio": 1.0, "ci95": [1.0, 1.0]} for b in ("low", "mid", "high", "all")}
    gaps = {"hybrid": {"gap_fraction": 0.6, "ci95": [0.5, 0.7]}}
    fid = {
        "einstein_mae_arcsec": 0.05,
        "flux_error": 0.01,
        "flux_residual": 0.1,
        "hallucination_number": 0.1,
    }
    report = science_report(
        dict.fromkeys(kinds, row),
        gaps,
        dict.fromkeys(kinds, fid),
        false_positives={
            "score": "1 - P(no_sub)",
            "reference": "hr",
            "target_fpr": 0.1,
            "threshold": 0.7,
            "threshold_ci95": [0.65, 0.75],
            "n_no_sub": 100,
            "per_input": {
                "hr": {**fp_row, "verdict": "reference"},
                "bicubic": {**fp_row, "fpr": 0.05, "diff_vs_hr": -0.05, "verdict": "pass"},
                "hybrid": {
                    **fp_row,
                    "fpr": 0.2,
                    "diff_vs_hr": 0.1,
                    "diff_ci95": [0.05, 0.15],
                    "verdict": "fail",
                },
            },
        },
        background_power={
            "mask": {
                "k_sigma": 1.0,
                "smooth_px": 2.0,
                "grow_px": 2,
                "taper_px": 4.0,
                "min_fraction": 0.05,
                "sigma_hr": 0.2,
            },
            "bands": {
                "low": [0, 0.125],
                "mid": [0.125, 0.25],
                "high": [0.25, 0.5],
                "all": [0, 0.5],
            },
            "n_images": 40,
            "n_test": 100,
            "median_background_fraction": 0.1,
            "per_input": {
                "hr": bg_row,
                "bicubic": bg_row,
                "hybrid": {**bg_row, "high": {"ratio": 3.5, "ci95": [3.0, float("nan")]}},
            },
        },
    )
    md = render_markdown(clean_json(report))
    assert "false positives on systems without substructure" in md
    assert "| hybrid | 0.200 [0.080, 0.120] | 0.100 [0.050, 0.150] | fail |" in md
    assert "| hr | 0.100 [0.080, 0.120] | 0 (reference) | reference |" in md
    assert "power of the sky background" in md and "40 of 100 test images" in md
    assert "| hybrid | 1 [1, 1] | 1 [1, 1] | 3.5 [3, n/a] | 1 [1, 1] |" in md
    assert "FAILS" in md and "+10.0 points" in md
