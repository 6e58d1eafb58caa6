"""Inference: ``load_model`` -> ``SRModel.upscale``, tiling, TTA, ONNX export, batch upscaling.

Exports are lazy so ``import lenssr.inference`` (and ``lenssr --help``) does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "OnnxSRModel",
    "SRModel",
    "export_onnx",
    "load_model",
    "load_onnx_model",
    "upscale_path",
]

_WHERE = {
    "SRModel": "lenssr.inference.api",
    "load_model": "lenssr.inference.api",
    "OnnxSRModel": "lenssr.inference.onnx_export",
    "export_onnx": "lenssr.inference.onnx_export",
    "load_onnx_model": "lenssr.inference.onnx_export",
    "upscale_path": "lenssr.inference.upscale",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'lenssr.inference' has no attribute {name!r}")
