"""CLI commands of lenssr.tune (registered by lenssr.cli): ``lenssr tune``."""

from __future__ import annotations

from pathlib import Path

import typer


def tune_command(
    config: Path = typer.Option(
        ..., "--config", "-c", help="Tune YAML: base config, search space, budget (configs/tune-*)."
    ),
    trials: int = typer.Option(
        40, "--trials", "-n", help="Target number of COMPLETE + PRUNED trials in the study."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="Optuna RDB URL shared by workers, e.g. sqlite:///tune.db or "
        "postgresql+psycopg://user:pw@host/db (default: in memory, not resumable).",
    ),
    study: str = typer.Option("lenssr", "--study", help="Study name inside the storage."),
    out: Path = typer.Option(Path("runs/tune"), "--out", "-o", help="Output directory."),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Stop starting new trials after this many minutes."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    seed: int | None = typer.Option(
        None, "--seed", help="Sampler seed (give every worker a different one)."
    ),
    heartbeat: int = typer.Option(
        60, "--heartbeat", help="Seconds between heartbeats; trials silent 2x longer are failed."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final summary."),
) -> None:
    """Bayesian hyperparameter search (Optuna TPE + median pruning) over short training runs.

    Re-running the same command continues an interrupted study up to --trials; several
    processes or machines pointed at one --storage and --study share the work. Writes
    best.yaml (for `lenssr train --config`), trials.csv, history.png and importances.png.
    """
    from rich.console import Console

    from lenssr.tune.study import run_study

    _quiet_interrupts()
    console = Console()
    result = run_study(
        config,
        trials=trials,
        storage=storage,
        study_name=study,
        out=out,
        timeout_min=timeout,
        device=device,
        seed=seed,
        heartbeat_interval=heartbeat,
        quiet=quiet,
        console=console if not quiet else Console(quiet=True),
    )
    if quiet:
        from lenssr.tune.study import _summary, load_tune_config

        _summary(result.study, load_tune_config(config), console)
    for name, path in sorted(result.files.items()):
        console.print(f"{name}: {path}", highlight=False)


def _quiet_interrupts() -> None:
    """Ctrl-C during a trial: Optuna logs the trial as failed with the KeyboardInterrupt's
    traceback before re-raising it. Drop that record (the study records the trial as failed;
    ``lenssr`` prints "interrupted" and a re-run continues the study)."""
    import logging

    import optuna  # noqa: F401 - configures the library logger and its handler

    def no_interrupt(record: logging.LogRecord) -> bool:
        exc = record.exc_info
        return not (exc and exc[0] is not None and issubclass(exc[0], KeyboardInterrupt))

    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(no_interrupt)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the ``lenssr`` app."""
    app.command("tune")(tune_command)
