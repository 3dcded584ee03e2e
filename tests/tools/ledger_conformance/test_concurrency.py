"""Threads and OS processes sharing one ledger: capacity never over-allocated, one key allocated once, one approver wins.

The process tests start real OS processes (``python -c``) that open the backend's ledger
through ``backends.connect``, wait for a "go" file, then act together.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from cvm.tools.ledger import Ledger
from tests.tools.ledger_conformance.backends import LedgerBackend
from tests.tools.ledger_conformance.helpers import DAY, TREATMENT, held_request, request, run_workers

# Allocates ``attempts`` times and prints the statuses as JSON (after the prelude opened the ledger and waited for "go").
ALLOCATE = r"""
import json
from datetime import datetime, timedelta, timezone
from cvm.tools.ledger import AllocationRequest
worker, attempts, key_mode, max_per_day = args
now = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
statuses = []
for i in range(int(attempts)):
    shared = key_mode == "shared"
    outcome = ledger.allocate(AllocationRequest(
        idempotency_key="run-1:SHARED" if shared else f"run-1:W{worker}-{i}",
        run_id="run-1",
        customer_id="SHARED" if shared else f"W{worker}-{i}",
        treatment_id="marketing_call_back" if not shared else f"treatment_from_worker_{worker}",
        channel="call", purpose="marketing", day="2026-11-23",
        max_per_day=None if max_per_day == "none" else int(max_per_day),
        contact_at=now, contact_window_start=now - timedelta(days=7), contact_cap=None,
    ))
    statuses.append([outcome.status, outcome.treatment_id])
ledger.close()
print(json.dumps(statuses))
"""


def allocate_in_processes(backend: LedgerBackend, workers: int, attempts: int, key_mode: str, max_per_day: str) -> list:
    backend.open().close()  # create the ledger once, as the runtime would
    return run_workers(backend, ALLOCATE, [[str(w), str(attempts), key_mode, max_per_day] for w in range(workers)])


class TestConcurrentProcesses:
    """Several OS processes sharing one ledger never over-allocate or double-allocate."""

    def test_capacity_is_never_exceeded_across_processes(self, backend: LedgerBackend) -> None:
        outputs = allocate_in_processes(backend, workers=6, attempts=8, key_mode="distinct", max_per_day="7")

        statuses = Counter(status for out in outputs for status, _ in out)
        assert statuses == {"allocated": 7, "capacity_exhausted": 41}
        ledger = backend.open()
        assert ledger.used("marketing_call_back", DAY) == 7
        assert len(ledger.allocations(run_id="run-1")) == 7

    def test_one_idempotency_key_allocates_once_across_processes(self, backend: LedgerBackend) -> None:
        outputs = allocate_in_processes(backend, workers=5, attempts=3, key_mode="shared", max_per_day="100")

        flat = [entry for out in outputs for entry in out]
        statuses = Counter(status for status, _ in flat)
        assert statuses == {"allocated": 1, "duplicate": 14}
        winner = next(treatment for status, treatment in flat if status == "allocated")
        # Every duplicate reports the treatment the one winning request allocated.
        assert {treatment for status, treatment in flat if status == "duplicate"} == {winner}
        ledger = backend.open()
        rows = ledger.allocations(customer_id="SHARED")
        assert len(rows) == 1
        assert rows[0].treatment_id == winner
        assert ledger.used(winner, DAY) == 1
        other_used = sum(ledger.used(f"treatment_from_worker_{w}", DAY) for w in range(5))
        assert other_used == 1

    def test_unlimited_capacity_counts_every_use_across_processes(self, backend: LedgerBackend) -> None:
        outputs = allocate_in_processes(backend, workers=4, attempts=5, key_mode="distinct", max_per_day="none")

        assert Counter(status for out in outputs for status, _ in out) == {"allocated": 20}
        assert backend.open().used("marketing_call_back", DAY) == 20


class TestConcurrentThreads:
    """Threads sharing one ledger object respect capacity."""

    def test_threads_never_exceed_capacity(self, ledger: Ledger) -> None:
        results: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def work(worker: int) -> None:
            barrier.wait()
            for i in range(5):
                status = ledger.allocate(request(f"t{worker}-{i}", customer_id=f"T{worker}-{i}", max_per_day=9)).status
                with lock:
                    results.append(status)
            ledger.close()

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert Counter(results) == {"allocated": 9, "capacity_exhausted": 31}
        assert ledger.used("retention_email", DAY) == 9


# Decides every given request as ``status`` by ``by`` and prints the outcomes as JSON.
DECIDE = r"""
import json
from datetime import datetime, timezone
from cvm.utils.errors import ApprovalError
status, by = args[:2]
outcomes = {}
for request_id in args[2:]:
    try:
        row = ledger.decide_approval(request_id, status, by, "race " + by, datetime(2026, 11, 23, 11, tzinfo=timezone.utc))
        outcomes[request_id] = ["ok", row.status, row.decided_by]
    except ApprovalError as exc:
        outcomes[request_id] = ["ApprovalError", str(exc)]
    except Exception as exc:
        outcomes[request_id] = [type(exc).__name__, str(exc)]
