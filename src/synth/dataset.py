"""``generate``: N synthetic customers written as every table of the data contract, seeded and streamed.

Customers are made a chunk at a time (50,000 by default) with numpy's seeded
``Generator``: every column is drawn as an array, never row by row, and a
chunk is written (by a second thread, while the next one is made) and
dropped, so memory stays flat however many customers are asked for.

Reproducible: the same seed, count, chunk size and as-of date give
byte-identical files (with the same numpy and pyarrow versions); the format
does not change the data, only how it is written. Parquet needs pyarrow; the
JSON formats need only numpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from cvm import __version__
from cvm.synth.columns import Chunk
from cvm.synth.world import World
from cvm.synth.writers import EXTENSIONS, MANIFEST, Format, TableWriter, open_writer, write_manifest
from cvm.tools.data_source import FORMATS as READ_FORMATS
from cvm.tools.records import TABLES
from cvm.utils.errors import CVMError, MissingDependencyError, UsageError, reinstall_hint

log = structlog.get_logger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different data."""
DEFAULT_AS_OF = date(2026, 11, 23)
DEFAULT_CHUNK_SIZE = 50_000
DEFAULT_SEED = 42
MAX_CUSTOMERS = 50_000_000


@dataclass
class GenerationResult:
    """What ``generate`` wrote."""

    out_dir: Path
    manifest: dict[str, Any]
    elapsed_seconds: float
    rows: dict[str, int] = field(default_factory=dict)


def _require_pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"{reinstall_hint('pyarrow', '--format parquet')}, or use --format jsonl") from None


def _prepare_folder(out_dir: Path, force: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless ``force``, which removes only the tables and manifest."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file; give a folder")
    if out_dir.is_dir():
        present = sorted(p.name for p in out_dir.iterdir())
        if present and not force:
            raise UsageError(
                f"--out {out_dir} is not empty ({len(present)} entries); choose a new or empty folder, "
                "or add --force to replace the tables in it"
            )
        ours = {f"{t}{ext}" for t in TABLES for ext in READ_FORMATS} | {MANIFEST}
        for name in present:
            if name in ours or (name.endswith(".partial") and name.removesuffix(".partial") in ours):
                try:
                    (out_dir / name).unlink()
                except OSError as exc:
                    raise UsageError(f"--force cannot remove {out_dir / name} ({exc.strerror or exc})") from None
        return
    try:
        out_dir.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out_dir} ({exc.strerror or exc})") from None


def id_width(customers: int) -> int:
    """Digits in a customer id: C0000001 up to 9,999,999 customers, then as many as the count has."""
    return max(7, len(str(customers)))


def chunks(customers: int, chunk_size: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first customer index, customers in the chunk)."""
    for index, first in enumerate(range(0, customers, chunk_size)):
        yield index, first, min(chunk_size, customers - first)


def _write_chunk(tables: list[tuple[TableWriter, Chunk]]) -> None:
    for writer, chunk in tables:
        writer.write(chunk)


def generate(
    out_dir: str | Path,
    customers: int,
    *,
    fmt: Format = "parquet",
    seed: int = DEFAULT_SEED,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    as_of: date = DEFAULT_AS_OF,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Write every table for ``customers`` synthetic customers into ``out_dir``.

    Raises ``UsageError`` for a bad argument, a non-empty folder without
    ``force``, or Parquet without pyarrow, before anything is written; a
    failure while writing removes the partial files and raises ``CVMError``.
    """
    if fmt not in EXTENSIONS:
        raise UsageError(f"--format must be one of {', '.join(EXTENSIONS)}, not {fmt!r}")
    if not 1 <= customers <= MAX_CUSTOMERS:
        raise UsageError(f"--customers must be between 1 and {MAX_CUSTOMERS:,}, not {customers:,}")
    if chunk_size < 1:
        raise UsageError(f"--chunk-size must be at least 1, not {chunk_size}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, not {seed}")
    if fmt == "parquet":
        _require_pyarrow()
    out = Path(out_dir)
    _prepare_folder(out, force)
    started = time.perf_counter()
    width = id_width(customers)
    writers: dict[str, TableWriter] = {}
    try:
        for table in TABLES:
            writers[table] = open_writer(fmt, out / f"{table}{EXTENSIONS[fmt]}")
        # One thread writes chunk i (Parquet encoding and compression let go of the GIL) while
        # this one makes chunk i + 1; at most two chunks are in memory.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvm-generate") as pool:
            writing: Future[None] | None = None
            for index, first, size in chunks(customers, chunk_size):
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
                world = World(rng, first, size, as_of, width)
                tables = [(writers[table], world.table(table, parquet=fmt == "parquet")) for table in TABLES]
                del world
                if writing is not None:
                    writing.result()
                    if progress is not None:
                        progress(first)
                writing = pool.submit(_write_chunk, tables)
                del tables
            if writing is not None:
                writing.result()
        for writer in writers.values():
            writer.close()
        if progress is not None:
            progress(customers)
    except BaseException as exc:
        for writer in writers.values():
            writer.abort()
        if isinstance(exc, OSError):
            raise CVMError(f"writing {out} failed ({exc.strerror or exc}); the partial files were removed", path=str(out)) from None
        raise
    rows = {table: writer.rows for table, writer in writers.items()}
    manifest = {
        "generator": "cvm data generate",
        "generator_version": GENERATOR_VERSION,
        "cvm_version": __version__,
        "seed": seed,
        "customers": customers,
        "format": fmt,
        "as_of": as_of.isoformat(),
        "chunk_size": chunk_size,
        "tables": {table: {"file": f"{table}{EXTENSIONS[fmt]}", "rows": rows[table]} for table in TABLES},
    }
    write_manifest(out, manifest)
    elapsed = time.perf_counter() - started
    log.info("data_generated", out=str(out), customers=customers, format=fmt, seed=seed, seconds=round(elapsed, 2))
    return GenerationResult(out_dir=out, manifest=manifest, elapsed_seconds=elapsed, rows=rows)
