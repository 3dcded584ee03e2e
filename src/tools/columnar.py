"""The data folder read column-wise with DuckDB: one row of journey features per customer.

The batch path cannot afford a Python object per record at a million
customers, so this module computes, in SQL over every table at once, the same
features the Journey agent computes one customer at a time (same field
spellings, same validity rules, same sentiment lexicon and interest patterns,
same formulas), and hands them over as numpy arrays. Rows the per-customer
path would reject (missing or wrongly typed required fields, negative amounts)
are dropped here too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from cvm.agents.journey import INTEREST_PATTERNS, NEGATIVE_WORDS, POSITIVE_WORDS, interest_pattern
from cvm.tools.data_source import FORMATS
from cvm.tools.records import DEFAULT_QUIET_HOURS, TABLES
from cvm.utils.config import CHANNELS, PURPOSES, ScoringSettings
from cvm.utils.errors import DataError

_READERS = {
    ".parquet": "read_parquet('{path}', file_row_number = true)",
    ".jsonl": "read_json_auto('{path}', format='newline_delimited')",
    ".json": "read_json_auto('{path}', format='array')",
    ".csv": "read_csv_auto('{path}', all_varchar=true)",
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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

    def __len__(self) -> int:
        return len(self.customer_ids)


class ColumnarData:
    """The tables of one data folder as DuckDB views."""

    def __init__(self, data_dir: str | Path, threads: int | None = None, memory_limit: str = "2500MB"):
        try:
            import duckdb
        except ImportError:
            raise DataError("the batch path needs DuckDB; install it with pip install 'cvm[scale]'") from None
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
        for table in TABLES:
            path = next((self.data_dir / f"{table}{ext}" for ext in FORMATS if (self.data_dir / f"{table}{ext}").is_file()), None)
            if path is None:
                continue
            reader = _READERS[path.suffix].format(path=str(path).replace("'", "''"))
            try:
                # Parsed once into DuckDB's own columns: later queries never re-read the file.
                # File order matters ("the last row wins"); Parquet says it for free, other formats need a window.
                order = "file_row_number AS _rn" if path.suffix == ".parquet" else "row_number() OVER () AS _rn"
                drop = " EXCLUDE (file_row_number)" if path.suffix == ".parquet" else ""
                self.con.execute(f"CREATE TABLE raw_{table} AS SELECT *{drop}, {order} FROM {reader}")
                described = self.con.execute(f"DESCRIBE raw_{table}").fetchall()
                self._columns[table] = {row[0] for row in described}
                self._types.update({(table, row[0]): row[1] for row in described})
            except duckdb.Error as exc:
                raise DataError(f"{path.name} could not be read by the batch path ({str(exc).splitlines()[0]})") from None

    def _struct_layout(self, table: str, column: str) -> dict[str, set[str]] | None:
        """For a struct-of-structs column, {child: {grandchildren}}; None when the column is anything else."""
        kind = self.con.sql(f'SELECT "{column}" FROM raw_{table}').types[0]
        if kind.id != "struct":
            return None
        layout: dict[str, set[str]] = {}
        for name, child in kind.children:
            if child.id != "struct":
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

    def _billing(self) -> str:
        t = "billing_data"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) day, 0.0 total, 0.0 roaming, false overdue, 0 _rn")
        extra, roaming_items = self._charges(t)
        roaming_col = self._pick(t, ("roaming_charges",), "DOUBLE")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, day, base + extra + roaming_col AS total,
               roaming_col + roaming_items AS roaming, overdue, _rn
        FROM (
            SELECT customer_id, _rn,
                {self._day(t, ("billing_date", "date", "bill_date", "month"))} AS day,
                {self._pick(t, ("monthly_bill", "monthly_charge", "amount_due"), "DOUBLE")} AS base,
                COALESCE({roaming_col}, 0.0) AS roaming_col,
                {extra} AS extra,
                {roaming_items} AS roaming_items,
                lower(COALESCE({self._pick(t, ("payment_status",), "VARCHAR")}, '')) = 'overdue' AS overdue
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE day IS NOT NULL AND base IS NOT NULL AND base >= 0 AND roaming_col >= 0
        """

    def _charges(self, t: str) -> tuple[str, str]:
        """SQL for the extra charges and the roaming part of them: a number, or a list of {description, amount}."""
        if "additional_charges" not in self._columns[t]:
            return "0.0", "0.0"
        kind = self.con.sql(f"SELECT additional_charges FROM raw_{t}").types[0]
        roaming = "lower(COALESCE(c.description, 'additional charges')) LIKE '%roaming%'"
        if kind.id == "list" and kind.child.id == "struct" and {"amount", "description"} <= {n for n, _ in kind.child.children}:
            items = "additional_charges"  # already typed: no JSON text in between
        elif kind.id in ("double", "float", "bigint", "integer", "decimal"):
            return "COALESCE(CAST(additional_charges AS DOUBLE), 0.0)", "0.0"
        else:
            as_json = "to_json(additional_charges)"
            items = f"""CASE json_type({as_json}) WHEN 'ARRAY' THEN from_json({as_json}, '[{{"amount": "DOUBLE", "description": "VARCHAR"}}]') END"""
            number = f"CASE WHEN json_type({as_json}) <> 'ARRAY' THEN TRY_CAST(TRY_CAST({as_json} AS VARCHAR) AS DOUBLE) END"
            return (
                f"COALESCE(list_sum(list_transform({items}, lambda c: c.amount)), {number}, 0.0)",
                f"COALESCE(list_sum(list_transform(list_filter({items}, lambda c: {roaming}), lambda c: c.amount)), 0.0)",
            )
        return (
            f"COALESCE(list_sum(list_transform({items}, lambda c: c.amount)), 0.0)",
            f"COALESCE(list_sum(list_transform(list_filter({items}, lambda c: {roaming}), lambda c: c.amount)), 0.0)",
        )

    def _usage(self) -> str:
        t = "usage_data"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) day, 0.0 gb, 0.0 roaming_gb, 0 _rn")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, day, gb, COALESCE(roaming_gb, 0.0) roaming_gb, _rn FROM (
            SELECT customer_id, _rn, {self._day(t, ("date", "month", "period", "usage_date"))} AS day,
                {self._pick(t, ("total_data_gb", "data_usage_gb", "data_gb"), "DOUBLE")} AS gb,
                {self._pick(t, ("roaming_data_gb",), "DOUBLE")} AS roaming_gb,
                {self._pick(t, ("call_minutes", "voice_minutes"), "DOUBLE")} AS minutes,
                {self._pick(t, ("sms_count", "sms"), "DOUBLE")} AS sms
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE day IS NOT NULL AND gb IS NOT NULL AND gb >= 0 AND COALESCE(roaming_gb, 0) >= 0
              AND COALESCE(minutes, 0) >= 0 AND COALESCE(sms, 0) >= 0
        """

    def _network(self) -> str:
        t = "network_data"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) day, 0.0 latency, 0 dropped, 0.0 signal")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, day, latency, dropped, signal FROM (
            SELECT customer_id, {self._day(t, ("date", "timestamp", "measured_at"))} AS day,
                {self._pick(t, ("avg_latency_ms", "latency_ms", "latency"), "DOUBLE")} AS latency,
                {self._pick(t, ("dropped_calls",), "BIGINT")} AS dropped,
                {self._pick(t, ("signal_strength_dbm",), "DOUBLE")} AS signal,
                {self._pick(t, ("download_speed_mbps",), "DOUBLE")} AS speed
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE day IS NOT NULL AND COALESCE(latency, 0) >= 0 AND COALESCE(dropped, 0) >= 0 AND COALESCE(speed, 0) >= 0
        """

    def _churn(self) -> str:
        t = "churn_score"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, 0.0 p, CAST(NULL AS DATE) day, 0 _rn")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, p, day, _rn FROM (
            SELECT customer_id, _rn, {self._pick(t, ("churn_score", "churn_probability", "score"), "DOUBLE")} AS p,
                {self._day(t, ("score_date", "date", "scored_at"))} AS day
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE p IS NOT NULL AND p >= 0 AND p <= 1
        """

    def _profiles(self) -> str:
        t = "customers"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS DATE) joined, 0 _rn")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, {self._day(t, ("join_date", "start_date", "activation_date"))} AS joined, _rn
        FROM raw_{t} WHERE customer_id IS NOT NULL
        """

    def _talk(self, t: str) -> str:
        """Conversations of one table: when, and the customer's own words (each costly expression computed once)."""
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, CAST(NULL AS TIMESTAMP) ts, '' words")
        cols = self._columns[t]
        text = self._pick(t, ("transcript", "text", "content"), "VARCHAR")
        marked = "string_split(regexp_replace(text, '\\b(Agent|Advisor|Customer):', chr(30) || '\\1:', 'g'), chr(30))"
        said = (
            f"array_to_string(list_transform(list_filter({marked}, lambda x: starts_with(trim(x), 'Customer:')),"
            " lambda x: trim(substr(trim(x), 10))), ' ')"
        )
        message_col = next((c for c in ("messages", "conversation", "turns") if c in cols), None)
        if message_col is None:
            turns_sql, valid = "CAST(NULL AS VARCHAR[])", "text IS NOT NULL"
        else:
            turns_sql, valid = f'"{message_col}"', "(turns IS NOT NULL OR text IS NOT NULL)"
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
        # Transcripts repeat (templates, copied notes): extract the customer's words once per distinct text.
        return f"""
        WITH rows AS (
            SELECT * FROM (
                SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, {self._ts(t, ("timestamp", "date", "datetime", "started_at"))} AS ts,
                       {text} AS text, {turns_sql} AS turns
                FROM raw_{t} WHERE customer_id IS NOT NULL
            ) WHERE {valid} AND ts IS NOT NULL
        ),
        said_once AS (
            SELECT text, {said} AS said FROM (SELECT DISTINCT text FROM rows WHERE turns IS NULL AND text IS NOT NULL)
        )
        SELECT rows.cid, rows.ts,
               CASE WHEN rows.turns IS NOT NULL THEN {from_turns.replace("turns", "rows.turns")}
                    WHEN said_once.said = '' THEN rows.text ELSE said_once.said END AS words
        FROM rows LEFT JOIN said_once ON rows.turns IS NULL AND said_once.text = rows.text
        """

    def _clicks(self) -> str:
        t = "web_clicks"
        if not self.has(t):
            return self._empty("CAST(NULL AS VARCHAR) cid, '' page")
        return f"""
        SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, page FROM (
            SELECT customer_id, {self._pick(t, ("page", "url", "path"), "VARCHAR")} AS page,
                   {self._ts(t, ("timestamp", "date", "datetime"))} AS ts,
                   {self._pick(t, ("duration_seconds",), "DOUBLE")} AS seconds
            FROM raw_{t} WHERE customer_id IS NOT NULL
        ) WHERE page IS NOT NULL AND ts IS NOT NULL AND COALESCE(seconds, 0) >= 0
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

    def features(self, as_of: date, scoring: ScoringSettings, offer_ids: list[str], customer_ids: list[str] | None = None) -> FeatureTable:
        """Every customer's journey features, computed in one pass over the tables."""
        con = self.con
        if customer_ids is None:  # everyone: the id list never leaves DuckDB
            con.execute(f"CREATE OR REPLACE TEMP TABLE ids AS SELECT cid, row_number() OVER (ORDER BY cid) AS pos FROM ({self._id_union()})")
            ids = [r[0] for r in con.execute("SELECT cid FROM ids ORDER BY pos").fetchall()]
        else:
            ids = customer_ids
            con.execute("CREATE OR REPLACE TEMP TABLE ids AS SELECT unnest($1::VARCHAR[]) AS cid, generate_subscripts($1::VARCHAR[], 1) AS pos", [ids])
        for name, sql in (
            ("bills", self._billing()), ("usage", self._usage()), ("net", self._network()), ("churn", self._churn()),
            ("profiles", self._profiles()), ("clicks", self._clicks()),
            ("talk", f"SELECT * FROM ({self._talk('call_transcripts')}) UNION ALL SELECT * FROM ({self._talk('web_transcripts')})"),
        ):
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        positive = "[" + ", ".join(_quote(w) for w in sorted(POSITIVE_WORDS)) + "]"
        negative = "[" + ", ".join(_quote(w) for w in sorted(NEGATIVE_WORDS)) + "]"
        interest_flags = ",\n".join(
            f"regexp_matches(text, {_quote('(?i)' + interest_pattern(words))}) AS i_{topic}"
            for topic, words in INTEREST_PATTERNS.items()
        )
        # Conversations and pages repeat (templates, the same pages): score each distinct text once.
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE texts AS
            SELECT text, CASE WHEN pos + neg = 0 THEN 0.0 ELSE round((pos - neg) / (pos + neg), 3) END AS score, * EXCLUDE (text, pos, neg)
            FROM (
                SELECT text,
                    len(list_filter(regexp_extract_all(lower(text), '[a-z'']+'), lambda w: list_contains({positive}, w))) AS pos,
                    len(list_filter(regexp_extract_all(lower(text), '[a-z'']+'), lambda w: list_contains({negative}, w))) AS neg,
                    {interest_flags}
                FROM (SELECT DISTINCT words AS text FROM talk WHERE words IS NOT NULL UNION SELECT DISTINCT page FROM clicks)
            )""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE talk_scored AS
            SELECT talk.cid, talk.ts, texts.score FROM talk JOIN texts ON texts.text = talk.words WHERE talk.ts IS NOT NULL""")
        interest_sql = ", ".join(f"bool_or(i_{topic}) AS i_{topic}" for topic in INTEREST_PATTERNS)
        threshold_ms = scoring.poor_latency_ms
        rows = con.execute(f"""
            WITH
            b AS (
                SELECT cid, count(*) AS n_bills, arg_max(total, (day, _rn)) AS last_total, sum(total) AS sum_total,
                       list_sum(arg_max(roaming, (day, _rn), 2)) AS roam2,
                       arg_max(overdue, (day, _rn)) AS overdue, min(day) AS first_day
                FROM bills GROUP BY cid),
            u AS (
                SELECT cid, count(*) AS n_usage, arg_min(gb, (day, _rn)) AS first_gb, arg_max(gb, (day, _rn)) AS last_gb,
                       list_sum(arg_max(roaming_gb, (day, _rn), 2)) AS rgb2
                FROM usage GROUP BY cid),
            n AS (
                SELECT cid, avg(latency) AS avg_latency, sum(dropped) AS dropped, count(dropped) AS n_dropped,
                       count(latency) AS n_latency, min(signal) AS weakest FROM net GROUP BY cid),
            c AS (SELECT cid, arg_max(p, (COALESCE(day, DATE '0001-01-01'), _rn)) AS p FROM churn GROUP BY cid),
            pr AS (SELECT cid, arg_max(joined, _rn) AS joined FROM profiles GROUP BY cid),
            s AS (
                SELECT cid, list(score ORDER BY ts) AS scores FROM talk_scored GROUP BY cid),
            txt AS (
                SELECT cid, {interest_sql} FROM (
                    SELECT cid, page AS text FROM clicks UNION ALL SELECT cid, words AS text FROM talk
                ) JOIN texts USING (text) GROUP BY cid)
            SELECT ids.cid,
                c.p AS churn_probability,
                round(b.last_total, 2) AS monthly_revenue,
                CASE WHEN b.n_bills >= 2 AND (b.sum_total - b.last_total) / (b.n_bills - 1) > 0
                     THEN round((b.last_total / ((b.sum_total - b.last_total) / (b.n_bills - 1)) - 1) * 100, 1) END AS bill_change_pct,
                COALESCE(round(b.roam2, 2), 0.0) AS roaming_charges,
                COALESCE(b.overdue, false) AS overdue_payment,
                round(date_diff('day', COALESCE(pr.joined, b.first_day), $as_of::DATE) / 30.4375, 1) AS tenure_months,
                u.last_gb AS latest_data_gb,
                COALESCE(u.rgb2, 0.0) AS roaming_gb,
                CASE WHEN u.n_usage >= 2 AND u.first_gb > 0 THEN round((u.last_gb / u.first_gb - 1) * 100, 1) END AS usage_change_pct,
                n.avg_latency, n.dropped, COALESCE(n.n_dropped, 0) AS n_dropped, COALESCE(n.n_latency, 0) AS n_latency,
                COALESCE(n.weakest, -80.0) AS weakest,
                s.scores[-1] AS sentiment_score,
                CASE WHEN len(s.scores) >= 2 THEN
                    list_avg(s.scores[len(s.scores) // 2 + 1:len(s.scores)]) - list_avg(s.scores[1:len(s.scores) // 2]) END AS sentiment_delta,
                {", ".join(f"COALESCE(txt.i_{topic}, false) AS i_{topic}" for topic in INTEREST_PATTERNS)}
            FROM ids
            LEFT JOIN b USING (cid) LEFT JOIN u USING (cid) LEFT JOIN n USING (cid) LEFT JOIN c USING (cid)
            LEFT JOIN pr USING (cid) LEFT JOIN s USING (cid) LEFT JOIN txt USING (cid)
            ORDER BY ids.pos
        """, {"as_of": as_of}).fetchnumpy()
        count = len(ids)
        cols = _derive(rows, count, as_of, scoring, threshold_ms)

        interests = {topic: np.asarray(rows[f"i_{topic}"], dtype=bool) for topic in INTEREST_PATTERNS}
        offers = self._offers(offer_ids, count)
        consent, has_permissions, dnd, preferred, permission_issues = self._permissions(count)
        table = FeatureTable(
            customer_ids=np.asarray(ids, dtype=object), columns=cols, interests=interests, offer_scores=offers,
            consent=consent, has_permissions=has_permissions, do_not_disturb=dnd, preferred=preferred,
            quality_issues=self._rejected_rows(count) + permission_issues, digests=[],
        )
        table.digests = input_digests(table)
        for name in ("bills", "usage", "net", "churn", "profiles", "clicks", "talk", "texts", "talk_scored"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
        return table

    def _rejected_rows(self, count: int) -> np.ndarray:
        """Rows each customer has in a table minus the rows that survived validation."""
        valid = {
            "billing_data": "bills", "usage_data": "usage", "network_data": "net", "churn_score": "churn",
            "customers": "profiles", "web_clicks": "clicks",
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

    def _offers(self, offer_ids: list[str], count: int) -> dict[str, np.ndarray]:
        scores = {oid: np.full(count, np.nan) for oid in offer_ids}
        t = "offer_recommendations"
        if not self.has(t) or not offer_ids:
            return scores
        rows = self.con.execute(f"""
            SELECT ids.pos - 1 AS i, o.offer, arg_max(o.p, o._rn) AS p FROM (
                SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, _rn,
                    {self._pick(t, ("offer_id", "treatment", "treatment_id", "offer"), "VARCHAR")} AS offer,
                    {self._pick(t, ("acceptance_probability", "probability", "score"), "DOUBLE")} AS p
                FROM raw_{t} WHERE customer_id IS NOT NULL
            ) o JOIN ids USING (cid)
            WHERE o.offer IS NOT NULL AND o.p BETWEEN 0 AND 1
            GROUP BY ALL
        """).fetchnumpy()
        for i, offer, p in zip(rows["i"], rows["offer"], rows["p"], strict=True):
            if offer in scores:
                scores[offer][int(i)] = p
        return scores

    def _permissions(self, count: int) -> tuple[dict[tuple[str, str], np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
        if layout is not None:
            # A typed struct (Parquet, clean JSON): read the fields directly, no JSON text in between.
            block = "permissions"
            readable_sql = "blk IS NOT NULL AND (" + " OR ".join(f"blk.{ch} IS NOT NULL" for ch in CHANNELS if ch in layout) + ")"
            if not any(ch in layout for ch in CHANNELS):
                readable_sql = "false"
            fields = []
            for ch in CHANNELS:
                for p in PURPOSES:
                    key = next((k for k in (p, p.rstrip("s")) if k in layout.get(ch, ())), None)
                    value = f"upper(trim(COALESCE(CAST(blk.{ch}.{key} AS VARCHAR), ''))) = 'Y'" if key else "false"
                    fields.append(f'{value} AS "{ch}|{p}"')
        else:
            block = "to_json(permissions)" if "permissions" in cols else "to_json(r)"
            readable_sql = "json_type(blk) = 'OBJECT' AND (" + " OR ".join(f"json_type(blk, '$.{ch}') IS NOT NULL" for ch in CHANNELS) + ")"
            fields = []
            for ch in CHANNELS:
                for p in PURPOSES:
                    singular = p.rstrip("s")
                    fields.append(
                        f"upper(trim(COALESCE(json_extract_string(blk, '$.{ch}.{p}'), json_extract_string(blk, '$.{ch}.{singular}'), '')))"
                        f" = 'Y' AND json_type(blk, '$.{ch}') = 'OBJECT' AS \"{ch}|{p}\""
                    )
        windows = ", ".join(_window_sql(col) for col in ("dnd", "preferred"))
        rows = self.con.execute(f"""
            SELECT ids.pos - 1 AS i, COALESCE({readable_sql}, false) AS readable,
                   {", ".join(fields)}, {windows}, n_rows
            FROM (
                SELECT cid, arg_max(blk, _rn) AS blk, arg_max(dnd, _rn) AS dnd, arg_max(preferred, _rn) AS preferred,
                       count(*) AS n_rows FROM (
                    SELECT TRIM(CAST(customer_id AS VARCHAR)) cid, _rn, {block} AS blk,
                        NULLIF(TRIM({self._pick(t, ("do_not_disturb",), "VARCHAR")}), '') AS dnd,
                        NULLIF(TRIM({self._pick(t, ("preferred_contact_time",), "VARCHAR")}), '') AS preferred
                    FROM raw_{t} r WHERE customer_id IS NOT NULL
                ) GROUP BY cid
            ) JOIN ids USING (cid)
        """).fetchnumpy()
        index = rows["i"].astype(np.int64)
        readable = np.asarray(rows["readable"], dtype=bool)
        has[index] = readable
        for (ch, p), arr in consent.items():
            arr[index] = np.asarray(rows[f"{ch}|{p}"], dtype=bool) & readable
        issues[index] += (~readable).astype(np.int64) + (np.asarray(rows["n_rows"]) > 1).astype(np.int64)
        quiet = DEFAULT_QUIET_HOURS
        default_quiet = (quiet.start.hour * 60 + quiet.start.minute, quiet.end.hour * 60 + quiet.end.minute)
        for name, target, fallback in (("dnd", dnd, default_quiet), ("preferred", preferred, None)):
            given = np.asarray(rows[f"{name}_given"], dtype=bool) & readable
            valid = np.asarray(rows[f"{name}_valid"], dtype=bool) & given
            start, end = _floats(rows[f"{name}_start"]), _floats(rows[f"{name}_end"])
            target[index[valid]] = np.column_stack([start[valid], end[valid]]).astype(np.int32)
            broken = given & ~valid
            issues[index[broken]] += 1
            if fallback is not None:  # an unreadable quiet window means the default quiet hours, never "any time"
                target[index[broken]] = fallback
        return consent, has, dnd, preferred, issues


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


def _derive(rows: dict[str, Any], count: int, as_of: date, scoring: ScoringSettings, poor_ms: float) -> dict[str, np.ndarray]:
    """The remaining formulas of JourneyBuilder.features, vectorised over the SQL columns."""
    n_latency = _floats(rows["n_latency"])
    n_dropped = _floats(rows["n_dropped"])
    avg_latency = _floats(rows["avg_latency"])
    dropped = np.nan_to_num(_floats(rows["dropped"]), nan=0.0)
    weakest = _floats(rows["weakest"])
    has_network = (n_latency > 0) | (n_dropped > 0)
    lat = np.nan_to_num(avg_latency, nan=0.0)
    poor = has_network & ((lat >= poor_ms) | (dropped >= scoring.dropped_calls_threshold) | (weakest <= -105))
    fair = has_network & ~poor & ((lat >= poor_ms * 0.75) | (dropped >= 1) | (weakest <= -95))
    usage_change = _floats(rows["usage_change_pct"])
    bill_change = _floats(rows["bill_change_pct"])
    delta = _floats(rows["sentiment_delta"])
    roaming_charges = _floats(rows["roaming_charges"])
    return {
        "churn_probability": _floats(rows["churn_probability"]),
        "monthly_revenue": _floats(rows["monthly_revenue"]),
        "tenure_months": _floats(rows["tenure_months"]),
        "bill_change_pct": bill_change,
        "bill_shock": ~np.isnan(bill_change) & (np.nan_to_num(bill_change, nan=-1e9) >= (scoring.bill_shock_ratio - 1) * 100),
        "roaming_charges": roaming_charges,
        "roaming": (roaming_charges > 0) | (_floats(rows["roaming_gb"]) > 0),
        "overdue_payment": np.asarray(rows["overdue_payment"], dtype=bool),
        "usage_change_pct": usage_change,
        # 0 unknown, 1 rising, 2 stable, 3 falling
        "usage_trend": np.select([np.isnan(usage_change), usage_change > 15, usage_change < -15], [0, 1, 3], 2).astype(np.int8),
        "latest_data_gb": _floats(rows["latest_data_gb"]),
        "avg_latency_ms": np.where(n_latency > 0, np.round(avg_latency, 1), np.nan),
        "dropped_calls": np.where(n_dropped > 0, dropped, np.nan),
        # 0 unknown, 1 good, 2 fair, 3 poor
        "network_quality": np.select([poor, fair, has_network], [3, 2, 1], 0).astype(np.int8),
        "sentiment_score": _floats(rows["sentiment_score"]),
        # 0 unknown, 1 improving, 2 stable, 3 worsening
        "sentiment_trend": np.select([np.isnan(delta), delta > 0.2, delta < -0.2], [0, 1, 3], 2).astype(np.int8),
    }
