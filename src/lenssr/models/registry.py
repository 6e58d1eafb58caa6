"""Architecture registry: ``@register_model("name")`` and ``create_model(name, **config)``.

Registering a class wraps its ``__init__`` so every instance remembers how it was built:
``model.arch_name`` (the registered name) and ``model.config`` (all constructor arguments,
defaults filled in, tuples stored as lists so the config equals its JSON round trip).
Checkpoints store exactly these two, so a model can be rebuilt from its descriptor alone.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from lenssr.errors import LenssrError
from lenssr.registry import Registry

#: Every architecture by name; the built-in ``*_arch.py`` files register on the first lookup.
MODELS = Registry(
    "model architecture",
    builtin=[
        f"lenssr.models.{mod}"
        for mod in (
            "bicubic_arch",
            "srcnn_arch",
            "edsr_arch",
            "lapsrn_arch",
            "rrdbnet_arch",
            "hybrid_arch",
        )
    ],
)

M = TypeVar("M", bound=type[nn.Module])


def _plain(value: Any) -> Any:
    """Tuples -> lists (recursively), so a config equals its JSON round trip."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator: register an ``nn.Module`` architecture under ``name``.

    The class's ``__init__`` is wrapped to record ``self.arch_name`` and ``self.config`` (a dict
    of every constructor argument, defaults included). Names must be unique.
    """
    key = name.lower()

    def decorator(cls: M) -> M:
        MODELS.register(key)(cls)  # a name taken by another class raises ValueError
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
        return cls

    return decorator


def list_models() -> list[str]:
    """Sorted names of all registered architectures."""
    return MODELS.names()


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (case-insensitive); unknown names raise LenssrError."""
    return MODELS.get(name)


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
