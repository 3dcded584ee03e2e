"""The batch path's side of the contract: bulk reads, and a whole run committed in one transaction, on every ledger backend."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

import pytest

from cvm.tools.ledger import (
    AllocationState,
    BatchCommit,
    CapacityTake,
    Ledger,
    LiveContact,
    NewAllocation,
    NewApprovalRequest,
    NewDecision,
    utc_text,
)
from cvm.utils.errors import LedgerError
from tests.tools.ledger_conformance.backends import LedgerBackend
from tests.tools.ledger_conformance.helpers import DAY, NOW, hold, request

AT = utc_text(NOW)


def allocation(customer_id: str, treatment_id: str = "service_sms", state: AllocationState = "allocated") -> NewAllocation:
    return NewAllocation(f"batch:{customer_id}", "batch", customer_id, treatment_id, "sms", "service_updates", DAY, AT, None, AT, state)


def decision(customer_id: str, status: str = "success", treatment_id: str | None = "service_sms") -> NewDecision:
    return NewDecision("batch", customer_id, status, treatment_id, f'{{"customer_id": "{customer_id}", "status": "{status}"}}', "d", AT)


def commit(
    capacity: dict[str, CapacityTake], allocations: list[NewAllocation], decisions: Iterable[NewDecision], **extra: object,
) -> BatchCommit:
    return BatchCommit(run_id="batch", day=DAY, at=NOW, capacity=capacity, allocations=allocations, approvals=[],
                       decisions=decisions, summary={"by_treatment": {"service_sms": len(allocations)}}, **extra)


class TestCommitBatch:
    """Every row of a run in one transaction: all of it is written, or (when another writer got in between) none."""

    def test_writes_allocations_requests_decisions_capacity_and_one_audit_entry(self, ledger: Ledger) -> None:
        request_row = NewApprovalRequest("apr-b1", "batch:U2", "batch", "U2", "service_sms", DAY, "rule", "why", 0.5, 12.0, 2,
                                         AT, utc_text(NOW + timedelta(hours=24)), "pending", None, None, None)
        rows = replace(
            commit({"service_sms": CapacityTake(2, 10)}, [allocation("U1"), allocation("U2", state="held")],
                   (decision(cid) for cid in ("U1", "U2", "U3"))),  # decisions may be a generator
            approvals=[request_row],
        )
        ledger.commit_batch(rows)
        assert ledger.used("service_sms", DAY) == 2
        assert [(a.customer_id, a.state) for a in ledger.allocations(run_id="batch")] == [("U1", "allocated"), ("U2", "held")]
        pending = ledger.approvals(status="pending")
        assert [(r.request_id, r.customer_id, r.idempotency_key, r.priority, r.status) for r in pending] == [
            ("apr-b1", "U2", "batch:U2", 2, "pending")
        ]
        assert set(ledger.pending_by_customer(NOW)) == {"U2"}
        decided = ledger.decided_in_run("batch")
        assert sorted(decided) == ["U1", "U2", "U3"] and decided["U3"].result == {"customer_id": "U3", "status": "success"}
        assert [(e.event, e.run_id, e.payload) for e in ledger.audit_entries(run_id="batch")] == [
            ("batch_committed", "batch", {"by_treatment": {"service_sms": 2}})
        ]

    def test_capacity_taken_meanwhile_writes_nothing(self, backend: LedgerBackend, ledger: Ledger) -> None:
        assert ledger.allocate(request("other:U9", customer_id="U9", treatment_id="service_sms", max_per_day=2)).status == "allocated"
        before = backend.snapshot()
        with pytest.raises(LedgerError, match="capacity for service_sms .* changed while the batch ran"):
            ledger.commit_batch(commit({"service_sms": CapacityTake(2, 2)}, [allocation("U1"), allocation("U2")], [decision("U1")]))
        assert backend.snapshot() == before

    def test_unlimited_capacity_adds_what_the_run_took(self, ledger: Ledger) -> None:
        ledger.allocate(request("other:U9", customer_id="U9", treatment_id="service_sms", max_per_day=None))
        ledger.commit_batch(commit({"service_sms": CapacityTake(2, None)}, [allocation("U1"), allocation("U2")], []))
        assert ledger.used("service_sms", DAY) == 3

    def test_a_customer_decided_meanwhile_writes_nothing(self, backend: LedgerBackend, ledger: Ledger) -> None:
        ledger.record_decision("batch", "U1", {"status": "no_action"}, "d", NOW)
        before = backend.snapshot()
        with pytest.raises(LedgerError, match="another process decided some of these customers"):
            ledger.commit_batch(commit({"service_sms": CapacityTake(1, 10)}, [allocation("U1")], [decision("U1")]))
        assert backend.snapshot() == before

    def test_over_the_daily_cap_writes_nothing(self, backend: LedgerBackend, ledger: Ledger) -> None:
        assert ledger.allocate(request("a")).status == "allocated"
        before = backend.snapshot()
        day = (utc_text(NOW.replace(hour=0)), utc_text(NOW.replace(hour=0) + timedelta(days=1)))
        rows = commit({"service_sms": CapacityTake(1, 10)}, [allocation("U1")], [], daily_cap=1, daily_windows=(("U1", *day),))
        with pytest.raises(LedgerError, match="daily contact cap"):
            ledger.commit_batch(rows)
        assert backend.snapshot() == before
        assert ledger.used("service_sms", DAY) == 0


class TestBulkReads:
    def test_live_contacts_since_leaves_out_released_and_older_contacts(self, ledger: Ledger) -> None:
        ledger.allocate(request("old", customer_id="U0", contact_at=NOW - timedelta(days=10), day="2026-11-13"))
        ledger.allocate(request("run-1:U1", customer_id="U1"))
        ledger.allocate(request("run-1:U2", customer_id="U2", treatment_id="retention_sms"))
        ledger.record_decision("run-1", "U2", {"status": "success", "selected_treatment": "retention_sms"}, "d", NOW)
        ledger.withdraw_decision("run-1", "U2", {"status": "no_action"}, "consent_withdrawn", NOW)
        live = ledger.live_contacts_since(NOW - timedelta(days=7))
        assert live == [LiveContact("U1", "marketing", "retention_email", AT)]
        customer, purpose, treatment, contact_at = live[0]  # unpacks like the tuple it is
        assert (customer, purpose, treatment, contact_at) == ("U1", "marketing", "retention_email", AT)

    def test_live_contacts_of_one_customer(self, ledger: Ledger) -> None:
        ledger.allocate(request("run-1:U1", customer_id="U1"))
        ledger.allocate(request("run-1:U2", customer_id="U2", treatment_id="retention_sms"))
        assert [c.customer_id for c in ledger.live_contacts_since(NOW - timedelta(days=7), customer_id="U2")] == ["U2"]
        assert ledger.live_contacts_since(NOW - timedelta(days=7), customer_id="U9") == []

    def test_expired_requests_are_not_pending(self, ledger: Ledger) -> None:
        assert ledger.allocate(replace(request("k"), approval=hold("apr-1"))).status == "held"
        pending = ledger.pending_by_customer(NOW + timedelta(hours=23))
        assert set(pending) == {"U1"} and pending["U1"].request_id == "apr-1"
        assert ledger.pending_by_customer(NOW + timedelta(hours=24)) == {}
