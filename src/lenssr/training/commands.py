"""CLI commands of lenssr.training (registered by lenssr.cli): ``lenssr train``,
``lenssr pretrain``, ``lenssr gan`` and ``lenssr ship``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

_OVERRIDES = typer.Option(
    [], "--set", "-s", help="Override a config value: section.key=value (repeatable)."
)
_RESUME = typer.Option(False, "--resume", help="Continue the run in the output directory exactly.")
_OUT = typer.Option(None, "--out", "-o", help="Output directory.")
_DEVICE = typer.Option(None, "--device", help="auto, cpu or cuda.")
_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or messages.")


def _echo_result(path: Path) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(str(path))


def train_command(
    config: Path = typer.Option(..., "--config", "-c", help="Training YAML (see configs/)."),
    overrides: list[str] = _OVERRIDES,
    resume: bool = _RESUME,
    init: Path | None = typer.Option(
        None, "--init", help="Start from pretrained weights (a checkpoint or state dict)."
    ),
    out: Path | None = _OUT,
    device: str | None = _DEVICE,
    quiet: bool = _QUIET,
) -> None:
    """Train an SR model on LR/HR pairs; writes best/last checkpoints and TensorBoard logs.

    Runs on several processes with DistributedDataParallel when started with
    `torchrun --nproc_per_node N -m lenssr.cli train ...` (so do `pretrain` and `gan`).
    """
    from lenssr.training import load_config, train

    cfg = load_config(config, overrides)
    _echo_result(train(cfg, resume=resume, init=init, out=out, device=device, quiet=quiet))


def pretrain_command(
    config: Path = typer.Option(..., "--config", "-c", help="Pretraining YAML (see configs/)."),
    overrides: list[str] = _OVERRIDES,
    out: Path | None = _OUT,
    device: str | None = _DEVICE,
    resume: bool = _RESUME,
    quiet: bool = _QUIET,
) -> None:
    """Denoising-autoencoder pretraining of the hybrid on LR images alone.

    Prints the path of pretrained.safetensors, a normal hybrid checkpoint: fine-tune it with
    `lenssr train --init PATH` or use it as the generator of `lenssr gan`.
    """
    from lenssr.training import load_task_config, pretrain

    cfg = load_task_config("denoise", config, overrides)
    _echo_result(pretrain(cfg, out=out, device=device, quiet=quiet, resume=resume))


def gan_command(
    config: Path = typer.Option(..., "--config", "-c", help="GAN YAML (see configs/)."),
    vgg_weights: Path | None = typer.Option(
        None,
        "--vgg-weights",
        help="Local torchvision VGG-19 weights (.pth/.safetensors) for the perceptual loss; "
        "without it the pretrained lensing encoder's features are used. Nothing is downloaded.",
    ),
    overrides: list[str] = _OVERRIDES,
    resume: bool = _RESUME,
    init: Path | None = typer.Option(
        None, "--init", help="Generator checkpoint (overrides init in the config)."
    ),
    out: Path | None = _OUT,
    quiet: bool = _QUIET,
    device: str | None = _DEVICE,
) -> None:
    """GAN fine-tuning of the pretrained hybrid (PatchGAN or SRGAN discriminator).

    Prints the path of generator.safetensors, a normal hybrid checkpoint for `lenssr upscale`,
    `lenssr evaluate` and lenssr.inference.load_model.
    """
    from lenssr.training import load_task_config, train_gan

    cfg = load_task_config("gan", config, overrides)
    path = train_gan(
        cfg, vgg_weights=vgg_weights, init=init, out=out, device=device, quiet=quiet, resume=resume
    )
    _echo_result(path)


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
    app.command("pretrain")(pretrain_command)
    app.command("gan")(gan_command)
    app.command("ship")(ship_command)
