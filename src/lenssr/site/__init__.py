"""The static in-browser site: ``lenssr export-site`` writes a folder that runs the shipped
models with ONNX Runtime Web (WASM, WebGPU where available), so images never leave the user's
machine. See ``docs/site.md``."""

from typing import Any

__all__ = ["DEFAULT_MODELS", "export_site"]


def __getattr__(name: str) -> Any:  # lazy, so `python -m lenssr.site.vendor` imports nothing more
    if name in __all__:
        from lenssr.site import export

        return getattr(export, name)
    raise AttributeError(name)
