"""Inference: ``load_model`` -> ``SRModel.upscale``, tiling, TTA, ONNX export, batch upscaling.

Exports are lazy so ``import lenssr.inference`` (and ``lenssr --help``) does not import torch.
"""

from __future__ import annotations

from lenssr.lazy import exported_names, lazy_exports

_EXPORTS = {
    "lenssr.inference.api": ["SRModel", "load_model"],
    "lenssr.inference.onnx_export": ["OnnxSRModel", "export_onnx", "load_onnx_model"],
    "lenssr.inference.upscale": ["upscale_path"],
}

__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
