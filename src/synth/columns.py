"""A tiny columnar model that both writers read: one ``Column`` per field, a ``Chunk`` per table and chunk.

The world (``world.py``) draws each table as columns; the writers
(``writers.py``) turn them into Parquet or JSON text without going row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import compress
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True, eq=False)
class Column:
    """One column of a chunk: scalars, a list per row, or a struct per row.

    ``present`` is False where the row has no such field (written as a Parquet
    null, left out of a JSON row); ``None`` means present in every row. Text
    that repeats (ids, dates, plans, Y/N...) is a ``category``: codes into a
    small vocabulary, which both writers turn into text at C speed.
    """

    kind: Literal["text", "category", "float", "int", "list", "struct"]
    values: Any = None
    """text: a list of str; category: int codes; float and int: the numbers."""
    present: np.ndarray | None = None
    vocabulary: tuple[str, ...] = ()
    """category: the text of each code."""
    decimals: int | None = None
    """float: the values are rounded to this many decimals (lets the JSON writer format them by table)."""
    fields: tuple[tuple[str, Column], ...] = ()
    """struct: the named child columns, one value per row."""
    offsets: np.ndarray | None = None
    """list: row i holds ``item[offsets[i]:offsets[i + 1]]``."""
    item: Column | None = None

    def list_parts(self) -> tuple[np.ndarray, Column]:
        """A list column's offsets and item column (every list column has both)."""
        if self.offsets is None or self.item is None:
            raise ValueError(f"a {self.kind} column has no offsets and items")
        return self.offsets, self.item

    def __len__(self) -> int:
        if self.kind == "list":
            return len(self.list_parts()[0]) - 1
        if self.kind == "struct":
            return len(self.fields[0][1])
        return len(self.values)


Chunk = list[tuple[str, Column]]
"""A table's rows for one chunk: (field name, column) pairs in output order."""


def text(values: np.ndarray | list[str], present: np.ndarray | None = None) -> Column:
    return Column("text", values=values if isinstance(values, list) else np.asarray(values).astype(str).tolist(), present=present)


def category(codes: np.ndarray, vocabulary: tuple[str, ...], present: np.ndarray | None = None) -> Column:
    return Column("category", values=np.asarray(codes, dtype=np.int64), vocabulary=vocabulary, present=present)


def number(values: np.ndarray, decimals: int | None = None, present: np.ndarray | None = None) -> Column:
    values = np.asarray(values, dtype=np.float64)
    return Column("float", values=values if decimals is None else np.round(values, decimals), decimals=decimals, present=present)


def integer(values: np.ndarray, present: np.ndarray | None = None) -> Column:
    return Column("int", values=np.asarray(values, dtype=np.int64), present=present)


def listof(offsets: np.ndarray, item: Column, present: np.ndarray | None = None) -> Column:
    return Column("list", offsets=np.asarray(offsets, dtype=np.int64), item=item, present=present)


def struct(fields: list[tuple[str, Column]], present: np.ndarray | None = None) -> Column:
    return Column("struct", fields=tuple(fields), present=present)


def offsets_of(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def take_rows(col: Column, keep: np.ndarray) -> Column:
    """The rows of ``col`` where ``keep`` is True."""
    present = None if col.present is None else col.present[keep]
    if col.kind == "text":
        return replace(col, values=list(compress(col.values, keep.tolist())), present=present)
    if col.kind == "struct":
        return replace(col, fields=tuple((name, take_rows(child, keep)) for name, child in col.fields), present=present)
    if col.kind == "list":
        offsets, item = col.list_parts()
        lengths = np.diff(offsets)
        return replace(col, offsets=offsets_of(lengths[keep]), item=take_rows(item, np.repeat(keep, lengths)), present=present)
    return replace(col, values=col.values[keep], present=present)
