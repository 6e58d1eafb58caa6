"""Training configuration: defaults, YAML loading, ``key=value`` overrides and validation.

A config is a nested dict with the sections below (see ``configs/*.yaml``). Every key a user
writes must exist in :data:`DEFAULTS`, except under ``model`` (its keys other than ``name`` are
the architecture's constructor arguments and are checked by ``create_model``). A YAML file may
start with ``defaults: other.yaml`` (or a list of files, paths relative to the including file):
those files are loaded first and the including file's values override theirs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lenssr.config import apply_overrides, load_yaml, merge, number
from lenssr.errors import ConfigError

__all__ = ["DEFAULTS", "apply_overrides", "load_config", "merge", "read_yaml", "validate_config"]

#: Every recognised key with its default value. ``None`` means "not set".
DEFAULTS: dict[str, Any] = {
    "model": {"name": "hybrid"},
    "data": {
        "train": None,  # .h5, DeepLense folder (LR/, HR/) or .zip of it
        "val": None,  # same kinds of source; when unset, val_fraction of train is held out
        "val_fraction": 0.1,
        "patch_size": 32,  # LR pixels; the HR patch is scale * patch_size
        "batch_size": 16,
        "num_workers": 0,
        "augment": True,  # the 8 rotations/flips
        # per-image normalisation: minmax (single-instrument models) | noise (background + sigma)
        "normalization": "minmax",
        # a preset with an lr_mixture (e.g. survey-mix): train on data.train's HR images observed
        # on the fly by LR instruments drawn from it, anew every epoch (None: the stored LR)
        "mixture": None,
        # Made with `lenssr simulate` when data.train / data.val are missing, so that a shipped
        # model is reproducible with one command from its config.
        "simulate": {
            "preset": None,  # preset name; None disables generation
            "n_train": 20000,
            "n_val": 200,
            "seed_train": 0,
            "seed_val": 1,
            "workers": 2,
        },
    },
    "loss": {
        "type": "l1",  # a name in lenssr.training.losses.LOSSES: l1 | mse | charbonnier | mse_ssim
        "ssim_weight": 0.1,  # w in MSE + w * (1 - SSIM)
        "charbonnier_eps": 1.0e-3,
        "pyramid": False,  # lapsrn/hybrid: loss on every pyramid level
        "pyramid_weights": None,  # one weight per level (x2, x4, ...); default all 1
        # sigma-head models: weight of the Gaussian negative log-likelihood of the HR target
        # under the predicted per-pixel 1-sigma (the mean is detached in that term)
        "sigma_weight": 0.0,
        # data consistency (lenssr.inference.consistency.chi2_loss): weight of the excess reduced
        # chi-squared of the SR patch re-observed by its LR instrument (needs data.mixture)
        "chi2_weight": 0.0,
        # feature loss: weight and network, "encoder" (the init hybrid's frozen encoder) or the
        # path of a substructure classifier trained on HR (the task-driven perceptual loss)
        "feature_weight": 0.0,
        "features": None,
    },
    "optim": {"lr": 2.0e-4, "weight_decay": 0.0, "betas": [0.9, 0.99], "grad_clip": None},
    "schedule": {"warmup_steps": 100, "total_steps": None, "min_lr_ratio": 0.0},
    "ema": {"decay": 0.999},
    "amp": "auto",  # auto | bf16 | fp16 | off
    "val": {"every_steps": 500, "max_images": 64, "batch_size": 16},
    "checkpoint": {"dir": "runs/train", "keep_last": 2},
    "log": {"every_steps": 10, "tensorboard": True},
    "seed": 0,
    "threads": None,  # torch CPU threads; default: all cores (divided among DDP ranks)
    "device": "auto",
    "init": None,  # pretrained weights to start from
    "init_strict": True,
    "budget": {"steps": None, "minutes": None},
}

_AMP_MODES = ("auto", "bf16", "fp16", "off")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one training YAML and the ``defaults:`` files it includes (paths relative to the
    including file), merged; values are not checked here (see :func:`validate_config`)."""
    return load_yaml(path)


def _num(
    config: dict[str, Any], section: str, key: str, *, positive: bool = False, integer: bool = False
) -> None:
    value = config[section][key]
    if value is not None:
        config[section][key] = number(
            value, f"{section}.{key}", integer=integer, positive=positive, minimum=0
        )


