"""Reading the data folder: one file per table, in JSON, JSON lines, CSV or Parquet.

A table is read once, grouped by ``customer_id`` and kept; a file that cannot
be read becomes a table-level data-quality issue (the batch goes on), and a
missing table simply means no data of that kind.
"""

from __future__ import annotations

import csv
import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol

import structlog

from cvm.tools.records import TABLES, DataQualityIssue
from cvm.utils.errors import DataError, MissingDependencyError, reinstall_hint

log = structlog.get_logger(__name__)

# When one table exists in several formats, the first found in this order wins.
FORMATS: tuple[str, ...] = (".parquet", ".jsonl", ".json", ".csv")


class CustomerDataSource(Protocol):
    """Raw rows per customer, table by table."""

    def customer_ids(self) -> list[str]: ...

    def rows_for(self, customer_id: str) -> dict[str, list[dict[str, Any]]]: ...

    def table_issues(self) -> list[DataQualityIssue]: ...


# utf-8-sig everywhere: editors and spreadsheets often save a byte-order mark, which is not data.
_ENCODING = "utf-8-sig"


def _read_json(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding=_ENCODING))
    if isinstance(data, dict):
        # Accept {"records": [...]} or a single-table {"<table>": [...]} wrapper.
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        raise ValueError("expected a JSON list of records")
    if not isinstance(data, list):
        raise ValueError("expected a JSON list of records")
    return data


def _read_jsonl(path: Path) -> list[Any]:
    rows = []
    with path.open(encoding=_ENCODING) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: {exc.msg}") from None
    return rows


def _read_csv(path: Path) -> list[Any]:
    with path.open(encoding=_ENCODING, newline="") as handle:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def _read_parquet(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(f"{path}: {reinstall_hint('pyarrow', 'reading Parquet')}") from None
    return pq.read_table(path).to_pylist()


_READERS = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}


class FileDataSource:
    """Tables in a folder, read lazily once and indexed by customer id. Thread-safe."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"data folder {self.data_dir} does not exist; pass --data-dir DIR or set CVM_DATA_DIR")
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, list[dict[str, Any]]]] | None = None
        self._issues: list[DataQualityIssue] = []

    def _table_file(self, table: str) -> Path | None:
        found = [self.data_dir / f"{table}{ext}" for ext in FORMATS if (self.data_dir / f"{table}{ext}").is_file()]
        if len(found) > 1:
            log.warning("table_in_several_formats", table=table, used=found[0].name, ignored=[p.name for p in found[1:]])
        return found[0] if found else None

    def _load_table(self, table: str) -> dict[str, list[dict[str, Any]]]:
        path = self._table_file(table)
        if path is None:
            return {}
        try:
            rows = self._read_rows(path)
        except DataError:
            raise
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            message = f"{path.name} could not be read ({exc}); the table is treated as empty"
            self._issues.append(DataQualityIssue(table=table, message=message))
            log.error("table_unreadable", table=table, path=str(path), error=str(exc))
            return {}
        except Exception as exc:  # e.g. a corrupt Parquet file: pyarrow raises its own errors
            message = f"{path.name} could not be read ({type(exc).__name__}: {exc}); the table is treated as empty"
            self._issues.append(DataQualityIssue(table=table, message=message))
            log.error("table_unreadable", table=table, path=str(path), error=str(exc))
            return {}
        grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
        skipped = 0
        for row in rows:
            cid = row.get("customer_id") if isinstance(row, dict) else None
            if cid is None or str(cid).strip() == "":
                skipped += 1
                continue
            # A null field is an absent field (Parquet fills every column); ids are text, trimmed.
            clean = {k: v for k, v in row.items() if v is not None}
            clean["customer_id"] = str(cid).strip()
            grouped[clean["customer_id"]].append(clean)
        if skipped:
            self._issues.append(
                DataQualityIssue(table=table, field="customer_id", message=f"{skipped} row(s) without a customer_id skipped in {path.name}")
            )
        log.debug("table_loaded", table=table, path=str(path), rows=len(rows), customers=len(grouped))
        return dict(grouped)

    def _read_rows(self, path: Path) -> list[Any]:
        """Every row of one table file (a subclass may read fewer: ``cvm.tools.customer_subset``)."""
        return _READERS[path.suffix](path)

    def _ensure_loaded(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        with self._lock:
            if self._tables is None:
                self._tables = {table: self._load_table(table) for table in TABLES}
            return self._tables

    def customer_ids(self) -> list[str]:
        """Every customer id any table mentions, sorted."""
        tables = self._ensure_loaded()
        return sorted({cid for rows in tables.values() for cid in rows})

    def rows_for(self, customer_id: str) -> dict[str, list[dict[str, Any]]]:
        """The raw rows of one customer, by table (empty lists where a table has none)."""
        tables = self._ensure_loaded()
        return {table: rows.get(customer_id, []) for table, rows in tables.items()}

    def table_issues(self) -> list[DataQualityIssue]:
        """Problems with whole tables (unreadable files, rows without an id)."""
        self._ensure_loaded()
        return list(self._issues)
