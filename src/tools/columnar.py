"""The data folder read column-wise with DuckDB: one row of journey features per customer.

The batch path cannot afford a Python object per record at a million
customers, so this module computes, in SQL over every table at once, the same
features the Journey agent computes one customer at a time (same field
spellings, same validity rules, same sentiment lexicon and interest patterns,
same formulas), and hands them over as numpy arrays. Rows the per-customer
path would reject (missing or wrongly typed required fields, negative amounts)
are dropped here too.

Size: one SQL expression per journey feature, each beside the shared constants and rules it mirrors
(from cvm.decision); a split would separate them.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
from annotated_types import Ge, Le
from pydantic import AliasChoices, BaseModel, ValidationError

from cvm.decision import vector
from cvm.decision.journey import INTEREST_PATTERNS, LABEL_SENTIMENT, NEGATIVE_WORDS, POSITIVE_WORDS, interest_pattern
from cvm.decision.scoring import OFFER_KINDS, offer_kinds
from cvm.tools.data_source import FORMATS
from cvm.tools.records import (
    DEFAULT_QUIET_HOURS,
    TABLES,
    BillingRecord,
    ChurnRecord,
    CustomerProfile,
    NetworkRecord,
    OfferHistoryRow,
    OfferScore,
    PastOffer,
    TimeWindow,
    UsageRecord,
    WebClick,
    _TranscriptRow,
    parse_contact_time,
)
from cvm.utils.config import CHANNELS, PURPOSES, ScoringSettings
from cvm.utils.errors import DataError, MissingDependencyError, reinstall_hint
from cvm.utils.progress import NO_PROGRESS, Progress, Stage

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType

_READERS = {
    ".parquet": "read_parquet('{path}', file_row_number = true)",
    ".jsonl": "read_json_auto('{path}', format='newline_delimited')",
    ".json": "read_json_auto('{path}', format='array')",
    ".csv": "read_csv_auto('{path}', all_varchar=true)",
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def names(model: type[BaseModel], name: str) -> tuple[str, ...]:
    """The spellings a records model accepts for a field (its ``AliasChoices``), in the model's order."""
    alias = model.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return (alias,) if isinstance(alias, str) else (name,)


def bounds(model: type[BaseModel], name: str) -> tuple[float | None, float | None]:
    """A records model's ``ge``/``le`` limits for a numeric field."""
    low: float | None = None
    high: float | None = None
    for rule in model.model_fields[name].metadata:
        if isinstance(rule, Ge) and isinstance(rule.ge, (int, float)):
            low = rule.ge
        elif isinstance(rule, Le) and isinstance(rule.le, (int, float)):
            high = rule.le
    return low, high


def valid_number(expr: str, model: type[BaseModel], name: str, required: bool = False) -> str:
    """SQL: ``expr`` passes the model's validation (finite, within its limits; absent only when optional)."""
    low, high = bounds(model, name)
    checks = [f"isfinite({expr})"] + ([f"{expr} >= {low!r}"] if low is not None else []) + ([f"{expr} <= {high!r}"] if high is not None else [])
    inner = " AND ".join(checks)
    return f"({expr} IS NOT NULL AND {inner})" if required else f"({expr} IS NULL OR ({inner}))"


def _money_ok(expr: str) -> str:
    """SQL for ``records._amount_problem(expr) is None`` on a number: finite and not negative."""
    return f"(isfinite({expr}) AND {expr} >= 0)"


def _charge_is(item: str, kind: str) -> str:
    """SQL for ``records.Charge._is(kind)`` on a charge struct ``item`` (its type, else words in its description)."""
    described = f"lower(COALESCE({item}.description, 'Additional charges'))"
    return f"(lower(trim(COALESCE({item}.type, ''))) = {_quote(kind)} OR contains({described}, {_quote(kind.replace('_', ' '))}))"


def _charge_is_overage(item: str) -> str:
    """SQL for ``records.Charge.is_overage``."""
    return f"({_charge_is(item, 'data_overage')} OR contains(lower(COALESCE({item}.description, 'Additional charges')), 'overage'))"


_KIND_BITS = {kind: 1 << k for k, kind in enumerate(OFFER_KINDS)}


def kind_mask(kinds: frozenset[str]) -> int:
    """Offer kinds (``scoring.offer_kinds``) as bits, so "shares a kind" is a bitwise and."""
    return sum(_KIND_BITS[k] for k in kinds)


_FEATURE_STEPS = 15
"""Steps of ``ColumnarData.features`` reported to its progress stage: the ids, seven row tables, texts, scored talk,
the main query, offer scores, offer history, permissions (with rejected rows) and digests."""

_WINDOW = r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$"


def _window_sql(column: str) -> str:
    """SQL for a 'HH:MM-HH:MM' text column: was it given, does it parse, start and end in minutes."""
    part = [f"TRY_CAST(regexp_extract({column}, '{_WINDOW}', {k}) AS INTEGER)" for k in (1, 2, 3, 4)]
    valid = (
        f"(regexp_matches({column}, '{_WINDOW}') AND {part[0]} < 24 AND {part[1]} < 60 AND {part[2]} < 24 AND {part[3]} < 60)"
    )
    return (
        f"{column} IS NOT NULL AS {column}_given, COALESCE({valid}, false) AS {column}_valid, "
        f"{part[0]} * 60 + {part[1]} AS {column}_start, {part[2]} * 60 + {part[3]} AS {column}_end"
    )


@dataclass
class FeatureTable:
    """Journey features for N customers as aligned arrays (NaN where the data was not there)."""

    customer_ids: np.ndarray
    columns: dict[str, np.ndarray]
    interests: dict[str, np.ndarray]
    """Topic -> bool array."""
    offer_scores: dict[str, np.ndarray]
    """Offer id -> acceptance probability array (NaN where not scored)."""
    consent: dict[tuple[str, str], np.ndarray]
    """(channel, purpose) -> bool array: an explicit Y."""
    has_permissions: np.ndarray
    do_not_disturb: np.ndarray
    """(N, 2) minutes of day, -1 where none."""
    preferred: np.ndarray
    """(N, 2) minutes of day, -1 where none."""
    quality_issues: np.ndarray
    """Data-quality issues per customer (rejected rows, unreadable permissions), as the Data agent counts them."""
    digests: list[str]
    """A 64-bit hash of each customer's features (hex): the audit trail's input digest in batch runs."""
    has_offer_score: np.ndarray | None = None
    """Whether the customer has any offer-model score (for any offer id), as ``JourneyFeatures.offer_scores`` is non-empty."""
    history: OfferHistory | None = None
    has_timeline: np.ndarray | None = None
    has_conversations: np.ndarray | None = None
    has_risk_factors: np.ndarray | None = None
    """Whether the latest churn score names any risk factor (``JourneyFeatures.risk_factors`` is non-empty)."""

    def __len__(self) -> int:
        return len(self.customer_ids)

    def parts_present(self) -> dict[str, np.ndarray]:
        """Which parts of the journey each customer has (``vector.missing_fields``); a part this table did not read is left
        out, so it is never reported missing."""
        n = len(self)
        parts = {"permissions": self.has_permissions,
                 "interests": np.any(np.stack(list(self.interests.values())), axis=0) if self.interests else np.zeros(n, dtype=bool)}
        optional = {"offer_scores": self.has_offer_score, "timeline": self.has_timeline, "conversations": self.has_conversations,
                    "risk_factors": self.has_risk_factors}
        parts.update({name: flags for name, flags in optional.items() if flags is not None})
        if self.history is not None:
            has_history = np.zeros(n, dtype=bool)
            has_history[list(self.history.past)] = True
            parts["offer_history"] = has_history
        return parts


