"""lenssr: super-resolution for strong gravitational lensing images.

Data flows one way: simulate -> dataset -> train -> checkpoint -> upscale/serve.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "load_model"]


def __getattr__(name: str):
    # Lazy exports keep `import lenssr` (and `lenssr --help`) free of torch imports.
    if name == "create_model":
        from lenssr.models.registry import create_model

        return create_model
    if name == "load_model":
        from lenssr.inference.api import load_model

        return load_model
    raise AttributeError(f"module 'lenssr' has no attribute {name!r}")
