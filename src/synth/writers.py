"""The table writers: Parquet (pyarrow, imported on first use), JSON lines or one JSON list, and the manifest.

Each table is written chunk by chunk into ``<table><ext>.partial`` and renamed
into place when every chunk is in; the manifest is written last.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cvm.synth.columns import Chunk, Column, offsets_of, take_rows
from cvm.utils.errors import CVMError

Format = Literal["parquet", "jsonl", "json"]
EXTENSIONS: dict[str, str] = {"parquet": ".parquet", "jsonl": ".jsonl", "json": ".json"}
MANIFEST = "manifest.json"
PARQUET_COMPRESSION = "zstd"


# --- JSON encoding (numpy and the standard library) ------------------------------------------------
#
# Every value becomes its JSON text in a numpy object array (repeated text by
# table lookup, never one json.dumps per value); a row is then one "".join of
# constant pieces ('{"customer_id": "', ...) and values, done per presence
# pattern (shape A rows, shape B rows...) so that absent fields cost nothing.

_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _objects(values: list[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _quoted(values: list[str]) -> list[str]:
    if _NEEDS_ESCAPE.search("".join(values)):
        return [json.dumps(v, ensure_ascii=False) for v in values]
    return [f'"{v}"' for v in values]


CACHED_VOCABULARY = 8192
"""Vocabularies up to this size (plans, pages, dates...) are converted once; a chunk's ids are not kept."""


@lru_cache(maxsize=32)
def _cached_quoted(vocabulary: tuple[str, ...]) -> np.ndarray:
    return _objects(_quoted(list(vocabulary)))


def _quoted_vocabulary(vocabulary: tuple[str, ...]) -> np.ndarray:
    return _cached_quoted(vocabulary) if len(vocabulary) <= CACHED_VOCABULARY else _objects(_quoted(list(vocabulary)))


def _lookup(codes: np.ndarray, texts: list[str]) -> np.ndarray:
    return _objects(texts)[codes]


def _number_texts(col: Column) -> np.ndarray:
    """Python's repr of each number (valid JSON); by lookup table when the values are few and rounded."""
    values = col.values
    if len(values) and col.decimals is not None:
        scale = 10.0**col.decimals
        codes = np.rint(values * scale).astype(np.int64)
        low, high = int(codes.min()), int(codes.max())
        if high - low < max(len(values) // 2, 64) and np.array_equal(codes / scale, values):
            return _lookup(codes - low, [repr(v) for v in (np.arange(low, high + 1) / scale).tolist()])
    return _objects(list(map(repr, values.tolist())))


def _int_texts(values: np.ndarray) -> np.ndarray:
    if len(values):
        low, high = int(values.min()), int(values.max())
        if high - low < max(len(values) // 2, 64):
            return _lookup(values - low, [str(v) for v in range(low, high + 1)])
    return _objects(list(map(str, values.tolist())))


def _json_values(col: Column) -> tuple[np.ndarray, bool]:
    """Each row's value as JSON text (anything where absent), and whether it still needs its quotes."""
    if col.kind == "category":
        return _quoted_vocabulary(col.vocabulary)[col.values], False
    if col.kind == "text":
        values = col.values
        if _NEEDS_ESCAPE.search("".join(values)):
            return _objects([json.dumps(v, ensure_ascii=False) for v in values]), False
        return _objects(values), True
    if col.kind == "float":
        return _number_texts(col), False
    if col.kind == "int":
        return _int_texts(col.values), False
    if col.kind == "struct":
        return _json_objects(col.fields, len(col)), False
    offsets, item = col.list_parts()
    items, bare = _json_values(item)
    items = items.tolist()
    bounds = offsets.tolist()
    separator, start, end = ('", "', '["', '"]') if bare else (", ", "[", "]")
    return _objects([start + separator.join(items[a:b]) + end if b > a else "[]" for a, b in zip(bounds, bounds[1:])]), False


def _json_objects(fields: tuple[tuple[str, Column], ...], rows: int) -> np.ndarray:
    """``{"key": value, ...}`` per row, leaving out the fields a row does not have."""
    encoded = [_json_values(col) for _, col in fields]
    out = np.empty(rows, dtype=object)
    if not rows:
        return out
    # Rows with the same fields present share a pattern (a bit per field); each pattern is joined at once.
    pattern = np.zeros(rows, dtype=np.int64)
    for column, (_, col) in enumerate(fields):
        pattern |= (np.ones(rows, dtype=np.int64) if col.present is None else col.present.astype(np.int64)) << column
    patterns = np.unique(pattern)
    for bits in patterns.tolist():
        mine = slice(None) if len(patterns) == 1 else np.flatnonzero(pattern == bits)
        parts: list[Any] = []
        closing = ""  # what ends the previous value: its closing quote when it was bare text
        for column in (c for c in range(len(fields)) if bits >> c & 1):
            values, bare = encoded[column]
            opening = '"' if bare else ""
            parts += [repeat(f'{closing}{", " if parts else "{"}{json.dumps(fields[column][0])}: {opening}'), values[mine].tolist()]
            closing = opening
        if not parts:
            out[mine] = "{}"
            continue
        parts.append(repeat(closing + "}"))
        out[mine] = list(map("".join, zip(*parts)))
    return out


def json_rows(chunk: Chunk) -> list[str]:
    """One JSON object per row, as text."""
    return _json_objects(tuple(chunk), len(chunk[0][1]) if chunk else 0).tolist()


# --- Arrow conversion (Parquet) ----------------------------------------------------------------


@lru_cache(maxsize=32)
def _cached_arrow(vocabulary: tuple[str, ...]) -> Any:
    import pyarrow as pa

    return pa.array(vocabulary, type=pa.string())


def _arrow_vocabulary(vocabulary: tuple[str, ...]) -> Any:
    import pyarrow as pa

    return _cached_arrow(vocabulary) if len(vocabulary) <= CACHED_VOCABULARY else pa.array(vocabulary, type=pa.string())


def _arrow(col: Column) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None if col.present is None else ~col.present
    if col.kind == "category":
        taken = pc.take(_arrow_vocabulary(col.vocabulary), pa.array(col.values))
        return taken if mask is None else pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), taken)
    if col.kind == "text":
        return pa.array(col.values, type=pa.string(), mask=mask)
    if col.kind == "float":
        return pa.array(col.values, type=pa.float64(), mask=mask)
    if col.kind == "int":
        return pa.array(col.values, type=pa.int64(), mask=mask)
    arrow_mask = None if mask is None else pa.array(mask, type=pa.bool_())
    if col.kind == "struct":
        children = [_arrow(child) for _, child in col.fields]
        return pa.StructArray.from_arrays(children, names=[name for name, _ in col.fields], mask=arrow_mask)
    offsets, item = col.list_parts()
    lengths = np.diff(offsets)
    if col.present is not None and lengths[~col.present].any():
        # An absent row keeps no items (older Parquet writers refuse null lists that have some).
        offsets, item = offsets_of(np.where(col.present, lengths, 0)), take_rows(item, np.repeat(col.present, lengths))
    large = offsets[-1] >= 2**31
    arrow_offsets = pa.array(offsets, type=pa.int64() if large else pa.int32())
    return (pa.LargeListArray if large else pa.ListArray).from_arrays(arrow_offsets, _arrow(item), mask=arrow_mask)


