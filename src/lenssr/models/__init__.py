"""Architectures, registry, self-describing checkpoints and shipped weights.

Public API: ``create_model(name, **config)``, ``register_model(name)``, ``list_models()``,
``save_checkpoint(path, model, extra)``, ``load_checkpoint(path, map_location)``,
``shipped_models()``, ``weights_dir()``, ``check_scale(model, scale)``. Every model's
``forward(x, scale=None)`` maps ``(B, 1, h, w)`` to ``(B, 1, s*h, s*w)`` in normalised units
for ``s`` in its ``scales`` (``scale``, the default, when None); :func:`check_scale` is the one
check of a requested scale. Pyramid models (``lapsrn``, ``hybrid``) serve several scales and
have ``forward_pyramid(x) -> [x2, x4, ...]``.
"""

from __future__ import annotations

from typing import Any

# Exports load on first use, so `import lenssr.models` (and `lenssr --help`) does not import
# torch; the registry imports the built-in architecture files when it is first asked.
_WHERE = {
    "check_scale": "lenssr.models.scales",
    "count_parameters": "lenssr.models.arch_util",
    "load_checkpoint": "lenssr.models.checkpoint",
    "model_descriptor": "lenssr.models.checkpoint",
    "read_descriptor": "lenssr.models.checkpoint",
    "save_checkpoint": "lenssr.models.checkpoint",
    "create_model": "lenssr.models.registry",
    "get_model_class": "lenssr.models.registry",
    "list_models": "lenssr.models.registry",
    "register_model": "lenssr.models.registry",
    "model_card": "lenssr.models.zoo",
    "shipped_models": "lenssr.models.zoo",
    "weights_dir": "lenssr.models.zoo",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'lenssr.models' has no attribute {name!r}")
