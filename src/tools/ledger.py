"""The ledger: capacity, allocations, decisions and the audit log.

``Ledger`` is the contract every agent, the batch runner, the flows and the reports
depend on; its rows are the typed models of ``cvm.tools.ledger_models``. Only the
composition root (``cvm.runtime``) chooses a backend. ``SQLiteLedger`` keeps
everything in one SQLite file; a second backend (PostgreSQL) implements the same
Protocol and passes the same conformance suite (``tests/tools/ledger_conformance``).

In SQLite, capacity is taken by one conditional UPDATE inside a ``BEGIN IMMEDIATE``
transaction that also checks the idempotency key and the contact cap, so the
check and the take can never be split by another thread or process. The day
rolls over by its date key; nothing is reset in place. The audit log is
append-only (triggers refuse UPDATE and DELETE).

Size: the protocol and its SQLite implementation, one method per guarantee, each guarantee's SQL
beside its transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, overload

from cvm.tools.ledger_models import (
    AllocationRow,
    AllocationState,
    ApprovalRow,
    ApprovalStatus,
    AuditEntry,
    CapacityTake,
    LiveContact,
    NewAllocation,
    NewApprovalRequest,
    NewDecision,
    StoredDecision,
)
from cvm.tools.sqlite_store import SQLiteStore
from cvm.utils.errors import ApprovalError, LedgerError

__all__ = [
    "AllocationOutcome", "AllocationRequest", "AllocationRow", "AllocationState", "ApprovalHold", "ApprovalRow", "ApprovalStatus",
    "AuditEntry", "BatchCommit", "CapacityTake", "Ledger", "LiveContact", "NewAllocation", "NewApprovalRequest", "NewDecision",
    "SQLiteLedger", "StoredDecision", "SYSTEM_WITHDRAWERS", "WITHDRAWN_BY", "decision_time_problem", "utc_text",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS capacity_usage (
    treatment_id TEXT NOT NULL,
    day          TEXT NOT NULL,
    used         INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (treatment_id, day)
);
CREATE TABLE IF NOT EXISTS allocations (
    idempotency_key TEXT PRIMARY KEY,
    run_id          TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    treatment_id    TEXT NOT NULL,
    channel         TEXT NOT NULL,
    purpose         TEXT NOT NULL,
    day             TEXT NOT NULL,
    contact_at      TEXT NOT NULL,
    scheduled_for   TEXT,
    created_at      TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'allocated'
);
CREATE INDEX IF NOT EXISTS allocations_by_customer ON allocations (customer_id, purpose, contact_at);
CREATE TABLE IF NOT EXISTS decisions (
    run_id       TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    status       TEXT NOT NULL,
    treatment_id TEXT,
    result_json  TEXT NOT NULL,
    input_digest TEXT NOT NULL,
    decided_at   TEXT NOT NULL,
    PRIMARY KEY (run_id, customer_id)
);
CREATE TABLE IF NOT EXISTS approval_requests (
    request_id      TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    customer_id     TEXT NOT NULL,
    treatment_id    TEXT NOT NULL,
    day             TEXT NOT NULL,
    rule            TEXT NOT NULL,
    explanation     TEXT NOT NULL,
    confidence      REAL,
    expected_value  REAL,
    priority        INTEGER NOT NULL,
    requested_at    TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    decided_by      TEXT,
    decided_at      TEXT,
    reason          TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_pending_request ON approval_requests (customer_id, treatment_id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,
    event        TEXT NOT NULL,
    run_id       TEXT,
    customer_id  TEXT,
    treatment_id TEXT,
    input_digest TEXT,
    payload_json TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"""


@dataclass(frozen=True)
class BatchCommit:
    """Rows of a whole batch run, written in one transaction (see ``Ledger.commit_batch``)."""

    run_id: str
    day: str
    at: datetime
    capacity: dict[str, CapacityTake]
    """Treatment -> units taken by this run and the day's maximum."""
    allocations: list[NewAllocation]
    approvals: list[NewApprovalRequest]
    decisions: Iterable[NewDecision]
    """May be a generator: rows are streamed into the transaction."""
    summary: dict[str, Any]
    daily_cap: int | None = None
    """At most this many live contacts per customer per day (None: no daily cap)."""
    daily_windows: tuple[tuple[str, str, str], ...] = ()
    """(customer, day start, day end) in UTC text for each new allocation the daily cap may refuse."""