def arrow_table(chunk: Chunk) -> Any:
    import pyarrow as pa

    return pa.table({name: _arrow(col) for name, col in chunk})


# --- writers -------------------------------------------------------------------------------------


class TableWriter:
    """Writes one table chunk by chunk into ``<path>.partial``; ``close`` renames it into place."""

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.rows = 0

    def write(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.finish()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        try:
            self.finish()
        except Exception:  # already broken: removing the partial file is all that is left
            pass
        self.partial.unlink(missing_ok=True)


class _ParquetWriter(TableWriter):
    def __init__(self, path: Path):
        super().__init__(path)
        self._writer: Any = None

    def write(self, chunk: Chunk) -> None:
        import pyarrow.parquet as pq

        table = arrow_table(chunk)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.partial, table.schema, compression=PARQUET_COMPRESSION)
        elif not table.schema.equals(self._writer.schema):
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _TextWriter(TableWriter):
    """JSON lines, or one JSON list written as "[", the rows, "]"."""

    def __init__(self, path: Path, as_list: bool):
        super().__init__(path)
        self.as_list = as_list
        self._handle = self.partial.open("wb")
        if as_list:
            self._handle.write(b"[")

    def write(self, chunk: Chunk) -> None:
        rows = json_rows(chunk)
        if not rows:
            return
        if self.as_list:
            payload = ("\n" if self.rows == 0 else ",\n") + ",\n".join(rows)
        else:
            payload = "\n".join(rows) + "\n"
        self._handle.write(payload.encode("utf-8"))
        self.rows += len(rows)

    def finish(self) -> None:
        if self._handle.closed:
            return
        if self.as_list:
            self._handle.write(b"\n]\n")
        self._handle.close()


def open_writer(fmt: str, path: Path) -> TableWriter:
    return _ParquetWriter(path) if fmt == "parquet" else _TextWriter(path, as_list=fmt == "json")


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """``<out>/manifest.json``: how the data was made (seed, count, format, versions) and each table's rows."""
    try:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CVMError(f"writing {out / MANIFEST} failed ({exc.strerror or exc})", path=str(out)) from None
