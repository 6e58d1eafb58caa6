"""Evaluation: metrics (MSE, PSNR, SSIM), flux consistency, power spectra, tables and figures.

Exports are lazy so ``import lenssr.evaluation`` (and ``lenssr --help``) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EvaluationResult",
    "ModelResult",
    "evaluate",
    "flux_consistency",
    "hallucination_number",
    "mse",
    "plot_examples",
    "plot_power_spectrum_ratio",
    "power_spectrum_ratio",
    "psnr",
    "psnr_torch",
    "radial_power_spectrum",
    "ssim",
    "ssim_torch",
]

_WHERE = {
    "EvaluationResult": "lenssr.evaluation.evaluator",
    "ModelResult": "lenssr.evaluation.evaluator",
    "evaluate": "lenssr.evaluation.evaluator",
    "plot_examples": "lenssr.evaluation.evaluator",
    "flux_consistency": "lenssr.evaluation.flux",
    "hallucination_number": "lenssr.evaluation.spectrum",
    "plot_power_spectrum_ratio": "lenssr.evaluation.spectrum",
    "power_spectrum_ratio": "lenssr.evaluation.spectrum",
    "radial_power_spectrum": "lenssr.evaluation.spectrum",
    "mse": "lenssr.evaluation.metrics",
    "psnr": "lenssr.evaluation.metrics",
    "psnr_torch": "lenssr.evaluation.metrics",
    "ssim": "lenssr.evaluation.metrics",
    "ssim_torch": "lenssr.evaluation.metrics",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'lenssr.evaluation' has no attribute {name!r}")
