"""CLI commands of lenssr.inference (registered by lenssr.cli): ``upscale`` and ``export``.

Thin wrappers over :func:`lenssr.inference.upscale.upscale_path` and
:func:`lenssr.inference.onnx_export.export_onnx`; heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

from lenssr.errors import LenssrError

#: ONNX Runtime vs PyTorch max abs difference (normalised units) above which export fails.
EXPORT_TOLERANCE = 1e-4


def upscale(
    inp: Path = typer.Argument(..., metavar="INPUT", help="LR file, folder or .zip archive."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file, folder or .zip."),
    model: str = typer.Option(
        "hybrid", "--model", "-m", help="hybrid, hybrid-gan, bicubic, <shipped name> or checkpoint."
    ),
    scale: int | None = typer.Option(None, "--scale", "-s", help="2 or 4 (pyramid models)."),
    tta: bool = typer.Option(False, "--tta", help="8-fold rotation/flip self-ensemble."),
    tile: int | None = typer.Option(
        None, "--tile", min=1, help="Tile size in LR pixels (default: automatic above 512x512)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto (ONNX Runtime on CPU, PyTorch on CUDA), torch or onnxruntime.",
    ),
    onnx: Path | None = typer.Option(
        None, "--onnx", help="Exported .onnx to run (implies --backend onnxruntime)."
    ),
    conserve_flux: bool = typer.Option(
        False, "--conserve-flux", help="Keep total flux instead of surface brightness."
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", min=1, help="Images or tiles per network call."
    ),
    psf_fwhm: float | None = typer.Option(
        None, "--psf-fwhm", help="LR PSF FWHM in arcsec (default: FITS header, else 0.18)."
    ),
    pixel_scale: float | None = typer.Option(
        None, "--pixel-scale", help="LR pixel scale in arcsec (default: FITS WCS, else 0.10)."
    ),
    uncertainty: bool = typer.Option(
        False, "--uncertainty", help="Also write each output's calibrated 1-sigma map."
    ),
    noise_sigma: float | None = typer.Option(
        None,
        "--noise-sigma",
        help="Background noise sigma in the images' units (default: estimated).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", "--no-progress", help="No progress bar."),
    max_pixels: int = typer.Option(
        8192 * 8192,
        "--max-pixels",
        min=1,
        help="Largest image (h*w LR pixels) read; files declaring more are skipped unread.",
    ),
) -> None:
    """Super-resolve LR images (.npy, FITS, PNG, TIFF; a file, a folder or a .zip)."""
    from lenssr.inference.upscale import upscale_path
    from lenssr.io import ZipLimits

    if onnx is not None:
        backend = "onnxruntime"
    for flag, value in (("--psf-fwhm", psf_fwhm), ("--pixel-scale", pixel_scale)):
        if value is not None and not value > 0:
            raise LenssrError(f"{flag} must be > 0 (arcsec), got {value}")
    if noise_sigma is not None and not noise_sigma >= 0:
        raise LenssrError(f"--noise-sigma must be >= 0, got {noise_sigma}")
    instruments: dict[str, dict] = {}
    report = upscale_path(
        inp,
        output,
        model=model,
        scale=scale,
        tta=tta,
        tile=tile,
        device=device,
        backend=backend,
        conserve_flux=conserve_flux,
        progress=not quiet,
        onnx_path=onnx,
        batch_size=batch_size,
        limits=ZipLimits(max_pixels=max_pixels),
        psf_fwhm=psf_fwhm,
        pixel_scale=pixel_scale,
        noise_sigma=noise_sigma,
        instruments=instruments,
        uncertainty=uncertainty,
    )
    typer.echo(report.summary())
    for line in instrument_summary(instruments):
        typer.echo(line)
    if not report.processed:
        raise typer.Exit(1)


def instrument_summary(instruments: dict[str, dict]) -> list[str]:
    """Lines telling which LR instrument an instrument-aware model used (given, read from the
    FITS header, estimated or assumed), and any out-of-range warnings, once each."""
    from lenssr.data.conditioning import DEFAULT_INSTRUMENT

    if not instruments:
        return []
    lines: list[str] = []
    assumed = [n for n, i in instruments.items() if i.get("assumed")]
    if assumed:
        lines.append(
            f"instrument: {len(assumed)} of {len(instruments)} image(s) assumed the default LR "
            f'camera (PSF FWHM {DEFAULT_INSTRUMENT["psf_fwhm"]}" on '
            f'{DEFAULT_INSTRUMENT["pixel_scale"]}" pixels) for what they did not say; give '
            "--psf-fwhm and --pixel-scale (arcsec)"
        )
    fwhms = sorted({i["psf_fwhm_pix"] for i in instruments.values() if "psf_fwhm_pix" in i})
    if fwhms:
        span = f"{fwhms[0]:.2f}" if len(fwhms) == 1 else f"{fwhms[0]:.2f}-{fwhms[-1]:.2f}"
        estimated = sum(i.get("noise_sigma") == "estimated" for i in instruments.values())
        lines.append(
            f"instrument: PSF FWHM {span} LR pixels; noise sigma "
            + (f"estimated from {estimated} image(s)" if estimated else "given")
        )
    for warning in sorted({i["warning"] for i in instruments.values() if i.get("warning")}):
        lines.append(f"warning: {warning}")
    return lines


def export(
    model: str = typer.Option("hybrid", "--model", "-m", help="Shipped name or checkpoint."),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.onnx)."),
    scale: int | None = typer.Option(None, "--scale", "-s", help="Scale of the exported graph."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Compare ONNX Runtime with PyTorch on several sizes."
    ),
) -> None:
    """Export a model for deployment and check it against PyTorch."""
    if fmt.lower() != "onnx":
        raise LenssrError(f"unknown export format {fmt!r}; supported: onnx")
    from lenssr.inference.api import load_model
    from lenssr.inference.onnx_export import OnnxSRModel, check_onnx, export_onnx

    sr = load_model(model, device="cpu")
    path = export_onnx(sr, output, scale=scale, opset=opset)
    typer.echo(f"exported {sr.name} x{sr.check_scale(scale)} to {path}")
    if not check:
        return
    diffs = check_onnx(sr, OnnxSRModel(path, device="cpu"))
    for (b, h, w), d in diffs.items():
        typer.echo(f"  batch {b} {h}x{w}: max abs diff {d:.2e}")
    worst = max(diffs.values())
    typer.echo(f"onnxruntime vs pytorch: max abs diff {worst:.2e} (tolerance {EXPORT_TOLERANCE:g})")
    if worst > EXPORT_TOLERANCE:
        raise typer.Exit(1)


def calibrate(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (.safetensors) with a sigma head."),
    data: str = typer.Option(
        "survey-mix",
        "--data",
        help="A preset to render held-out pairs from (with arc masks), or a file of held-out "
        "LR/HR pairs (.h5, folder, .zip).",
    ),
    n: int = typer.Option(300, "--n", help="Pairs to calibrate on."),
    seed: int = typer.Option(7, "--seed", help="Seed of the rendered pairs (a preset)."),
    variance_net: Path | None = typer.Option(
        None,
        "--variance-net",
        help="Instead: train the post-hoc variance network by this recipe (YAML, e.g. "
        "configs/uncertainty/variance-net.yaml) on top of the stored calibration; its weights "
        "go beside the checkpoint as <stem>.sigma.safetensors.",
    ),
) -> None:
    """Calibrate a model's per-pixel 1-sigma on held-out pairs (stored in its descriptor)."""
    from lenssr.inference.uncertainty import calibrate as run

    if variance_net is not None:
        from lenssr.inference.variance_net import train_variance_net

        sec = train_variance_net(checkpoint, variance_net)
        v, t = sec["validation"]["variance_net"], sec["validation"]["three_term"]
        typer.echo(
            f"variance network ({sec['members']} members, {sec['wall_s']:.0f} s): validation "
            f"coverage 1σ/2σ all {100 * t['all']['cov1']:.1f}/{100 * t['all']['cov2']:.1f}% -> "
            f"{100 * v['all']['cov1']:.1f}/{100 * v['all']['cov2']:.1f}%, arcs "
            f"{100 * t['arc']['cov1']:.1f}/{100 * t['arc']['cov2']:.1f}% -> "
            f"{100 * v['arc']['cov1']:.1f}/{100 * v['arc']['cov2']:.1f}%; written to "
            f"{Path(checkpoint).with_suffix('.json')} and {sec['file']}"
        )
        return

    info = run(checkpoint, data, n=n, seed=seed)
    b, a = info["before"], info["after"]
    coef = ", ".join(f"{k} {v[0]:+.2f}{v[1]:+.2f}u" for k, v in info["coefficients"].items())
    typer.echo(
        f"sigma terms ({coef}) from {info['n']} pairs of {data}: coverage "
        f"1σ {100 * b['cov1']:.1f}% -> {100 * a['cov1']:.1f}%, "
        f"2σ {100 * b['cov2']:.1f}% -> {100 * a['cov2']:.1f}%; written to "
        f"{Path(checkpoint).with_suffix('.json')}"
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("upscale")(upscale)
    app.command("export")(export)
    app.command("calibrate")(calibrate)
