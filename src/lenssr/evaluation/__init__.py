"""Evaluation: metrics (MSE, PSNR, SSIM), flux consistency, power spectra, tables and figures.

Exports are lazy so ``import lenssr.evaluation`` (and ``lenssr --help``) does not import torch.
"""

from __future__ import annotations

from lenssr.lazy import exported_names, lazy_exports

_EXPORTS = {
    "lenssr.evaluation.evaluator": ["EvaluationResult", "ModelResult", "evaluate", "plot_examples"],
    "lenssr.evaluation.flux": ["flux_consistency"],
    "lenssr.evaluation.spectrum": [
        "hallucination_number",
        "plot_power_spectrum_ratio",
        "power_spectrum_ratio",
        "radial_power_spectrum",
    ],
    "lenssr.evaluation.metrics": ["mse", "psnr", "psnr_torch", "ssim", "ssim_torch"],
}

__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
