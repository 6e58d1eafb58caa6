"""CLI commands of lenssr.pretrain (registered by lenssr.cli): ``lenssr pretrain``."""

from __future__ import annotations

from pathlib import Path

import typer


def pretrain_command(
    config: Path = typer.Option(..., "--config", "-c", help="Pretraining YAML (see configs/)."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config value: section.key=value (repeatable)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in the output directory exactly."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or messages."),
) -> None:
    """Denoising-autoencoder pretraining of the hybrid on LR images alone.

    Prints the path of pretrained.safetensors, a normal hybrid checkpoint: fine-tune it with
    `lenssr train --init PATH` or use it as the generator of `lenssr gan`.
    """
    from lenssr.pretrain.pretrain import load_pretrain_config, pretrain

    cfg = load_pretrain_config(config, overrides)
    typer.echo(str(pretrain(cfg, out=out, device=device, quiet=quiet, resume=resume)))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("pretrain")(pretrain_command)
