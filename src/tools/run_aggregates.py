"""One run's numbers, aggregated in SQL inside the ledger's SQLite file: no Python object per customer.

A portfolio report of a million decisions cannot afford to read every decision back
as a result record (51.7 s and 1.4 GB at 50,000 customers before this module). Here
each question is one ``GROUP BY`` over the ledger's tables, read-only: the result
record's fields come out of ``result_json`` with SQLite's JSON functions, so the
report holds a few dozen grouped rows whatever the size of the run, plus the first
few lines of each list it shows.

A stored result with a NaN or an infinity (Python's ``json`` writes the bare tokens,
which SQLite's JSON reader refuses) is grouped in Python, one row at a time, after
``finite_only``, exactly as ``cvm.reporting.collect`` reads it; there are none in
practice, so the cost is one ``json_valid`` per row.

Layers: a tool (SQL lives here); ``cvm.reporting`` turns these rows into the report.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cvm.tools.ledger_models import ApprovalRow
from cvm.tools.results import AUTO_APPROVER, finite_only
from cvm.tools.sqlite_store import SQLiteStore
from cvm.utils.errors import LedgerError

_J = "d.result_json"
_ALTERNATIVE_REFUSED = (
    f"EXISTS (SELECT 1 FROM json_each({_J}, '$.alternatives') a WHERE json_extract(a.value, '$.reason') = 'capacity_exhausted')"
)
_GROUP_SQL = f"""
SELECT d.status, d.treatment_id, json_extract({_J}, '$.channel') AS channel, json_extract({_J}, '$.selector') AS selector,
       r.status AS approval_status,
       COUNT(*) AS customers,
       SUM(COALESCE(json_extract({_J}, '$.expected_value'), 0.0)) AS expected_value,
       SUM(COALESCE(json_array_length({_J}, '$.data_quality'), 0) > 0) AS dq_customers,
       SUM(COALESCE(json_array_length({_J}, '$.data_quality'), 0)) AS dq_issues,
       SUM({_ALTERNATIVE_REFUSED}) AS capacity_rejections,
       SUM(COALESCE(json_extract({_J}, '$.approved_by') = ?, 0)) AS auto_approved
FROM decisions d LEFT JOIN approval_requests r ON r.request_id = json_extract({_J}, '$.approval_request_id')
WHERE d.run_id = ? AND json_valid({_J})
GROUP BY 1, 2, 3, 4, 5
"""
# The latest failure of each customer the run never recorded a decision for: one pass over the audit log
# (grouped), then a primary-key look-up of each entry and of the customer's decision. Parameters: run id, run id.
_OPEN_ERRORS = """
FROM (SELECT customer_id AS cid, MAX(id) AS last_id FROM audit_log
      WHERE run_id = ? AND event = 'decision_error' AND customer_id IS NOT NULL GROUP BY customer_id) latest
JOIN audit_log a ON a.id = latest.last_id
WHERE NOT EXISTS (SELECT 1 FROM decisions d WHERE d.run_id = ? AND d.customer_id = latest.cid)
"""
# The run's approval requests: made by the run, or referenced by one of its decisions (copied once per question).
_COPY_RUN_APPROVALS = """
CREATE TEMP TABLE run_approvals AS SELECT * FROM approval_requests WHERE run_id = ? OR request_id IN (
    SELECT json_extract(result_json, '$.approval_request_id') FROM decisions WHERE run_id = ? AND json_valid(result_json))
