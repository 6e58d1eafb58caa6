"""CLI commands of lenssr.pretrain (registered by lenssr.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
