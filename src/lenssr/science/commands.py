"""CLI commands of lenssr.science (registered by lenssr.cli)."""

from __future__ import annotations

from pathlib import Path

import typer


def validate_science_command(
    models: str = typer.Option(
        "bicubic,edsr,hybrid",
        "--models",
        "-m",
        help="SR models (names or checkpoint paths), comma-separated; bicubic always runs.",
    ),
    preset: str = typer.Option("default", "--preset", help="Simulation preset."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a preset value, e.g. --set subhalos.slope=-0.9."
    ),
    n_train: int = typer.Option(3000, "--n-train", help="Training systems per class."),
    n_test: int = typer.Option(1000, "--n-test", help="Held-out test systems per class."),
    seed: int = typer.Option(0, "--seed", help="Seed of data, classifiers and bootstrap."),
    out: Path = typer.Option(
        Path("lenssr-science"), "--out", "-o", help="Folder for the report and figures."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Classifier epochs (default: the fixed recipe's)."
    ),
    workers: int = typer.Option(2, "--workers", help="Simulation processes."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples of the test set."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Does SR make substructure easier to detect? Classifier AUCs on HR, bicubic and SR."""
    from lenssr.science.classifier import Recipe
    from lenssr.science.validate import ScienceConfig, validate_science

    cfg = ScienceConfig(
        models=[m.strip() for m in models.split(",") if m.strip()],
        preset=preset,
        overrides=list(overrides or []),
        n_train=n_train,
        n_test=n_test,
        seed=seed,
        epochs=Recipe.epochs if epochs is None else epochs,
        workers=workers,
        n_boot=n_boot,
        device=device,
        out=out,
    )
    report = validate_science(cfg, log=typer.echo)
    typer.echo(Path(report["files"]["report_md"]).read_text())
    for label, path in report["files"].items():
        typer.echo(f"{label}: {path}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("validate-science")(validate_science_command)
