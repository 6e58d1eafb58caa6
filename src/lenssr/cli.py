"""The ``lenssr`` command line: a thin layer over the Python API.

Each package area registers its own commands (``<area>/commands.py: register(app)``); heavy
imports (torch, lenstronomy) happen inside the command functions so ``lenssr --help`` is fast.
User mistakes raise :class:`lenssr.errors.LenssrError` and are printed as one line.
"""

from __future__ import annotations

import sys

import typer

from lenssr import __version__
from lenssr.errors import LenssrError

app = typer.Typer(
    name="lenssr",
    help="Super-resolution for strong gravitational lensing images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"lenssr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """Super-resolution for strong gravitational lensing images."""


def _register_all() -> None:
    from lenssr.evaluation import commands as evaluation_commands
    from lenssr.inference import commands as inference_commands
    from lenssr.models import commands as models_commands
    from lenssr.science import commands as science_commands
    from lenssr.simulation import commands as simulation_commands
    from lenssr.site import commands as site_commands
    from lenssr.training import commands as training_commands
    from lenssr.tune import commands as tune_commands
    from lenssr.web import commands as web_commands

    for module in (
        simulation_commands,
        training_commands,
        evaluation_commands,
        inference_commands,
        models_commands,
        tune_commands,
        science_commands,
        web_commands,
        site_commands,
    ):
        module.register(app)


_register_all()


def _interrupt_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """A Ctrl-C that lands in a finaliser or weakref callback cannot be raised there; Python
    would print it as an ignored exception with a traceback and carry on. Re-deliver it to the
    main thread instead, where ``main`` turns it into one line."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        import _thread
        import threading

        # from another thread, a moment later: raised in the main thread's own code, not here
        timer = threading.Timer(0.05, _thread.interrupt_main)
        timer.daemon = True
        timer.start()
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the app, turning LenssrError into a one-line message."""
    sys.unraisablehook = _interrupt_unraisable
    try:
        app(args=argv, prog_name="lenssr")
    except LenssrError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a library's clean-up failing while Ctrl-C unwinds through it
        if not _from_interrupt(exc):
            raise
        typer.secho("interrupted", err=True)
        sys.exit(130)


def _from_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised while a KeyboardInterrupt was being handled."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__context__ or cur.__cause__
    return False


if __name__ == "__main__":
    main()