@dataclass
class OfferHistory:
    """Past offers and their outcomes (``records.PastOffer``): per customer for the records, as columns for the prior."""

    issues: np.ndarray
    """Nested rows the model rejected, per customer."""
    has_dated_offer: np.ndarray
    past: dict[int, list[PastOffer]] = field(default_factory=dict)
    """Customer index -> past offers, oldest first (as ``CustomerData.offer_history``)."""
    customer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Per decided (accepted or declined) past offer: the customer index ..."""
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """... its kinds of offer as bits (``kind_mask(scoring.offer_kinds(offer.words()))``) ..."""
    accepted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """... and whether it was accepted."""

    @classmethod
    def empty(cls, count: int) -> OfferHistory:
        return cls(issues=np.zeros(count, dtype=np.int64), has_dated_offer=np.zeros(count, dtype=bool))

    def fill(self, past: dict[int, list[PastOffer]]) -> None:
        kinds: dict[str, int] = {}
        customer, masks, accepted = [], [], []
        for i, offers in past.items():
            offers.sort(key=lambda o: o.offered_on or date.min)
            self.past[i] = offers
            self.has_dated_offer[i] = any(o.offered_on is not None for o in offers)
            for o in offers:
                if o.status == "pending":
                    continue
                words = o.words()
                if words not in kinds:
                    kinds[words] = kind_mask(offer_kinds(words))
                customer.append(i)
                masks.append(kinds[words])
                accepted.append(o.status == "accepted")
        self.customer = np.asarray(customer, dtype=np.int64)
        self.kinds = np.asarray(masks, dtype=np.int64)
        self.accepted = np.asarray(accepted, dtype=bool)


def _is_struct(kind: object) -> TypeGuard[DuckDBPyType]:
    """A DuckDB column type that is a STRUCT (its ``children`` are ``(name, type)`` pairs)."""
    return getattr(kind, "id", None) == "struct"


class ColumnarData:
    """The tables of one data folder as DuckDB views."""

    def __init__(
        self, data_dir: str | Path, threads: int | None = None, memory_limit: str = "2500MB", tables: tuple[str, ...] = TABLES,
        progress: Progress = NO_PROGRESS,
    ):
        """``tables``: only these are parsed (a report that needs the churn feed alone never reads the transcripts).

        ``progress`` gets a "loading tables" stage advanced per table (a million customers take seconds per table).
        """
        try:
            import duckdb
        except ImportError:
            raise MissingDependencyError(reinstall_hint("DuckDB", "the batch path")) from None
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise DataError(f"data folder {self.data_dir} does not exist; pass --data-dir DIR or set CVM_DATA_DIR")
        self.con = duckdb.connect()
        # Keep DuckDB's share of memory bounded; beyond it, it spills to a temporary folder.
        self._spill = tempfile.TemporaryDirectory(prefix="cvm-duckdb-")
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute(f"SET temp_directory = '{self._spill.name}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._columns: dict[str, set[str]] = {}
        self._types: dict[tuple[str, str], str] = {}
        with progress.stage("loading tables", len(tables)) as stage:
            for table in tables:
                self._load(duckdb, table)
                stage.advance()

    def _load(self, duckdb: Any, table: str) -> None:
        """Parse one table's file (if the folder has one) into ``raw_<table>`` and note its columns and types."""
        path = next((self.data_dir / f"{table}{ext}" for ext in FORMATS if (self.data_dir / f"{table}{ext}").is_file()), None)
        if path is None:
            return
        reader = _READERS[path.suffix].format(path=str(path).replace("'", "''"))
        try:
            # Parsed once into DuckDB's own columns: later queries never re-read the file.
            # File order matters ("the last row wins"); Parquet says it for free, other formats need a window.
            order = "file_row_number AS _rn" if path.suffix == ".parquet" else "row_number() OVER () AS _rn"
            drop = " EXCLUDE (file_row_number)" if path.suffix == ".parquet" else ""
            self.con.execute(f"CREATE TABLE raw_{table} AS SELECT *{drop}, {order} FROM {reader}")
            described = self.con.execute(f"DESCRIBE raw_{table}").fetchall()
            if "customer_id" not in {row[0] for row in described}:
                # No row names a customer (an empty JSON array reads as one column called "json"):
                # as for the per-customer path, the table gives nobody anything.
                self.con.execute(f"DROP TABLE raw_{table}")
                return
            self._columns[table] = {row[0] for row in described}
            self._types.update({(table, row[0]): row[1] for row in described})
        except duckdb.Error as exc:
            raise DataError(f"{path.name} could not be read by the batch path ({str(exc).splitlines()[0]})") from None

    def _struct_layout(self, table: str, column: str) -> dict[str, set[str]] | None:
        """For a struct-of-structs column, {child: {grandchildren}}; None when the column is anything else."""
        kind = self.con.sql(f'SELECT "{column}" FROM raw_{table}').types[0]
        if not _is_struct(kind):
            return None
        layout: dict[str, set[str]] = {}
        for name, child in kind.children:
            if not _is_struct(child):
                return None
            layout[name] = {grand for grand, _ in child.children}
        return layout

    def has(self, table: str) -> bool:
        return table in self._columns

    def _pick(self, table: str, names: tuple[str, ...], sql_type: str) -> str:
        """COALESCE over the spellings this table actually has, each cast leniently."""
        present = [n for n in names if n in self._columns.get(table, ())]
        if not present:
            return f"CAST(NULL AS {sql_type})"
        casts = [f'TRY_CAST(TRY_CAST("{n}" AS VARCHAR) AS {sql_type})' if sql_type != "VARCHAR" else f'TRY_CAST("{n}" AS VARCHAR)' for n in present]
        return casts[0] if len(casts) == 1 else f"COALESCE({', '.join(casts)})"

    def _day(self, table: str, names: tuple[str, ...]) -> str:
        """A date from a date, a timestamp or a 'YYYY-MM' month."""
        present = [n for n in names if n in self._columns.get(table, ())]
        if not present:
            return "CAST(NULL AS DATE)"
        parts = []
        for n in present:
            text = f'TRIM(TRY_CAST("{n}" AS VARCHAR))'
            parts.append(
                f"CASE WHEN regexp_matches({text}, '^\\d{{4}}-\\d{{2}}$') THEN TRY_CAST({text} || '-01' AS DATE)"
                f" ELSE TRY_CAST(TRY_CAST({text} AS TIMESTAMP) AS DATE) END"
            )
        return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"

    def _ts(self, table: str, names: tuple[str, ...]) -> str:
        present = [n for n in names if n in self._columns.get(table, ())]
        if not present:
            return "CAST(NULL AS TIMESTAMP)"
        parts = [f'TRY_CAST(TRY_CAST("{n}" AS VARCHAR) AS TIMESTAMP)' for n in present]
        return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"

    def _empty(self, columns: str) -> str:
        return f"SELECT {columns} WHERE false"

    # -- one SQL view per table, normalised --------------------------------

    def _num(self, t: str, model: type[BaseModel], name: str, sql_type: str = "DOUBLE") -> str:
        return self._pick(t, names(model, name), sql_type)

    def _distinct_map(self, name: str, values_sql: str, fn: Any, columns: str) -> None:
        """A temp table ``name`` (k, *columns) from a Python function over the distinct values of ``values_sql``.

        The per-customer code itself decides (parse a window, read payment issues ...); only distinct values visit Python.
        ``columns`` is SQL ("ok BOOLEAN, s INTEGER"); ``fn`` returns one tuple per value.
        """
        keys = [r[0] for r in self.con.execute(f"SELECT DISTINCT k FROM ({values_sql}) WHERE k IS NOT NULL").fetchall()]
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (k VARCHAR, {columns})")
        if keys:
            results = [fn(k) for k in keys]
            width = len(columns.split(","))
            placeholders = ", ".join(f"unnest(${c + 1})" for c in range(width + 1))
            self.con.execute(f"INSERT INTO {name} SELECT {placeholders}", [keys, *([r[c] for r in results] for c in range(width))])

    def _billing(self) -> str:
        """Every bill row (``keep``: it survives validation), money screened as ``records._screen_money`` does."""
        t = "billing_data"
        if not self.has(t):
            return self._empty(
                "CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) day, 0.0 total, 0.0 roaming, 0.0 overage, false overdue, "
                "0 notes, false keep, 0 _rn"
            )
        extra = self._charges(t, "additional_charges", "x")
        discount = self._charges(t, "discounts", "d")
        roaming_raw = self._num(t, BillingRecord, "roaming_charges")
        overdue = self._overdue(t)
        return f"""
        SELECT cid, day, base + {extra['extra']} + roaming_col AS total, roaming_col + {extra['roaming']} AS roaming,
               {extra['overage']} AS overage, overdue, _rn,
               {extra['notes']} + {discount['notes']} + CASE WHEN roaming_raw IS NOT NULL AND NOT {_money_ok('roaming_raw')} THEN 1 ELSE 0 END AS notes,
               day IS NOT NULL AND {valid_number('base', BillingRecord, 'monthly_charge', required=True)}
                   AND NOT ({extra['bad']}) AND NOT ({discount['bad']}) AS keep
        FROM (
            SELECT *, CASE WHEN roaming_raw IS NOT NULL AND {_money_ok('roaming_raw')} THEN roaming_raw ELSE 0.0 END AS roaming_col
            FROM (
                SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, _rn,
                    {self._day(t, names(BillingRecord, "date"))} AS day,
                    {self._num(t, BillingRecord, "monthly_charge")} AS base,
                    {roaming_raw} AS roaming_raw,
                    {overdue} AS overdue,
                    {extra['inner']}, {discount['inner']}
                FROM raw_{t} r WHERE customer_id IS NOT NULL
            )
        )
        """

    def _overdue(self, t: str) -> str:
        """``BillingRecord.has_payment_issues``, decided by that property over the distinct (status, issues) pairs."""
        cols = self._columns[t]
        if "payment_issues" not in cols and "payment_status" not in cols:
            return "false"
        status = self._pick(t, ("payment_status",), "VARCHAR")
        issues = "CAST(to_json(payment_issues) AS VARCHAR)" if "payment_issues" in cols else "CAST(NULL AS VARCHAR)"
        key = f"COALESCE({status}, chr(0)) || chr(31) || COALESCE({issues}, chr(0))"

        def has_issues(text: str) -> bool:
            said, given = text.split("\x1f", 1)
            return BillingRecord.model_construct(
                payment_status=None if said == "\x00" else said, payment_issues=None if given == "\x00" else json.loads(given),
            ).has_payment_issues

        self._distinct_map("pay_map", f"SELECT {key} AS k FROM raw_{t}", lambda k: (has_issues(k),), "overdue BOOLEAN")
        return f"COALESCE((SELECT overdue FROM pay_map WHERE pay_map.k = {key}), false)"

    def _charges(self, t: str, column: str, prefix: str) -> dict[str, str]:
        """SQL for a charges field: a number, or a list of {type, description, amount} (``records.Charge``).

        ``inner`` are select items computed once per row; the other expressions use them: the total, its roaming
        and data-overage parts of the amounts kept, ``notes`` (non-finite or negative amounts dropped with a note,
        as ``records._screen_money`` does) and ``bad`` (the row is rejected, as the model would reject it).
        """
        if column not in self._columns[t]:
            return {"inner": f"0 AS {prefix}_none", "extra": "0.0", "roaming": "0.0", "overage": "0.0", "notes": "0", "bad": "false"}
        kind = self.con.sql(f'SELECT "{column}" FROM raw_{t}').types[0]
        items, value, bad_extra, note_extra = f"{prefix}_l", f"{prefix}_v", "false", "0"
        if kind.id == "list" and kind.child.id == "struct":
            fields = {n for n, _ in kind.child.children}
            parts = [
                f"TRY_CAST(c.\"{f}\" AS {'DOUBLE' if f == 'amount' else 'VARCHAR'})" if f in fields else "NULL" for f in ("type", "description", "amount")
            ]
            # Already typed (Parquet, clean JSON): only the fields a charge has, no JSON text in between.
            as_list = f'list_transform("{column}", lambda c: {{"type": {parts[0]}, "description": {parts[1]}, "amount": {parts[2]}}})'
            inner = f"{as_list} AS {items}, CAST(NULL AS DOUBLE) AS {value}"
        elif kind.id in ("double", "float", "bigint", "integer", "decimal", "ubigint", "smallint", "tinyint", "hugeint"):
            inner = f'CAST(NULL AS STRUCT("type" VARCHAR, description VARCHAR, amount DOUBLE)[]) AS {items}, CAST("{column}" AS DOUBLE) AS {value}'
        elif kind.id == "varchar" and str(kind).upper() != "JSON":
            inner = (
                f'CAST(NULL AS STRUCT("type" VARCHAR, description VARCHAR, amount DOUBLE)[]) AS {items}, '
                f'TRY_CAST("{column}" AS DOUBLE) AS {value}, trim("{column}") <> \'\' AS {prefix}_text'
            )
            bad_extra = f"COALESCE({prefix}_text AND {value} IS NULL, false)"
        else:
            j = f'to_json("{column}")'
            jt = f"json_type({j})"
            schema = '[{"type": "VARCHAR", "description": "VARCHAR", "amount": "DOUBLE"}]'
            inner = (
                f"CASE WHEN {jt} = 'ARRAY' THEN from_json({j}, '{schema}') END AS {items}, "
                f"CASE WHEN {jt} IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'VARCHAR') THEN TRY_CAST(json_extract_string({j}, '$') AS DOUBLE) END AS {value}, "
                f"{jt} AS {prefix}_jt, CASE WHEN {jt} = 'VARCHAR' THEN trim(json_extract_string({j}, '$')) <> '' END AS {prefix}_text"
            )
            bad_extra = f"(COALESCE({prefix}_jt = 'OBJECT', false) OR (COALESCE({prefix}_text, false) AND {value} IS NULL))"
            note_extra = f"CASE WHEN {prefix}_jt = 'BOOLEAN' THEN 1 ELSE 0 END"
        ok = _money_ok("c.amount")
        kept = f"list_filter({items}, lambda c: {ok})"

        def total(of: str) -> str:
            return f"COALESCE(list_sum(list_transform({of}, lambda c: c.amount)), 0.0)"

        number = f"CASE WHEN {value} IS NOT NULL AND {_money_ok(value)} THEN {value} ELSE 0.0 END"
        roaming, overage = _charge_is("c", "roaming"), _charge_is_overage("c")
        return {
            "inner": inner,
            "extra": f"CASE WHEN {items} IS NOT NULL THEN {total(kept)} ELSE {number} END",
            "roaming": total(f"list_filter({kept}, lambda c: {roaming})"),
            "overage": total(f"list_filter({kept}, lambda c: {overage})"),
            "notes": (
                f"(COALESCE(len(list_filter({items}, lambda c: c.amount IS NOT NULL AND NOT {ok})), 0)"
                f" + CASE WHEN {value} IS NOT NULL AND NOT {_money_ok(value)} THEN 1 ELSE 0 END + {note_extra})"
            ),
            "bad": f"(COALESCE(len(list_filter({items}, lambda c: c IS NULL OR c.amount IS NULL)) > 0, false) OR {bad_extra})",
        }

    def _usage(self) -> str:
        t, m = "usage_data", UsageRecord
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) day, 0.0 gb, 0.0 roaming_gb, 0 _rn")
        checks = " AND ".join(
            valid_number(name, m, name, required=name == "data_gb")
            for name in ("data_gb", "roaming_data_gb", "voice_minutes", "sms_count", "peak_usage_hour", "weekend_usage_percent")
        )
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, day, data_gb AS gb, COALESCE(roaming_data_gb, 0.0) roaming_gb, _rn FROM (
            SELECT customer_id, _rn, {self._day(t, names(m, "date"))} AS day,
                {", ".join(f"{self._num(t, m, name)} AS {name}" for name in ("data_gb", "roaming_data_gb", "voice_minutes", "sms_count", "peak_usage_hour", "weekend_usage_percent"))}
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE day IS NOT NULL AND {checks}
        """

    def _network(self) -> str:
        t, m = "network_data", NetworkRecord
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) day, 0.0 latency, 0 dropped, 0.0 signal")
        fields = ("latency_ms", "dropped_calls", "signal_strength_dbm", "download_speed_mbps")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, day, latency_ms AS latency, dropped_calls AS dropped, signal_strength_dbm AS signal FROM (
            SELECT customer_id, {self._day(t, names(m, "date"))} AS day,
                {self._num(t, m, "latency_ms")} AS latency_ms, {self._num(t, m, "dropped_calls", "BIGINT")} AS dropped_calls,
                {self._num(t, m, "signal_strength_dbm")} AS signal_strength_dbm, {self._num(t, m, "download_speed_mbps")} AS download_speed_mbps
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE day IS NOT NULL AND {" AND ".join(valid_number(f, m, f) for f in fields)}
        """

    def _churn(self) -> str:
        t, m = "churn_score", ChurnRecord
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, 0.0 p, CAST(NULL AS DATE) day, 0.0 lifetime, 0.0 satisfaction, "
                               "false factors, 0 _rn")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, probability AS p, day, lifetime_months AS lifetime,
               satisfaction_score AS satisfaction, factors, _rn FROM (
            SELECT customer_id, _rn, {self._num(t, m, "probability")} AS probability, {self._has_items(t, "risk_factors")} AS factors,
                {self._day(t, names(m, "date"))} AS day,
                {self._num(t, m, "lifetime_months")} AS lifetime_months,
                {self._num(t, m, "satisfaction_score")} AS satisfaction_score
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE {valid_number("probability", m, "probability", required=True)}
              AND {valid_number("lifetime_months", m, "lifetime_months")} AND {valid_number("satisfaction_score", m, "satisfaction_score")}
        """

    def _has_items(self, table: str, column: str) -> str:
        """SQL: whether a list-or-text column holds anything (``ChurnRecord.risk_factors``: a text is one item)."""
        if column not in self._columns[table]:
            return "false"
        kind, quoted = str(self._types[(table, column)]), f'"{column}"'
        if kind.endswith("[]"):
            return f"COALESCE(len({quoted}) > 0, false)"
        if kind == "JSON":
            return (f"COALESCE(CASE json_type({quoted}) WHEN 'ARRAY' THEN json_array_length({quoted}) > 0 "
                    f"WHEN 'VARCHAR' THEN json_extract_string({quoted}, '$') <> '' WHEN 'NULL' THEN false ELSE true END, false)")
        return f"COALESCE(CAST({quoted} AS VARCHAR) <> '', false)"

    def _profiles(self) -> str:
        t = "customers"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) joined, 0 _rn")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, {self._day(t, names(CustomerProfile, "join_date"))} AS joined, _rn
        FROM raw_{t} WHERE customer_id IS NOT NULL
        """

    def _talk(self, t: str, source: int) -> str:
        """Conversations of one table: when, the customer's words, the feed's label and contact type (``_TranscriptRow``)."""
        m = _TranscriptRow
        if not self.has(t):
            return self._empty(
                "CAST(NULL AS VARCHAR) cid, CAST(NULL AS TIMESTAMP) ts, '' words, CAST(NULL AS VARCHAR) label, "
                "CAST(NULL AS VARCHAR) topic, 0 src, 0 _rn"
            )
        cols = self._columns[t]
        text = self._pick(t, names(m, "transcript"), "VARCHAR")
        summary = self._pick(t, ("summary",), "VARCHAR")
        marked = "string_split(regexp_replace(text, '\\b(Agent|Advisor|Customer):', chr(30) || '\\1:', 'g'), chr(30))"
        said = (
            f"array_to_string(list_transform(list_filter({marked}, lambda x: starts_with(trim(x), 'Customer:')),"
            " lambda x: trim(substr(trim(x), 10))), ' ')"
        )
        message_col = next((c for c in names(m, "messages") if c in cols), None)
        turns_sql = f'"{message_col}"' if message_col else "CAST(NULL AS VARCHAR[])"
        kind = self._types.get((t, message_col), "") if message_col else ""
        if message_col and "speaker" in kind and "text" in kind and "role" not in kind and "content" not in kind:
            # Already a list of {speaker, text} structs (Parquet, JSON read by DuckDB): no JSON round trip.
            customer_turns = "list_filter(turns, lambda m: lower(COALESCE(m.speaker, 'unknown')) IN ('customer', 'user', 'client'))"
            from_turns = f"array_to_string(list_transform({customer_turns}, lambda m: COALESCE(m.text, '')), ' ')"
        else:
            shaped = "from_json(to_json(turns), '[{\"speaker\": \"VARCHAR\", \"role\": \"VARCHAR\", \"text\": \"VARCHAR\", \"content\": \"VARCHAR\"}]')"
            from_turns = (
                f"array_to_string(list_transform(list_filter({shaped}, lambda m: lower(COALESCE(m.speaker, m.role, 'unknown'))"
                " IN ('customer', 'user', 'client')), lambda m: COALESCE(m.text, m.content, '')), ' ')"
            )
        labels = "[" + ", ".join(_quote(label) for label in LABEL_SENTIMENT) + "]"
        label = f"lower(trim({self._pick(t, ('sentiment',), 'VARCHAR')}))"
        durations = " AND ".join(valid_number(f, m, f) for f in ("duration_seconds", "duration_minutes"))
        # Transcripts repeat (templates, copied notes): extract the customer's words once per distinct text.
        return f"""
        WITH rows AS (
            SELECT * FROM (
                SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, {self._ts(t, names(m, "at"))} AS ts, _rn,
                       {text} AS text, {summary} AS summary, {turns_sql} AS turns, {label} AS label,
                       {self._pick(t, names(m, "topic"), "VARCHAR")} AS topic,
                       {self._num(t, m, "duration_seconds")} AS duration_seconds, {self._num(t, m, "duration_minutes")} AS duration_minutes
                FROM raw_{t} WHERE customer_id IS NOT NULL
            ) WHERE (turns IS NOT NULL OR text IS NOT NULL OR summary IS NOT NULL) AND ts IS NOT NULL
                AND (label IS NULL OR list_contains({labels}, label)) AND {durations}
        ),
        said_once AS (
            SELECT text, {said} AS said FROM (SELECT DISTINCT text FROM rows WHERE turns IS NULL AND text IS NOT NULL)
        )
        SELECT rows.cid, rows.ts,
               CASE WHEN rows.turns IS NOT NULL THEN {from_turns.replace("turns", "rows.turns")}
                    WHEN rows.text IS NULL THEN rows.summary
                    WHEN said_once.said = '' THEN rows.text ELSE said_once.said END AS words,
               rows.label, rows.topic, {source} AS src, rows._rn
        FROM rows LEFT JOIN said_once ON rows.turns IS NULL AND said_once.text = rows.text
        """

    def _clicks(self) -> str:
        """One row per click with every page it shows (the page and its ``click_path``, as ``WebClick.pages``)."""
        t, m = "web_clicks", WebClick
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS VARCHAR[]) pages")
        path = "CAST([] AS VARCHAR[])"
        if "click_path" in self._columns[t]:
            kind = self.con.sql(f"SELECT click_path FROM raw_{t}").types[0]
            split = "list_filter(list_transform(regexp_split_to_array({x}, '\\s*(?:>|->|,|\\|)\\s*'), lambda p: trim(p)), lambda p: p <> '')"
            if kind.id == "list":
                path = "COALESCE(list_transform(click_path, lambda p: CAST(p AS VARCHAR)), [])"
            elif kind.id == "varchar" and str(kind).upper() != "JSON":
                path = f"COALESCE({split.format(x='click_path')}, [])"
            else:
                j = "to_json(click_path)"
                path = (
                    f"COALESCE(CASE json_type({j}) WHEN 'ARRAY' THEN from_json({j}, '[\"VARCHAR\"]')"
                    f" WHEN 'VARCHAR' THEN {split.format(x=f'json_extract_string({j}, {chr(39)}${chr(39)})')} END, [])"
                )
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, list_prepend(page, path) AS pages FROM (
            SELECT customer_id, {path} AS path, {self._pick(t, names(m, "page"), "VARCHAR")} AS page,
                   {self._ts(t, names(m, "at"))} AS ts,
                   {self._num(t, m, "duration_seconds")} AS duration_seconds,
                   {self._num(t, m, "session_duration_minutes")} AS session_duration_minutes
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE page IS NOT NULL AND ts IS NOT NULL
              AND {valid_number("duration_seconds", m, "duration_seconds")} AND {valid_number("session_duration_minutes", m, "session_duration_minutes")}
        """

    # -- the feature table --------------------------------------------------

    def customer_ids(self) -> list[str]:
        if not self._columns:
            return []
        return [r[0] for r in self.con.execute(f"SELECT cid FROM ({self._id_union()}) ORDER BY cid").fetchall()]

    def _id_union(self) -> str:
        union = " UNION ".join(
            f"SELECT DISTINCT TRIM(CAST(customer_id AS VARCHAR)) AS cid FROM raw_{t} WHERE customer_id IS NOT NULL" for t in self._columns
        )
        return f"SELECT DISTINCT cid FROM ({union}) WHERE cid <> ''"

    def features(
        self, as_of: date, scoring: ScoringSettings, offer_ids: list[str], customer_ids: list[str] | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> FeatureTable:
        """Every customer's journey features, computed in one pass over the tables (a "features" stage of ``progress``)."""
        with progress.stage("features", _FEATURE_STEPS) as stage:
            return self._features(as_of, scoring, offer_ids, customer_ids, stage)

    def _features(
        self, as_of: date, scoring: ScoringSettings, offer_ids: list[str], customer_ids: list[str] | None, stage: Stage,
    ) -> FeatureTable:
        con = self.con
        if customer_ids is None:  # everyone: the id list never leaves DuckDB
            con.execute(f"CREATE OR REPLACE TEMP TABLE ids AS SELECT cid, row_number() OVER (ORDER BY cid) AS pos FROM ({self._id_union()})")
            ids = [r[0] for r in con.execute("SELECT cid FROM ids ORDER BY pos").fetchall()]
        else:
            ids = customer_ids
            con.execute("CREATE OR REPLACE TEMP TABLE ids AS SELECT unnest($1::VARCHAR[]) AS cid, generate_subscripts($1::VARCHAR[], 1) AS pos", [ids])
        stage.advance()
        for name, sql in (
            ("bill_rows", self._billing()), ("usage", self._usage()), ("net", self._network()), ("churn", self._churn()),
            ("profiles", self._profiles()), ("clicks", self._clicks()),
            ("talk", f"SELECT * FROM ({self._talk('call_transcripts', 0)}) UNION ALL SELECT * FROM ({self._talk('web_transcripts', 1)})"),
        ):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
            stage.advance()
        con.execute("CREATE OR REPLACE TEMP VIEW bills AS SELECT * FROM bill_rows WHERE keep")
        positive = "[" + ", ".join(_quote(w) for w in sorted(POSITIVE_WORDS)) + "]"
        negative = "[" + ", ".join(_quote(w) for w in sorted(NEGATIVE_WORDS)) + "]"
        interest_flags = ",\n".join(
            f"regexp_matches(text, {_quote('(?i)' + interest_pattern(words))}) AS i_{topic}"
            for topic, words in INTEREST_PATTERNS.items()
        )
        # What a conversation says about interests: the customer's words and the feed's contact type (journey.conversation_texts).
        topic_text = "replace(topic, '_', ' ')"
        # Conversations and pages repeat (templates, the same pages): score each distinct text once.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE texts AS
            SELECT text, CASE WHEN pos + neg = 0 THEN 0.0 ELSE round((pos - neg) / (pos + neg), 3) END AS score, * EXCLUDE (text, pos, neg)
            FROM (
                SELECT text,
                    len(list_filter(regexp_extract_all(lower(text), '[a-z'']+'), lambda w: list_contains({positive}, w))) AS pos,
                    len(list_filter(regexp_extract_all(lower(text), '[a-z'']+'), lambda w: list_contains({negative}, w))) AS neg,
                    {interest_flags}
                FROM (
                    SELECT DISTINCT text FROM (
                        SELECT words AS text FROM talk UNION ALL SELECT {topic_text} FROM talk WHERE topic <> ''
                        UNION ALL SELECT unnest(pages) FROM clicks
                    ) WHERE text IS NOT NULL
                )
            )""")
        # A feed's sentiment label scores the conversation (journey.conversation_sentiment); else the lexicon.
        stage.advance()
        label_score = " ".join(f"WHEN talk.label = {_quote(label)} THEN {value!r}" for label, value in LABEL_SENTIMENT.items())
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE talk_scored AS
            SELECT talk.cid, talk.ts, talk.src, talk._rn, CASE {label_score} ELSE texts.score END AS score
            FROM talk JOIN texts ON texts.text = talk.words WHERE talk.ts IS NOT NULL""")
        stage.advance()
        interest_sql = ", ".join(f"bool_or(i_{topic}) AS i_{topic}" for topic in INTEREST_PATTERNS)
        rows = con.execute(f"""
            WITH
            b AS (
                SELECT cid, count(*) AS n_bills, arg_max(total, k) AS last_total, sum(total) AS sum_total,
                       list_sum(arg_max(roaming, k, 2)) AS roam2, list_sum(arg_max(overage, k, 2)) AS over2,
                       arg_max(overdue, k) AS overdue, min(day) AS first_day
                FROM {_in_order("bills", "day")} GROUP BY cid),
            u AS (
                SELECT cid, count(*) AS n_usage, arg_min(gb, k) AS first_gb, arg_max(gb, k) AS last_gb,
                       list_sum(arg_max(roaming_gb, k, 2)) AS rgb2
                FROM {_in_order("usage", "day")} GROUP BY cid),
            n AS (
                SELECT cid, avg(latency) AS avg_latency, sum(dropped) AS dropped, count(dropped) AS n_dropped,
                       count(latency) AS n_latency, min(signal) AS weakest FROM net GROUP BY cid),
            c AS (
                SELECT cid, arg_max({{'p': p, 'day': day, 'lifetime': lifetime, 'satisfaction': satisfaction, 'factors': factors}}, k)
                       AS latest
                FROM {_in_order("churn", "COALESCE(day, DATE '0001-01-01')")} GROUP BY cid),
            pr AS (SELECT cid, arg_max({{'joined': joined}}, _rn).joined AS joined FROM profiles GROUP BY cid),
            s AS (
                SELECT cid, list(score ORDER BY ts, src, _rn) AS scores FROM talk_scored GROUP BY cid),
            cl AS (SELECT DISTINCT cid FROM clicks),
            txt AS (
                SELECT cid, {interest_sql} FROM (
                    SELECT cid, unnest(pages) AS text FROM clicks UNION ALL SELECT cid, words AS text FROM talk
                    UNION ALL SELECT cid, {topic_text} AS text FROM talk WHERE topic <> ''
                ) JOIN texts USING (text) GROUP BY cid)
            SELECT ids.cid,
                c.latest.p AS churn_probability,
                round(b.last_total, 2) AS monthly_revenue,
                CASE WHEN b.n_bills >= 2 AND (b.sum_total - b.last_total) / (b.n_bills - 1) > 0
                     THEN round((b.last_total / ((b.sum_total - b.last_total) / (b.n_bills - 1)) - 1) * 100, 1) END AS bill_change_pct,
                COALESCE(round(b.roam2, 2), 0.0) AS roaming_charges,
                COALESCE(round(b.over2, 2), 0.0) AS overage_charges,
                COALESCE(b.overdue, false) AS overdue_payment,
                -- JourneyBuilder._tenure_months: the join date, else the churn feed's lifetime, else the first bill
                CASE WHEN pr.joined IS NOT NULL THEN round(date_diff('day', pr.joined, $as_of::DATE) / 30.4375, 1)
                     WHEN c.latest.lifetime IS NOT NULL THEN CAST(c.latest.lifetime AS DOUBLE)
                     ELSE round(date_diff('day', b.first_day, $as_of::DATE) / 30.4375, 1) END AS tenure_months,
                c.latest.satisfaction AS satisfaction_score,
                COALESCE(c.latest.factors, false) AS has_risk_factors,
                u.last_gb AS latest_data_gb,
                COALESCE(u.rgb2, 0.0) AS roaming_gb,
                CASE WHEN u.n_usage >= 2 AND u.first_gb > 0 THEN round((u.last_gb / u.first_gb - 1) * 100, 1) END AS usage_change_pct,
                n.avg_latency, n.dropped, COALESCE(n.n_dropped, 0) AS n_dropped, COALESCE(n.n_latency, 0) AS n_latency,
                COALESCE(n.weakest, -80.0) AS weakest,
                s.scores[-1] AS sentiment_score,
                CASE WHEN len(s.scores) >= 2 THEN
                    list_avg(s.scores[len(s.scores) // 2 + 1:len(s.scores)]) - list_avg(s.scores[1:len(s.scores) // 2]) END AS sentiment_delta,
                s.cid IS NOT NULL AS has_conversations,
                (b.cid IS NOT NULL OR u.cid IS NOT NULL OR n.cid IS NOT NULL OR s.cid IS NOT NULL OR cl.cid IS NOT NULL
                 OR c.latest.day IS NOT NULL) AS has_timeline,
                {", ".join(f"COALESCE(txt.i_{topic}, false) AS i_{topic}" for topic in INTEREST_PATTERNS)}
            FROM ids
            LEFT JOIN b USING (cid) LEFT JOIN u USING (cid) LEFT JOIN n USING (cid) LEFT JOIN c USING (cid)
            LEFT JOIN pr USING (cid) LEFT JOIN s USING (cid) LEFT JOIN cl USING (cid) LEFT JOIN txt USING (cid)
            ORDER BY ids.pos
        """, {"as_of": as_of}).fetchnumpy()
        stage.advance()
        count = len(ids)
        cols = _derive(rows, count, as_of, scoring)

        interests = {topic: np.asarray(rows[f"i_{topic}"], dtype=bool) for topic in INTEREST_PATTERNS}
        offers, has_offer_score, offer_issues = self._offers(offer_ids, count)
        stage.advance()
        history = self._offer_history(count)
        stage.advance()
        consent, has_permissions, dnd, preferred, permission_issues = self._permissions(count)
        stage.advance()
        table = FeatureTable(
            customer_ids=np.asarray(ids, dtype=object), columns=cols, interests=interests, offer_scores=offers,
            consent=consent, has_permissions=has_permissions, do_not_disturb=dnd, preferred=preferred,
            quality_issues=self._rejected_rows(count) + self._billing_notes(count) + permission_issues + offer_issues + history.issues,
            digests=[], has_offer_score=has_offer_score, history=history,
            has_timeline=np.asarray(rows["has_timeline"], dtype=bool) | history.has_dated_offer,
            has_conversations=np.asarray(rows["has_conversations"], dtype=bool),
            has_risk_factors=np.asarray(rows["has_risk_factors"], dtype=bool),
        )
        table.digests = input_digests(table)
        stage.advance()
        con.execute("DROP VIEW IF EXISTS bills")
        for name in ("bill_rows", "usage", "net", "churn", "profiles", "clicks", "talk", "texts", "talk_scored"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
        return table

    def _rejected_rows(self, count: int) -> np.ndarray:
        """Rows each customer has in a table minus the rows that survived validation."""
        valid = {
            "billing_data": "bills", "usage_data": "usage", "network_data": "net", "churn_score": "churn",
            "customers": "profiles", "web_clicks": "clicks",
            "call_transcripts": "(SELECT cid FROM talk WHERE src = 0)", "web_transcripts": "(SELECT cid FROM talk WHERE src = 1)",
        }
        issues = np.zeros(count, dtype=np.int64)
        for table, kept in valid.items():
            if not self.has(table):
                continue
            raw_rows = self.con.execute(f"SELECT count(*) FROM raw_{table} WHERE customer_id IS NOT NULL").fetchall()[0][0]
            if raw_rows == self.con.execute(f"SELECT count(*) FROM {kept}").fetchall()[0][0]:
                continue  # nothing rejected in this table
            rows = self.con.execute(f"""
                SELECT ids.pos - 1 AS i, raw.n - COALESCE(ok.n, 0) AS rejected
                FROM (SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, count(*) n FROM raw_{table} GROUP BY 1) raw
                JOIN ids USING (cid)
                LEFT JOIN (SELECT cid, count(*) n FROM {kept} GROUP BY 1) ok USING (cid)
                WHERE raw.n > COALESCE(ok.n, 0)
            """).fetchnumpy()
            issues[rows["i"].astype(np.int64)] += rows["rejected"].astype(np.int64)
        return issues

    def _billing_notes(self, count: int) -> np.ndarray:
        """Money dropped from bills (non-finite or negative optional amounts), one note each, as ``records._screen_money``."""
        notes = np.zeros(count, dtype=np.int64)
        rows = self.con.execute(
            "SELECT ids.pos - 1 AS i, sum(notes) AS n FROM bill_rows JOIN ids USING (cid) GROUP BY ALL HAVING sum(notes) > 0"
        ).fetchnumpy()
        notes[np.asarray(rows["i"], dtype=np.int64)] += np.asarray(rows["n"], dtype=np.int64)
        return notes

    def _offers(self, offer_ids: list[str], count: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Flat offer-model scores (``records.OfferScore``): per offer id, whether any, and rejected rows."""
        scores = {oid: np.full(count, np.nan) for oid in offer_ids}
        has_any = np.zeros(count, dtype=bool)
        issues = np.zeros(count, dtype=np.int64)
        t, m = "offer_recommendations", OfferScore
        if not self.has(t):
            return scores, has_any, issues
        flat = "recommended_offers IS NULL" if "recommended_offers" in self._columns[t] else "true"
        checks = " AND ".join(valid_number(f, m, f) for f in ("discount_amount", "original_price"))
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE flat_offers AS
            SELECT ids.pos - 1 AS i, o.offer, o.p, o._rn,
                   o.offer IS NOT NULL AND {valid_number("o.p", m, "acceptance_probability", required=True)} AND {checks} AS ok
            FROM (
                SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, _rn,
                    {self._num(t, m, "offer_id", "VARCHAR")} AS offer, {self._num(t, m, "acceptance_probability")} AS p,
                    {self._num(t, m, "discount_amount")} AS discount_amount, {self._num(t, m, "original_price")} AS original_price
                FROM raw_{t} WHERE customer_id IS NOT NULL AND {flat}
            ) o JOIN ids USING (cid)
        """)
        rows = self.con.execute("SELECT i, offer, arg_max(p, _rn) AS p FROM flat_offers WHERE ok GROUP BY ALL").fetchnumpy()
        for i, offer, p in zip(rows["i"], rows["offer"], rows["p"], strict=True):
            has_any[int(i)] = True
            if offer in scores:
                scores[offer][int(i)] = p
        bad = self.con.execute("SELECT i, count(*) AS n FROM flat_offers WHERE NOT ok GROUP BY i").fetchnumpy()
        issues[np.asarray(bad["i"], dtype=np.int64)] += np.asarray(bad["n"], dtype=np.int64)
        self.con.execute("DROP TABLE IF EXISTS flat_offers")
        return scores, has_any, issues

    def _offer_history(self, count: int) -> OfferHistory:
        """Nested offer-history rows, read by ``records.OfferHistoryRow`` itself (only those rows visit Python)."""
        history = OfferHistory.empty(count)
        t = "offer_recommendations"
        if not self.has(t) or "recommended_offers" not in self._columns[t]:
            return history
        rows = self.con.execute(f"""
            SELECT ids.pos - 1 AS i, r.cid, CAST(to_json(r) AS VARCHAR) AS row FROM (
                SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, * EXCLUDE (customer_id) FROM raw_{t}
                WHERE customer_id IS NOT NULL AND recommended_offers IS NOT NULL
            ) r JOIN ids USING (cid) ORDER BY r._rn
        """).fetchall()
        past: dict[int, list[PastOffer]] = defaultdict(list)
        for i, cid, text in rows:
            # As the per-customer reader gives it: a null field is an absent field; the id is text.
            row = {k: v for k, v in json.loads(text).items() if v is not None and k not in ("cid", "_rn")}
            row["customer_id"] = cid
            try:
                past[int(i)].extend(OfferHistoryRow.model_validate(row).past_offers())
            except (ValidationError, ValueError):
                history.issues[int(i)] += 1
        history.fill(past)
        return history

    def _window_maps(self, t: str, dnd: str, preferred: str) -> None:
        """Parse each distinct window text once with the per-customer parsers (``TimeWindow.parse``, ``parse_contact_time``)."""

        def minutes(window: TimeWindow | None, ok: bool = True) -> tuple[bool, int | None, int | None]:
            if window is None:
                return ok, None, None
            return ok, window.start.hour * 60 + window.start.minute, window.end.hour * 60 + window.end.minute

        def quiet(text: str) -> tuple[bool, int | None, int | None]:
            try:
                return minutes(TimeWindow.parse(text))
            except ValueError:
                return False, None, None

        def contact_time(text: str) -> tuple[bool, int | None, int | None]:
            try:
                return minutes(parse_contact_time(text))
            except ValueError:
                return False, None, None

        self._distinct_map("win_dnd", f"SELECT {dnd} AS k FROM raw_{t} r", quiet, "ok BOOLEAN, s INTEGER, e INTEGER")
        self._distinct_map("win_pref", f"SELECT {preferred} AS k FROM raw_{t} r", contact_time, "ok BOOLEAN, s INTEGER, e INTEGER")

    def _permissions(self, count: int) -> tuple[dict[tuple[str, str], np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Consent and contact windows as ``records.merge_permissions`` reads them: every row, the most restrictive answer."""
        consent = {(ch, p): np.zeros(count, dtype=bool) for ch in CHANNELS for p in PURPOSES}
        has = np.zeros(count, dtype=bool)
        dnd = np.full((count, 2), -1, dtype=np.int32)
        preferred = np.full((count, 2), -1, dtype=np.int32)
        issues = np.zeros(count, dtype=np.int64)
        t = "permissions"
        if not self.has(t):
            return consent, has, dnd, preferred, issues
        cols = self._columns[t]
        layout = self._struct_layout(t, "permissions") if "permissions" in cols else None
        top = {key: f"TRY_CAST(r.\"{key}\" AS VARCHAR)" if key in cols else "CAST(NULL AS VARCHAR)" for key in ("do_not_disturb", "preferred_contact_time")}
        if layout is not None:
            # A typed struct (Parquet, clean JSON): read the fields directly, no JSON text in between.
            block = "r.permissions"
            present = [ch for ch in CHANNELS if ch in layout]
            readable_sql = f"(blk IS NOT NULL AND ({' OR '.join(f'blk.{ch} IS NOT NULL' for ch in present)}))" if present else "false"
            not_objects = "0"
            fields = []
            for ch in CHANNELS:
                for p in PURPOSES:
                    key = next((k for k in (p, p.rstrip("s")) if k in layout.get(ch, ())), None)
                    value = f"upper(trim(COALESCE(CAST(blk.{ch}.{key} AS VARCHAR), ''))) = 'Y'" if key else "false"
                    fields.append(f'{value} AS "{ch}|{p}"')
            windows = top
        else:
            # The consent block is ``permissions`` when the row has one, else the row itself (records.parse_permissions).
            block = "COALESCE(to_json(r.permissions), to_json(r))" if "permissions" in cols else "to_json(r)"
            readable_sql = "(json_type(blk) = 'OBJECT' AND (" + " OR ".join(f"json_type(blk, '$.{ch}') = 'OBJECT'" for ch in CHANNELS) + "))"
            not_objects = " + ".join(
                f"CASE WHEN json_type(blk, '$.{ch}') NOT IN ('OBJECT', 'NULL') THEN 1 ELSE 0 END" for ch in CHANNELS
            )
            fields = []
            for ch in CHANNELS:
                for p in PURPOSES:
                    singular = p.rstrip("s")
                    fields.append(
                        f"upper(trim(COALESCE(json_extract_string(blk, '$.{ch}.{p}'), json_extract_string(blk, '$.{ch}.{singular}'), '')))"
                        f" = 'Y' AND json_type(blk, '$.{ch}') = 'OBJECT' AS \"{ch}|{p}\""
                    )
            windows = {key: f"COALESCE({sql}, json_extract_string({block}, '$.{key}'))" for key, sql in top.items()}
        self._window_maps(t, windows["do_not_disturb"], windows["preferred_contact_time"])
        yes = ", ".join(f'bool_and("{ch}|{p}") AS "{ch}|{p}"' for ch in CHANNELS for p in PURPOSES)
        rows = self.con.execute(f"""
            WITH per_row AS (
                SELECT *, min(CASE WHEN NOT readable THEN _rn END) OVER (PARTITION BY cid) AS first_bad,
                       not_objects + CASE WHEN dnd_given AND NOT dnd_ok THEN 1 ELSE 0 END
                                   + CASE WHEN pref_given AND NOT pref_ok THEN 1 ELSE 0 END AS row_notes
                FROM (
                    SELECT cid, _rn, COALESCE({readable_sql}, false) AS readable, {", ".join(fields)}, {not_objects} AS not_objects,
                           COALESCE(dnd_text <> '', false) AS dnd_given, COALESCE(d.ok, false) AS dnd_ok, d.s AS dnd_s, d.e AS dnd_e,
                           COALESCE(pref_text <> '', false) AS pref_given, COALESCE(w.ok, false) AS pref_ok, w.s AS pref_s, w.e AS pref_e
                    FROM (
                        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, _rn, {block} AS blk,
                               {windows["do_not_disturb"]} AS dnd_text, {windows["preferred_contact_time"]} AS pref_text
                        FROM raw_{t} r WHERE customer_id IS NOT NULL
                    ) LEFT JOIN win_dnd d ON d.k = dnd_text LEFT JOIN win_pref w ON w.k = pref_text
                )
            )
            SELECT * EXCLUDE (quiet, pref), quiet IS NOT NULL AS quiet_given, COALESCE(quiet.ok, false) AS quiet_ok,
                   COALESCE(quiet.s, -1) AS quiet_s, COALESCE(quiet.e, -1) AS quiet_e,
                   COALESCE(pref.ok AND pref.s IS NOT NULL, false) AS pref_ok, COALESCE(pref.s, -1) AS pref_s, COALESCE(pref.e, -1) AS pref_e
            FROM (
                SELECT ids.pos - 1 AS i, bool_and(readable) AS readable, {yes},
                       CASE WHEN bool_and(readable) THEN sum(row_notes) + CASE WHEN count(*) > 1 THEN 1 ELSE 0 END
                            ELSE COALESCE(sum(row_notes) FILTER (WHERE _rn < first_bad), 0) + 1 END AS notes,
                       arg_max({{'ok': dnd_ok, 's': dnd_s, 'e': dnd_e}}, _rn) FILTER (WHERE dnd_given) AS quiet,
                       arg_max({{'ok': pref_ok, 's': pref_s, 'e': pref_e}}, _rn) AS pref
                FROM per_row JOIN ids USING (cid) GROUP BY ALL
            )
        """).fetchnumpy()
        index = np.asarray(rows["i"], dtype=np.int64)
        readable = np.asarray(rows["readable"], dtype=bool)
        has[index] = readable
        for (ch, p), arr in consent.items():
            arr[index] = np.asarray(rows[f"{ch}|{p}"], dtype=bool) & readable
        issues[index] += np.asarray(rows["notes"], dtype=np.int64)
        quiet = DEFAULT_QUIET_HOURS
        default_quiet = (quiet.start.hour * 60 + quiet.start.minute, quiet.end.hour * 60 + quiet.end.minute)
        given = np.asarray(rows["quiet_given"], dtype=bool) & readable
        valid = np.asarray(rows["quiet_ok"], dtype=bool) & given
        dnd[index[valid]] = np.column_stack([rows["quiet_s"], rows["quiet_e"]])[valid].astype(np.int32)
        # An unreadable quiet window means the default quiet hours, never "any time".
        dnd[index[given & ~valid]] = default_quiet
        valid = np.asarray(rows["pref_ok"], dtype=bool) & readable
        preferred[index[valid]] = np.column_stack([rows["pref_s"], rows["pref_e"]])[valid].astype(np.int32)
        self.con.execute("DROP TABLE IF EXISTS win_dnd; DROP TABLE IF EXISTS win_pref")
        return consent, has, dnd, preferred, issues


def _in_order(table: str, day: str) -> str:
    """SQL: ``table``'s rows with ``k``, a BIGINT that orders them as ``(day, _rn)`` does ("the latest row wins").

    ``day`` (never NULL here) becomes its rank among the table's distinct days, so ``arg_max(x, k)``
    compares one integer instead of a (date, row) pair: at a million customers that pair made the
    latest-two aggregates of bills and usage cost seconds. A table too large for the key makes
    DuckDB raise an overflow error rather than order wrongly.
    """
    return f"""(
        SELECT t.*, r.d * (SELECT max(_rn) + 1 FROM {table}) + t._rn AS k
        FROM (SELECT *, {day} AS _day FROM {table}) t
        JOIN (SELECT _day, row_number() OVER (ORDER BY _day) AS d FROM (SELECT DISTINCT {day} AS _day FROM {table})) r USING (_day)
    )"""


def input_digests(table: FeatureTable) -> list[str]:
    """A 64-bit FNV-style hash per customer over every feature column, vectorised (hex strings)."""
    columns = (
        list(table.columns.values()) + list(table.interests.values()) + list(table.offer_scores.values())
        + list(table.consent.values()) + [table.do_not_disturb[:, 0], table.do_not_disturb[:, 1], table.quality_issues]
    )
    digest = np.full(len(table), 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for column in columns:
            bits = np.nan_to_num(np.asarray(column, dtype=np.float64), nan=-1.2345e300).view(np.uint64)
            digest = (digest ^ bits) * prime
    return [format(value, "016x") for value in digest.tolist()]


def _floats(values: Any) -> np.ndarray:
    """A numpy column with SQL NULLs as NaN."""
    return np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)


def _derive(rows: dict[str, Any], count: int, as_of: date, scoring: ScoringSettings) -> dict[str, np.ndarray]:
    """The remaining formulas of JourneyBuilder.features over the SQL columns (the codes by ``cvm.decision.vector``)."""
    n_latency = _floats(rows["n_latency"])
    n_dropped = _floats(rows["n_dropped"])
    avg_latency = _floats(rows["avg_latency"])
    dropped = np.nan_to_num(_floats(rows["dropped"]), nan=0.0)
    has_network = (n_latency > 0) | (n_dropped > 0)
    usage_change = _floats(rows["usage_change_pct"])
    bill_change = _floats(rows["bill_change_pct"])
    delta = _floats(rows["sentiment_delta"])
    roaming_charges = _floats(rows["roaming_charges"])
    return {
        "churn_probability": _floats(rows["churn_probability"]),
        "monthly_revenue": _floats(rows["monthly_revenue"]),
        "tenure_months": _floats(rows["tenure_months"]),
        "satisfaction_score": _floats(rows["satisfaction_score"]),
        "overage_charges": _floats(rows["overage_charges"]),
        "bill_change_pct": bill_change,
        "bill_shock": ~np.isnan(bill_change) & (np.nan_to_num(bill_change, nan=-1e9) >= (scoring.bill_shock_ratio - 1) * 100),
        "roaming_charges": roaming_charges,
        "roaming": (roaming_charges > 0) | (_floats(rows["roaming_gb"]) > 0),
        "overdue_payment": np.asarray(rows["overdue_payment"], dtype=bool),
        "usage_change_pct": usage_change,
        "usage_trend": vector.trend_code(usage_change, vector.USAGE_TREND_PCT),
        "latest_data_gb": _floats(rows["latest_data_gb"]),
        "avg_latency_ms": np.where(n_latency > 0, np.round(avg_latency, 1), np.nan),
        "dropped_calls": np.where(n_dropped > 0, dropped, np.nan),
        "network_quality": vector.network_quality(has_network, avg_latency, dropped, _floats(rows["weakest"]), scoring),
        "sentiment_score": _floats(rows["sentiment_score"]),
        "sentiment_trend": vector.trend_code(delta, vector.SENTIMENT_TREND_STEP),
    }
