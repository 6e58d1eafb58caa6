"""Architecture registry: ``@register_model("name")`` and ``create_model(name, **config)``.

Registering a class wraps its ``__init__`` so every instance remembers how it was built:
``model.arch_name`` (the registered name) and ``model.config`` (all constructor arguments,
defaults filled in, tuples stored as lists so the config equals its JSON round trip).
Checkpoints store exactly these two, so a model can be rebuilt from its descriptor alone.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from lenssr.errors import LenssrError

_REGISTRY: dict[str, type[nn.Module]] = {}

# Built-in architecture modules, imported on first use of the registry.
_BUILTIN_MODULES = (
    "bicubic_arch",
    "srcnn_arch",
    "edsr_arch",
    "lapsrn_arch",
    "rrdbnet_arch",
    "hybrid_arch",
)

M = TypeVar("M", bound=type[nn.Module])


def _plain(value: Any) -> Any:
    """Tuples -> lists (recursively), so a config equals its JSON round trip."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _load_builtin() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"lenssr.models.{mod}")


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: register an ``nn.Module`` architecture under ``name``.

    The class's ``__init__`` is wrapped to record ``self.arch_name`` and ``self.config`` (a dict
    of every constructor argument, defaults included). Names must be unique.
    """
    key = name.lower()

    def decorator(cls: M) -> M:
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        original_init = cls.__init__
        signature = inspect.signature(original_init)

        @functools.wraps(original_init)
        def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
            original_init(self, *args, **kwargs)
            if type(self) is cls:  # a registered subclass records its own config
                bound = signature.bind(self, *args, **kwargs)
                bound.apply_defaults()
                config = {k: _plain(v) for k, v in bound.arguments.items()}
                config.pop(next(iter(signature.parameters)))  # self
                self.arch_name = key
                self.config = config

        cls.__init__ = __init__  # type: ignore[method-assign]
        cls.arch_name = key  # type: ignore[attr-defined]
        _REGISTRY[key] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Sorted names of all registered architectures."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (case-insensitive); unknown names raise LenssrError."""
    _load_builtin()
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise LenssrError(
            f"unknown model architecture {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None


def create_model(name: str, **config: Any) -> nn.Module:
    """Build the architecture registered as ``name`` with constructor arguments ``config``.

    Unknown names and unknown or invalid config keys raise :class:`LenssrError` (one line).
    Example: ``create_model("edsr", scale=2, num_feat=64, num_block=16)``.
    """
    cls = get_model_class(name)
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(config) - set(params) - {"self"})
    if unknown and not accepts_any:
        allowed = [p for p in params if p != "self"]
        raise LenssrError(
            f"unknown config key(s) for model {name!r}: {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed)}"
        )
    return cls(**config)
