"""Supervised training of SR models: config loading, losses, EMA, schedules, DDP.

Public API: ``train(config, resume=False, init=None, out=None, device=None, quiet=False) -> Path``
(the best checkpoint) and ``load_config(path, overrides=None) -> dict``. Heavy imports (torch)
happen when these are used, so ``import lenssr.training`` stays cheap for the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lenssr.training.config import DEFAULTS, load_config, validate_config

__all__ = ["DEFAULTS", "load_config", "train", "validate_config"]


def train(config: dict[str, Any], **kwargs: Any) -> Path:
    """Train as ``config`` says; returns ``best.safetensors``. See :func:`trainer.train`."""
    from lenssr.training.data_prep import ensure_data
    from lenssr.training.trainer import check_model_and_mixture
    from lenssr.training.trainer import train as _train

    check_model_and_mixture(config)  # bad model keys fail before any data is simulated
    ensure_data(config, progress=not kwargs.get("quiet", False))
    return _train(config, **kwargs)
