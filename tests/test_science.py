"""Unit tests of lenssr.science: AUC and bootstrap statistics, the classifier, the Einstein-radius
estimator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lenses import science_report
from lenssr.science.classifier import (
    Recipe,
    SubstructureResNet,
    predict_proba,
    prepare_images,
    train_classifier,
)
from lenssr.science.einstein import einstein_radius, lens_centre
from lenssr.science.report import clean_json, render_markdown
from lenssr.science.stats import (
    auc,
    bootstrap_indices,
    gap_fraction,
    interval,
    ovr_auc,
    ovr_auc_bootstrap,
    roc_curve,
)


def test_auc_perfect_inverted_and_ties():
    truth = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    score = np.where(truth, 2.0, 1.0) + np.arange(6) * 1e-3
    assert auc(truth, score) == 1.0
    assert auc(truth, -score) == 0.0
    assert auc(truth, np.ones(6)) == 0.5  # all tied
    assert np.isnan(auc(np.zeros(4, bool), np.arange(4.0)))


def test_auc_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 300).astype(bool)
    score = np.round(rng.normal(size=300) + truth, 1)  # many ties
    assert auc(truth, score) == pytest.approx(metrics.roc_auc_score(truth, score), abs=1e-12)


def test_roc_curve_area_equals_auc():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 2, 200).astype(bool)
    score = np.round(rng.normal(size=200) + truth, 1)
    fpr, tpr = roc_curve(truth, score)
    assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(auc(truth, score), abs=1e-12)


def test_random_scores_give_half_within_bootstrap_interval():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 400)
    proba = rng.dirichlet(np.ones(3), size=len(labels))
    boot = ovr_auc_bootstrap(labels, proba, bootstrap_indices(len(labels), 500, seed=0))
    macro = ovr_auc(labels, proba).mean()
    lo, hi = interval(boot.mean(axis=1))
    assert lo <= 0.5 <= hi
    assert abs(macro - 0.5) < 0.05


def test_perfect_classifier_macro_auc_is_one():
    labels = np.repeat(np.arange(3), 20)
    proba = np.eye(3)[labels] * 0.9 + 0.05
    np.testing.assert_allclose(ovr_auc(labels, proba), 1.0)


def test_bootstrap_interval_contains_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(4)
    widths = []
    for n in (150, 1500):
        labels = np.repeat(np.arange(3), n // 3)
        proba = np.eye(3)[labels] * 0.6 + rng.random((n, 3))
        point = ovr_auc(labels, proba).mean()
        boot = ovr_auc_bootstrap(labels, proba, bootstrap_indices(n, 400, seed=0)).mean(axis=1)
        lo, hi = interval(boot)
        assert lo <= point <= hi
        widths.append(hi - lo)
    assert widths[1] < 0.6 * widths[0]  # ~ 1/sqrt(10) expected


def test_bootstrap_indices_are_reproducible():
    a, b = bootstrap_indices(50, 10, seed=7), bootstrap_indices(50, 10, seed=7)
    assert a.shape == (10, 50) and np.array_equal(a, b)
    assert not np.array_equal(a, bootstrap_indices(50, 10, seed=8))


def test_gap_fraction_formula():
    assert gap_fraction(0.8, 0.6, 1.0) == pytest.approx(0.5)
    assert gap_fraction(0.6, 0.6, 1.0) == 0.0
    assert gap_fraction(1.0, 0.6, 1.0) == 1.0
    assert gap_fraction(0.5, 0.6, 1.0) == pytest.approx(-0.25)
    assert np.isnan(gap_fraction(0.7, 0.8, 0.8))  # no gap
    np.testing.assert_allclose(gap_fraction(np.array([0.7, 0.9]), 0.5, 0.9), [0.5, 1.0])


def test_classifier_shapes_and_prepare():
    x = prepare_images(np.random.default_rng(0).random((3, 150, 150)) * 50 + 7)
    assert x.shape == (3, 1, 150, 150) and x.dtype == torch.float32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    model = SubstructureResNet()
    assert model(x).shape == (3, 3)
    assert model(torch.zeros(2, 1, 75, 64)).shape == (2, 3)  # any size


@pytest.mark.slow
def test_classifier_learns_a_trivial_task_and_is_deterministic():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    imgs = rng.normal(size=(24, 32, 32)).astype(np.float32)
    for c in range(3):  # class = size of a central bright square (dihedral invariant)
        imgs[labels == c, 16 - 4 * c : 16 + 4 * c, 16 - 4 * c : 16 + 4 * c] += 6.0
    x = prepare_images(imgs)
    recipe = Recipe(widths=(8, 8, 8, 8), epochs=15, batch_size=24, lr=2e-2)
    model, log = train_classifier(x, labels, recipe)
    assert log.losses[-1] < 0.5 * log.losses[0]
    assert ovr_auc(labels, predict_proba(model, x, tta=True)).mean() > 0.9
    short = Recipe(widths=(8, 8, 8, 8), epochs=2, batch_size=12)
    assert (
        train_classifier(x, labels, short)[1].losses == train_classifier(x, labels, short)[1].losses
    )


def sis_image(theta_e, beta=(0.0, 0.0), n=150, pixel_scale=0.05, seed=0, lens_amp=30.0):
    """SIS ring of a Gaussian source (exact ray tracing) + Sersic lens light, PSF and noise."""
    c = (n - 1) / 2
    y, x = (np.mgrid[0:n, 0:n] - c) * pixel_scale
    r = np.hypot(x, y) + 1e-12
    bx, by = x - theta_e * x / r - beta[0], y - theta_e * y / r - beta[1]
    ring = 40.0 * np.exp(-(bx**2 + by**2) / (2 * 0.08**2))
    lens = lens_amp * np.exp(-5.0 * ((r / 0.8) ** (1 / 2.5) - 1))
    img = gaussian_filter(ring + lens, 0.087 / 2.355 / pixel_scale)
    return img + np.random.default_rng(seed).normal(0.0, 1.0, img.shape)


@pytest.mark.parametrize("theta_e", [0.6, 1.0, 1.5, 2.0])
def test_einstein_radius_of_sis_ring_within_one_pixel(theta_e):
    est = einstein_radius(sis_image(theta_e), 0.05)
    assert abs(est - theta_e) < 0.05


@pytest.mark.parametrize("theta_e", [0.8, 1.4])
def test_einstein_radius_of_sis_double_within_one_pixel(theta_e):
    # off-axis source: two images at theta_e + beta and theta_e - beta on opposite sides
    est = einstein_radius(sis_image(theta_e, beta=(0.2, 0.1)), 0.05)
    assert abs(est - theta_e) < 0.05


def test_einstein_radius_on_lr_pixel_grid_and_centre():
    img = sis_image(1.2, n=75, pixel_scale=0.1)
    assert abs(einstein_radius(img, 0.1) - 1.2) < 0.1
    cy, cx = lens_centre(sis_image(1.2), 0.05)
    assert abs(cy - 74.5) < 1 and abs(cx - 74.5) < 1


def test_report_markdown_says_when_target_is_missed():
    per = {c: {"auc": 0.7, "ci95": [0.6, 0.8]} for c in ("no_sub", "cdm", "axion")}

    def row(m):
        return {"per_class": per, "macro_auc": m, "macro_ci95": [m - 0.05, m + 0.05]}

    aucs = {"hr": row(0.9), "bicubic": row(0.7), "hybrid": row(0.75)}
    gaps = {"hybrid": {"gap_fraction": 0.25, "ci95": [0.1, 0.4]}}
    fid = {
        "einstein_mae_arcsec": 0.05,
        "flux_error": 0.01,
        "flux_residual": 0.1,
        "hallucination_number": float("nan"),
    }
    report = science_report(aucs, gaps, {k: fid for k in aucs})
    md = render_markdown(clean_json(report))
    assert "closes 25% of the LR->HR" in md and "does NOT reach the target" in md
    assert "| hybrid |" in md and "n/a" in md  # nan -> n/a
