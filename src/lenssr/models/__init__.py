"""Architectures, registry, self-describing checkpoints and shipped weights.

Public API: ``create_model(name, **config)``, ``register_model(name)``, ``list_models()``,
``save_checkpoint(path, model, extra)``, ``load_checkpoint(path, map_location)``,
``shipped_models()``, ``weights_dir()``. Every model maps ``(B, 1, h, w)`` to
``(B, 1, scale*h, scale*w)`` in normalised units and has ``scale`` and ``scales`` attributes;
pyramid models (``lapsrn``, ``hybrid``) also take ``forward(x, scale=s)`` and have
``forward_pyramid(x) -> [x2, x4, ...]``.
"""

from __future__ import annotations

# Importing the architecture files registers them.
from lenssr.models import (
    bicubic_arch,
    edsr_arch,
    hybrid_arch,
    lapsrn_arch,
    rrdbnet_arch,
    srcnn_arch,
)
from lenssr.models.arch_util import count_parameters
from lenssr.models.checkpoint import (
    load_checkpoint,
    model_descriptor,
    read_descriptor,
    save_checkpoint,
)
from lenssr.models.registry import create_model, get_model_class, list_models, register_model
from lenssr.models.zoo import model_card, shipped_models, weights_dir

__all__ = [
    "bicubic_arch",
    "count_parameters",
    "create_model",
    "edsr_arch",
    "get_model_class",
    "hybrid_arch",
    "lapsrn_arch",
    "list_models",
    "load_checkpoint",
    "model_card",
    "model_descriptor",
    "read_descriptor",
    "register_model",
    "rrdbnet_arch",
    "save_checkpoint",
    "shipped_models",
    "srcnn_arch",
    "weights_dir",
]
