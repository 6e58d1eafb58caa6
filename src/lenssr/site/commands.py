"""CLI commands of lenssr.site (registered by lenssr.cli): ``lenssr export-site``."""

from __future__ import annotations

from pathlib import Path

import typer

from lenssr.site.export import DEFAULT_MODELS


def export_site_command(
    output: Path = typer.Option(..., "-o", "--output", help="Folder to write the site to."),
    models: str = typer.Option(
        ",".join(DEFAULT_MODELS),
        "--models",
        help="Comma-separated shipped models to include (e.g. hybrid,edsr).",
    ),
    offline: bool = typer.Option(
        True,
        "--offline/--no-offline",
        help="Also write offline.js (runtime and models in one script), so that the page works "
        "opened from disk (file://).",
    ),
) -> None:
    """Write the static site that upscales images in the browser (no server needed)."""
    from lenssr.site.export import export_site

    names = [m.strip() for m in models.split(",") if m.strip()]
    dest = export_site(output, names, progress=True, offline=offline)
    typer.echo(f"site written to {dest}/ (serve it with any static file server)")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("export-site")(export_site_command)
