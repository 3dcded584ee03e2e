"""A few customers' rows from a data folder of any size: a ``CustomerDataSource`` that reads only them.

``FileDataSource`` reads each table whole and keeps it, which is right for a
decision run and wrong for a report that wants the journeys of twenty customers
out of a million (it held every row of every table: gigabytes). Parquet tables
are read with a filter on ``customer_id`` (pyarrow skips the row groups that
cannot hold the ids); JSON-lines and CSV files are streamed and only the wanted
customers' rows kept (a JSON line is parsed unless every ``customer_id`` it names,
plainly written, is someone else's, so a malformed line of another customer goes unnoticed here);
a one-list JSON file is read whole, as ``FileDataSource`` reads it. Rows are
grouped exactly as ``FileDataSource`` groups them, so the Data agent normalises
them the same way.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cvm.tools.data_source import FileDataSource

_ENCODING = "utf-8-sig"
_JSON_ID = re.compile(r'"customer_id"\s*:\s*"?([^",}]*)')


class CustomerSubset(FileDataSource):
    """The data folder restricted to the given customers (ids as the ledger stores them: trimmed text)."""

    def __init__(self, data_dir: str | Path, customer_ids: Iterable[str]):
        super().__init__(data_dir)
        self._wanted = frozenset(customer_ids)

    def _read_rows(self, path: Path) -> list[Any]:
        if path.suffix == ".parquet":
            rows = self._read_parquet_subset(path)
            if rows is not None:
                return rows
        if path.suffix == ".jsonl":
            return self._read_jsonl_subset(path)
        if path.suffix == ".csv":
            with path.open(encoding=_ENCODING, newline="") as handle:
                return [
                    {k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)
                    if str(row.get("customer_id") or "").strip() in self._wanted
                ]
        return [
            row for row in super()._read_rows(path)
            if isinstance(row, dict) and row.get("customer_id") is not None and str(row["customer_id"]).strip() in self._wanted
        ]

    def _read_parquet_subset(self, path: Path) -> list[Any] | None:
        """The wanted rows when ``customer_id`` is a text column (None: read it whole and filter, as any other format)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        field = pq.read_schema(path).field("customer_id") if "customer_id" in pq.read_schema(path).names else None
        if field is None or not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            return None
        # Stored ids may carry spaces the grouping trims (" U1" is U1's row there), so the filter trims them too.
        import pyarrow.compute as pc

        wanted = pc.utf8_trim_whitespace(pc.field("customer_id")).isin(sorted(self._wanted))
        return pq.read_table(path, filters=wanted).to_pylist()

    def _read_jsonl_subset(self, path: Path) -> list[Any]:
        """The wanted customers' lines, each parsed only when the id it names is wanted (or it names none readably)."""
        rows = []
        with path.open(encoding=_ENCODING) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                if self._surely_unwanted(line):
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number}: {exc.msg}") from None
                if isinstance(row, dict) and row.get("customer_id") is not None and str(row["customer_id"]).strip() in self._wanted:
                    rows.append(row)
        return rows

    def _surely_unwanted(self, line: str) -> bool:
        """A line to skip unparsed: it names ids, none of them wanted, and none escaped (``"U\\u0031"`` is U1).

        Every ``customer_id`` in the line counts, a nested one too, so a wanted top-level id after an
        unwanted nested one still gets its line parsed.
        """
        named = _JSON_ID.findall(line)
        return bool(named) and not any("\\" in cid or cid.strip() in self._wanted for cid in named)

    def customer_ids(self) -> list[str]:
        return sorted(set(super().customer_ids()) & self._wanted)
