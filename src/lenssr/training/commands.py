"""CLI commands of lenssr.training (registered by lenssr.cli): ``lenssr train``."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="Training YAML (see configs/)."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config value: section.key=value (repeatable)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/last.* exactly."),
    init: Path | None = typer.Option(
        None, "--init", help="Start from pretrained weights (a checkpoint or state dict)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or messages."),
) -> None:
    """Train an SR model on LR/HR pairs; writes best/last checkpoints and TensorBoard logs.

    Runs on several processes with DistributedDataParallel when started with
    `torchrun --nproc_per_node N -m lenssr.cli train ...`.
    """
    from lenssr.training import load_config, train

    cfg = load_config(config, overrides)
    best = train(cfg, resume=resume, init=init, out=out, device=device, quiet=quiet)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(str(best))


def ship_command(
    checkpoint: Path = typer.Argument(..., help="Trained checkpoint (e.g. runs/hybrid/best)."),
    name: str = typer.Option(..., "--name", "-n", help="Shipped model name (e.g. hybrid)."),
    test: Path = typer.Option(..., "--test", help="Held-out paired data (.h5, folder, .zip)."),
    n: int | None = typer.Option(None, "--n", help="Evaluate the first n pairs only."),
    preset: str | None = typer.Option(
        None, "--preset", help="Preset whose instrument made the LR (default: the data's own)."
    ),
    config: Path | None = typer.Option(None, "--config", help="Training config (for the card)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Evaluate a checkpoint on held-out pairs and install it in the package with a model card."""
    from lenssr.training.ship import ship_model

    if not test.exists():
        from lenssr.errors import LenssrError

        raise LenssrError(f"{test}: test data not found")
    path = ship_model(checkpoint, name, test, n=n, preset=preset, config_path=config, device=device)
    typer.echo(f"shipped {name}: {path}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("train")(train_command)
    app.command("ship")(ship_command)
