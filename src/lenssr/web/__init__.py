"""The web page: ``create_app(settings) -> FastAPI`` (``lenssr serve`` runs it with uvicorn).

``create_app`` is imported lazily so ``import lenssr.web`` (and ``lenssr --help``) stays light.
"""

from __future__ import annotations

from typing import Any

from lenssr.web.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from lenssr.web.app import create_app

        return create_app
    raise AttributeError(f"module 'lenssr.web' has no attribute {name!r}")
