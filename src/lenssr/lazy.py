"""Lazy package exports, so that importing a package (and ``lenssr --help``) stays free of
torch until one of its names is used::

    _EXPORTS = {"lenssr.evaluation.evaluator": ["evaluate"], "lenssr.evaluation.flux": [...]}
    __all__ = exported_names(_EXPORTS)
    __getattr__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["exported_names", "lazy_exports"]


def exported_names(exports: Mapping[str, Sequence[str]]) -> list[str]:
    """Sorted names of ``{module: [name, ...]}`` (a package's ``__all__``)."""
    return sorted(name for names in exports.values() for name in names)


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``module`` when one of its names is first used."""
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
