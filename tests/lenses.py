"""Synthetic lens images shared by the browser tests (the web page and the static site), and a
minimal validate-science report for the report-rendering tests."""

from __future__ import annotations

import io

import numpy as np


def lens_image(seed: int, shape: tuple[int, int] = (75, 75)) -> np.ndarray:
    """An Einstein-ring-like LR image: lensed arc + lens light + noise (e-/s/arcsec^2)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float64)
    cy, cx = (shape[0] - 1) / 2 + rng.uniform(-3, 3), (shape[1] - 1) / 2 + rng.uniform(-3, 3)
    r, theta = np.hypot(y - cy, x - cx), np.arctan2(y - cy, x - cx)
    ring = np.exp(-((r - shape[0] / 4.5) ** 2) / 6.0) * (0.3 + np.cos((theta - seed) / 2) ** 4)
    return (ring + 1.5 * np.exp(-r / 3.0) + rng.normal(0, 0.02, shape)).astype(np.float32)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def science_report(aucs: dict, gaps: dict, fidelity: dict, **sections: object) -> dict:
    """A ``validate-science`` report with the given AUC rows (per input type, both protocols),
    gap fractions (per model, both protocols) and fidelity rows; ``sections`` add keys."""
    return {
        "config": {
            "models": [k for k in aucs if k not in ("hr", "bicubic")],
            "preset": "default",
            "n_train_per_class": 3,
            "n_test_per_class": 1,
            "seed": 0,
            "n_boot": 10,
        },
        "classes": ["no_sub", "cdm", "axion"],
        "input_types": list(aucs),
        "recipe": {"epochs": 1},
        "fixed_classifier": aucs,
        "realistic": aucs,
        "gap_fraction": {"fixed_classifier": gaps, "realistic": gaps},
        "fidelity": fidelity,
        "einstein_estimator": "test",
        **sections,
    }