"""
_RUN_APPROVALS = "FROM run_approvals WHERE 1"


@dataclass(frozen=True)
class DecisionGroup:
    """Decisions of a run sharing status, treatment, channel, selector and the state of their approval request."""

    status: str
    treatment_id: str | None
    channel: str | None
    selector: str | None
    approval_status: str | None
    """The status of the approval request the decision names (None: it names none)."""
    customers: int
    expected_value: float
    """Sum of the recorded expected values (a missing value counts 0)."""
    data_quality_customers: int
    data_quality_issues: int
    capacity_rejections: int
    """Decisions with an alternative refused for lack of capacity."""
    auto_approved: int


@dataclass(frozen=True)
class OpenError:
    customer_id: str
    error: str
    at: str


@dataclass(frozen=True)
class ApprovalSummary:
    """The run's approval requests: counts, delays and the first lines of each list."""

    by_status: dict[str, int]
    overdue: int
    """Pending past their deadline at ``now``."""
    pending: list[ApprovalRow]
    """The first pending requests, soonest deadline first."""
    decided: list[ApprovalRow]
    """The first decided requests, in the order they were decided."""
    auto_decided_customers: int
    """Customers whose request the testing auto-approver decided and whose decision record does not say so already."""
    mean_hours_to_decision: float | None
    """Approved or rejected requests: mean hours from request to decision (None: none decided)."""
    max_hours_to_decision: float | None
    oldest_pending_hours: float | None
    """Age at ``now`` of the oldest request still pending."""


@dataclass(frozen=True)
class RunSpan:
    """A run the ledger knows: when its decisions were recorded and how many."""

    run_id: str
    first_at: str
    last_at: str
    decisions: int


def _group(row: sqlite3.Row | tuple[Any, ...]) -> DecisionGroup:
    return DecisionGroup(
        status=row[0], treatment_id=row[1], channel=row[2], selector=row[3], approval_status=row[4], customers=int(row[5]),
        expected_value=float(row[6] or 0.0), data_quality_customers=int(row[7] or 0), data_quality_issues=int(row[8] or 0),
        capacity_rejections=int(row[9] or 0), auto_approved=int(row[10] or 0),
    )


