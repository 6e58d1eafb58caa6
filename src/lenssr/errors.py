"""User-facing errors.

A :class:`LenssrError` is a mistake in the user's input or configuration. The CLI prints it as
one line (``error: <message>``) and exits with status 2, never with a traceback. Library code
raises it; batch code catches :class:`InputError` per file, records it, and goes on.
"""

from __future__ import annotations

from pathlib import Path


class LenssrError(Exception):
    """An error the user can fix; its message is one line."""


class InputError(LenssrError):
    """A problem with one input file (or archive member): names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(LenssrError):
    """An invalid configuration value (YAML file or command-line override)."""