def validate_config(config: dict[str, Any], origin: str = "") -> dict[str, Any]:
    """Merge ``config`` onto :data:`DEFAULTS`, check keys and values; return the full config.

    Raises :class:`ConfigError` (one line) naming the first bad key or value.
    """
    where = f" in {origin}" if origin else ""
    if not isinstance(config, dict):
        raise ConfigError(f"config{where} must be a mapping of sections")
    # model keys other than name are constructor arguments, checked by create_model
    full = merge(DEFAULTS, config, strict=True, origin=origin, open_sections=("model",))

    model = full["model"]
    if not isinstance(model.get("name"), str) or not model["name"]:
        raise ConfigError(f"model.name{where} must be a model name (e.g. hybrid, edsr)")
    data = full["data"]
    for key in ("patch_size", "batch_size"):
        _num(full, "data", key, positive=True, integer=True)
    if data["patch_size"] is None:
        raise ConfigError("data.patch_size must be set (LR pixels)")
    _num(full, "data", "num_workers", integer=True)
    if data["normalization"] not in ("minmax", "noise"):
        raise ConfigError(
            f"data.normalization must be minmax or noise, got {data['normalization']!r}"
        )
    _num(full, "data", "val_fraction")
    if not 0 <= data["val_fraction"] < 1:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {data['val_fraction']!r}")

    loss = full["loss"]
    from lenssr.training.losses import LOSSES

    if loss["type"] not in LOSSES:
        raise ConfigError(f"loss.type {loss['type']!r} unknown (use {', '.join(LOSSES.names())})")
    _num(full, "loss", "ssim_weight")
    _num(full, "loss", "charbonnier_eps", positive=True)
    _num(full, "loss", "sigma_weight")
    _num(full, "loss", "chi2_weight")
    _num(full, "loss", "feature_weight")
    if loss["feature_weight"] and not loss["features"]:
        raise ConfigError("loss.feature_weight needs loss.features (encoder or a classifier path)")
    if loss["chi2_weight"] and not data["mixture"]:
        raise ConfigError("loss.chi2_weight needs data.mixture (each item's LR instrument)")
    weights = loss["pyramid_weights"]
    if weights is not None and (
        not isinstance(weights, list) or not all(isinstance(w, int | float) for w in weights)
    ):
        raise ConfigError(f"loss.pyramid_weights must be a list of numbers, got {weights!r}")

    optim = full["optim"]
    _num(full, "optim", "lr", positive=True)
    _num(full, "optim", "weight_decay")
    _num(full, "optim", "grad_clip", positive=True)
    betas = optim["betas"]
    if not (isinstance(betas, list | tuple) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {betas!r}")
    _num(full, "schedule", "warmup_steps")
    _num(full, "schedule", "total_steps", positive=True)
    _num(full, "schedule", "min_lr_ratio")
    decay = full["ema"]["decay"]
    if decay is not None and not (isinstance(decay, int | float) and 0 <= decay < 1):
        raise ConfigError(f"ema.decay must be in [0, 1) or null, got {decay!r}")

    amp = full["amp"]
    if amp is True:
        full["amp"] = "auto"
    elif amp is False or amp is None:
        full["amp"] = "off"
    elif amp not in _AMP_MODES:
        raise ConfigError(f"amp {amp!r} unknown (use {', '.join(_AMP_MODES)})")
    _num(full, "val", "every_steps", positive=True)
    _num(full, "val", "max_images", positive=True)
    _num(full, "val", "batch_size", positive=True)
    _num(full, "checkpoint", "keep_last")
    _num(full, "log", "every_steps", positive=True)
    _num(full, "budget", "steps", positive=True)
    _num(full, "budget", "minutes", positive=True)
    if full["budget"]["steps"] is None and full["budget"]["minutes"] is None:
        raise ConfigError("budget needs steps or minutes (e.g. budget: {steps: 2000})")
    threads = full["threads"]
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer, got {full['threads']!r}")
    if not isinstance(full["seed"], int) or isinstance(full["seed"], bool):
        raise ConfigError(f"seed must be an integer, got {full['seed']!r}")
    return full


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Load a training YAML (with its ``defaults:`` includes), apply ``key=value`` overrides,
    validate it and return the full config (every section filled with defaults).
    """
    raw = read_yaml(Path(path))
    raw = apply_overrides(raw, overrides)
    return validate_config(raw, origin=str(path))