def _group_in_python(conn: sqlite3.Connection, run_id: str) -> list[DecisionGroup]:
    """The rows SQLite's JSON reader refuses (a bare NaN or Infinity), grouped one at a time after ``finite_only``."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    rows = conn.execute(
        "SELECT status, treatment_id, result_json FROM decisions WHERE run_id = ? AND NOT json_valid(result_json)", (run_id,)
    )
    for status, treatment_id, body in rows:
        try:
            result = finite_only(json.loads(body))
        except ValueError:
            raise LedgerError(f"a decision of run {run_id} cannot be read (its stored record is not JSON)") from None
        request = result.get("approval_request_id")
        approval = None
        if request:
            found = conn.execute("SELECT status FROM approval_requests WHERE request_id = ?", (request,)).fetchone()
            approval = found[0] if found else None
        key = (status, treatment_id, result.get("channel"), result.get("selector"), approval)
        quality = result.get("data_quality") or []
        refused = any(isinstance(a, dict) and a.get("reason") == "capacity_exhausted" for a in result.get("alternatives") or [])
        add = [1, result.get("expected_value") or 0.0, 1 if quality else 0, len(quality), int(refused),
               int(result.get("approved_by") == AUTO_APPROVER)]
        total = groups.setdefault(key, [0, 0.0, 0, 0, 0, 0])
        groups[key] = [a + b for a, b in zip(total, add)]
    return [_group((*key, *values)) for key, values in groups.items()]


def _approval(row: sqlite3.Row) -> ApprovalRow:
    return ApprovalRow.model_validate(dict(row))


class RunAggregates(SQLiteStore):
    """Read-only SQL over the ledger file (``CVM_DB_URL``); it never writes the ledger's tables."""

    label = "ledger"

    def decision_groups(self, run_id: str) -> list[DecisionGroup]:
        """The run's decisions grouped: a few dozen rows for a million decisions."""
        conn = self._connection()
        rows = conn.execute(_GROUP_SQL, (AUTO_APPROVER, run_id)).fetchall()
        return [_group(r) for r in rows] + _group_in_python(conn, run_id)

    def open_errors(self, run_id: str, limit: int) -> tuple[int, list[OpenError]]:
        """How many customers of the run failed and were never recorded, and the first ``limit`` of them by id."""
        conn = self._connection()
        count = conn.execute(f"SELECT COUNT(*) {_OPEN_ERRORS}", (run_id, run_id)).fetchone()[0]
        rows = conn.execute(
            f"SELECT a.customer_id, a.payload_json, a.at {_OPEN_ERRORS} ORDER BY a.customer_id LIMIT ?", (run_id, run_id, limit)
        )
        errors = []
        for cid, payload, at in rows:
            try:
                error = json.loads(payload).get("error")
            except (ValueError, AttributeError):
                error = None
            errors.append(OpenError(cid, str(error or "unknown error"), at))
        return int(count), errors

    def data_quality(self, run_id: str, limit: int) -> list[tuple[str, tuple[str, ...]]]:
        """The first ``limit`` customers (by id) whose decision recorded data-quality issues, with the issues."""
        rows = self._connection().execute(
            "SELECT customer_id, json_extract(result_json, '$.data_quality') FROM decisions WHERE run_id = ?"
            " AND json_valid(result_json) AND COALESCE(json_array_length(result_json, '$.data_quality'), 0) > 0"
            " ORDER BY customer_id LIMIT ?", (run_id, limit),
        )
        return [(cid, tuple(str(i) for i in json.loads(issues))) for cid, issues in rows]

    def allocation_counts(self, run_id: str) -> dict[tuple[str, str, str], int]:
        """(treatment, day, state) -> the run's allocations in that state."""
        rows = self._connection().execute(
            "SELECT treatment_id, day, state, COUNT(*) FROM allocations WHERE run_id = ? GROUP BY 1, 2, 3", (run_id,)
        )
        return {(t, d, s): int(n) for t, d, s, n in rows}

    def approval_days(self, run_id: str) -> set[str]:
        return {d for (d,) in self._connection().execute("SELECT DISTINCT day FROM approval_requests WHERE run_id = ?", (run_id,))}

    def audit_span(self, run_id: str) -> tuple[str, str] | None:
        """The first and last instants the run wrote to the audit log (None: it wrote nothing)."""
        row = self._connection().execute("SELECT MIN(at), MAX(at) FROM audit_log WHERE run_id = ?", (run_id,)).fetchone()
        return None if row[0] is None else (row[0], row[1])

    def capacity_used(self, days: set[str]) -> dict[tuple[str, str], int]:
        """(treatment, day) -> the day's capacity counter (every run) for the given days."""
        if not days:
            return {}
        marks = ", ".join("?" for _ in days)
        rows = self._connection().execute(f"SELECT treatment_id, day, used FROM capacity_usage WHERE day IN ({marks})", sorted(days))
        return {(t, d): int(u) for t, d, u in rows}

    def approvals(self, run_id: str, now: str, limit: int) -> ApprovalSummary:
        """The run's approval requests, counted, timed and the first ``limit`` of each list (``now``: UTC text)."""
        conn = self._connection()
        conn.execute("DROP TABLE IF EXISTS temp.run_approvals")
        conn.execute(_COPY_RUN_APPROVALS, (run_id, run_id))
        try:
            return self._approval_summary(conn, run_id, now, limit)
        finally:
            conn.execute("DROP TABLE IF EXISTS temp.run_approvals")

    @staticmethod
    def _approval_summary(conn: sqlite3.Connection, run_id: str, now: str, limit: int) -> ApprovalSummary:
        by_status = {s: int(n) for s, n in conn.execute(f"SELECT status, COUNT(*) {_RUN_APPROVALS} GROUP BY status")}
        overdue = conn.execute(f"SELECT COUNT(*) {_RUN_APPROVALS} AND status = 'pending' AND expires_at <= ?", (now,))
        pending = conn.execute(
            f"SELECT * {_RUN_APPROVALS} AND status = 'pending' ORDER BY expires_at, request_id LIMIT ?", (limit,)
        ).fetchall()
        decided = conn.execute(
            f"SELECT * {_RUN_APPROVALS} AND status <> 'pending' ORDER BY COALESCE(decided_at, ''), request_id LIMIT ?", (limit,)
        ).fetchall()
        auto = conn.execute(
            f"SELECT COUNT(DISTINCT customer_id) {_RUN_APPROVALS} AND status <> 'pending' AND decided_by = ? AND NOT EXISTS ("
            "  SELECT 1 FROM decisions d WHERE d.run_id = ? AND d.customer_id = run_approvals.customer_id"
            "  AND json_valid(d.result_json) AND json_extract(d.result_json, '$.approved_by') = ?)",
            (AUTO_APPROVER, run_id, AUTO_APPROVER),
        ).fetchone()[0]
        hours = "(julianday(decided_at) - julianday(requested_at)) * 24.0"
        mean, most = conn.execute(
            f"SELECT AVG({hours}), MAX({hours}) {_RUN_APPROVALS} AND status IN ('approved', 'rejected') AND decided_at IS NOT NULL",
        ).fetchone()
        oldest = conn.execute(
            f"SELECT (julianday(?) - julianday(MIN(requested_at))) * 24.0 {_RUN_APPROVALS} AND status = 'pending'", (now,)
        ).fetchone()[0]
        return ApprovalSummary(
            by_status=by_status, overdue=int(overdue.fetchone()[0]), pending=[_approval(r) for r in pending],
            decided=[_approval(r) for r in decided], auto_decided_customers=int(auto),
            mean_hours_to_decision=None if mean is None else round(float(mean), 2),
            max_hours_to_decision=None if most is None else round(float(most), 2),
            oldest_pending_hours=None if oldest is None else round(max(0.0, float(oldest)), 2),
        )

    def decided_of(self, run_id: str, customer_ids: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
        """customer -> (status when decided, treatment, status of its approval request) for a few customers of the run."""
        if not customer_ids:
            return {}
        marks = ", ".join("?" for _ in customer_ids)
        rows = self._connection().execute(
            f"SELECT d.customer_id, d.status, d.treatment_id, r.status FROM decisions d LEFT JOIN approval_requests r"
            f" ON json_valid({_J}) AND r.request_id = json_extract({_J}, '$.approval_request_id')"
            f" WHERE d.run_id = ? AND d.customer_id IN ({marks})", (run_id, *customer_ids),
        )
        return {cid: (status, tid, approval) for cid, status, tid, approval in rows}

    def customer_id_chunks(self, run_id: str, size: int = 100_000) -> Iterator[list[str]]:
        """Every customer of the run (decided, or failed and never recorded), ``size`` ids at a time."""
        cursor = self._connection().execute(
            f"SELECT customer_id FROM decisions WHERE run_id = ? UNION ALL SELECT a.customer_id {_OPEN_ERRORS}", (run_id, run_id, run_id)
        )
        while chunk := cursor.fetchmany(size):
            yield [cid for (cid,) in chunk]

    def runs(self) -> list[RunSpan]:
        """Every run with a recorded decision, oldest first."""
        rows = self._connection().execute(
            "SELECT run_id, MIN(decided_at), MAX(decided_at), COUNT(*) FROM decisions GROUP BY run_id ORDER BY 2, 1"
        )
        return [RunSpan(r, first, last, int(n)) for r, first, last, n in rows]

    def status_counts(self, run_id: str) -> list[tuple[str, str | None, int]]:
        """The run's recorded decisions as (status, its approval request's status now or None, count), in one grouped query.

        ``cvm runs show`` reads no decision back; a stored record SQLite cannot parse counts without a request.
        Empty when the file holds no decisions table yet (a state database only flows or risks have used).
        """
        conn = self._connection()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"decisions", "approval_requests"} <= tables:
            return []
        rows = conn.execute(
            f"""SELECT COALESCE(NULLIF(d.status, ''), 'unknown'), r.status, COUNT(*)
            FROM decisions d LEFT JOIN approval_requests r
              ON json_valid({_J}) AND r.request_id = json_extract({_J}, '$.approval_request_id')
            WHERE d.run_id = ? GROUP BY 1, 2 ORDER BY 1, 2""",
            (run_id,),
        )
        return [(str(status), approval, int(n)) for status, approval, n in rows]

    def knows(self, run_id: str) -> bool:
        """Whether the ledger holds anything of the run (decisions, failures, allocations or approval requests)."""
        conn = self._connection()
        return any(
            conn.execute(sql, (run_id,)).fetchone()
            for sql in (
                "SELECT 1 FROM decisions WHERE run_id = ? LIMIT 1",
                "SELECT 1 FROM allocations WHERE run_id = ? LIMIT 1",
                "SELECT 1 FROM approval_requests WHERE run_id = ? LIMIT 1",
                "SELECT 1 FROM audit_log WHERE run_id = ? AND event = 'decision_error' LIMIT 1",
            )
        )
