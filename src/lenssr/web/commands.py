"""CLI commands of lenssr.web (registered by lenssr.cli): ``lenssr serve``."""

from __future__ import annotations

from pathlib import Path

import typer

from lenssr.web.settings import Settings

_D = Settings()


def serve_command(
    host: str = typer.Option(
        _D.host, "--host", help="Interface to bind (127.0.0.1: this machine only)."
    ),
    port: int = typer.Option(_D.port, "--port", help="TCP port."),
    model: str = typer.Option(
        _D.model, "--model", help="Model preselected on the page (hybrid, bicubic, ...)."
    ),
    device: str = typer.Option(_D.device, "--device", help="auto, cpu or cuda."),
    max_upload_mb: float = typer.Option(
        _D.max_upload_mb, "--max-upload-mb", help="Largest upload (all files together), MB."
    ),
    max_files: int = typer.Option(_D.max_files, "--max-files", help="Most images per job."),
    max_pixels: int = typer.Option(
        _D.max_pixels, "--max-pixels", help="Most pixels of one LR image (h*w)."
    ),
    max_unpacked_mb: float = typer.Option(
        _D.max_unpacked_mb, "--max-unpacked-mb", help="Largest uncompressed size of a zip, MB."
    ),
    ttl_minutes: float = typer.Option(
        _D.ttl_minutes, "--ttl-minutes", help="Finished jobs and their files are deleted after."
    ),
    workers: int = typer.Option(
        _D.workers,
        "--workers",
        help="Large jobs run at once (others wait in a queue); small jobs have a worker of "
        "their own.",
    ),
    max_decoded_mb: float = typer.Option(
        _D.max_decoded_mb, "--max-decoded-mb", help="Decoded images of one job together, MB."
    ),
    batch_size: int = typer.Option(
        _D.batch_size,
        "--batch-size",
        min=1,
        help="Images per network call (1: progress moves per image).",
    ),
    allowed_hosts: list[str] | None = typer.Option(
        None,
        "--allowed-host",
        help="Host name the server answers to besides localhost (repeatable; '*' for any, "
        "behind a proxy that checks it).",
    ),
    work_dir: Path | None = typer.Option(
        None,
        "--work-dir",
        help="Folder of the jobs' files (default: a temporary one, deleted at exit). With it, "
        "jobs survive a restart: finished ones are served until their TTL, interrupted ones "
        "run again.",
    ),
    allowed_origins: list[str] | None = typer.Option(
        None,
        "--allowed-origin",
        help="Web origin (https://site.example) allowed to submit jobs (repeatable).",
    ),
) -> None:
    """Serve the web page: drop a zip of LR images, download their SR versions."""
    import uvicorn

    from lenssr.web.app import create_app

    settings = Settings(
        host=host,
        port=port,
        model=model,
        device=device,
        max_upload_mb=max_upload_mb,
        max_files=max_files,
        max_pixels=max_pixels,
        max_unpacked_mb=max_unpacked_mb,
        ttl_minutes=ttl_minutes,
        workers=workers,
        max_decoded_mb=max_decoded_mb,
        batch_size=batch_size,
        allowed_hosts=tuple(allowed_hosts or ()),
        allowed_origins=tuple(allowed_origins or ()),
        work_dir=work_dir,
    )
    app = create_app(settings)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: serving on {host}: anyone who can reach this address can use the server",
            fg=typer.colors.YELLOW,
            err=True,
        )
        if host in ("0.0.0.0", "::") and not allowed_hosts:
            typer.secho(
                "note: only requests for localhost are answered; name the host clients use "
                "with --allowed-host",
                fg=typer.colors.YELLOW,
                err=True,
            )
    typer.echo(f"lenssr web: http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("serve")(serve_command)
