"""One registry type for everything chosen by name in a config: architectures, losses,
discriminators, training tasks.

    LOSSES = Registry("loss")

    @LOSSES.register("charbonnier")
    class CharbonnierLoss(nn.Module): ...

    LOSSES.get("charbonnier")        # the class; an unknown name is a one-line LenssrError
    LOSSES.names()                   # sorted names

Names are case-insensitive and unique per registry. ``builtin`` names the modules that
register the built-in entries; they are imported on the first lookup, so importing a registry
stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from lenssr.errors import LenssrError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry:
    """Named entries of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str, builtin: Iterable[str] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._builtin = tuple(builtin)
        self._loaded = not self._builtin

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register a class or function under ``name``."""
        key = name.lower()

        def decorator(obj: T) -> T:
            if self._entries.get(key, obj) is not obj:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._entries[key] = obj
            return obj

        return decorator

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtin:
                importlib.import_module(module)

    def get(self, name: str) -> Any:
        """The entry registered as ``name``; unknown names raise :class:`LenssrError`."""
        self._load()
        try:
            return self._entries[str(name).lower()]
        except KeyError:
            raise LenssrError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Sorted names of all entries."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return str(name).lower() in self._entries
