"""Synthetic CVM data at scale: every table of the data contract, seeded and streamed.

``generate`` writes ``customers`` and the nine tables of DESIGN section 3 for N
customers into a folder, as Parquet, JSON lines or a JSON list, plus a
``manifest.json``. Customers are made a chunk at a time (50,000 by default)
with numpy's seeded ``Generator``: every column is drawn as an array, never
row by row, and a chunk is written (by a second thread, while the next one is
made) and dropped, so memory stays flat however many customers are asked for.

The data is plausible, not random noise: churn follows a Beta distribution
lifted by the customer's troubles, monthly revenue is lognormal by segment,
about 15% of customers have poor network, ~10% bill shock and 8% roaming
charges, usage rises or falls, consent differs per channel and purpose, ~3%
have no permissions record, and calls and chats come from varied templates
(network complaint, bill dispute, roaming, family plan, upgrade, cancellation
with a competitor, data running out, cheaper plan, happy customer, routine
requests) that carry the words the Journey agent looks for. Each table mixes
the field shapes real feeds use (billing ``monthly_bill`` vs
``monthly_charge``, usage ``total_data_gb`` vs ``data_usage_gb``,
``churn_score`` vs ``churn_probability``, transcripts as text or as messages).

Reproducible: the same seed, count, chunk size and as-of date give
byte-identical files (with the same numpy and pyarrow versions); the format
does not change the data, only how it is written. Parquet needs pyarrow; the
JSON formats need only numpy.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from functools import lru_cache
from itertools import compress, repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from cvm import __version__
from cvm.tools.data_source import FORMATS as READ_FORMATS
from cvm.tools.records import TABLES
from cvm.utils.config import STANDARD_CHANNELS
from cvm.utils.errors import CVMError, UsageError

log = structlog.get_logger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different data."""
DEFAULT_AS_OF = date(2026, 11, 23)
DEFAULT_CHUNK_SIZE = 50_000
DEFAULT_SEED = 42
MAX_CUSTOMERS = 50_000_000
Format = Literal["parquet", "jsonl", "json"]
EXTENSIONS: dict[str, str] = {"parquet": ".parquet", "jsonl": ".jsonl", "json": ".json"}
MANIFEST = "manifest.json"
PARQUET_COMPRESSION = "zstd"


# --- a tiny columnar model that both writers read ------------------------------------------


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