ledger.close()
print(json.dumps(outcomes))
"""

REQUESTS = [f"apr-race-{n}" for n in range(150)]


@pytest.fixture
def pending(ledger: Ledger) -> Ledger:
    """A ledger with many pending requests (one per customer), one unit of capacity held for each."""
    for n, request_id in enumerate(REQUESTS):
        assert ledger.allocate(held_request(f"run-1:C{n}", f"C{n}", request_id, max_per_day=1000)).status == "held"
    assert ledger.used(TREATMENT, DAY) == len(REQUESTS)
    return ledger


def race(backend: LedgerBackend, deciders: list[tuple[str, str]]) -> list[dict[str, list[str]]]:
    """One OS process per (status, by), all released together; returns each one's outcomes."""
    return run_workers(backend, DECIDE, [[status, by, *REQUESTS] for status, by in deciders])


@pytest.mark.slow
class TestRacingApprovers:
    """Two OS processes deciding the same requests at once: exactly one decision per request stands."""

    def test_two_approvers_one_wins_each_request(self, backend: LedgerBackend, pending: Ledger) -> None:
        outputs = race(backend, [("approved", "alice"), ("approved", "carol")])
        for request_id in REQUESTS:
            kinds = sorted(out[request_id][0] for out in outputs)
            assert kinds == ["ApprovalError", "ok"], (request_id, [out[request_id] for out in outputs])
            winner = next(out[request_id][2] for out in outputs if out[request_id][0] == "ok")
            loser = next(out[request_id][1] for out in outputs if out[request_id][0] == "ApprovalError")
            assert f"already approved by {winner}" in loser
            row = pending.approval(request_id)
            assert row is not None and (row.status, row.decided_by) == ("approved", winner)
        audit = Counter(e.payload["request_id"] for e in pending.audit_entries() if e.event == "approval_approved")
        assert audit == {request_id: 1 for request_id in REQUESTS}
        assert {a.state for a in pending.allocations()} == {"allocated"}
        assert pending.used(TREATMENT, DAY) == len(REQUESTS)

    def test_approver_against_rejecter_leaves_consistent_capacity(self, backend: LedgerBackend, pending: Ledger) -> None:
        outputs = race(backend, [("approved", "alice"), ("rejected", "bob")])
        approved = 0
        for n, request_id in enumerate(REQUESTS):
            kinds = sorted(out[request_id][0] for out in outputs)
            assert kinds == ["ApprovalError", "ok"], (request_id, [out[request_id] for out in outputs])
            won = next(out[request_id] for out in outputs if out[request_id][0] == "ok")
            row = pending.approval(request_id)
            assert row is not None and (row.status, row.decided_by) == (won[1], won[2])
            allocation = pending.allocation_for(f"run-1:C{n}")
            assert allocation is not None
            assert allocation.state == ("allocated" if row.status == "approved" else "released")
            events = [e.event for e in pending.audit_entries(customer_id=f"C{n}") if e.event != "approval_requested"]
            assert events == [f"approval_{row.status}"]
            approved += row.status == "approved"
        assert pending.used(TREATMENT, DAY) == approved
        assert pending.approvals(status="pending") == []
