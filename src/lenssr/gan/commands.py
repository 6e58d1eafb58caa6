"""CLI commands of lenssr.gan (registered by lenssr.cli): ``lenssr gan``."""

from __future__ import annotations

from pathlib import Path

import typer


def gan_command(
    config: Path = typer.Option(..., "--config", "-c", help="GAN YAML (see configs/)."),
    vgg_weights: Path | None = typer.Option(
        None,
        "--vgg-weights",
        help="Local torchvision VGG-19 weights (.pth/.safetensors) for the perceptual loss; "
        "without it the pretrained lensing encoder's features are used. Nothing is downloaded.",
    ),
    init: Path | None = typer.Option(
        None, "--init", help="Generator checkpoint (overrides init in the config)."
    ),
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
    """GAN fine-tuning of the pretrained hybrid (PatchGAN or SRGAN discriminator).

    Prints the path of generator.safetensors, a normal hybrid checkpoint for `lenssr upscale`,
    `lenssr evaluate` and lenssr.inference.load_model.
    """
    from lenssr.gan.trainer import load_gan_config, train_gan

    cfg = load_gan_config(config, overrides)
    path = train_gan(
        cfg, vgg_weights=vgg_weights, init=init, out=out, device=device, quiet=quiet, resume=resume
    )
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("gan")(gan_command)
