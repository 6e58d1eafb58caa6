"""Progress bars with ETA for long-running work (rich), silent when asked to be."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def make_progress(transient: bool = False) -> Progress:
    """A rich progress bar: description, bar, n/total, elapsed, ETA and a free-text status."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        transient=transient,
    )


@contextmanager
def progress_bar(total: int | None, description: str, enabled: bool = True):
    """Context manager yielding ``advance(n=1, status="")``; a no-op when ``enabled`` is False."""
    if not enabled:
        yield lambda n=1, status="": None
        return
    with make_progress() as prog:
        task = prog.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            prog.update(task, advance=n, status=status)

        yield advance


def track(
    items: Iterable[T], total: int | None, description: str, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items`` with a progress bar."""
    with progress_bar(total, description, enabled) as advance:
        for item in items:
            yield item
            advance()
