"""Progress of long work, reported by any layer and shown (or not) by the command line.

Lower layers (agents, flows, reporting, the generator) take a ``Progress`` and call
``progress.stage(name, total)`` for each stage of their work, then ``advance`` on the
returned handle. They never decide whether anything is drawn: the CLI passes a rich
bar on a terminal (``cvm.cli.progress.terminal_progress``) and ``NO_PROGRESS``
everywhere else (CI, pipes, tests, the Python API), so the work itself is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Stage(Protocol):
    """One running stage: advance it by work units done, or set how many are done."""

    def advance(self, amount: int = 1) -> None: ...

    def update(self, completed: int) -> None: ...


class Progress(Protocol):
    """Where stages of long work are reported."""

    def stage(self, name: str, total: int | None = None) -> AbstractContextManager[Stage]: ...


class _SilentStage:
    def advance(self, amount: int = 1) -> None:
        return None

    def update(self, completed: int) -> None:
        return None


class _Silent:
    """Reports nothing: the default wherever nobody is watching."""

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Stage]:
        yield _SilentStage()


NO_PROGRESS: Progress = _Silent()
