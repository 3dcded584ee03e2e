"""Shared by the synthetic-data tests: small datasets in every format, a large population, and readers."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from cvm.synth import generate
from cvm.synth.writers import EXTENSIONS
from cvm.tools.data_source import FileDataSource
from cvm.tools.records import TABLES, normalise_customer

FORMATS = tuple(EXTENSIONS)
SMALL = 400
SMALL_CHUNK = 150
"""Three chunks, the last one partial."""
AS_OF = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)


def read_rows(folder: Path, table: str) -> list[dict[str, Any]]:
    """A table's rows as CVM reads them (Parquet nulls dropped)."""
    for fmt, ext in EXTENSIONS.items():
        path = folder / f"{table}{ext}"
        if not path.is_file():
            continue
        if fmt == "jsonl":
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        if fmt == "json":
            return json.loads(path.read_text(encoding="utf-8"))
        import pyarrow.parquet as pq

        return [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(path).to_pylist()]
    raise AssertionError(f"no {table} table in {folder}")


def by_customer(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["customer_id"]].append(row)
    return grouped


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def normalised(folder: Path) -> dict[str, dict[str, Any]]:
    source = FileDataSource(folder)
    return {cid: normalise_customer(cid, source.rows_for(cid), source.table_issues()).model_dump() for cid in source.customer_ids()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SMALL customers with seed 7 in every format, written in chunks of SMALL_CHUNK."""
    root = tmp_path_factory.mktemp("small")
    return {fmt: generate(root / fmt, SMALL, fmt=fmt, seed=7, chunk_size=SMALL_CHUNK).out_dir for fmt in FORMATS}


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """20,000 customers (default seed), every table's rows."""
    folder = generate(tmp_path_factory.mktemp("population") / "data", 20_000, fmt="jsonl").out_dir
    return {table: read_rows(folder, table) for table in TABLES}