@dataclass(frozen=True)
class ApprovalHold:
    """The approval request created together with a capacity hold."""

    request_id: str
    rule: str
    explanation: str
    confidence: float | None
    expected_value: float | None
    priority: int
    requested_at: datetime
    expires_at: datetime
    max_pending: int | None = None
    """At most this many pending requests for the treatment (None: no limit)."""


@dataclass(frozen=True)
class AllocationRequest:
    """Everything the ledger needs to take one unit of capacity for one customer."""

    idempotency_key: str
    run_id: str
    customer_id: str
    treatment_id: str
    channel: str
    purpose: str
    day: str
    max_per_day: int | None
    contact_at: datetime
    """When the contact happens (the scheduled time when do-not-disturb moved it)."""
    contact_window_start: datetime
    """Contacts for the same purpose after this instant count against ``contact_cap``."""
    contact_cap: int | None
    scheduled_for: datetime | None = None
    repeat_window_start: datetime | None = None
    """When set, the same treatment given to the customer after this instant blocks the request."""
    daily_cap: int | None = None
    """At most this many live contacts for the customer within ``contact_day`` (None: the cap does not apply)."""
    contact_day: tuple[datetime, datetime] | None = None
    """[start, end) of the local day the contact happens on; required with ``daily_cap``."""
    approval: ApprovalHold | None = None
    """When set, the capacity is held (not yet given) for a human approval, recorded in the same transaction."""


@dataclass(frozen=True)
class AllocationOutcome:
    """What happened to an allocation request."""

    status: Literal[
        "allocated", "held", "duplicate", "capacity_exhausted", "contact_limit", "daily_contact_limit", "repeat_limit",
        "pending_approval_limit",
    ]
    treatment_id: str
    """For a duplicate: the treatment the earlier request allocated."""
    scheduled_for: str | None = None

    request_id: str | None = None
    """For a hold (or a duplicate of one): the approval request that holds the capacity."""
    contacts: int | None = None
    """For a daily contact limit: the customer's live contacts already on that day."""

    @property
    def allocated(self) -> bool:
        """Capacity is taken for the customer (held for approval counts)."""
        return self.status in ("allocated", "held", "duplicate")


