"""Discriminator registry: ``@register_discriminator("name")`` and ``create_discriminator``.

Each discriminator lives in its own ``*_arch.py`` file; its constructor arguments are its whole
configuration, so the ``gan.discriminator`` block of a YAML config maps 1:1 onto it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from lenssr.errors import ConfigError

_REGISTRY: dict[str, type[nn.Module]] = {}
D = TypeVar("D", bound=type[nn.Module])


def register_discriminator(name: str) -> Callable[[D], D]:
    """Class decorator registering a discriminator under ``name`` (unique, case-insensitive)."""
    key = name.lower()

    def decorator(cls: D) -> D:
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"discriminator {name!r} is already registered")
        _REGISTRY[key] = cls
        cls.disc_name = key  # type: ignore[attr-defined]
        return cls

    return decorator


def list_discriminators() -> list[str]:
    """Sorted names of the registered discriminators."""
    return sorted(_REGISTRY)


def create_discriminator(name: str, **config: Any) -> nn.Module:
    """Build the discriminator registered as ``name`` with constructor arguments ``config``.

    Unknown names or keys raise :class:`ConfigError` (one line).
    """
    cls = _REGISTRY.get(str(name).lower())
    if cls is None:
        raise ConfigError(
            f"unknown discriminator {name!r}; available: {', '.join(list_discriminators())}"
        )
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(config) - set(params))
    if unknown:
        raise ConfigError(
            f"unknown key(s) for discriminator {name!r}: {', '.join(unknown)}; "
            f"allowed: {', '.join(params)}"
        )
    return cls(**config)
