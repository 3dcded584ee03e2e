"""Bounded, scriptable output for every command that lists things.

- ``--output table`` (default): a table of at most ``--show N`` rows (default 20,
  ``--show all`` for every row), then one line saying how many were left out;
  the console never prints a 20,000-row table by accident.
- ``--output json`` / ``--output csv``: every row, on stdout and nothing else
  (summaries and notes go to stderr), so ``cvm ... --output json | jq`` works.
- ``--quiet``: no table and no summary; json/csv still go to stdout.

Cells are plain text without control characters (``cvm.cli.render.plain``).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cvm.cli.options import DEFAULT_SHOW, OutputFormat
from cvm.utils.errors import UsageError
from cvm.utils.text import without_controls


def parse_show(text: str) -> int | None:
    """``--show``: a row count (0 or more), or ``all`` (None: no bound)."""
    value = text.strip().lower()
    if value == "all":
        return None
    if value.isdigit():
        return int(value)
    raise UsageError(f"--show takes a number of rows or 'all', not {text!r}")


@dataclass(frozen=True)
class View:
    """How a command prints what it lists: ``--output``, ``--show`` and ``--quiet``."""

    output: OutputFormat = "table"
    show: int | None = int(DEFAULT_SHOW)
    quiet: bool = False

    @classmethod
    def of(cls, output: OutputFormat = "table", show: str = DEFAULT_SHOW, quiet: bool = False) -> View:
        return cls(output, parse_show(show), quiet)

    @property
    def table(self) -> bool:
        return self.output == "table"

    def note(self, line: str) -> None:
        """A human line: stdout beside a table, stderr when stdout carries json/csv; nothing when quiet."""
        if not self.quiet:  # it may name a run id or a path the user typed: never terminal control
            print(without_controls(line), file=sys.stdout if self.table else sys.stderr, flush=True)


def bounded(rows: Sequence[Any], show: int | None) -> tuple[Sequence[Any], int]:
    """The rows a table prints and how many it leaves out."""
    if show is None or len(rows) <= show:
        return rows, 0
    return rows[:show], len(rows) - show


def left_out_line(left_out: int, total: int, where: str = "") -> str:
    return (f"... {left_out:,} more of {total:,} row(s) not shown (--show all prints them; --output json|csv gives every row"
            + (f"; all in {where}" if where else "") + ")")


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (non-finite numbers as null, like the result files)."""
    from cvm.tools.results import finite_only

    sys.stdout.write(json.dumps(finite_only(value), indent=2, ensure_ascii=False, default=str, allow_nan=False) + "\n")


def print_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A header and one line per row on stdout (None as an empty cell)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])


def emit(
    view: View, *, as_json: Callable[[], Any], header: Sequence[str], csv_rows: Callable[[], Iterable[Sequence[Any]]],
    table: Callable[[int | None], None],
) -> None:
    """Print one listing in the asked format; ``table`` gets the row bound (``--show``) and prints its own summary."""
    if view.output == "json":
        print_json(as_json())
    elif view.output == "csv":
        print_csv(header, csv_rows())
    elif not view.quiet:
        table(view.show)
