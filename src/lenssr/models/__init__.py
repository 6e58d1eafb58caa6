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

from lenssr.lazy import exported_names, lazy_exports

# Exports load on first use, so `import lenssr.models` (and `lenssr --help`) does not import
# torch; the registry imports the built-in architecture files when it is first asked.
_EXPORTS = {
    "lenssr.models.scales": ["check_scale"],
    "lenssr.models.arch_util": ["count_parameters"],
    "lenssr.models.checkpoint": [
        "load_checkpoint",
        "model_descriptor",
        "read_descriptor",
        "save_checkpoint",
    ],
    "lenssr.models.registry": ["create_model", "get_model_class", "list_models", "register_model"],
    "lenssr.models.zoo": ["model_card", "shipped_models", "weights_dir"],
}

__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