class Ledger(Protocol):
    """The state store every agent shares: SQLite here (``SQLiteLedger``), PostgreSQL later, one contract.

    Every backend passes the conformance suite in ``tests/tools/ledger_conformance``: each write is
    one transaction, capacity is taken by one atomic check-and-take, safe across threads and
    processes, and the audit log is append-only. Instants come back as UTC ISO text.
    """

    # -- capacity and allocations (the per-customer path) --------------------------

    def allocate(self, request: AllocationRequest) -> AllocationOutcome:
        """Take (or hold for approval) one unit of the treatment's capacity for the customer, at most once per key."""
        ...

    def used(self, treatment_id: str, day: str) -> int:
        """Units of the treatment's capacity used on the day (0 when none)."""
        ...

    def contacts_since(self, customer_id: str, purpose: str, since: datetime) -> int:
        """The customer's live contacts for the purpose after ``since`` (scheduled ones included)."""
        ...

    def contacts_between(self, customer_id: str, start: datetime, end: datetime) -> int:
        """The customer's live contacts of any purpose in [start, end): the daily cap's count."""
        ...

    def given_since(self, customer_id: str, treatment_id: str, since: datetime) -> int:
        """How often the treatment was given to the customer after ``since`` (live allocations only)."""
        ...

    def allocation_for(self, idempotency_key: str) -> AllocationRow | None: ...

    def allocations(self, customer_id: str | None = None, run_id: str | None = None, limit: int = 1000) -> list[AllocationRow]:
        """Allocations matching the filters, oldest first (by ``created_at``, then key), at most ``limit``."""
        ...

    def reset_usage(self, day: str, treatment_id: str | None, at: datetime) -> int:
        """Forget the day's capacity use of one treatment (None: all); audited; returns the counters cleared."""
        ...

    # -- decisions and the audit log -----------------------------------------------

    def record_decision(self, run_id: str, customer_id: str, result: dict[str, Any], input_digest: str, at: datetime) -> bool:
        """Store the decision once per (run, customer) and audit it; False when it was already stored."""
        ...

    def decision(self, run_id: str, customer_id: str) -> StoredDecision | None: ...

    def withdraw_decision(self, run_id: str, customer_id: str, result: dict[str, Any], reason: str, at: datetime) -> bool:
        """Replace a contact decision by its withdrawal and release what it took, once; False when already done."""
        ...

    def audit(self, event: str, payload: dict[str, Any], at: datetime, **keys: str | None) -> None:
        """Append an entry (``keys``: ``run_id``, ``customer_id``, ``treatment_id``, ``input_digest``)."""
        ...

    def audit_entries(self, customer_id: str | None = None, run_id: str | None = None, event: str | None = None) -> list[AuditEntry]:
        """Entries matching the filters, in the order they were written."""
        ...

    # -- approvals -------------------------------------------------------------------

    def decide_approval(self, request_id: str, status: ApprovalStatus, by: str, reason: str | None, at: datetime) -> ApprovalRow:
        """Approve, reject or expire a pending request (``ApprovalError`` when it cannot be); the request as decided."""
        ...

    def expire_approvals(self, now: datetime) -> list[str]:
        """Expire every pending request past its deadline, releasing its capacity; returns their ids."""
        ...

    def approval(self, request_id: str) -> ApprovalRow | None: ...

    def approvals(
        self, status: ApprovalStatus | None = None, customer_id: str | None = None, decided_since: datetime | None = None,
    ) -> list[ApprovalRow]:
        """Requests matching the filters (``decided_since``: decided after that moment), by priority, then request time,
        then id."""
        ...

    # -- the batch path: bulk reads and one transaction for a whole run ----------------

    def live_contacts_since(self, since: datetime, customer_id: str | None = None) -> list[LiveContact]:
        """Every allocation that still counts, with its contact after ``since`` (of one customer, when given)."""
        ...

    def pending_by_customer(self, now: datetime) -> dict[str, ApprovalRow]:
        """Each customer's pending request not yet expired at ``now`` (the most recent, if several)."""
        ...

    def decided_in_run(self, run_id: str) -> dict[str, StoredDecision]:
        """The decisions a run already recorded, by customer."""
        ...

    def commit_batch(self, batch: BatchCommit) -> None:
        """A whole batch run in one transaction; ``LedgerError`` and nothing written when another writer got in between."""
        ...

    def close(self) -> None:
        """Release what the calling thread holds (its connection); the ledger stays usable."""
        ...


# Allocations that still count: given, or held for approval (a released hold counts for nothing).
_LIVE = "state != 'released'"

def decision_time_problem(request_id: str, requested_at: str, expires_at: str, at: datetime) -> str | None:
    """Why a pending request cannot be decided at ``at``, or None: a person decides between the request and its
    deadline, not before it existed (a clock set back with ``--as-of``), nor after it expired (even if no expiry
    sweep has marked it yet)."""
    if at < datetime.fromisoformat(requested_at):
        return (f"approval request {request_id} was opened at {requested_at}; a decision at {utc_text(at)} would come"
                " before it (check --as-of/CVM_NOW); nothing changed")
    if at >= datetime.fromisoformat(expires_at):
        return f"approval request {request_id} expired at {expires_at}; it can no longer be decided; nothing changed"
    return None


WITHDRAWN_BY = "system (consent or contact re-check)"
"""Who closes a pending approval request the system withdrew: its decision's replay, a later run or an approval
found that today's consent or contact policy no longer allows it."""
SYSTEM_WITHDRAWERS = frozenset({WITHDRAWN_BY, "system (replay re-check)"})
"""Every name a system withdrawal was recorded under (the second by versions before 2026-12), never an approver."""


def _where(**equals: str | None) -> tuple[str, list[str]]:
    """A WHERE clause matching every given (non-None) column exactly."""
    used = {column: value for column, value in equals.items() if value is not None}
    clause = " AND ".join(f"{column} = ?" for column in used)
    return (f"WHERE {clause}" if clause else ""), list(used.values())


@overload
def utc_text(moment: datetime) -> str: ...
@overload
def utc_text(moment: None) -> None: ...
@overload
def utc_text(moment: datetime | None) -> str | None: ...
def utc_text(moment: datetime | None) -> str | None:
    """UTC ISO text, so that stored instants compare correctly as strings."""
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def _columns(row: type[tuple]) -> str:
    """``(a, b, c) VALUES (?, ?, ?)`` for a row type whose fields are the table's columns."""
    fields: tuple[str, ...] = row._fields  # type: ignore[attr-defined]
    return f"({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))})"