def _offsets(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _compress(col: Column, keep: np.ndarray) -> Column:
    """The rows of ``col`` where ``keep`` is True."""
    present = None if col.present is None else col.present[keep]
    if col.kind == "text":
        return replace(col, values=list(compress(col.values, keep.tolist())), present=present)
    if col.kind == "struct":
        return replace(col, fields=tuple((name, _compress(child, keep)) for name, child in col.fields), present=present)
    if col.kind == "list":
        offsets, item = col.list_parts()
        lengths = np.diff(offsets)
        return replace(col, offsets=_offsets(lengths[keep]), item=_compress(item, np.repeat(keep, lengths)), present=present)
    return replace(col, values=col.values[keep], present=present)


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
        offsets, item = _offsets(np.where(col.present, lengths, 0)), _compress(item, np.repeat(col.present, lengths))
    large = offsets[-1] >= 2**31
    arrow_offsets = pa.array(offsets, type=pa.int64() if large else pa.int32())
    return (pa.LargeListArray if large else pa.ListArray).from_arrays(arrow_offsets, _arrow(item), mask=arrow_mask)


def arrow_table(chunk: Chunk) -> Any:
    import pyarrow as pa

    return pa.table({name: _arrow(col) for name, col in chunk})


# --- writers -------------------------------------------------------------------------------------


class _TableWriter:
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


class _ParquetWriter(_TableWriter):
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


class _TextWriter(_TableWriter):
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


def _writer(fmt: str, path: Path) -> _TableWriter:
    return _ParquetWriter(path) if fmt == "parquet" else _TextWriter(path, as_list=fmt == "json")


# --- the synthetic world: vocabularies --------------------------------------------------------------

FIRST_NAMES = (
    "Daniel", "Agnieszka", "Gareth", "Sophie", "Ravi", "Margaret", "Kirsty", "Tom", "Bronwen", "Jamal", "Colin",
    "Hannah", "Oliver", "Amelia", "Mohammed", "Isla", "George", "Ava", "Harry", "Mia", "Jack", "Grace", "Noah",
    "Freya", "Leo", "Priya", "Arjun", "Chloe", "Ethan", "Aisha", "Callum", "Niamh", "Owen", "Zara", "Lewis",
    "Fatima", "Rhys", "Megan", "Kwame", "Eilidh", "Tomasz", "Ewa", "Samuel", "Ruth", "Declan", "Siobhan", "Yusuf",
    "Chen", "Mei", "Luca", "Sofia", "David", "Sarah", "Michael", "Emma", "James", "Laura", "Paul", "Joanne",
    "Stephen", "Nicola", "Andrew", "Claire", "Imran", "Nadia", "Patrick", "Deborah", "Kofi", "Abena", "Ian", "Rebecca",
)
LAST_NAMES = (
    "Whitaker", "Nowak", "Hughes", "Marsh", "Chandran", "Ellison", "Campbell", "Fairclough", "Price", "Okafor",
    "Rourke", "Lowe", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson",
    "Clarke", "Khan", "Ali", "Hussain", "Singh", "Kaur", "Murphy", "O'Brien", "Kelly", "Macdonald", "Stewart",
    "Reid", "Morgan", "Griffiths", "Lewis", "Kowalski", "Wiśniewski", "Mensah", "Adeyemi", "Nguyen", "Wong",
    "Rossi", "Silva", "Begum", "Ahmed", "Shaw", "Fletcher", "Barker", "Doyle", "Gallagher", "Quinn", "Pearson",
)
PLACES = (
    "Headingley, Leeds", "Ealing, London", "Cardiff Bay", "Brighton, Hove", "Leicester city centre", "Harrogate",
    "Govan, Glasgow", "Salford Quays", "Clifton, Bristol", "Jesmond, Newcastle", "Moseley, Birmingham",
    "Portobello, Edinburgh", "Kings Heath, Birmingham", "Walthamstow, London", "Didsbury, Manchester",
    "Anfield, Liverpool", "Sneinton, Nottingham", "Heavitree, Exeter", "Roath, Cardiff", "Ormeau, Belfast",
    "Swansea Marina", "Ipswich town centre", "Norwich, Norfolk", "Truro, Cornwall", "Inverness", "Aberystwyth",
    "Keswick, Cumbria", "Hebden Bridge", "Whitby", "Lerwick, Shetland", "Stornoway", "Bodmin Moor", "Kendal",
    "Ambleside", "Crickhowell", "Fort William", "Skipton", "Hexham", "Builth Wells", "Dornoch",
)
RURAL_FROM = PLACES.index("Keswick, Cumbria")
"""Places from here on are rural (more of them have poor network)."""

CONSUMER_PLANS = (
    ("SIM Only 12GB", 9.99, 12.0), ("SIM Only 30GB", 15.99, 30.0), ("SIM Only 100GB", 19.99, 100.0),
    ("40GB 5G", 25.99, 40.0), ("Essentials 20GB + Pixel 7a", 33.99, 20.0), ("Unlimited 5G", 41.99, 0.0),
    ("Essentials 30GB + Galaxy S23", 47.99, 30.0), ("Unlimited 5G + Pixel 9", 57.99, 0.0),
    ("Unlimited Max 5G + Galaxy S25", 71.99, 0.0), ("Unlimited Max 5G + iPhone 16 Pro", 91.99, 0.0),
)
BUSINESS_PLANS = (
    ("Business Essentials 25GB", 21.99, 25.0), ("Business 50GB", 31.99, 50.0), ("Business Unlimited", 44.99, 0.0),
    ("Business Unlimited + iPhone 16", 64.99, 0.0), ("Business Unlimited Max + Galaxy S25 Ultra", 84.99, 0.0),
)
"""(name, list price, data allowance in GB; 0 is unlimited)."""

REGULAR_CHARGES = (
    "Calls to 0870 numbers", "Calls to 0845 numbers", "International calls - Poland", "International calls - India",
    "International calls - Nigeria", "International calls - Pakistan", "Directory enquiries 118", "Picture messages",
    "Premium SMS", "Calls to 0843 numbers",
)
SHOCK_CHARGES = (
    "Premium rate services", "Out-of-bundle data", "Calls to 09 numbers", "Third-party subscription",
    "International calls - USA", "Out-of-bundle calls",
)
COUNTRIES = ("Spain", "France", "Italy", "Portugal", "Greece", "the USA", "Turkey", "Switzerland", "Croatia", "Dubai")
ROAMING_CHARGES = tuple(f"Roaming - {c}" if i % 2 else f"Roaming data - {c}" for i, c in enumerate(COUNTRIES))
COMPETITORS = ("Vodafone", "EE", "O2", "Three Mobile", "giffgaff", "Sky Mobile", "Tesco Mobile")
PHONES = ("iPhone 17", "iPhone 17 Pro", "Galaxy S25", "Pixel 10", "Galaxy A56", "iPhone 16e")
AGENTS = (
    "Priya", "Liam", "Chloe", "Marcus", "Sian", "Ade", "Kerry", "Josh", "Naomi", "Craig", "Lucy", "Farah", "Ben",
    "Hollie", "Dev",
)
FAMILY = ("my son", "my daughter", "the kids", "my partner", "my mum")
WEEKS = ("two weeks", "three weeks", "a month", "six weeks", "ten days")
DAYS_LEFT = ("five days", "a week", "ten days", "two weeks")
DND_WINDOWS = ("22:00-08:00", "21:00-09:00", "23:00-07:00", "22:00-07:00", "21:00-08:00")
CONTACT_WINDOWS = ("09:00-12:00", "10:00-12:00", "12:00-14:00", "14:00-17:00", "17:00-19:00", "18:00-20:00")
TREATMENT_IDS = tuple(STANDARD_CHANNELS)
CHANNELS = ("email", "sms", "call", "push_notifications")
PURPOSES = ("marketing", "service_updates", "billing")
CONSENT_RATES: dict[str, tuple[float, float, float]] = {
    "email": (0.62, 0.93, 0.95),
    "sms": (0.48, 0.90, 0.92),
    "call": (0.22, 0.80, 0.86),
    "push_notifications": (0.38, 0.62, 0.58),
}
"""P(Y) per channel for (marketing, service_updates, billing), before the few who refuse all marketing."""
MARKETING_REFUSERS = 0.10
NO_PERMISSIONS = 0.03

TOPICS = ("network", "bill", "roaming", "cancel", "data", "family", "upgrade", "cheaper", "happy", "general")
NONE = -1
PAGES: dict[str, tuple[str, ...]] = {
    "network": ("/support/coverage-checker", "/support/network-status", "/support/wifi-calling"),
    "bill": ("/billing/explain-my-bill", "/support/premium-rate-bar", "/billing/explain-my-bill"),
    "roaming": ("/roaming/eu", "/roaming/worldwide", "/roaming/eu"),
    "cancel": ("/account/cancel", "/support/pac-code", "/account/contract"),
    "data": ("/plans/data-add-ons", "/plans/unlimited", "/account/usage"),
    "family": ("/plans/family", "/plans/family/add-line", "/plans/family"),
    "upgrade": ("/phones/upgrade", "/phones/apple-iphone-17", "/phones/samsung-galaxy-s25"),
    "cheaper": ("/plans/sim-only", "/plans/compare", "/plans/sim-only"),
    "happy": ("/rewards", "/rewards", "/account/overview"),
    "general": ("/help/esim", "/account/overview", "/help/contact-us"),
}
BROWSING = ("/", "/account/overview", "/app/download", "/help/contact-us", "/shop/accessories", "/account/usage", "/offers")
"""Pages that show no particular interest."""
STRAY = ("/rewards", "/phones/upgrade", "/plans/family", "/roaming/eu", "/plans/data-add-ons", "/plans/sim-only")
"""Interest pages that customers without that topic visit now and then."""

OFFER_BOOST: dict[str, dict[str, float]] = {
    "network": {"service_call_back": 0.40, "service_sms": 0.25, "retention_email": 0.10},
    "bill": {"service_sms": 0.30, "service_call_back": 0.25, "personalized_offer": 0.15},
    "roaming": {"personalized_offer": 0.35, "service_sms": 0.25},
    "cancel": {"marketing_call_back": 0.35, "retention_email": 0.30, "retention_sms": 0.25, "personalized_offer": 0.25},
    "data": {"data_boost": 0.45, "personalized_offer": 0.15},
    "family": {"family_plan": 0.45, "personalized_offer": 0.10},
    "upgrade": {"early_upgrade": 0.45, "personalized_offer": 0.10},
    "cheaper": {"personalized_offer": 0.35, "retention_email": 0.15},
    "happy": {"loyalty_points": 0.35, "loyalty_app": 0.30},
    "general": {"loyalty_app": 0.10},
}

# Conversations: (speaker, words) turns with {slots}. The customer's turns carry
# the words the Journey agent reads (signal, bill, roaming, family, upgrade,
# cancel and competitors, running out of data, cheaper...); each topic keeps to
# its own, so a transcript shows the interest it was written for.
Turn = tuple[str, str]
CONVERSATIONS: dict[str, tuple[tuple[Turn, ...], ...]] = {
    "network": (
        (("customer", "My calls keep dropping at home in {place}. Most evenings I get one bar of signal or nothing at all."),
         ("agent", "I'm sorry to hear that, {first}. Can you tell me when it started?"),
         ("customer", "About {weeks} ago. I can't get through a ten-minute call without it cutting out, and I work from home."),
         ("agent", "I can see reduced capacity on a mast near you. I've raised a network ticket, reference {ref}, and Wi-Fi Calling should help in the meantime."),
         ("customer", "I've already got Wi-Fi Calling on and it still drops. If it's not sorted soon I'll be looking elsewhere.")),
        (("customer", "I rang {weeks} ago about no signal in {place}, reference {ref}. Nothing has changed and I had four calls dropped last night alone."),
         ("agent", "I'm really sorry, {first}. The ticket was closed without a fix, which shouldn't have happened. I've reopened and escalated it."),
         ("customer", "I'm paying {price} a month and I can't make a phone call in my own living room. This is ridiculous."),
         ("agent", "I completely understand. I've added a credit for the disruption and the network team will call you back within 48 hours."),
         ("customer", "Okay. Please make sure they actually do.")),
        (("customer", "Mobile data has been really poor around {place} for {weeks}. Pages won't load and video calls freeze."),
         ("agent", "Thanks for letting us know, {first}. I'm running a check on the cells that serve {place} now."),
         ("customer", "It's frustrating, the coverage checker on your website says it should be fine here."),
         ("agent", "There's planned work on a nearby site which is limiting speeds. It should finish within a fortnight; your reference is {ref}."),
         ("customer", "I'll give it two weeks, but I'm not impressed.")),
    ),
    "bill": (
        (("customer", "My bill this month is {bill}. It's normally about {price}. I've been overcharged and I want to know why."),
         ("agent", "Let me take a look, {first}. I can see {extra} of extra charges on the latest bill."),
         ("customer", "I never signed up to any premium services. This is the third time I've had to complain about my bill."),
         ("agent", "I'm sorry. I've put a bar on premium rate numbers and raised a dispute for those charges, reference {ref}."),
         ("customer", "I want a refund, not a dispute. If this keeps happening I'm not staying.")),
        (("customer", "I've been charged {extra} on top of my plan and I've no idea what it's for. I'm shocked, honestly."),
         ("agent", "I understand, {first}. Those are calls to 09 numbers and a third-party subscription on your account."),
         ("customer", "I didn't authorise any subscription. How do I get the money back?"),
         ("agent", "I've stopped the subscription and requested a refund of the charges. You'll see it on your next bill."),
         ("customer", "Right. Please make sure it doesn't happen again.")),
        (("customer", "Can someone explain my bill? It's gone up to {bill} and my plan is only {price}."),
         ("agent", "Of course, {first}. The difference is out-of-bundle charges from last month."),
         ("customer", "Why wasn't I warned? That's a terrible way to treat customers."),
         ("agent", "You should have had a text at 80% of your allowance. I can apply a one-off goodwill credit."),
         ("customer", "I'd appreciate that, but I'm still annoyed about it.")),
    ),
    "roaming": (
        (("customer", "Hello, my bill has {roaming} of roaming charges on it. I was in {country} for a week, I thought roaming was included?"),
         ("agent", "Sorry for the surprise, {first}. Your plan needs a roaming pass, which is £2.50 a day. Without it, data is charged at standard rates."),
         ("customer", "Nobody told me that. I got a welcome text abroad but it didn't say I'd be charged this much."),
         ("agent", "As a one-off I can re-rate your trip as if you'd had the pass, which brings the charges down a lot."),
         ("customer", "That would be much better, thank you. How do I stop it happening again?")),
        (("customer", "I'm going on holiday to {country} next week. What will it cost to use my phone there?"),
         ("agent", "Good question, {first}. You can add a roaming pass for £2.50 a day and use your allowance as you do at home."),
         ("customer", "Can I add it now so I don't forget?"),
         ("agent", "Done, it's on your account and only charges on days you use it."),
         ("customer", "Great, thanks for your help.")),
        (("customer", "I used my phone in {country} on a work trip and the roaming cost me {roaming}. That seems a lot for a few days."),
         ("agent", "I can see the data sessions, {first}. That destination isn't covered by your plan."),
         ("customer", "Is there a bundle for travel further afield? I'm away again next month."),
         ("agent", "Yes, the Worldwide Traveller pass covers 50 destinations. I'll text you the details."),
         ("customer", "Okay, send it over.")),
    ),
    "cancel": (
        (("customer", "I want to cancel my contract. {competitor} have offered me the same plan for {offer} a month."),
         ("agent", "I'm sorry to hear you're thinking of going, {first}. Can I ask what's prompted it?"),
         ("customer", "I'm paying {price} and getting nothing for being loyal. Just give me my PAC code, please."),
         ("agent", "Before I do, I can offer you a retention discount that would bring your price down."),
         ("customer", "It's too late for that, to be honest. I've had enough.")),
        (("customer", "How do I leave? I've had nothing but problems and I'm fed up."),
         ("agent", "I'm sorry, {first}. I can take you through your options, or send a PAC code if you've decided."),
         ("customer", "{competitor} will give me double the data for less. Unless you can match it I'm switching."),
         ("agent", "Let me see what I can do. I'll have a specialist call you back today."),
         ("customer", "Fine, but I want an answer today.")),
        (("customer", "My contract ends soon and I'm thinking of switching to {competitor}. What can you do for me?"),
         ("agent", "Thanks for giving us the chance, {first}. I can look at a loyalty price for you."),
         ("customer", "It needs to be under {offer} a month or I'm going."),
         ("agent", "I'll see what's available and email you an offer."),
         ("customer", "Okay, but I won't wait long.")),
    ),
    "data": (
        (("customer", "I keep running out of data before the end of the month. It happened again this week."),
         ("agent", "I can see you've used your full allowance for the last two months, {first}."),
         ("customer", "Is there a way to get more data without paying a fortune?"),
         ("agent", "You could add a 10GB data boost for £5, or move to a bigger plan."),
         ("customer", "I'll take the boost for now.")),
        (("customer", "I ran out of data with {days} to go before my allowance reset. Streaming on the train uses loads."),
         ("agent", "Unlimited might suit you better, {first}. You used {gb} last month."),
         ("customer", "What does unlimited cost exactly?"),
         ("agent", "It would be {offer} a month, and you'd keep your number."),
         ("customer", "Let me think about it.")),
        (("customer", "How much is a data add-on? I've only got 1GB left and there are {days} to go."),
         ("agent", "A 5GB add-on is £3, {first}, and it lasts until your allowance resets."),
         ("customer", "Okay, please add one."),
         ("agent", "Done. You'll get a text to confirm."),
         ("customer", "Thanks.")),
    ),
    "family": (
        (("customer", "I'd like to add a line for {family}. Do you do family plans?"),
         ("agent", "We do, {first}. Each extra line on a family plan gets 20% off, and you can share data between lines."),
         ("customer", "That sounds good. Can I set a spending cap on the extra line?"),
         ("agent", "Yes, you can set a cap and content filters from the app."),
         ("customer", "Brilliant, I'll have a look at the options tonight.")),
        (("customer", "We've got three phones in the house on different networks. Could we put them all on one family plan?"),
         ("agent", "Yes, {first}, and you'd save on each additional line. Which numbers would you like to bring across?"),
         ("customer", "Mine, my partner's and the kids'. We'd like to pay for them together."),
         ("agent", "I'll send you a quote for three lines, with the steps to move the numbers."),
         ("customer", "Thanks, that's helpful.")),
        (("customer", "I'm getting a first phone for {family}. Can I add an extra line to my account?"),
         ("agent", "Of course, {first}. A SIM Only line on the family plan starts at £6 a month."),
         ("customer", "Perfect. Does it come with parental controls?"),
         ("agent", "Yes, they're on by default for under-16s and you manage them in the app."),
         ("customer", "Great, let's do it.")),
    ),
    "upgrade": (
        (("customer", "My phone is getting slow and the battery barely lasts a day. Am I due an upgrade?"),
         ("agent", "Let me check, {first}. You're eligible from next month, but I can offer an early upgrade now."),
         ("customer", "I've been looking at the {phone}. What would that cost on my plan?"),
         ("agent", "I can do the {phone} with unlimited data for about what you pay now, with no upfront cost."),
         ("customer", "That sounds good. Can you email me the details?")),
        (("customer", "Is there a deal on the new {phone}? I've been with you for years."),
         ("agent", "There is, {first}. Long-standing customers get £10 a month off for the first year."),
         ("customer", "Can I trade in my old handset as well?"),
         ("agent", "Yes, it looks like it's worth about £120 in trade-in credit."),
         ("customer", "Great, thanks. I'll pop into the shop at the weekend.")),
        (("customer", "My screen is cracked and I'd rather get a new phone than fix it. What can you offer?"),
         ("agent", "Sorry to hear that, {first}. You can upgrade now and pay off the remaining device plan."),
         ("customer", "How much would the {phone} be?"),
         ("agent", "With your current allowance it's around {offer} a month."),
         ("customer", "Okay, I'll think about it.")),
    ),
    "cheaper": (
        (("customer", "I'm paying {price} a month. Is there anything cheaper? I don't think I use anywhere near my allowance."),
         ("agent", "You've used around {gb} a month recently, {first}, so a smaller plan would cover you comfortably."),
         ("customer", "How much is that? And would I keep my number?"),
         ("agent", "Our SIM Only 30GB is £15.99 a month, and yes, your number stays the same."),
         ("customer", "That's quite a saving. Can I change now or do I have to wait until my contract ends?")),
        (("customer", "Money is tight at the moment and my plan is too expensive. What are my options?"),
         ("agent", "Let me look, {first}. Moving to SIM Only would save you about £15 a month."),
         ("customer", "Would I lose anything?"),
         ("agent", "Only the handset payments, which finish next month anyway."),
         ("customer", "Okay, let's do that.")),
        (("customer", "I saw a lower price for my plan on your website for new customers. Can I have it too?"),
         ("agent", "I can check, {first}. I'm able to match that price when your minimum term ends next month."),
         ("customer", "That seems fair. Please set it up."),
         ("agent", "I've added a note and you'll get a text when it's applied."),
         ("customer", "Thanks.")),
    ),
    "happy": (
        (("customer", "I just wanted to say thanks, the team sorted my new SIM really quickly."),
         ("agent", "That's lovely to hear, {first}. I'll pass it on."),
         ("customer", "Brilliant service, I'd recommend you to anyone."),
         ("agent", "Thank you. Is there anything else I can help with today?"),
         ("customer", "No, that's all. Cheers.")),
        (("customer", "How do I use my rewards? I've got quite a few points saved up."),
         ("agent", "You can spend them in the app on cinema tickets, coffee or money off accessories, {first}."),
         ("customer", "Perfect, thank you. That's really helpful."),
         ("agent", "You're welcome. Enjoy them."),
         ("customer", "Thanks, have a good day.")),
        (("customer", "I've moved house and wanted to update my address. Everything else is great, by the way."),
         ("agent", "Congratulations on the move, {first}. I've updated your address now."),
         ("customer", "Lovely, thanks for being so quick."),
         ("agent", "No trouble at all."),
         ("customer", "Cheers, bye.")),
    ),
    "general": (
        (("customer", "I'd like to set up an eSIM on my watch. Can you talk me through it?"),
         ("agent", "Of course, {first}. Open the watch app on your phone and choose Mobile Service."),
         ("customer", "It's asking for a code."),
         ("agent", "I've just sent it to you by text."),
         ("customer", "Got it, it's working now.")),
        (("customer", "I need my PUK code, my SIM is locked."),
         ("agent", "I can help, {first}. For security, can you confirm your date of birth?"),
         ("customer", "Yes, it's the fourteenth of March."),
         ("agent", "Thanks. Your PUK code is on its way by text."),
         ("customer", "Okay, I'll look now.")),
        (("customer", "Can I change the date my direct debit is taken?"),
         ("agent", "Yes, {first}. Which day of the month would suit you?"),
         ("customer", "The 28th, after I get paid."),
         ("agent", "Done. The change starts from next month."),
         ("customer", "Okay.")),
    ),
}
CALL_OPENERS = (
    "Good {day_part}, you're through to customer support, my name's {agent}. How can I help?",
    "Hello, you're speaking to {agent} in customer support, how can I help?",
    "Thanks for calling, this is {agent}. What can I do for you today?",
    "Good {day_part}, support team, {agent} speaking.",
)
CHAT_OPENERS = (
    "Hi {first}, you're chatting with {agent}. How can I help?",
    "Hello, {agent} here from the support team.",
)
CLOSERS = (
    "Thanks for getting in touch, {first}. Have a good {day_part}.",
    "I've added a note to your account. Take care, {first}.",
    "Thanks for your patience today.",
)
_TEMPLATES: tuple[tuple[int, tuple[Turn, ...]], ...] = tuple(
    (TOPICS.index(topic), turns) for topic, variants in CONVERSATIONS.items() for turns in variants
)
_TEMPLATE_TOPIC = np.array([topic for topic, _ in _TEMPLATES])
_TEMPLATE_TURNS = np.array([len(turns) for _, turns in _TEMPLATES])


PLANS = CONSUMER_PLANS + BUSINESS_PLANS
PLAN_NAMES = tuple(p[0] for p in PLANS)
FULL_NAMES = tuple(f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES)
"""Every first + last name; a customer's name is the code first * len(LAST_NAMES) + last."""
CHARGE_DESCRIPTIONS = REGULAR_CHARGES + SHOCK_CHARGES + ROAMING_CHARGES + ("Additional charges",)
_SHOCK_AT, _ROAMING_AT = len(REGULAR_CHARGES), len(REGULAR_CHARGES) + len(SHOCK_CHARGES)
_SUMMED = len(CHARGE_DESCRIPTIONS) - 1
ALL_PAGES = tuple(dict.fromkeys([*BROWSING, *STRAY, *(page for topic in TOPICS for page in PAGES[topic])]))
_PAGE_CODES = np.array([[ALL_PAGES.index(page) for page in PAGES[topic]] for topic in TOPICS])
RISK_FACTORS = (
    "network_complaints", "repeat_contacts", "coverage_checker_visits", "bill_shock", "billing_complaint",
    "roaming_charges", "competitor_offer", "cancel_page_visits", "negative_sentiment", "payment_overdue",
    "price_sensitivity", "data_cap_pressure", "upgrade_interest", "household_needs_change",
    "contract_end_approaching", "low_arpu", "long_tenure",
)
DAY_SPAN = 6000
"""Dates reach this many days back from the as-of date (tenure is at most 15 years)."""


@lru_cache(maxsize=4)
def _day_names(as_of: date) -> tuple[str, ...]:
    """"YYYY-MM-DD" of as_of minus 0, 1, 2 ... DAY_SPAN days: a date column is codes into this."""
    days = np.datetime64(as_of.isoformat(), "D") - np.arange(DAY_SPAN + 1).astype("timedelta64[D]")
    return tuple(days.astype(str).tolist())


def _pick(options: tuple[str, ...], codes: np.ndarray) -> list[str]:
    return list(map(options.__getitem__, codes.tolist()))


def _money(values: np.ndarray) -> list[str]:
    """£45, £2.50, £1204.10 style amounts."""
    cents = np.rint(np.asarray(values, dtype=np.float64) * 100).astype(np.int64).tolist()
    return [f"£{c // 100}" if c % 100 == 0 else f"£{c // 100}.{c % 100:02d}" for c in cents]


def _days_ago(as_of: np.datetime64, days: np.ndarray) -> np.ndarray:
    return (as_of - days).astype("timedelta64[D]").astype(np.int64)


# --- the synthetic world: one chunk of customers --------------------------------------------------


@dataclass
class _Conversations:
    """The calls or chats of a chunk, before they are shaped into a table."""

    owner: np.ndarray
    at: np.ndarray
    """datetime64[s] of each conversation."""
    template: np.ndarray
    opener: np.ndarray
    """Index into the openers; -1 for none."""
    closer: np.ndarray
    as_messages: np.ndarray
    slot_codes: dict[str, np.ndarray]
    offer: np.ndarray
    duration: np.ndarray | None = None


_SLOT_CHOICES: dict[str, tuple[str, ...]] = {
    "agent": AGENTS, "competitor": COMPETITORS, "phone": PHONES, "weeks": WEEKS, "days": DAYS_LEFT, "family": FAMILY,
}
SLOTS = frozenset({*_SLOT_CHOICES, "first", "place", "country", "ref", "gb", "day_part", "price", "bill", "extra", "roaming", "offer"})
"""Every ``{slot}`` a conversation template may use (``_World._slot`` fills each)."""


class _World:
    """N customers (``first`` is the 0-based index of the first): their latent traits, then each table.

    All customer-level traits are drawn in ``__init__``, in a fixed order; each
    table then draws its own row-level detail when it is asked for, in the order
    of ``TABLES``. The output format never changes a draw.
    """

    def __init__(self, rng: np.random.Generator, first: int, n: int, as_of: date, id_width: int):
        self.rng, self.n = rng, n
        self.as_of = np.datetime64(as_of.isoformat(), "D")
        self.days = _day_names(as_of)
        self.id_names = tuple(map(f"C{{:0{id_width}d}}".format, range(first + 1, first + n + 1)))
        r = rng
        self.first_name = r.integers(0, len(FIRST_NAMES), n)
        self.last_name = r.integers(0, len(LAST_NAMES), n)
        self.business = r.random(n) < 0.15
        # Monthly revenue: lognormal by segment; the plan is the segment's plan nearest in price.
        revenue = np.where(self.business, r.lognormal(np.log(42.0), 0.40, n), r.lognormal(np.log(29.0), 0.45, n))
        revenue = np.clip(revenue, 7.5, 190.0)
        self.plan = np.where(
            self.business,
            self._nearest(revenue, BUSINESS_PLANS) + len(CONSUMER_PLANS),
            self._nearest(revenue, CONSUMER_PLANS),
        )
        self.charge = np.round(np.maximum(np.rint(revenue) - 0.01, 4.99), 2)
        self.allowance = np.array([p[2] for p in PLANS])[self.plan]
        # Tenure: a fifth joined in the last year, the rest a long-tailed spread up to 15 years.
        new = r.random(n) < 0.2
        months = np.where(new, r.uniform(0.5, 12.0, n), 12.0 + r.gamma(2.0, 18.0, n))
        self.tenure_months = np.clip(months, 0.5, 180.0)
        # Where they are and how the network treats them there: ~15% poor (more in the country), ~20% fair.
        self.place = r.integers(0, len(PLACES), n)
        u = r.random(n)
        poor_share = np.where(self.place >= RURAL_FROM, 0.25, 0.10)
        self.poor_network = u < poor_share
        self.fair_network = ~self.poor_network & (u < poor_share + 0.20)
        self.bill_shock = r.random(n) < 0.08
        self.roaming = r.random(n) < np.where(self.business, 0.14, 0.07)
        self.roaming_country = r.integers(0, len(COUNTRIES), n)
        self.roaming_latest = r.random(n) < 0.6
        self.roaming_amount = np.round(np.clip(r.lognormal(np.log(24.0), 0.7, n), 3.0, 260.0), 2)
        trend = r.random(n)
        self.rising = trend < 0.20
        self.falling = (trend >= 0.20) & (trend < 0.35)
        self.overdue = r.random(n) < np.where(self.bill_shock, 0.12, 0.03)
        base_churn = r.beta(2.0, 5.5, n)
        self.topic = self._topics(base_churn)
        self.is_topic = {name: self.topic == i for i, name in enumerate(TOPICS)}
        # Churn: Beta-distributed, lifted by troubles, lowered by long and happy tenure.
        lift = (
            0.9 * self.poor_network + 0.3 * self.fair_network + 0.6 * self.bill_shock + 0.2 * self.roaming
            + 1.6 * self.is_topic["cancel"] + 0.5 * self.overdue + 0.2 * self.is_topic["cheaper"]
            - 0.5 * (self.tenure_months >= 48) - 0.4 * self.is_topic["happy"] + r.normal(0.0, 0.25, n)
        )
        logit = np.log(base_churn / (1.0 - base_churn)) + lift
        self.churn = np.round(np.clip(1.0 / (1.0 + np.exp(-logit)), 0.005, 0.995), 3)
        # Contacts: calls (~35%) and chats (~20%), likelier for customers with a story to tell.
        call_share = np.select(
            [self.is_topic[t] for t in ("network", "bill", "cancel", "roaming", "data", "cheaper")],
            [0.70, 0.72, 0.62, 0.55, 0.40, 0.45], default=0.24,
        )
        has_call = r.random(n) < call_share
        self.calls = np.where(has_call, 1 + r.choice(3, size=n, p=[0.80, 0.17, 0.03]), 0)
        has_chat = r.random(n) < np.where(self.topic == NONE, 0.08, 0.26)
        self.chats = np.where(has_chat, 1 + (r.random(n) < 0.1), 0)
        # Web clicks: a few pages on the topic, some plain browsing, a stray interest page now and then.
        topical = (self.topic != NONE) & (r.random(n) < 0.7)
        self.topic_clicks = np.where(topical, 1 + np.minimum(r.poisson(1.4, n), 5), 0)
        self.browse_clicks = np.minimum(r.poisson(0.9, n), 6)
        self.stray_clicks = (r.random(n) < 0.06).astype(np.int64)
        # Filled in by the billing and usage tables, for the conversations to quote.
        self.latest_total = self.charge
        self.latest_extra = np.zeros(n)
        self.latest_gb = np.full(n, 10.0)

    def _topics(self, base_churn: np.ndarray) -> np.ndarray:
        """Each customer's main story, if any, in order of what weighs most."""
        r, n = self.rng, self.n
        topic = np.full(n, NONE, dtype=np.int64)
        u, v, w = r.random(n), r.random(n), r.random(n)

        def assign(name: str, mask: np.ndarray) -> None:
            topic[(topic == NONE) & mask] = TOPICS.index(name)

        assign("network", self.poor_network & (u < 0.75))
        assign("bill", self.bill_shock & (u < 0.75))
        assign("roaming", self.roaming & (u < 0.70))
        assign("cancel", v < np.where(base_churn >= 0.45, 0.30, 0.015))
        assign("data", self.rising & (self.allowance > 0) & (u < 0.45))
        shares = {
            "family": np.full(n, 0.07), "upgrade": np.where(self.tenure_months >= 20, 0.12, 0.05),
            "cheaper": np.full(n, 0.06), "happy": np.full(n, 0.16), "general": np.full(n, 0.14),
        }
        low = np.zeros(n)
        for name, share in shares.items():
            assign(name, (w >= low) & (w < low + share))
            low = low + share
        return topic

    @staticmethod
    def _nearest(revenue: np.ndarray, plans: tuple[tuple[str, float, float], ...]) -> np.ndarray:
        prices = np.array([p[1] for p in plans])
        return np.searchsorted((prices[1:] + prices[:-1]) / 2, revenue)

    def _ids(self, owner: np.ndarray | None = None) -> Column:
        return category(np.arange(self.n) if owner is None else owner, self.id_names)

    def _dates(self, days_ago: np.ndarray, present: np.ndarray | None = None) -> Column:
        return category(days_ago, self.days, present=present)

    def table(self, name: str, parquet: bool = False) -> Chunk:
        """One table's rows for this chunk (``parquet`` only changes how billing's shape A is spelled)."""
        if name == "billing_data":
            return self._billing_data(parquet)
        return getattr(self, f"_{name}")()

    # -- tables -----------------------------------------------------------------

    def _customers(self) -> Chunk:
        join_days_ago = np.rint(self.tenure_months * 30.4375).astype(np.int64)
        return [
            ("customer_id", self._ids()),
            ("name", category(self.first_name * len(LAST_NAMES) + self.last_name, FULL_NAMES)),
            ("join_date", self._dates(join_days_ago)),
            ("segment", category(self.business, ("consumer", "small_business"))),
            ("plan", category(self.plan, PLAN_NAMES)),
        ]

    def _billing_data(self, parquet: bool = False) -> Chunk:
        """Three monthly bills: shape A (billing_date, monthly_bill, a number) or B (date, monthly_charge, a list).

        Shape A sums its regular and bill-shock charges into ``additional_charges``
        and puts roaming in ``roaming_charges``; shape B lists every charge. In
        Parquet a column has one type, so there shape A's number is a one-item
        list "Additional charges", which reads back the same.
        """
        r, n, months = self.rng, self.n, 3
        owner = np.repeat(np.arange(n), months)
        month = np.tile(np.arange(months), n)
        latest = month == months - 1
        rows = n * months
        shape_a = np.repeat(r.random(n) < 0.55, months)
        bill_day = (self.as_of.astype("datetime64[M]") - (months - 1) + month).astype("datetime64[D]")
        bill_days_ago = _days_ago(self.as_of, bill_day)
        charge = self.charge[owner] + np.where(latest & np.repeat(r.random(n) < 0.04, months), 2.0, 0.0)
        # Up to four charges per bill: two small regular ones, bill shock (latest month), roaming.
        present = np.zeros((rows, 4), dtype=bool)
        present[:, 0] = r.random(rows) < 0.35
        present[:, 1] = present[:, 0] & (r.random(rows) < 0.25)
        present[:, 2] = latest & self.bill_shock[owner]
        roaming_month = np.where(self.roaming_latest[owner], months - 1, months - 2)
        present[:, 3] = self.roaming[owner] & (month == roaming_month)
        amount = np.empty((rows, 4))
        amount[:, :2] = np.maximum(np.round(charge[:, None] * r.uniform(0.02, 0.12, (rows, 2)), 2), 0.05)
        amount[:, 2] = np.round(charge * r.uniform(0.9, 1.8, rows), 2)
        amount[:, 3] = self.roaming_amount[owner]
        described = np.column_stack([
            r.integers(0, _SHOCK_AT, rows), r.integers(0, _SHOCK_AT, rows),
            r.integers(_SHOCK_AT, _ROAMING_AT, rows), _ROAMING_AT + self.roaming_country[owner],
        ])
        charged_days_before = r.integers(1, 29, (rows, 4))
        status = np.where(latest, np.repeat(np.where(self.overdue, 2, (r.random(n) < 0.03).astype(np.int64)), months), 0)
        summed = np.round((amount[:, :3] * present[:, :3]).sum(axis=1), 2)
        roaming_total = np.round(amount[:, 3] * present[:, 3], 2)
        self.latest_total = (charge + summed + roaming_total)[latest]
        self.latest_extra = (summed + roaming_total)[latest]
        listed = present & ~shape_a[:, None]
        if parquet:
            listed[:, 0] |= shape_a & (summed > 0)
            described[:, 0] = np.where(shape_a, _SUMMED, described[:, 0])
            amount[:, 0] = np.where(shape_a, summed, amount[:, 0])
        who, slot = np.nonzero(listed)
        charges = struct([
            ("description", category(described[who, slot], CHARGE_DESCRIPTIONS)),
            ("amount", number(amount[who, slot], 2)),
            ("date", self._dates(bill_days_ago[who] + charged_days_before[who, slot], present=~shape_a[who] if parquet else None)),
        ])
        shape_b = ~shape_a
        columns: Chunk = [
            ("customer_id", self._ids(owner)),
            ("billing_date", self._dates(bill_days_ago, present=shape_a)),
            ("date", self._dates(bill_days_ago, present=shape_b)),
            ("monthly_bill", number(charge, 2, present=shape_a)),
            ("monthly_charge", number(charge, 2, present=shape_b)),
        ]
        if not parquet:
            columns.append(("additional_charges", number(summed, 2, present=shape_a)))
        columns += [
            ("additional_charges", listof(_offsets(listed.sum(axis=1)), charges, present=None if parquet else shape_b)),
            ("roaming_charges", number(roaming_total, 2, present=shape_a & (roaming_total > 0))),
            ("plan", category(self.plan[owner], PLAN_NAMES, present=shape_a)),
            ("plan_name", category(self.plan[owner], PLAN_NAMES, present=shape_b)),
            ("payment_status", category(status, ("paid", "pending", "overdue"))),
        ]
        return columns

    def _usage_data(self) -> Chunk:
        """Three months: shape A (date, total_data_gb, call_minutes, sms_count) or B (month, data_usage_gb, voice_minutes, roaming_data_gb)."""
        r, n, months = self.rng, self.n, 3
        owner = np.repeat(np.arange(n), months)
        month = np.tile(np.arange(months), n)
        shape_a = np.repeat(r.random(n) < 0.55, months)
        first_of = (self.as_of.astype("datetime64[M]") - (months - 1) + np.arange(months)).astype("datetime64[M]")
        unlimited = self.allowance == 0
        typical = np.where(unlimited, r.lognormal(np.log(26.0), 0.6, n), self.allowance * r.beta(4.0, 3.0, n))
        typical = np.where(self.rising & ~unlimited, self.allowance * r.uniform(0.45, 0.7, n), typical)
        step = np.where(self.rising, r.uniform(0.25, 0.9, n), np.where(self.falling, -r.uniform(0.2, 0.6, n), 0.0))
        factor = 1.0 + step[owner] * month / (months - 1) + r.normal(0.0, 0.04, n * months)
        gb = np.maximum(np.round(typical[owner] * factor, 1), 0.1)
        voice_median = np.where(self.business, 620.0, 210.0)
        voice = np.rint(r.lognormal(np.log(voice_median), 0.6, n)[owner] * r.uniform(0.85, 1.15, n * months))
        sms = np.rint(r.lognormal(np.log(30.0), 0.8, n)[owner] * r.uniform(0.7, 1.3, n * months))
        roaming_month = np.where(self.roaming_latest[owner], months - 1, months - 2)
        roaming_gb = np.where(self.roaming[owner] & (month == roaming_month), r.uniform(0.3, 4.5, n * months), 0.0)
        self.latest_gb = gb[month == months - 1]
        shape_b = ~shape_a
        return [
            ("customer_id", self._ids(owner)),
            ("date", category(month, tuple(first_of.astype("datetime64[D]").astype(str).tolist()), present=shape_a)),
            ("month", category(month, tuple(first_of.astype(str).tolist()), present=shape_b)),
            ("total_data_gb", number(gb, 1, present=shape_a)),
            ("data_usage_gb", number(gb, 1, present=shape_b)),
            ("call_minutes", integer(voice, present=shape_a)),
            ("voice_minutes", integer(voice, present=shape_b)),
            ("sms_count", integer(sms, present=shape_a)),
            ("roaming_data_gb", number(roaming_gb, 1, present=shape_b)),
        ]

    def _network_data(self) -> Chunk:
        """One to three measurements in the last six weeks, poor, fair or good for the customer."""
        r = self.rng
        counts = r.choice([1, 2, 3], size=self.n, p=[0.30, 0.45, 0.25])
        owner = np.repeat(np.arange(self.n), counts)
        rows = len(owner)
        days_ago = r.integers(1, 42, rows)
        days_ago = days_ago[np.lexsort((-days_ago, owner))]
        poor, fair = self.poor_network[owner], self.fair_network[owner]
        first_row = np.ones(rows, dtype=bool)
        first_row[1:] = owner[1:] != owner[:-1]
        latency = np.where(poor, r.uniform(85, 190, rows), np.where(fair, r.uniform(48, 76, rows), np.clip(r.normal(34, 8, rows), 14, 55)))
        dropped = np.where(
            poor, 1 + r.poisson(3.5, rows),
            np.where(fair, first_row & (r.random(rows) < 0.4), r.random(rows) < 0.03),
        )
        signal = np.where(poor, r.uniform(-118, -101, rows), np.where(fair, r.uniform(-103, -91, rows), r.uniform(-92, -64, rows)))
        speed = np.where(poor, r.uniform(0.4, 8.0, rows), np.where(fair, r.uniform(8.0, 30.0, rows), r.lognormal(np.log(65.0), 0.45, rows)))
        return [
            ("customer_id", self._ids(owner)),
            ("date", self._dates(days_ago)),
            ("avg_latency_ms", integer(np.rint(latency))),
            ("dropped_calls", integer(dropped)),
            ("signal_strength_dbm", integer(np.rint(signal))),
            ("download_speed_mbps", number(speed, 1)),
            ("location", category(self.place[owner], PLACES)),
        ]

    def _churn_score(self) -> Chunk:
        r, n, t = self.rng, self.n, self.is_topic
        complaint = t["network"] | t["bill"] | t["cancel"]
        factors = np.column_stack([
            t["network"] | (self.poor_network & (r.random(n) < 0.5)),
            self.calls >= 2,
            t["network"] & (self.topic_clicks > 0),
            self.bill_shock,
            t["bill"],
            self.roaming,
            t["cancel"] & (r.random(n) < 0.6),
            t["cancel"] & (self.topic_clicks > 0),
            complaint & (self.calls + self.chats > 0) & (r.random(n) < 0.6),
            self.overdue,
            t["cheaper"],
            t["data"],
            t["upgrade"],
            t["family"],
            r.random(n) < 0.07,
            self.charge < 15,
            (self.tenure_months >= 60) & (self.churn < 0.3),
        ])
        _, which = np.nonzero(factors)
        use_score = r.random(n) < 0.55
        return [
            ("customer_id", self._ids()),
            ("churn_score", number(self.churn, 3, present=use_score)),
            ("churn_probability", number(self.churn, 3, present=~use_score)),
            ("score_date", self._dates(r.integers(0, 4, n))),
            ("risk_factors", listof(_offsets(factors.sum(axis=1)), category(which, RISK_FACTORS))),
        ]

    def _conversations(self, counts: np.ndarray, call: bool) -> _Conversations:
        r = self.rng
        owner = np.repeat(np.arange(self.n), counts)
        rows = len(owner)
        # Calls in the last 45 days between 08:00 and 21:00; chats from 07:00 to 23:30.
        days_ago = r.integers(1, 46, rows)
        seconds = r.integers(8 * 3600, 21 * 3600, rows) if call else r.integers(7 * 3600, 23 * 3600 + 1800, rows)
        at = (self.as_of - days_ago.astype("timedelta64[D]")).astype("datetime64[s]") + seconds.astype("timedelta64[s]")
        at = at[np.lexsort((at, owner))]
        # Customers without a story get in touch about routine things or to say thanks.
        topic = self.topic[owner]
        idle = topic == NONE
        topic = np.where(idle, np.where(r.random(rows) < 0.55, TOPICS.index("general"), TOPICS.index("happy")), topic)
        pick = r.random(rows)
        template = np.empty(rows, dtype=np.int64)
        for index in range(len(TOPICS)):
            choices = np.flatnonzero(_TEMPLATE_TOPIC == index)
            mine = topic == index
            template[mine] = choices[(pick[mine] * len(choices)).astype(np.int64)]
        openers = len(CALL_OPENERS if call else CHAT_OPENERS)
        opener = r.integers(0 if call else -1, openers, rows)  # a chat may start with the customer
        closer = r.integers(-1, len(CLOSERS), rows)
        as_messages = r.random(rows) < (0.25 if call else 0.75)
        slot_codes = {name: r.integers(0, len(options), rows) for name, options in _SLOT_CHOICES.items()}
        slot_codes["ref"] = r.integers(100000, 1000000, rows)
        offer = np.round(np.maximum(self.charge[owner] * r.uniform(0.55, 0.85, rows), 6.0)) - 0.01
        duration = np.rint(np.clip(r.lognormal(np.log(380.0), 0.5, rows), 60, 2400)) if call else None
        return _Conversations(owner, at, template, opener, closer, as_messages, slot_codes, offer, duration)

    def _slot(self, conv: _Conversations, name: str, rows: np.ndarray) -> list[str]:
        """The words for ``{name}`` in conversations ``rows``."""
        owner = conv.owner[rows]
        if name in _SLOT_CHOICES:
            return _pick(_SLOT_CHOICES[name], conv.slot_codes[name][rows])
        if name == "first":
            return _pick(FIRST_NAMES, self.first_name[owner])
        if name == "place":
            return _pick(PLACES, self.place[owner])
        if name == "country":
            return _pick(COUNTRIES, self.roaming_country[owner])
        if name == "ref":
            return list(map("NW-{}".format, conv.slot_codes["ref"][rows].tolist()))
        if name == "gb":
            return list(map("{}GB".format, np.rint(self.latest_gb[owner]).astype(np.int64).tolist()))
        if name == "day_part":
            hour = (conv.at[rows] - conv.at[rows].astype("datetime64[D]")).astype(np.int64) // 3600
            return _pick(("morning", "afternoon", "evening"), np.searchsorted([12, 18], hour, side="right"))
        amounts = {
            "price": lambda: self.charge[owner], "bill": lambda: self.latest_total[owner],
            "extra": lambda: np.maximum(self.latest_extra[owner], 1.0), "roaming": lambda: self.roaming_amount[owner],
            "offer": lambda: conv.offer[rows],
        }
        return _money(amounts[name]())

    def _fill(self, template: str, conv: _Conversations, rows: np.ndarray) -> list[str]:
        """``template`` with every ``{slot}`` filled for each of ``rows``."""
        parts: list[Any] = []
        rest = template
        while "{" in rest:
            before, _, after = rest.partition("{")
            name, _, rest = after.partition("}")
            parts += [repeat(before), self._slot(conv, name, rows)]
        if not parts:
            return [template] * len(rows)
        return list(map("".join, zip(*parts, repeat(rest))))

    def _fill_variants(self, variants: tuple[str, ...], choice: np.ndarray, conv: _Conversations, rows: np.ndarray) -> list[str]:
        out = [""] * len(rows)
        chosen = choice[rows]
        for index, variant in enumerate(variants):
            picked = np.flatnonzero(chosen == index)
            for position, words in zip(picked.tolist(), self._fill(variant, conv, rows[picked])):
                out[position] = words
        return out

    def _transcript_table(self, conv: _Conversations, call: bool) -> Chunk:
        """Text ("Agent: ... Customer: ...") or messages ([{speaker, text}]) per conversation."""
        rows = len(conv.owner)
        # Every conversation as a list of turns: an opener?, the template's turns, a closer?
        has_opener, has_closer = conv.opener >= 0, conv.closer >= 0
        offsets = _offsets(_TEMPLATE_TURNS[conv.template] + has_opener + has_closer)
        speaker = np.zeros(offsets[-1], dtype=np.int64)  # 0 agent, 1 customer
        said = [""] * int(offsets[-1])

        def put(positions: np.ndarray, words: list[str]) -> None:
            for position, line in zip(positions.tolist(), words):
                said[position] = line

        opened = np.flatnonzero(has_opener)
        put(offsets[opened], self._fill_variants(CALL_OPENERS if call else CHAT_OPENERS, conv.opener, conv, opened))
        start = offsets[:-1] + has_opener
        for index, (_, turns) in enumerate(_TEMPLATES):
            mine = np.flatnonzero(conv.template == index)
            for position, (who, words) in enumerate(turns if len(mine) else ()):
                speaker[start[mine] + position] = who == "customer"
                put(start[mine] + position, self._fill(words, conv, mine))
        closed = np.flatnonzero(has_closer)
        put(offsets[closed + 1] - 1, self._fill_variants(CLOSERS, conv.closer, conv, closed))
        # The text form: "Agent: ... Customer: ..." on one line.
        labelled = list(map(str.__add__, _pick(("Agent: ", "Customer: "), speaker), said))
        bounds = offsets.tolist()
        as_text = [" ".join(labelled[a:b]) for a, b in zip(bounds, bounds[1:])]
        messages = struct([("speaker", category(speaker, ("agent", "customer"))), ("text", text(said))])
        stamps = text(conv.at)
        columns: Chunk = [("customer_id", self._ids(conv.owner))]
        if call and conv.duration is not None:
            # Text-shaped calls are dated by the day (date) or to the second (timestamp).
            by_day = ~conv.as_messages & (self.rng.random(rows) < 0.6)
            day = _days_ago(self.as_of, conv.at.astype("datetime64[D]"))
            columns += [
                ("date", self._dates(day, present=by_day)),
                ("timestamp", Column("text", values=stamps.values, present=~by_day)),
                ("duration_seconds", integer(conv.duration)),
            ]
        else:
            columns.append(("timestamp", stamps))
        columns += [
            ("transcript", text(as_text, present=~conv.as_messages)),
            ("messages", listof(offsets, messages, present=conv.as_messages)),
        ]
        return columns

    def _call_transcripts(self) -> Chunk:
        return self._transcript_table(self._conversations(self.calls, call=True), call=True)

    def _web_transcripts(self) -> Chunk:
        return self._transcript_table(self._conversations(self.chats, call=False), call=False)

    def _web_clicks(self) -> Chunk:
        r, n = self.rng, self.n
        counts = self.topic_clicks + self.browse_clicks + self.stray_clicks
        owner = np.repeat(np.arange(n), counts)
        rows = len(owner)
        position = np.arange(rows) - _offsets(counts)[owner]
        kind = np.where(position < self.topic_clicks[owner], 0, np.where(position < (self.topic_clicks + self.browse_clicks)[owner], 1, 2))
        page = r.integers(0, len(BROWSING), rows)  # BROWSING opens ALL_PAGES
        topical = np.flatnonzero(kind == 0)
        page[topical] = _PAGE_CODES[self.topic[owner[topical]], r.integers(0, 3, len(topical))]
        stray = np.flatnonzero(kind == 2)
        page[stray] = np.asarray([ALL_PAGES.index(p) for p in STRAY])[r.integers(0, len(STRAY), len(stray))]
        days_ago = r.integers(0, 31, rows)
        seconds = r.integers(7 * 3600, 23 * 3600 + 3000, rows)
        at = (self.as_of - days_ago.astype("timedelta64[D]")).astype("datetime64[s]") + seconds.astype("timedelta64[s]")
        order = np.lexsort((at, owner))
        duration = np.rint(np.clip(r.lognormal(np.log(90.0), 0.7, rows), 5, 900))
        return [
            ("customer_id", self._ids(owner)),
            ("timestamp", text(at[order])),
            ("page", category(page[order], ALL_PAGES)),
            ("duration_seconds", integer(duration)),
        ]

    def _offer_recommendations(self) -> Chunk:
        """Two to four scored offers per customer, best first; the topic lifts the offers that answer it."""
        r, n = self.rng, self.n
        score = r.beta(2.0, 7.0, (n, len(TREATMENT_IDS)))
        for topic_name, boosts in OFFER_BOOST.items():
            mine = self.is_topic[topic_name]
            for treatment, boost in boosts.items():
                score[mine, TREATMENT_IDS.index(treatment)] += boost * r.uniform(0.6, 1.2, int(mine.sum()))
        score = np.clip(score, 0.01, 0.95).round(2)
        ranked = np.argsort(-score, axis=1, kind="stable")
        k = r.integers(2, 5, n)
        who, rank = np.nonzero(np.arange(len(TREATMENT_IDS))[None, :] < k[:, None])
        chosen = ranked[who, rank]
        rows = len(who)
        return [
            ("customer_id", self._ids(who)),
            ("offer_id", category(chosen, TREATMENT_IDS)),
            ("acceptance_probability", number(score[who, chosen], 2)),
            ("model", category(np.zeros(rows, dtype=np.int64), ("offer_model_v3",))),
            ("scored_at", self._dates(np.full(rows, 3))),
        ]

    def _permissions(self) -> Chunk:
        """Y/N per channel and purpose; a few customers have no record at all."""
        r, n = self.rng, self.n
        keep = np.flatnonzero(r.random(n) >= NO_PERMISSIONS)
        m = len(keep)
        refuses_marketing = r.random(m) < MARKETING_REFUSERS
        channels = []
        for channel in CHANNELS:
            purposes = []
            for purpose, rate in zip(PURPOSES, CONSENT_RATES[channel]):
                given = r.random(m) < rate
                if purpose == "marketing":
                    given &= ~refuses_marketing
                purposes.append((purpose, category(given, ("N", "Y"))))
            channels.append((channel, struct(purposes)))
        has_window = r.random(m) < 0.75
        return [
            ("customer_id", self._ids(keep)),
            ("permissions", struct(channels)),
            ("do_not_disturb", category(r.choice(len(DND_WINDOWS), size=m, p=[0.40, 0.25, 0.20, 0.10, 0.05]), DND_WINDOWS)),
            ("preferred_contact_time", category(r.integers(0, len(CONTACT_WINDOWS), m), CONTACT_WINDOWS, present=has_window)),
        ]


# --- generate -----------------------------------------------------------------------------------------


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
        raise UsageError("--format parquet needs pyarrow; install it with pip install 'cvm[parquet]', or use --format jsonl") from None


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


def _write_chunk(tables: list[tuple[_TableWriter, Chunk]]) -> None:
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
    writers: dict[str, _TableWriter] = {}
    try:
        for table in TABLES:
            writers[table] = _writer(fmt, out / f"{table}{EXTENSIONS[fmt]}")
        # One thread writes chunk i (Parquet encoding and compression let go of the GIL) while
        # this one makes chunk i + 1; at most two chunks are in memory.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvm-generate") as pool:
            writing: Future[None] | None = None
            for index, first, size in chunks(customers, chunk_size):
                rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
                world = _World(rng, first, size, as_of, width)
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
    try:
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise CVMError(f"writing {out / MANIFEST} failed ({exc.strerror or exc})", path=str(out)) from None
    elapsed = time.perf_counter() - started
    log.info("data_generated", out=str(out), customers=customers, format=fmt, seed=seed, seconds=round(elapsed, 2))
    return GenerationResult(out_dir=out, manifest=manifest, elapsed_seconds=elapsed, rows=rows)
