"""Discriminators for GAN fine-tuning, one file per architecture, and their registry.

Each discriminator lives in its own ``*_arch.py`` file, registered with
``@DISCRIMINATORS.register("name")``; its constructor arguments are its whole configuration,
so the ``gan.discriminator`` block of a YAML config maps 1:1 onto it.
``create_discriminator("patchgan" | "srgan", **config)``; ``list_discriminators()``.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from lenssr.errors import ConfigError
from lenssr.registry import Registry

#: Discriminator classes by name.
DISCRIMINATORS = Registry(
    "discriminator",
    builtin=(
        "lenssr.training.discriminators.patchgan_arch",
        "lenssr.training.discriminators.srgan_arch",
    ),
)


def list_discriminators() -> list[str]:
    """Sorted names of the registered discriminators."""
    return DISCRIMINATORS.names()


def create_discriminator(name: str, **config: Any) -> nn.Module:
    """Build the discriminator registered as ``name`` with constructor arguments ``config``.

    Unknown names or keys raise :class:`ConfigError` (one line).
    """
    if name not in DISCRIMINATORS:
        raise ConfigError(
            f"unknown discriminator {name!r}; available: {', '.join(list_discriminators())}"
        )
    cls = DISCRIMINATORS.get(name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(config) - set(params))
    if unknown:
        raise ConfigError(
            f"unknown key(s) for discriminator {name!r}: {', '.join(unknown)}; "
            f"allowed: {', '.join(params)}"
        )
    return cls(**config)


__all__ = ["DISCRIMINATORS", "create_discriminator", "list_discriminators"]
