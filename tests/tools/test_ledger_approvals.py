"""The ledger's approval requests: holds, decisions, expiry, the one-pending rule, and races between OS processes.

Every test uses a real SQLite file in the test's temp dir; the race tests start
real OS processes (``python -c``) that wait for a "go" file and then decide together.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cvm.tools.ledger import AllocationRequest, ApprovalHold, SQLiteLedger
from cvm.utils.errors import ApprovalError, CVMError

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
DAY = "2026-11-23"
TREATMENT = "early_upgrade"
TABLES = ("capacity_usage", "allocations", "decisions", "approval_requests", "audit_log")


def hold(request_id: str, *, max_pending: int | None = None, expires_in: timedelta = timedelta(hours=24)) -> ApprovalHold:
    return ApprovalHold(
        request_id=request_id, rule="cost per contact 60.00 is at or above 50.00", explanation="test",
        confidence=0.9, expected_value=100.0, priority=2, requested_at=NOW, expires_at=NOW + expires_in,
        max_pending=max_pending,
    )


def held_request(
    key: str, customer_id: str, request_id: str | None, *, treatment_id: str = TREATMENT, max_per_day: int | None = 50,
    max_pending: int | None = None, contact_cap: int | None = None, run_id: str = "run-1",
) -> AllocationRequest:
    """An allocation request that holds capacity for approval (no hold when ``request_id`` is None)."""
    return AllocationRequest(
        idempotency_key=key, run_id=run_id, customer_id=customer_id, treatment_id=treatment_id, channel="email",
        purpose="marketing", day=DAY, max_per_day=max_per_day, contact_at=NOW, contact_window_start=NOW - timedelta(days=7),
        contact_cap=contact_cap, approval=hold(request_id, max_pending=max_pending) if request_id else None,
    )


def snapshot(path: Path) -> dict[str, list[tuple]]:
    with closing(sqlite3.connect(path)) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


@pytest.fixture
def ledger(db: Path) -> SQLiteLedger:
    led = SQLiteLedger(db)
    yield led
    led.close()


class TestHoldAndDecide:
    """A hold takes capacity at once; approve keeps it, reject and expire give it back."""

    def test_hold_takes_capacity_and_opens_a_pending_request(self, ledger: SQLiteLedger) -> None:
        outcome = ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        assert (outcome.status, outcome.request_id, outcome.allocated) == ("held", "apr-1", True)
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.allocation_for("run-1:C1")["state"] == "held"
        row = ledger.approval("apr-1")
        assert (row["status"], row["customer_id"], row["idempotency_key"]) == ("pending", "C1", "run-1:C1")
        assert row["expires_at"] == (NOW + timedelta(hours=24)).isoformat()
        assert [e["event"] for e in ledger.audit_entries()] == ["approval_requested"]

    def test_same_key_again_is_a_duplicate_of_the_hold(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        again = ledger.allocate(held_request("run-1:C1", "C1", "apr-2"))
        assert (again.status, again.request_id) == ("duplicate", "apr-1")
        assert ledger.used(TREATMENT, DAY) == 1
        assert [r["request_id"] for r in ledger.approvals()] == ["apr-1"]

    @pytest.mark.parametrize(
        ("status", "state", "used"), [("approved", "allocated", 1), ("rejected", "released", 0), ("expired", "released", 0)]
    )
    def test_decision_moves_capacity(self, ledger: SQLiteLedger, status: str, state: str, used: int) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        row = ledger.decide_approval("apr-1", status, "alice", "why", NOW + timedelta(hours=1))
        assert (row["status"], row["decided_by"], row["reason"]) == (status, "alice", "why")
        assert ledger.allocation_for("run-1:C1")["state"] == state
        assert ledger.used(TREATMENT, DAY) == used
        assert ledger.contacts_since("C1", "marketing", NOW - timedelta(days=7)) == (1 if status == "approved" else 0)
        events = [e for e in ledger.audit_entries() if e["event"] == f"approval_{status}"]
        assert len(events) == 1 and events[0]["payload"] == {"request_id": "apr-1", "by": "alice", "reason": "why"}

    def test_released_capacity_can_be_taken_again(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_per_day=1))
        assert ledger.allocate(held_request("run-1:C2", "C2", None, max_per_day=1)).status == "capacity_exhausted"
        ledger.decide_approval("apr-1", "rejected", "bob", "no", NOW)
        assert ledger.allocate(held_request("run-1:C2", "C2", None, max_per_day=1)).status == "allocated"
        assert ledger.used(TREATMENT, DAY) == 1

    def test_no_capacity_means_no_request(self, ledger: SQLiteLedger) -> None:
        outcome = ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_per_day=0))
        assert outcome.status == "capacity_exhausted" and outcome.request_id is None
        assert ledger.approvals() == [] and ledger.allocations() == []

    def test_release_after_a_capacity_reset_never_goes_negative(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.reset_usage(DAY, TREATMENT, NOW)
        ledger.decide_approval("apr-1", "rejected", "bob", "no", NOW)
        assert ledger.used(TREATMENT, DAY) == 0

    def test_second_decision_raises_and_changes_nothing(self, ledger: SQLiteLedger, db: Path) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.decide_approval("apr-1", "approved", "alice", None, NOW)
        before = snapshot(db)
        for status in ("approved", "rejected", "expired"):
            with pytest.raises(ApprovalError, match="already approved by alice"):
                ledger.decide_approval("apr-1", status, "bob", "late", NOW + timedelta(minutes=5))
        assert snapshot(db) == before

    def test_unknown_request_raises(self, ledger: SQLiteLedger, db: Path) -> None:
        before = snapshot(db)
        with pytest.raises(ApprovalError, match="apr-missing"):
            ledger.decide_approval("apr-missing", "approved", "alice", None, NOW)
        assert snapshot(db) == before


class TestExpireApprovals:
    """expire_approvals expires exactly the pending requests at or past their deadline."""

    def test_expires_due_requests_only(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(replace(held_request("run-1:C1", "C1", None), approval=hold("apr-short", expires_in=timedelta(hours=1))))
        ledger.allocate(held_request("run-1:C2", "C2", "apr-long"))
        ledger.allocate(held_request("run-1:C3", "C3", "apr-done"))
        ledger.decide_approval("apr-done", "approved", "alice", None, NOW)

        assert ledger.expire_approvals(NOW + timedelta(minutes=59)) == []
        assert ledger.expire_approvals(NOW + timedelta(hours=1)) == ["apr-short"]
        assert ledger.approval("apr-short")["decided_by"] == "system (expiry)"
        assert ledger.approval("apr-long")["status"] == "pending"
        assert ledger.approval("apr-done")["status"] == "approved"
        assert ledger.used(TREATMENT, DAY) == 2
        assert ledger.expire_approvals(NOW + timedelta(hours=24)) == ["apr-long"]
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.expire_approvals(NOW + timedelta(days=30)) == []


class TestOnePendingRequest:
    """At most one pending request per customer and treatment, whatever the idempotency key."""

    def test_second_hold_with_another_key_is_refused_cleanly(self, ledger: SQLiteLedger, db: Path) -> None:
        # Two runs deciding the same customer at once both pass the orchestrator's "already waiting?" check;
        # the second allocate() then hits the unique partial index. It must not escape as a raw sqlite3 error.
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        outcome = None
        try:
            outcome = ledger.allocate(held_request("run-2:C1", "C1", "apr-2", run_id="run-2"))
        except CVMError:
            pass
        except sqlite3.Error as exc:
            pytest.fail(f"allocate() let a raw {type(exc).__module__}.{type(exc).__name__} escape: {exc}")
        if outcome is not None:
            assert outcome.status != "held" and outcome.request_id != "apr-2", outcome
        pending = ledger.approvals(status="pending", customer_id="C1")
        assert [r["request_id"] for r in pending] == ["apr-1"]
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.allocation_for("run-2:C1") is None

    def test_second_hold_leaves_the_ledger_as_it_was(self, ledger: SQLiteLedger, db: Path) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        before = snapshot(db)
        try:
            ledger.allocate(held_request("run-2:C1", "C1", "apr-2", run_id="run-2"))
        except (CVMError, sqlite3.Error):
            pass
        assert snapshot(db) == before

    def test_the_index_refuses_a_second_pending_row(self, ledger: SQLiteLedger, db: Path) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        with closing(sqlite3.connect(db)) as conn, pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO approval_requests (request_id, idempotency_key, run_id, customer_id, treatment_id, day, rule,"
                " explanation, priority, requested_at, expires_at) VALUES ('apr-x', 'k', 'r', 'C1', ?, ?, 'r', 'e', 1, 'a', 'b')",
                (TREATMENT, DAY),
            )

    def test_a_new_request_is_allowed_once_the_first_is_decided(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.decide_approval("apr-1", "rejected", "bob", "no", NOW)
        outcome = ledger.allocate(held_request("run-2:C1", "C1", "apr-2", run_id="run-2"))
        assert (outcome.status, outcome.request_id) == ("held", "apr-2")
        assert [r["request_id"] for r in ledger.approvals(status="pending")] == ["apr-2"]

    def test_another_treatment_for_the_same_customer_is_a_separate_request(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        outcome = ledger.allocate(held_request("run-2:C1", "C1", "apr-2", treatment_id="family_plan", run_id="run-2"))
        assert outcome.status == "held"
        assert sorted(r["treatment_id"] for r in ledger.approvals(status="pending")) == ["early_upgrade", "family_plan"]


class TestMaxPending:
    """max_pending caps the pending requests per treatment without taking capacity."""

    def test_limit_reached_yields_pending_approval_limit(self, ledger: SQLiteLedger) -> None:
        assert ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_pending=1)).status == "held"
        outcome = ledger.allocate(held_request("run-1:C2", "C2", "apr-2", max_pending=1))
        assert (outcome.status, outcome.allocated, outcome.request_id) == ("pending_approval_limit", False, None)
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.allocation_for("run-1:C2") is None
        assert [r["request_id"] for r in ledger.approvals()] == ["apr-1"]

    def test_limit_counts_pending_only(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_pending=1))
        ledger.decide_approval("apr-1", "approved", "alice", None, NOW)
        assert ledger.allocate(held_request("run-1:C2", "C2", "apr-2", max_pending=1)).status == "held"
        other = ledger.allocate(held_request("run-1:C3", "C3", "apr-3", treatment_id="family_plan", max_pending=1))
        assert other.status == "held"


# A worker in its own OS process: waits for the "go" file, then decides every given request and prints the outcomes.
WORKER = r"""
import json, sys, time
from datetime import datetime, timezone
from pathlib import Path
from cvm.tools.ledger import SQLiteLedger
from cvm.utils.errors import ApprovalError
db, go, status, by = sys.argv[1:5]
ids = sys.argv[5:]
ledger = SQLiteLedger(db)
ledger.approvals()  # connection open and schema read before the start signal
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.001)
outcomes = {}
for request_id in ids:
    try:
        row = ledger.decide_approval(request_id, status, by, "race " + by, datetime(2026, 11, 23, 11, tzinfo=timezone.utc))
        outcomes[request_id] = ["ok", row["status"], row["decided_by"]]
    except ApprovalError as exc:
        outcomes[request_id] = ["ApprovalError", str(exc)]
    except Exception as exc:
        outcomes[request_id] = [type(exc).__name__, str(exc)]
