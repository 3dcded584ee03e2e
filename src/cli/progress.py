"""The rich progress bar for long work, drawn on a terminal only (stderr), silent under CI and pipes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from cvm.utils.progress import NO_PROGRESS, Progress, Stage


def progress_wanted() -> bool:
    """A bar only when a person is watching: stderr is a terminal and this is not CI."""
    return sys.stderr.isatty() and not os.environ.get("CI")


class _RichStage:
    def __init__(self, bar: object, task: object):
        self._bar = bar
        self._task = task

    def advance(self, amount: int = 1) -> None:
        self._bar.advance(self._task, amount)  # type: ignore[attr-defined]

    def update(self, completed: int) -> None:
        self._bar.update(self._task, completed=completed)  # type: ignore[attr-defined]


class _RichProgress:
    """Each stage gets its own transient bar labelled with the stage name."""

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Stage]:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:
            yield _RichStage(bar, bar.add_task(name, total=total))


def terminal_progress() -> Progress:
    """A rich bar per stage on a terminal; ``NO_PROGRESS`` otherwise."""
    return _RichProgress() if progress_wanted() else NO_PROGRESS
