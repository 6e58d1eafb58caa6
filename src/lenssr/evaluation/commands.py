"""CLI commands of lenssr.evaluation (registered by lenssr.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

from lenssr.errors import LenssrError

_FLUX_PSF = {
    "per-pair": "; each pair re-observed with its own LR PSF, as recorded in the data",
    "preset": "",
    "preset-mixture": "; WARNING: this preset draws the LR instrument per system but the data "
    "do not record it, so every pair is re-observed with the preset's fixed LR PSF (approximate)",
    "degrade": "",
}
_SOURCES = {
    "option": "from --preset",
    "data": "recorded in the data",
    "default": "the data record no preset",
    "degrade": "a forward model was given",
}


def evaluate_command(
    model: str = typer.Option(
        "hybrid",
        "--model",
        "-m",
        help="Model names or checkpoint paths, comma-separated (bicubic is always added).",
    ),
    data: Path = typer.Option(
        ..., "--data", "-d", help="LR/HR pairs: .h5, DeepLense folder (LR/, HR/) or .zip."
    ),
    n: int | None = typer.Option(None, "--n", help="Evaluate the first N pairs (default all)."),
    out: Path = typer.Option(
        Path("lenssr-eval"), "--out", "-o", help="Folder for metrics.json and the figures."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="Simulation preset of the data (for flux consistency); default: the preset "
        "the data file records, else 'default'.",
    ),
    tta: bool = typer.Option(False, "--tta", help="8-fold dihedral test-time augmentation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per forward pass."),
    examples: int = typer.Option(4, "--examples", help="Example rows in examples.png."),
) -> None:
    """Compare models with bicubic on LR/HR pairs: PSNR, SSIM, MSE, flux, power spectra."""
    from rich.console import Console

    from lenssr.evaluation.evaluator import evaluate

    models = [m.strip() for m in model.split(",") if m.strip()]
    if not data.exists():
        raise LenssrError(f"data not found: {data}")
    result = evaluate(
        models,
        data,
        n=n,
        preset=preset,
        out=out,
        batch_size=batch_size,
        device=device,
        tta=tta,
        examples=examples,
        progress=True,
    )
    console = Console()
    console.print(result.table())
    console.print(
        "metrics: per-image after mapping SR and HR with the HR image's min..max to [0, 1]; "
        "SSIM = scikit-image defaults (7x7 uniform window)."
    )
    console.print(
        f"flux consistency: preset {result.preset} ({_SOURCES[result.preset_source]})"
        f"{_FLUX_PSF[result.flux_psf]}"
    )
    for label, path in result.files.items():
        console.print(f"{label}: {path}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("evaluate")(evaluate_command)
