"""Training of SR models: one engine (:mod:`lenssr.training.engine`) runs the tasks of
:mod:`lenssr.training.tasks` (supervised, denoising pretraining, GAN fine-tuning).

Public API: ``train(config, resume=False, init=None, out=None, device=None, quiet=False,
on_validation=None) -> Path`` (the best checkpoint), ``pretrain(config, ...) -> Path``
(``pretrained.safetensors``), ``train_gan(config, vgg_weights=None, ...) -> Path``
(``generator.safetensors``), ``load_config(path, overrides=None) -> dict`` and
``load_task_config(task, path, overrides=None)``. Heavy imports (torch) happen when these are
used, so ``import lenssr.training`` stays cheap for the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lenssr.training.config import DEFAULTS, load_config, validate_config

__all__ = [
    "DEFAULTS",
    "load_config",
    "load_task_config",
    "pretrain",
    "train",
    "train_gan",
    "validate_config",
]


def load_task_config(task: str, path: str | Path, overrides: list[str] | None = None) -> dict:
    """Read and validate the YAML config of training task ``task`` (``supervised``,
    ``denoise``, ``gan``), with ``key=value`` overrides."""
    from lenssr.training.engine import TASKS

    if task == "supervised":
        return load_config(path, overrides)
    return TASKS.get(task).load_config(path, overrides)


def train(config: dict[str, Any], **kwargs: Any) -> Path:
    """Supervised training as ``config`` says; returns ``best.safetensors``. ``kwargs``: those
    of :class:`lenssr.training.engine.Engine`. Missing data named by ``data.simulate`` are
    simulated first. Under ``torchrun`` every process calls this; only rank 0 writes files."""
    from lenssr.training.data_prep import ensure_data
    from lenssr.training.engine import run_task
    from lenssr.training.tasks.supervised import check_model_and_mixture

    check_model_and_mixture(config)  # bad model keys fail before any data is simulated
    ensure_data(config, progress=not kwargs.get("quiet", False))
    return run_task("supervised", config, **kwargs)


def pretrain(config: dict[str, Any], **kwargs: Any) -> Path:
    """Denoising pretraining as ``config`` says; returns ``pretrained.safetensors``, a normal
    hybrid checkpoint for ``lenssr train --init`` and ``lenssr gan``."""
    from lenssr.training.engine import run_task

    return run_task("denoise", config, **kwargs)


def train_gan(
    config: dict[str, Any], *, vgg_weights: str | Path | None = None, **kwargs: Any
) -> Path:
    """GAN fine-tuning as ``config`` says; returns ``generator.safetensors``, a normal
    checkpoint of the generator's architecture. ``vgg_weights`` (or
    ``gan.perceptual.vgg_weights``): local VGG-19 weights for the perceptual loss."""
    from lenssr.training.engine import run_task
    from lenssr.training.tasks.gan import validate_gan_config

    cfg = validate_gan_config(config)
    if vgg_weights is not None:
        cfg["gan"]["perceptual"]["vgg_weights"] = str(vgg_weights)
    return run_task("gan", cfg, **kwargs)
