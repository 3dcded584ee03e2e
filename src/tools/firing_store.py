"""The scheduler's firing records and leases, in the ledger's SQLite file (``CVM_DB_URL``).

One row per (flow, scheduled time) that a scheduler claimed. The primary key is
what makes a schedule fire once: a claim is an ``INSERT`` that only one process
can win, inside ``BEGIN IMMEDIATE``, so two schedulers over the same due time
cannot both start it. The winner holds a *lease* (owner + expiry, in real time,
renewed while the flow runs). A claim whose lease ran out (unless its owner is
a live process of the same host: only its heartbeat is late), whose owner process
is gone, or that its owner released on SIGTERM (``interrupted``) can be taken
over by another scheduler with a compare-and-set on the owner it saw, which
then resumes the flow run under the same run id.

States: ``running`` (claimed, leased), ``interrupted`` (stopped at a step
boundary, lease released), ``succeeded``/``failed``/``partial`` (the flow run's
final status), ``skipped`` (too late under the ``skip`` policy, never run) and
``error`` (the flow could not start or resume; the note says why).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from cvm.tools.sqlite_store import SQLiteStore

FiringState = Literal["running", "interrupted", "succeeded", "failed", "partial", "skipped", "error"]
OPEN_STATES: tuple[FiringState, ...] = ("running", "interrupted")
"""A firing in one of these is not finished: another scheduler may take it over."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedule_firings (
    flow_id          TEXT NOT NULL,
    scheduled_for    TEXT NOT NULL,
    run_id           TEXT NOT NULL,
    state            TEXT NOT NULL,
    owner            TEXT,
    lease_expires_at TEXT,
    claimed_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    finished_at      TEXT,
    missed           INTEGER NOT NULL DEFAULT 0,
    takeovers        INTEGER NOT NULL DEFAULT 0,
    note             TEXT,
    PRIMARY KEY (flow_id, scheduled_for)
);
"""


def _utc(moment: datetime) -> str:
    """The stored form: UTC ISO text, which sorts in time order."""
    if moment.tzinfo is None:
        raise ValueError("firing times must be timezone-aware")
    return moment.astimezone(timezone.utc).isoformat()


@dataclass(frozen=True)
class Firing:
    """One claimed scheduled time of one flow."""

    flow_id: str
    scheduled_for: str
    run_id: str
    state: FiringState
    owner: str | None
    lease_expires_at: str | None
    claimed_at: str
    updated_at: str
    finished_at: str | None
    missed: int
    takeovers: int
    note: str | None

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _firing(row: sqlite3.Row) -> Firing:
    return Firing(**{k: row[k] for k in row.keys()})


class FiringStore(SQLiteStore):
    """Claims, leases and outcomes of scheduled flow firings."""

    SCHEMA = SCHEMA
    label = "schedule firing store"

    def claim(
        self, flow_id: str, scheduled_for: datetime, run_id: str, owner: str, *, lease_seconds: float, now: datetime,
        missed: int = 0,
    ) -> bool:
        """Claim a due time: True for the one caller that inserted it, False when it was already recorded."""
        at = _utc(now)
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO schedule_firings (flow_id, scheduled_for, run_id, state, owner, lease_expires_at,"
                " claimed_at, updated_at, missed) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                (flow_id, _utc(scheduled_for), run_id, owner, _utc(now + timedelta(seconds=lease_seconds)), at, at, missed),
            )
            return cursor.rowcount == 1

    def record_skipped(self, flow_id: str, scheduled_for: datetime, run_id: str, *, now: datetime, note: str) -> bool:
        """Record a due time that will not run (so the schedule moves past it); False when already recorded."""
        at = _utc(now)
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO schedule_firings (flow_id, scheduled_for, run_id, state, claimed_at, updated_at,"
                " finished_at, note) VALUES (?, ?, ?, 'skipped', ?, ?, ?, ?)",
                (flow_id, _utc(scheduled_for), run_id, at, at, at, note),
            )
            return cursor.rowcount == 1

    def take_over(self, seen: Firing, owner: str, *, lease_seconds: float, now: datetime) -> Firing | None:
        """Take an unfinished firing from the owner the caller saw (compare-and-set); None when someone else moved first."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE schedule_firings SET state = 'running', owner = ?, lease_expires_at = ?, updated_at = ?,"
                " takeovers = takeovers + 1 WHERE flow_id = ? AND scheduled_for = ? AND state = ? AND owner IS ?"
                " AND lease_expires_at IS ?",
                (owner, _utc(now + timedelta(seconds=lease_seconds)), _utc(now), seen.flow_id, seen.scheduled_for,
                 seen.state, seen.owner, seen.lease_expires_at),
            )
        return self.get(seen.flow_id, seen.scheduled_for) if cursor.rowcount == 1 else None

    def renew(self, flow_id: str, scheduled_for: str, owner: str, *, lease_seconds: float, now: datetime) -> bool:
        """Extend the lease of a firing this owner runs; False when it no longer holds it."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE schedule_firings SET lease_expires_at = ?, updated_at = ? WHERE flow_id = ? AND scheduled_for = ?"
                " AND owner = ? AND state = 'running'",
                (_utc(now + timedelta(seconds=lease_seconds)), _utc(now), flow_id, scheduled_for, owner),
            )
            return cursor.rowcount == 1

    def finish(
        self, flow_id: str, scheduled_for: str, owner: str, state: FiringState, *, now: datetime, note: str | None = None,
    ) -> bool:
        """Record how the firing ended (``interrupted`` releases the lease for the next scheduler)."""
        finished = None if state in OPEN_STATES else _utc(now)
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE schedule_firings SET state = ?, lease_expires_at = NULL, updated_at = ?, finished_at = ?,"
                " note = ? WHERE flow_id = ? AND scheduled_for = ? AND owner = ?",
                (state, _utc(now), finished, note, flow_id, scheduled_for, owner),
            )
            return cursor.rowcount == 1

    # -- reading ---------------------------------------------------------------

    def holds(self, flow_id: str, scheduled_for: str, owner: str) -> bool:
        """Whether ``owner`` still runs this firing (no one took it over)."""
        row = self._connection().execute(
            "SELECT 1 FROM schedule_firings WHERE flow_id = ? AND scheduled_for = ? AND owner = ? AND state = 'running'",
            (flow_id, scheduled_for, owner),
        ).fetchone()
        return row is not None

    def get(self, flow_id: str, scheduled_for: str) -> Firing | None:
        row = self._connection().execute(
            "SELECT * FROM schedule_firings WHERE flow_id = ? AND scheduled_for = ?", (flow_id, scheduled_for)
        ).fetchone()
        return _firing(row) if row is not None else None

    def last_scheduled(self, flow_id: str) -> datetime | None:
        """The latest scheduled time recorded for a flow, in any state (the start of its next due window)."""
        row = self._connection().execute(
            "SELECT MAX(scheduled_for) AS latest FROM schedule_firings WHERE flow_id = ?", (flow_id,)
        ).fetchone()
        return datetime.fromisoformat(row["latest"]) if row["latest"] else None

    def unfinished(self, flow_ids: list[str] | None = None) -> list[Firing]:
        """Firings still ``running`` or ``interrupted``, oldest first (candidates for a takeover)."""
        rows = self._connection().execute(
            "SELECT * FROM schedule_firings WHERE state IN ('running', 'interrupted') ORDER BY scheduled_for, flow_id"
        ).fetchall()
        found = [_firing(r) for r in rows]
        return [f for f in found if flow_ids is None or f.flow_id in flow_ids]

    def firings(self, flow_id: str | None = None, limit: int = 50) -> list[Firing]:
        """The most recent firings first."""
        where, params = ("WHERE flow_id = ?", (flow_id,)) if flow_id else ("", ())
        rows = self._connection().execute(
            f"SELECT * FROM schedule_firings {where} ORDER BY scheduled_for DESC, flow_id LIMIT ?", (*params, limit)
        ).fetchall()
        return [_firing(r) for r in rows]
