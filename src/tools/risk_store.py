"""Risk events: executive triggers that fired, kept open across runs until the condition clears or a person closes them.

Each run's evaluation (``observe``) gets every executive trigger with whether it
fired (``at_risk_customers``, ``pending_approvals``, ``capacity_rejections``,
``open_errors``; ``cvm.reporting`` computes them). A trigger that fired opens a
risk event, or refreshes the live one of the same kind and scope (value,
severity, ``last_seen_run``; no duplicate: a partial unique index allows one
live event per kind and scope even with concurrent writers). A trigger that no
longer fires closes its live event (``closed_by`` = ``cvm``, the reason names
the run). People acknowledge (``acknowledge``) or close (``close_event``) an event by id;
an event a person closed while its condition still holds opens again as a new
event at the next run that sees it. Every change is kept in ``risk_event_log``.

Stored in the ledger's SQLite file (``CVM_DB_URL``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Protocol

from cvm.tools.sqlite_store import SQLiteStore
from cvm.utils.errors import UsageError

RiskState = Literal["open", "acknowledged", "closed"]
Severity = Literal["medium", "high", "critical"]
LIVE: tuple[RiskState, ...] = ("open", "acknowledged")
SYSTEM = "cvm"
"""Who closes an event whose condition cleared."""
DEFAULT_OWNER = "cvm-operations"

SCHEMA = """
CREATE TABLE IF NOT EXISTS risk_events (
    risk_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    scope           TEXT NOT NULL DEFAULT 'portfolio',
    title           TEXT NOT NULL,
    detail          TEXT NOT NULL,
    severity        TEXT NOT NULL,
    owner           TEXT NOT NULL,
    state           TEXT NOT NULL,
    value           NUMERIC,
    threshold       NUMERIC,
    opened_at       TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    closed_at       TEXT,
    closed_by       TEXT,
    close_reason    TEXT,
    first_seen_run  TEXT NOT NULL,
    last_seen_run   TEXT NOT NULL,
    times_seen      INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS risk_events_one_live ON risk_events (kind, scope) WHERE state != 'closed';
CREATE INDEX IF NOT EXISTS risk_events_by_state ON risk_events (state, opened_at);
CREATE TABLE IF NOT EXISTS risk_evaluations (
    scope   TEXT PRIMARY KEY,
    run_id  TEXT NOT NULL,
    run_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS risk_event_log (
    risk_id INTEGER NOT NULL REFERENCES risk_events (risk_id),
    at      TEXT NOT NULL,
    action  TEXT NOT NULL,
    actor   TEXT NOT NULL,
    run_id  TEXT,
    note    TEXT
);
"""


class TriggerState(Protocol):
    """One executive trigger as a run evaluated it (``cvm.reporting.model.ExecutiveTrigger`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def value(self) -> int: ...
    @property
    def threshold(self) -> int | None: ...
    @property
    def fired(self) -> bool: ...
    @property
    def headline(self) -> str: ...


def severity_of(value: float, threshold: float | None) -> Severity:
    """How far over its threshold a trigger is: 4x or more critical, 2x high, else medium."""
    if not threshold or threshold <= 0:
        return "high"
    ratio = value / threshold
    return "critical" if ratio >= 4 else "high" if ratio >= 2 else "medium"


@dataclass(frozen=True)
class RiskEvent:
    risk_id: int
    kind: str
    scope: str
    title: str
    detail: str
    severity: Severity
    owner: str
    state: RiskState
    value: float | None
    threshold: float | None
    opened_at: str
    updated_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    closed_at: str | None
    closed_by: str | None
    close_reason: str | None
    first_seen_run: str
    last_seen_run: str
    times_seen: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


FIELDS = tuple(RiskEvent.__dataclass_fields__)


@dataclass(frozen=True)
class RiskSync:
    """What one run's evaluation changed."""

    opened: list[RiskEvent] = field(default_factory=list)
    still_open: list[RiskEvent] = field(default_factory=list)
    closed: list[RiskEvent] = field(default_factory=list)
    stale: bool = False
    """The run is older than one already evaluated (a report of an old run re-made): nothing was changed."""


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("risk event times must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat()


def _event(row: sqlite3.Row) -> RiskEvent:
    return RiskEvent(**{k: row[k] for k in FIELDS})


class RiskStore(SQLiteStore):
    """Risk events and their history in the ledger's database."""

    SCHEMA = SCHEMA
    label = "risk event store"

    def observe(
        self, triggers: Sequence[TriggerState], *, run_id: str, now: datetime, owners: Mapping[str, str] | None = None,
        scope: str = "portfolio", run_at: datetime | str | None = None,
    ) -> RiskSync:
        """One run's evaluation: open or refresh the events of fired triggers, close those whose trigger cleared.

        ``run_at`` (when the run decided) orders runs: a run older than the newest one evaluated changes nothing,
        so re-making an old run's report cannot reopen or close what later runs saw.
        """
        owners = owners or {}
        at = _iso(now)
        sync = RiskSync()
        with self._transaction() as conn:
            if self._stale(conn, scope, run_id, run_at):
                return RiskSync(stale=True)
            for trig in triggers:
                live = self._live(conn, trig.name, scope)
                if trig.fired and live is None and self._closed_in(conn, trig.name, scope, run_id):
                    continue  # a person closed what this very run raised: its report made again does not reopen it
                if trig.fired and live is None:
                    sync.opened.append(self._open(conn, trig, scope, owners.get(trig.name, owners.get("*", DEFAULT_OWNER)), run_id, at))
                elif trig.fired and live is not None:
                    sync.still_open.append(self._refresh(conn, live, trig, run_id, at))
                elif live is not None:
                    reason = f"cleared in run {run_id}: {trig.headline}"
                    sync.closed.append(self._close(conn, live.risk_id, SYSTEM, reason, run_id, at))
        return sync

    # -- people ----------------------------------------------------------------

    def acknowledge(self, risk_id: int, by: str, *, now: datetime, note: str | None = None) -> RiskEvent:
        """A person saw it and owns the follow-up; it stays live until the condition clears or someone closes it."""
        at = _iso(now)
        with self._transaction() as conn:
            event = self._require(conn, risk_id)
            if event.state == "closed":
                raise UsageError(f"risk event {risk_id} is closed ({event.close_reason}); nothing to acknowledge")
            conn.execute(
                "UPDATE risk_events SET state = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?, updated_at = ?"
                " WHERE risk_id = ?",
                (at, by, at, risk_id),
            )
            self._log(conn, risk_id, at, "acknowledged", by, None, note)
            return self._require(conn, risk_id)

    def close_event(self, risk_id: int, by: str, reason: str, *, now: datetime) -> RiskEvent:
        """A person closes it; if its condition still holds, the next run opens a new event."""
        with self._transaction() as conn:
            event = self._require(conn, risk_id)
            if event.state == "closed":
                raise UsageError(f"risk event {risk_id} is already closed (by {event.closed_by}: {event.close_reason})")
            return self._close(conn, risk_id, by, reason, None, _iso(now))

    # -- reading -----------------------------------------------------------------

    def events(self, *, states: Sequence[RiskState] = LIVE, kind: str | None = None, limit: int | None = None) -> list[RiskEvent]:
        """Events in the given states, newest first."""
        marks = ", ".join("?" for _ in states)
        sql = f"SELECT * FROM risk_events WHERE state IN ({marks})"
        params: list[object] = list(states)
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY opened_at DESC, risk_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_event(r) for r in self._connection().execute(sql, params).fetchall()]

    def get(self, risk_id: int) -> RiskEvent:
        return self._require(self._connection(), risk_id)

    def history(self, risk_id: int) -> list[dict[str, object]]:
        rows = self._connection().execute(
            "SELECT at, action, actor, run_id, note FROM risk_event_log WHERE risk_id = ? ORDER BY rowid", (risk_id,)
        ).fetchall()
        return [dict(r) for r in rows]

    # -- in a transaction --------------------------------------------------------

    @staticmethod
    def _require(conn: sqlite3.Connection, risk_id: int) -> RiskEvent:
        row = conn.execute("SELECT * FROM risk_events WHERE risk_id = ?", (risk_id,)).fetchone()
        if row is None:
            raise UsageError(f"no risk event {risk_id}; see 'cvm risks list --state all'")
        return _event(row)

    @staticmethod
    def _stale(conn: sqlite3.Connection, scope: str, run_id: str, run_at: datetime | str | None) -> bool:
        """Whether a newer run was already evaluated; otherwise this run becomes the newest."""
        if run_at is None:
            return False
        moment = run_at if isinstance(run_at, datetime) else datetime.fromisoformat(run_at)
        when = _iso(moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc))
        row = conn.execute("SELECT run_id, run_at FROM risk_evaluations WHERE scope = ?", (scope,)).fetchone()
        if row is not None and row["run_id"] != run_id and row["run_at"] > when:
            return True
        conn.execute(
            "INSERT INTO risk_evaluations (scope, run_id, run_at) VALUES (?, ?, ?)"
            " ON CONFLICT (scope) DO UPDATE SET run_id = excluded.run_id, run_at = excluded.run_at",
            (scope, run_id, when),
        )
        return False

    @staticmethod
    def _live(conn: sqlite3.Connection, kind: str, scope: str) -> RiskEvent | None:
        row = conn.execute("SELECT * FROM risk_events WHERE kind = ? AND scope = ? AND state != 'closed'", (kind, scope)).fetchone()
        return _event(row) if row is not None else None

    @staticmethod
    def _closed_in(conn: sqlite3.Connection, kind: str, scope: str, run_id: str) -> bool:
        """Whether the latest event of this kind and scope was last seen in ``run_id`` and is closed."""
        row = conn.execute(
            "SELECT state, last_seen_run FROM risk_events WHERE kind = ? AND scope = ? ORDER BY risk_id DESC LIMIT 1",
            (kind, scope),
        ).fetchone()
        return row is not None and row["state"] == "closed" and row["last_seen_run"] == run_id

    def _open(self, conn: sqlite3.Connection, trig: TriggerState, scope: str, owner: str, run_id: str, at: str) -> RiskEvent:
        cursor = conn.execute(
            "INSERT INTO risk_events (kind, scope, title, detail, severity, owner, state, value, threshold, opened_at,"
            " updated_at, first_seen_run, last_seen_run) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
            (trig.name, scope, trig.label, trig.headline, severity_of(trig.value, trig.threshold), owner, trig.value,
             trig.threshold, at, at, run_id, run_id),
        )
        risk_id = int(cursor.lastrowid or 0)
        self._log(conn, risk_id, at, "opened", SYSTEM, run_id, trig.headline)
        return self._require(conn, risk_id)

    def _refresh(self, conn: sqlite3.Connection, live: RiskEvent, trig: TriggerState, run_id: str, at: str) -> RiskEvent:
        if live.last_seen_run == run_id:  # the same run evaluated twice (a report re-made): nothing new
            return live
        conn.execute(
            "UPDATE risk_events SET detail = ?, severity = ?, value = ?, threshold = ?, updated_at = ?, last_seen_run = ?,"
            " times_seen = times_seen + 1 WHERE risk_id = ?",
            (trig.headline, severity_of(trig.value, trig.threshold), trig.value, trig.threshold, at, run_id, live.risk_id),
        )
        self._log(conn, live.risk_id, at, "seen", SYSTEM, run_id, trig.headline)
        return self._require(conn, live.risk_id)

    def _close(self, conn: sqlite3.Connection, risk_id: int, by: str, reason: str, run_id: str | None, at: str) -> RiskEvent:
        conn.execute(
            "UPDATE risk_events SET state = 'closed', closed_at = ?, closed_by = ?, close_reason = ?, updated_at = ?"
            " WHERE risk_id = ?",
            (at, by, reason, at, risk_id),
        )
        self._log(conn, risk_id, at, "closed", by, run_id, reason)
        return self._require(conn, risk_id)

    @staticmethod
    def _log(conn: sqlite3.Connection, risk_id: int, at: str, action: str, actor: str, run_id: str | None, note: str | None) -> None:
        conn.execute(
            "INSERT INTO risk_event_log (risk_id, at, action, actor, run_id, note) VALUES (?, ?, ?, ?, ?, ?)",
            (risk_id, at, action, actor, run_id, note),
        )