def _audit_entry(row: sqlite3.Row) -> AuditEntry:
    entry = dict(row)
    entry["payload"] = json.loads(entry.pop("payload_json"))
    return AuditEntry.model_validate(entry)


def _stored_decision(row: sqlite3.Row) -> StoredDecision:
    stored = dict(row)
    stored["result"] = json.loads(stored.pop("result_json"))
    return StoredDecision.model_validate(stored)


class SQLiteLedger(SQLiteStore, Ledger):
    """The ledger in one SQLite file in WAL mode, one connection per thread."""

    SCHEMA = SCHEMA
    label = "ledger"

    def migrate(self, conn: sqlite3.Connection) -> None:
        columns = {row["name"] for row in conn.execute("PRAGMA table_info(allocations)")}
        if "state" not in columns:  # a ledger written by an earlier version
            conn.execute("ALTER TABLE allocations ADD COLUMN state TEXT NOT NULL DEFAULT 'allocated'")

    def allocate(self, request: AllocationRequest) -> AllocationOutcome:
        """Take one unit of the treatment's capacity for the customer, at most once per key."""
        with self._transaction() as conn:
            existing = conn.execute(
                "SELECT a.treatment_id, a.scheduled_for, r.request_id FROM allocations a"
                " LEFT JOIN approval_requests r ON r.idempotency_key = a.idempotency_key WHERE a.idempotency_key = ?",
                (request.idempotency_key,),
            ).fetchone()
            if existing is not None:
                return AllocationOutcome("duplicate", existing["treatment_id"], existing["scheduled_for"], existing["request_id"])
            if request.contact_cap is not None:
                contacts = conn.execute(
                    "SELECT COUNT(*) FROM allocations WHERE customer_id = ? AND purpose = ? AND contact_at > ?"
                    f" AND {_LIVE}",
                    (request.customer_id, request.purpose, utc_text(request.contact_window_start)),
                ).fetchone()[0]
                if contacts >= request.contact_cap:
                    return AllocationOutcome("contact_limit", request.treatment_id)
            if request.daily_cap is not None and request.contact_day is not None:
                today = self._contacts_between(conn, request.customer_id, *request.contact_day)
                if today >= request.daily_cap:
                    return AllocationOutcome("daily_contact_limit", request.treatment_id, contacts=today)
            if request.repeat_window_start is not None and self._given_since(
                conn, request.customer_id, request.treatment_id, request.repeat_window_start
            ):
                return AllocationOutcome("repeat_limit", request.treatment_id)
            hold = request.approval
            if hold is not None and conn.execute(
                "SELECT 1 FROM approval_requests WHERE customer_id = ? AND treatment_id = ? AND status = 'pending'",
                (request.customer_id, request.treatment_id),
            ).fetchone():
                return AllocationOutcome("pending_approval_limit", request.treatment_id)
            if hold is not None and hold.max_pending is not None:
                pending = conn.execute(
                    "SELECT COUNT(*) FROM approval_requests WHERE treatment_id = ? AND status = 'pending'",
                    (request.treatment_id,),
                ).fetchone()[0]
                if pending >= hold.max_pending:
                    return AllocationOutcome("pending_approval_limit", request.treatment_id)
            if request.max_per_day is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO capacity_usage (treatment_id, day, used) VALUES (?, ?, 0)",
                    (request.treatment_id, request.day),
                )
                taken = conn.execute(
                    "UPDATE capacity_usage SET used = used + 1 WHERE treatment_id = ? AND day = ? AND used < ?",
                    (request.treatment_id, request.day, request.max_per_day),
                ).rowcount
                if taken != 1:
                    return AllocationOutcome("capacity_exhausted", request.treatment_id)
            else:
                conn.execute(
                    "INSERT INTO capacity_usage (treatment_id, day, used) VALUES (?, ?, 1) "
                    "ON CONFLICT (treatment_id, day) DO UPDATE SET used = used + 1",
                    (request.treatment_id, request.day),
                )
            conn.execute(
                "INSERT INTO allocations (idempotency_key, run_id, customer_id, treatment_id, channel, purpose, day,"
                " contact_at, scheduled_for, created_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.idempotency_key,
                    request.run_id,
                    request.customer_id,
                    request.treatment_id,
                    request.channel,
                    request.purpose,
                    request.day,
                    utc_text(request.contact_at),
                    utc_text(request.scheduled_for),
                    utc_text(datetime.now(timezone.utc)),
                    "held" if hold else "allocated",
                ),
            )
            if hold is None:
                return AllocationOutcome("allocated", request.treatment_id, utc_text(request.scheduled_for))
            conn.execute(
                "INSERT INTO approval_requests (request_id, idempotency_key, run_id, customer_id, treatment_id, day, rule,"
                " explanation, confidence, expected_value, priority, requested_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    hold.request_id, request.idempotency_key, request.run_id, request.customer_id, request.treatment_id,
                    request.day, hold.rule, hold.explanation, hold.confidence, hold.expected_value, hold.priority,
                    utc_text(hold.requested_at), utc_text(hold.expires_at),
                ),
            )
            self._append_audit(
                conn, "approval_requested", {"request_id": hold.request_id, "rule": hold.rule}, hold.requested_at,
                run_id=request.run_id, customer_id=request.customer_id, treatment_id=request.treatment_id,
            )
        return AllocationOutcome("held", request.treatment_id, utc_text(request.scheduled_for), hold.request_id)

    @staticmethod
    def _given_since(conn: sqlite3.Connection, customer_id: str, treatment_id: str, since: datetime) -> int:
        return conn.execute(
            f"SELECT COUNT(*) FROM allocations WHERE customer_id = ? AND treatment_id = ? AND contact_at > ? AND {_LIVE}",
            (customer_id, treatment_id, utc_text(since)),
        ).fetchone()[0]

    @staticmethod
    def _contacts_between(conn: sqlite3.Connection, customer_id: str, start: datetime, end: datetime) -> int:
        return conn.execute(
            f"SELECT COUNT(*) FROM allocations WHERE customer_id = ? AND contact_at >= ? AND contact_at < ? AND {_LIVE}",
            (customer_id, utc_text(start), utc_text(end)),
        ).fetchone()[0]

    def contacts_between(self, customer_id: str, start: datetime, end: datetime) -> int:
        """The customer's contacts (any purpose, given or held) happening in [start, end): the daily cap's count."""
        return self._contacts_between(self._connection(), customer_id, start, end)

    def given_since(self, customer_id: str, treatment_id: str, since: datetime) -> int:
        """How often the treatment was given to the customer after ``since`` (scheduled ones included)."""
        return self._given_since(self._connection(), customer_id, treatment_id, since)

    def used(self, treatment_id: str, day: str) -> int:
        row = self._connection().execute(
            "SELECT used FROM capacity_usage WHERE treatment_id = ? AND day = ?", (treatment_id, day)
        ).fetchone()
        return row["used"] if row else 0

    def contacts_since(self, customer_id: str, purpose: str, since: datetime) -> int:
        """Contacts for this purpose after ``since``, scheduled future ones included."""
        return self._connection().execute(
            f"SELECT COUNT(*) FROM allocations WHERE customer_id = ? AND purpose = ? AND contact_at > ? AND {_LIVE}",
            (customer_id, purpose, utc_text(since)),
        ).fetchone()[0]

    def allocation_for(self, idempotency_key: str) -> AllocationRow | None:
        row = self._connection().execute("SELECT * FROM allocations WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
        return AllocationRow.model_validate(dict(row)) if row else None

    def allocations(self, customer_id: str | None = None, run_id: str | None = None, limit: int = 1000) -> list[AllocationRow]:
        where, params = _where(customer_id=customer_id, run_id=run_id)
        rows = self._connection().execute(
            f"SELECT * FROM allocations {where} ORDER BY created_at, idempotency_key LIMIT ?", (*params, limit)
        ).fetchall()
        return [AllocationRow.model_validate(dict(r)) for r in rows]

    def reset_usage(self, day: str, treatment_id: str | None, at: datetime) -> int:
        """Forget the day's capacity use (an audited operator action); allocations stay recorded."""
        with self._transaction() as conn:
            if treatment_id is None:
                cleared = conn.execute("DELETE FROM capacity_usage WHERE day = ?", (day,)).rowcount
            else:
                cleared = conn.execute(
                    "DELETE FROM capacity_usage WHERE day = ? AND treatment_id = ?", (day, treatment_id)
                ).rowcount
            self._append_audit(conn, "capacity_reset", {"day": day, "treatment_id": treatment_id, "rows": cleared}, at)
        return cleared

    def record_decision(self, run_id: str, customer_id: str, result: dict[str, Any], input_digest: str, at: datetime) -> bool:
        """Store the decision once per (run, customer) and audit it; False when it was already stored."""
        body = json.dumps(result, sort_keys=True, default=str)
        with self._transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO decisions (run_id, customer_id, status, treatment_id, result_json, input_digest, decided_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, customer_id, result.get("status"), result.get("selected_treatment"), body, input_digest, utc_text(at)),
            ).rowcount
            if inserted:
                self._append_audit(
                    conn, "decision", result, at,
                    run_id=run_id, customer_id=customer_id,
                    treatment_id=result.get("selected_treatment"), input_digest=input_digest,
                )
        return bool(inserted)

    def decision(self, run_id: str, customer_id: str) -> StoredDecision | None:
        row = self._connection().execute(
            "SELECT * FROM decisions WHERE run_id = ? AND customer_id = ?", (run_id, customer_id)
        ).fetchone()
        return _stored_decision(row) if row else None

    def withdraw_decision(self, run_id: str, customer_id: str, result: dict[str, Any], reason: str, at: datetime) -> bool:
        """Replace a stored contact decision by its withdrawal and release what it took; False when already done.

        One transaction, guarded by the stored status: of two replays racing, exactly one
        releases the capacity, closes a pending approval request and writes the audit entry.
        """
        with self._transaction() as conn:
            changed = conn.execute(
                "UPDATE decisions SET status = ?, treatment_id = ?, result_json = ?"
                " WHERE run_id = ? AND customer_id = ? AND status IN ('success', 'pending_approval')",
                (result.get("status"), result.get("selected_treatment"), json.dumps(result, sort_keys=True, default=str),
                 run_id, customer_id),
            ).rowcount
            if changed != 1:
                return False
            taken = conn.execute(
                f"SELECT idempotency_key, treatment_id, day FROM allocations WHERE run_id = ? AND customer_id = ? AND {_LIVE}",
                (run_id, customer_id),
            ).fetchall()
            for row in taken:
                self._release(conn, row["idempotency_key"], row["treatment_id"], row["day"])
            conn.execute(
                "UPDATE approval_requests SET status = 'rejected', decided_by = ?, decided_at = ?, reason = ?"
                " WHERE run_id = ? AND customer_id = ? AND status = 'pending'",
                (WITHDRAWN_BY, utc_text(at), reason, run_id, customer_id),
            )
            self._append_audit(
                conn, "decision_withdrawn", {"reason": reason, "released": [r["treatment_id"] for r in taken]}, at,
                run_id=run_id, customer_id=customer_id,
            )
        return True

    @staticmethod
    def _release(conn: sqlite3.Connection, idempotency_key: str, treatment_id: str, day: str) -> None:
        """An allocation stops counting and gives its unit of the day's capacity back."""
        conn.execute("UPDATE allocations SET state = 'released' WHERE idempotency_key = ?", (idempotency_key,))
        conn.execute(
            "UPDATE capacity_usage SET used = used - 1 WHERE treatment_id = ? AND day = ? AND used > 0", (treatment_id, day)
        )

    def decide_approval(self, request_id: str, status: ApprovalStatus, by: str, reason: str | None, at: datetime) -> ApprovalRow:
        """Approve (the hold becomes an allocation), reject or expire (the capacity is released) a pending request.

        One conditional UPDATE decides who wins when two approvers race; the loser gets
        ``ApprovalError`` and nothing changes.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM approval_requests WHERE request_id = ?", (request_id,)).fetchone()
            if row is None:
                raise ApprovalError(f"no approval request {request_id!r}; see 'cvm approvals list'")
            if row["status"] == "expired":
                raise ApprovalError(f"approval request {request_id} expired at {row['expires_at']} before anyone decided it; nothing changed")
            if row["status"] == "pending" and status != "expired":
                self._check_decided_in_time(row, at)
            decided = conn.execute(
                "UPDATE approval_requests SET status = ?, decided_by = ?, decided_at = ?, reason = ?"
                " WHERE request_id = ? AND status = 'pending'",
                (status, by, utc_text(at), reason, request_id),
            ).rowcount
            if decided != 1:
                raise ApprovalError(
                    f"approval request {request_id} was already {row['status']} by {row['decided_by']} at {row['decided_at']};"
                    " nothing changed"
                )
            if status == "approved":
                conn.execute("UPDATE allocations SET state = 'allocated' WHERE idempotency_key = ?", (row["idempotency_key"],))
            else:
                conn.execute("UPDATE allocations SET state = 'released' WHERE idempotency_key = ?", (row["idempotency_key"],))
                conn.execute(
                    "UPDATE capacity_usage SET used = used - 1 WHERE treatment_id = ? AND day = ? AND used > 0",
                    (row["treatment_id"], row["day"]),
                )
            self._append_audit(
                conn, f"approval_{status}", {"request_id": request_id, "by": by, "reason": reason}, at,
                run_id=row["run_id"], customer_id=row["customer_id"], treatment_id=row["treatment_id"],
            )
            return ApprovalRow.model_validate(
                dict(conn.execute("SELECT * FROM approval_requests WHERE request_id = ?", (request_id,)).fetchone())
            )

    @staticmethod
    def _check_decided_in_time(row: sqlite3.Row, at: datetime) -> None:
        problem = decision_time_problem(row["request_id"], row["requested_at"], row["expires_at"], at)
        if problem is not None:
            raise ApprovalError(problem)

    def expire_approvals(self, now: datetime) -> list[str]:
        """Expire every pending request past its deadline, releasing its capacity; returns their ids."""
        due = [
            r["request_id"]
            for r in self._connection().execute(
                "SELECT request_id FROM approval_requests WHERE status = 'pending' AND expires_at <= ?", (utc_text(now),)
            )
        ]
        expired = []
        for request_id in due:
            try:
                self.decide_approval(request_id, "expired", "system (expiry)", "not decided before it expired", now)
                expired.append(request_id)
            except ApprovalError:  # decided by someone else in the meantime
                continue
        return expired

    # -- the batch path: bulk reads and one transaction for a whole run ----------

    def live_contacts_since(self, since: datetime, customer_id: str | None = None) -> list[LiveContact]:
        """(customer, purpose, treatment, contact_at) of every allocation that still counts, after ``since``."""
        one = "" if customer_id is None else " AND customer_id = ?"
        params = (utc_text(since),) if customer_id is None else (utc_text(since), customer_id)
        return [
            LiveContact(r[0], r[1], r[2], r[3])
            for r in self._connection().execute(
                f"SELECT customer_id, purpose, treatment_id, contact_at FROM allocations WHERE contact_at > ? AND {_LIVE}{one}", params,
            )
        ]

    def pending_by_customer(self, now: datetime) -> dict[str, ApprovalRow]:
        """Each customer's pending approval request not yet expired at ``now`` (the most recent, if several).

        Dry runs do not expire requests in the ledger, so the deadline is applied here as well.
        """
        rows = self._connection().execute(
            "SELECT * FROM approval_requests WHERE status = 'pending' AND expires_at > ? ORDER BY requested_at", (utc_text(now),)
        ).fetchall()
        return {r["customer_id"]: ApprovalRow.model_validate(dict(r)) for r in rows}

    def decided_in_run(self, run_id: str) -> dict[str, StoredDecision]:
        """The decisions a run already recorded, by customer (a re-run returns them unchanged)."""
        rows = self._connection().execute("SELECT * FROM decisions WHERE run_id = ?", (run_id,))
        return {r["customer_id"]: _stored_decision(r) for r in rows}

    def commit_batch(self, batch: BatchCommit) -> None:
        """Every allocation, hold, approval request and decision of a batch run, in one transaction.

        Capacity is checked again inside the transaction: if another process took
        slots since the run read them, nothing is written and the run can simply be repeated.
        """
        with self._transaction() as conn:
            for treatment_id, (taken, max_per_day) in batch.capacity.items():
                conn.execute(
                    "INSERT OR IGNORE INTO capacity_usage (treatment_id, day, used) VALUES (?, ?, 0)", (treatment_id, batch.day)
                )
                updated = conn.execute(
                    "UPDATE capacity_usage SET used = used + ? WHERE treatment_id = ? AND day = ?"
                    + (" AND used + ? <= ?" if max_per_day is not None else ""),
                    (taken, treatment_id, batch.day, *((taken, max_per_day) if max_per_day is not None else ())),
                ).rowcount
                if updated != 1:
                    raise LedgerError(
                        f"capacity for {treatment_id} on {batch.day} changed while the batch ran; nothing was written, run it again"
                    )
            try:
                self._insert_batch_rows(conn, batch)
            except sqlite3.IntegrityError as exc:
                raise LedgerError(
                    f"another process decided some of these customers while the batch ran ({exc}); nothing was written, run it again"
                ) from None
            if batch.daily_cap is not None and self._over_daily_cap(conn, batch.daily_windows, batch.daily_cap):
                raise LedgerError(
                    "another process contacted some of these customers while the batch ran (daily contact cap);"
                    " nothing was written, run it again"
                )
            self._append_audit(conn, "batch_committed", batch.summary, batch.at, run_id=batch.run_id)

    @staticmethod
    def _over_daily_cap(conn: sqlite3.Connection, windows: tuple[tuple[str, str, str], ...], cap: int) -> bool:
        """Inside the batch transaction, with its rows inserted: does any customer now exceed the daily cap?"""
        if not windows:
            return False
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS batch_contact_days (customer_id TEXT, day_start TEXT, day_end TEXT)")
        conn.execute("DELETE FROM batch_contact_days")
        conn.executemany("INSERT INTO batch_contact_days VALUES (?, ?, ?)", windows)
        return conn.execute(
            "SELECT 1 FROM batch_contact_days d JOIN allocations a ON a.customer_id = d.customer_id"
            " AND a.contact_at >= d.day_start AND a.contact_at < d.day_end AND a.state != 'released'"
            " GROUP BY d.customer_id, d.day_start HAVING COUNT(*) > ? LIMIT 1",
            (cap,),
        ).fetchone() is not None

    @staticmethod
    def _insert_batch_rows(conn: sqlite3.Connection, batch: BatchCommit) -> None:
        conn.executemany(f"INSERT INTO allocations {_columns(NewAllocation)}", batch.allocations)
        conn.executemany(f"INSERT INTO approval_requests {_columns(NewApprovalRequest)}", batch.approvals)
        conn.executemany(f"INSERT INTO decisions {_columns(NewDecision)}", batch.decisions)

    def approval(self, request_id: str) -> ApprovalRow | None:
        row = self._connection().execute("SELECT * FROM approval_requests WHERE request_id = ?", (request_id,)).fetchone()
        return ApprovalRow.model_validate(dict(row)) if row else None

    def approvals(
        self, status: ApprovalStatus | None = None, customer_id: str | None = None, decided_since: datetime | None = None,
    ) -> list[ApprovalRow]:
        where, params = _where(status=status, customer_id=customer_id)
        if decided_since is not None:
            where = f"{where} AND decided_at > ?" if where else "WHERE decided_at > ?"
            params.append(utc_text(decided_since))
        rows = self._connection().execute(
            f"SELECT * FROM approval_requests {where} ORDER BY priority, requested_at, request_id", params
        ).fetchall()
        return [ApprovalRow.model_validate(dict(r)) for r in rows]

    def audit(self, event: str, payload: dict[str, Any], at: datetime, **keys: str | None) -> None:
        with self._transaction() as conn:
            self._append_audit(conn, event, payload, at, **keys)

    @staticmethod
    def _append_audit(conn: sqlite3.Connection, event: str, payload: dict[str, Any], at: datetime, **keys: str | None) -> None:
        conn.execute(
            "INSERT INTO audit_log (at, event, run_id, customer_id, treatment_id, input_digest, payload_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                utc_text(at), event, keys.get("run_id"), keys.get("customer_id"), keys.get("treatment_id"),
                keys.get("input_digest"), json.dumps(payload, sort_keys=True, default=str),
            ),
        )

    def audit_entries(self, customer_id: str | None = None, run_id: str | None = None, event: str | None = None) -> list[AuditEntry]:
        where, params = _where(customer_id=customer_id, run_id=run_id, event=event)
        rows = self._connection().execute(f"SELECT * FROM audit_log {where} ORDER BY id", params).fetchall()
        return [_audit_entry(r) for r in rows]
