"""``cvm data``: synthetic data at scale, every table of the data contract.

    cvm data generate --customers 1000000 --out data/big [--format parquet|jsonl|json] [--seed 42]

Numpy is imported only when a command runs, so ``cvm`` starts as fast without it.
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Annotated, Literal

import typer

from cvm.cli.common import new_app
from cvm.utils.errors import MissingDependencyError, UsageError, reinstall_hint

MAX_CUSTOMERS = 50_000_000
DEFAULT_AS_OF = "2026-11-23"

app = new_app(
    no_args_is_help=True,
    help="Synthetic data: every table of the data contract, seeded, at any scale.",
)

Customers = Annotated[int, typer.Option("--customers", min=1, max=MAX_CUSTOMERS, help="How many customers (1 to 50,000,000).")]
Out = Annotated[Path, typer.Option("--out", help="Folder to write the tables into; it must be new or empty (see --force).")]
Format = Annotated[
    Literal["parquet", "jsonl", "json"],
    typer.Option("--format", help="parquet, jsonl, or json (one list per file)."),
]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Random seed: the same seed gives the same files.")]
ChunkSize = Annotated[
    int,
    typer.Option("--chunk-size", "--chunk_size", min=1, max=1_000_000, help="Customers made and written at a time (memory grows with it)."),
]
AsOf = Annotated[str, typer.Option("--as-of", "--as_of", help="The last day the data covers, YYYY-MM-DD.")]
Force = Annotated[bool, typer.Option("--force", help="Write into a non-empty folder, replacing the tables and manifest already there.")]


def _as_of(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--as-of must be a date like 2026-11-23, not {text!r}") from None


def _load_generator() -> ModuleType:
    try:
        import cvm.synth as generator
    except ImportError as exc:
        if exc.name == "numpy" or (exc.name or "").startswith("numpy."):
            raise MissingDependencyError(reinstall_hint("numpy", "cvm data generate")) from None
        raise
    return generator


@app.command("generate")
def generate(
    customers: Customers,
    out: Out,
    fmt: Format = "parquet",
    seed: Seed = 42,
    chunk_size: ChunkSize = 50_000,
    as_of: AsOf = DEFAULT_AS_OF,
    force: Force = False,
) -> None:
    """Write customers and every table (billing, usage, network, churn, calls, chats, clicks, offers, permissions)."""
    generator = _load_generator()
    day = _as_of(as_of)
    started = time.perf_counter()
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(
            TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:
            task = bar.add_task("generate", total=customers)
            result = generator.generate(
                out, customers, fmt=fmt, seed=seed, chunk_size=chunk_size, as_of=day, force=force,
                progress=lambda done: bar.update(task, completed=done),
            )
    else:
        result = generator.generate(out, customers, fmt=fmt, seed=seed, chunk_size=chunk_size, as_of=day, force=force)
    elapsed = time.perf_counter() - started
    print(f"Generated {customers:,} customers in {result.out_dir} ({fmt}, seed {seed}, data up to {day}) in {elapsed:.1f} s")
    from cvm.synth.writers import EXTENSIONS, MANIFEST

    for table, rows in result.rows.items():
        print(f"  {table + EXTENSIONS[fmt]:<30}{rows:>14,} rows")
    print(f"  {MANIFEST}")