ledger.close()
print(json.dumps(outcomes))
"""


def race(db: Path, go: Path, deciders: list[tuple[str, str]], request_ids: list[str]) -> list[dict[str, list[str]]]:
    """One OS process per (status, by), all released by the go file; returns each one's outcomes."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(go), status, by, *request_ids],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for status, by in deciders
    ]
    time.sleep(0.5)  # let both interpreters start and open the ledger
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


REQUESTS = [f"apr-race-{n}" for n in range(150)]


@pytest.fixture
def pending(db: Path) -> SQLiteLedger:
    """A ledger with many pending requests (one per customer), one unit of capacity held for each."""
    led = SQLiteLedger(db)
    for n, request_id in enumerate(REQUESTS):
        assert led.allocate(held_request(f"run-1:C{n}", f"C{n}", request_id, max_per_day=1000)).status == "held"
    assert led.used(TREATMENT, DAY) == len(REQUESTS)
    yield led
    led.close()


@pytest.mark.slow
class TestRacingApprovers:
    """Two OS processes deciding the same requests at once: exactly one decision per request stands."""

    def test_two_approvers_one_wins_each_request(self, pending: SQLiteLedger, db: Path, tmp_path: Path) -> None:
        outputs = race(db, tmp_path / "go", [("approved", "alice"), ("approved", "carol")], REQUESTS)
        for request_id in REQUESTS:
            kinds = sorted(out[request_id][0] for out in outputs)
            assert kinds == ["ApprovalError", "ok"], (request_id, [out[request_id] for out in outputs])
            winner = next(out[request_id][2] for out in outputs if out[request_id][0] == "ok")
            loser = next(out[request_id][1] for out in outputs if out[request_id][0] == "ApprovalError")
            assert f"already approved by {winner}" in loser
            row = pending.approval(request_id)
            assert (row["status"], row["decided_by"]) == ("approved", winner)
        audit = Counter(e["payload"]["request_id"] for e in pending.audit_entries() if e["event"] == "approval_approved")
        assert audit == {request_id: 1 for request_id in REQUESTS}
        assert {a["state"] for a in pending.allocations()} == {"allocated"}
        assert pending.used(TREATMENT, DAY) == len(REQUESTS)

    def test_approver_against_rejecter_leaves_consistent_capacity(self, pending: SQLiteLedger, db: Path, tmp_path: Path) -> None:
        outputs = race(db, tmp_path / "go", [("approved", "alice"), ("rejected", "bob")], REQUESTS)
        approved = 0
        for n, request_id in enumerate(REQUESTS):
            kinds = sorted(out[request_id][0] for out in outputs)
            assert kinds == ["ApprovalError", "ok"], (request_id, [out[request_id] for out in outputs])
            won = next(out[request_id] for out in outputs if out[request_id][0] == "ok")
            row = pending.approval(request_id)
            assert (row["status"], row["decided_by"]) == (won[1], won[2])
            state = pending.allocation_for(f"run-1:C{n}")["state"]
            assert state == ("allocated" if row["status"] == "approved" else "released")
            events = [e["event"] for e in pending.audit_entries(customer_id=f"C{n}") if e["event"] != "approval_requested"]
            assert events == [f"approval_{row['status']}"]
            approved += row["status"] == "approved"
        assert pending.used(TREATMENT, DAY) == approved
        assert pending.approvals(status="pending") == []
