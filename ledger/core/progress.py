"""A progress bar for long work, shown on a terminal only (rich), silent otherwise."""

from __future__ import annotations

import contextlib
import sys


def counted(rows, progress, every: int = 1_000):
    """Yield ``rows``, calling ``progress(n)`` every ``every`` rows and for the rest at the end
    (one call per row would cost more than the rows on a 300,000-entry export)."""
    if progress is None:
        yield from rows
        return
    n = 0
    for row in rows:
        yield row
        n += 1
        if n == every:
            progress(n)
            n = 0
    if n:
        progress(n)


@contextlib.contextmanager
def progress_bar(total: int, label: str, *, enabled: bool = True):
    """Yield ``advance(n)``; draws a bar on stderr when it is a terminal and ``enabled``."""
    if not enabled or total <= 0 or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
