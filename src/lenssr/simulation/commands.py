"""CLI commands of lenssr.simulation (registered by lenssr.cli): ``simulate`` and ``degrade``."""

from __future__ import annotations

from pathlib import Path

import typer


def _preset(name: str, config: Path | None, overrides: list[str] | None):
    from lenssr.simulation.presets import load_preset, parse_overrides

    preset = load_preset(name, config)
    if overrides:
        preset = load_preset(preset, parse_overrides(overrides))
    return preset


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""

    @app.command("simulate")
    def simulate_cmd(
        preset: str = typer.Option("default", "--preset", "-p", help="Preset name or YAML file."),
        n: int = typer.Option(..., "--n", "-n", help="Number of LR/HR pairs."),
        out: Path = typer.Option(..., "--out", "-o", help="Output .h5 file or folder."),
        seed: int = typer.Option(0, "--seed", help="Seed; sample i uses default_rng([seed, i])."),
        workers: int = typer.Option(1, "--workers", "-j", help="Worker processes."),
        layout: str = typer.Option("hdf5", "--layout", help="hdf5 or deeplense (LR/, HR/ .npy)."),
        classes: str = typer.Option(
            "no_sub,cdm,axion", "--classes", help="Comma-separated substructure classes."
        ),
        config: Path | None = typer.Option(None, "--config", help="YAML file of overrides."),
        overrides: list[str] | None = typer.Option(
            None, "--set", help="Override a preset value, e.g. --set lr.psf_fwhm=0.2 (repeatable)."
        ),
        chunk_size: int = typer.Option(256, "--chunk-size", help="Samples per resumable chunk."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        """Simulate LR/HR lensing pairs (resumable: re-run the same command to continue)."""
        from lenssr.simulation.writer import is_complete, simulate

        p = _preset(preset, config, overrides)
        finished_before = is_complete(out, layout)
        path = simulate(
            p,
            n,
            out,
            seed=seed,
            workers=workers,
            layout=layout,
            classes=classes,
            progress=progress,
            chunk_size=chunk_size,
        )
        what = f"{n} pairs ({p.name}, x{p.scale})"
        if finished_before:
            typer.echo(f"{path} already holds these {what}: nothing to do")
        else:
            typer.echo(f"wrote {what} to {path}")

    @app.command("degrade")
    def degrade_cmd(
        inp: Path = typer.Argument(..., help="HR image, folder or .zip (.npy, FITS, PNG, TIFF)."),
        output: Path = typer.Option(..., "--output", "-o", help="Output file, folder or .zip."),
        preset: str = typer.Option("default", "--preset", "-p", help="Preset name or YAML file."),
        seed: int = typer.Option(0, "--seed", help="Noise seed."),
        noise: bool = typer.Option(True, "--noise/--no-noise", help="Add the LR noise."),
        config: Path | None = typer.Option(None, "--config", help="YAML file of overrides."),
        overrides: list[str] | None = typer.Option(
            None, "--set", help="Override a preset value (repeatable)."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    ) -> None:
        """Turn HR images into their LR observation (PSF difference, binning, noise)."""
        from lenssr.errors import LenssrError
        from lenssr.simulation.degrade import degrade_path

        if not inp.exists():
            raise LenssrError(f"input not found: {inp}")
        p = _preset(preset, config, overrides)
        report = degrade_path(inp, output, p, seed=seed, noise=noise, progress=progress)
        typer.echo(report.summary())
