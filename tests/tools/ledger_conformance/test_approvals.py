"""Approval requests: holds, decisions, expiry, the one-pending rule and max_pending, on every ledger backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from cvm.tools.ledger import ApprovalRow, ApprovalStatus, Ledger
from cvm.utils.errors import ApprovalError, CVMError
from tests.tools.ledger_conformance.backends import LedgerBackend
from tests.tools.ledger_conformance.helpers import DAY, NOW, TREATMENT, held_request, hold


class TestHoldAndDecide:
    """A hold takes capacity at once; approve keeps it, reject and expire give it back."""

    def test_hold_takes_capacity_and_opens_a_pending_request(self, ledger: Ledger) -> None:
        outcome = ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        assert (outcome.status, outcome.request_id, outcome.allocated) == ("held", "apr-1", True)
        assert ledger.used(TREATMENT, DAY) == 1
        allocation = ledger.allocation_for("run-1:C1")
        assert allocation is not None and allocation.state == "held"
        row = ledger.approval("apr-1")
        assert row == ApprovalRow(
            request_id="apr-1", idempotency_key="run-1:C1", run_id="run-1", customer_id="C1", treatment_id=TREATMENT, day=DAY,
            rule="cost per contact 60.00 is at or above 50.00", explanation="test", confidence=0.9, expected_value=100.0,
            priority=2, requested_at=NOW.isoformat(), expires_at=(NOW + timedelta(hours=24)).isoformat(), status="pending",
        )
        assert [e.event for e in ledger.audit_entries()] == ["approval_requested"]

    def test_same_key_again_is_a_duplicate_of_the_hold(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        again = ledger.allocate(held_request("run-1:C1", "C1", "apr-2"))
        assert (again.status, again.request_id) == ("duplicate", "apr-1")
        assert ledger.used(TREATMENT, DAY) == 1
        assert [r.request_id for r in ledger.approvals()] == ["apr-1"]

    @pytest.mark.parametrize(
        ("status", "state", "used"), [("approved", "allocated", 1), ("rejected", "released", 0), ("expired", "released", 0)]
    )
    def test_decision_moves_capacity(self, ledger: Ledger, status: ApprovalStatus, state: str, used: int) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        row = ledger.decide_approval("apr-1", status, "alice", "why", NOW + timedelta(hours=1))
        assert (row.status, row.decided_by, row.reason, row.decided_at) == (status, "alice", "why", (NOW + timedelta(hours=1)).isoformat())
        assert row == ledger.approval("apr-1")
        allocation = ledger.allocation_for("run-1:C1")
        assert allocation is not None and allocation.state == state
        assert ledger.used(TREATMENT, DAY) == used
        assert ledger.contacts_since("C1", "marketing", NOW - timedelta(days=7)) == (1 if status == "approved" else 0)
        events = [e for e in ledger.audit_entries() if e.event == f"approval_{status}"]
        assert len(events) == 1 and events[0].payload == {"request_id": "apr-1", "by": "alice", "reason": "why"}

    def test_released_capacity_can_be_taken_again(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_per_day=1))
        assert ledger.allocate(held_request("run-1:C2", "C2", None, max_per_day=1)).status == "capacity_exhausted"
        ledger.decide_approval("apr-1", "rejected", "bob", "no", NOW)
        assert ledger.allocate(held_request("run-1:C2", "C2", None, max_per_day=1)).status == "allocated"
        assert ledger.used(TREATMENT, DAY) == 1

    def test_no_capacity_means_no_request(self, ledger: Ledger) -> None:
        outcome = ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_per_day=0))
        assert outcome.status == "capacity_exhausted" and outcome.request_id is None
        assert ledger.approvals() == [] and ledger.allocations() == []

    def test_release_after_a_capacity_reset_never_goes_negative(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.reset_usage(DAY, TREATMENT, NOW)
        ledger.decide_approval("apr-1", "rejected", "bob", "no", NOW)
        assert ledger.used(TREATMENT, DAY) == 0

    def test_second_decision_raises_and_changes_nothing(self, backend: LedgerBackend, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.decide_approval("apr-1", "approved", "alice", None, NOW)
        before = backend.snapshot()
        for status in ("approved", "rejected", "expired"):
            with pytest.raises(ApprovalError, match="already approved by alice"):
                ledger.decide_approval("apr-1", status, "bob", "late", NOW + timedelta(minutes=5))
        assert backend.snapshot() == before

    def test_unknown_request_raises(self, backend: LedgerBackend, ledger: Ledger) -> None:
        before = backend.snapshot()
        with pytest.raises(ApprovalError, match="apr-missing"):
            ledger.decide_approval("apr-missing", "approved", "alice", None, NOW)
        assert backend.snapshot() == before

    @pytest.mark.parametrize(("at", "words"), [(NOW - timedelta(minutes=1), "would come before it"), (NOW + timedelta(hours=24), "expired at")])
    def test_a_decision_outside_the_request_s_time_is_refused(self, backend: LedgerBackend, ledger: Ledger, at, words: str) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        before = backend.snapshot()
        with pytest.raises(ApprovalError, match=words):
            ledger.decide_approval("apr-1", "approved", "alice", None, at)
        assert backend.snapshot() == before

    def test_approvals_filter_and_order(self, ledger: Ledger) -> None:
        ledger.allocate(replace(held_request("run-1:C1", "C1", None), approval=replace(hold("apr-b"), priority=3)))
        ledger.allocate(held_request("run-1:C2", "C2", "apr-a"))
        ledger.allocate(held_request("run-1:C3", "C3", "apr-c"))
        ledger.decide_approval("apr-c", "rejected", "bob", "no", NOW)
        assert [r.request_id for r in ledger.approvals()] == ["apr-a", "apr-c", "apr-b"]  # by priority, time, id
        assert [r.request_id for r in ledger.approvals(status="pending")] == ["apr-a", "apr-b"]
        assert [r.request_id for r in ledger.approvals(status="rejected", customer_id="C3")] == ["apr-c"]
        assert ledger.approvals(customer_id="C9") == []
        assert ledger.approval("apr-missing") is None

    def test_approvals_decided_since(self, ledger: Ledger) -> None:
        """Only requests decided after the moment (a pending one has no decision yet)."""
        for cid, rid in (("C1", "apr-1"), ("C2", "apr-2"), ("C3", "apr-3")):
            ledger.allocate(held_request(f"run-1:{cid}", cid, rid))
        ledger.decide_approval("apr-1", "rejected", "bob", "old", NOW + timedelta(minutes=1))
        ledger.decide_approval("apr-2", "rejected", "bob", "new", NOW + timedelta(minutes=10))
        since = NOW + timedelta(minutes=5)
        assert [r.request_id for r in ledger.approvals(status="rejected", decided_since=since)] == ["apr-2"]
        assert [r.request_id for r in ledger.approvals(decided_since=since)] == ["apr-2"]
        assert ledger.approvals(customer_id="C1", decided_since=since) == []


class TestExpireApprovals:
    """expire_approvals expires exactly the pending requests at or past their deadline."""

    def test_expires_due_requests_only(self, ledger: Ledger) -> None:
        ledger.allocate(replace(held_request("run-1:C1", "C1", None), approval=hold("apr-short", expires_in=timedelta(hours=1))))
        ledger.allocate(held_request("run-1:C2", "C2", "apr-long"))
        ledger.allocate(held_request("run-1:C3", "C3", "apr-done"))
        ledger.decide_approval("apr-done", "approved", "alice", None, NOW)

        assert ledger.expire_approvals(NOW + timedelta(minutes=59)) == []
        assert ledger.expire_approvals(NOW + timedelta(hours=1)) == ["apr-short"]
        assert _approval(ledger, "apr-short").decided_by == "system (expiry)"
        assert _approval(ledger, "apr-long").status == "pending"
        assert _approval(ledger, "apr-done").status == "approved"
        assert ledger.used(TREATMENT, DAY) == 2
        assert ledger.expire_approvals(NOW + timedelta(hours=24)) == ["apr-long"]
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.expire_approvals(NOW + timedelta(days=30)) == []

    def test_an_expired_request_cannot_be_decided(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.expire_approvals(NOW + timedelta(days=2))
        with pytest.raises(ApprovalError, match="expired at .* before anyone decided it"):
            ledger.decide_approval("apr-1", "approved", "alice", None, NOW + timedelta(days=3))


def _approval(ledger: Ledger, request_id: str) -> ApprovalRow:
    row = ledger.approval(request_id)
    assert row is not None
    return row


class TestOnePendingRequest:
    """At most one pending request per customer and treatment, whatever the idempotency key."""

    def test_second_hold_with_another_key_is_refused_cleanly(self, ledger: Ledger) -> None:
        # Two runs deciding the same customer at once both pass the orchestrator's "already waiting?" check;
        # the second allocate() must refuse it with an outcome or a CVMError, never a raw database error.
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        outcome = None
        try:
            outcome = ledger.allocate(held_request("run-2:C1", "C1", "apr-2", run_id="run-2"))
        except CVMError:
            pass
        except Exception as exc:
            pytest.fail(f"allocate() let a raw {type(exc).__module__}.{type(exc).__name__} escape: {exc}")
        if outcome is not None:
            assert outcome.status != "held" and outcome.request_id != "apr-2", outcome
        pending = ledger.approvals(status="pending", customer_id="C1")
        assert [r.request_id for r in pending] == ["apr-1"]
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.allocation_for("run-2:C1") is None

    def test_second_hold_leaves_the_ledger_as_it_was(self, backend: LedgerBackend, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        before = backend.snapshot()
        try:
            ledger.allocate(held_request("run-2:C1", "C1", "apr-2", run_id="run-2"))
        except CVMError:
            pass
        assert backend.snapshot() == before

    def test_a_new_request_is_allowed_once_the_first_is_decided(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        ledger.decide_approval("apr-1", "rejected", "bob", "no", NOW)
        outcome = ledger.allocate(held_request("run-2:C1", "C1", "apr-2", run_id="run-2"))
        assert (outcome.status, outcome.request_id) == ("held", "apr-2")
        assert [r.request_id for r in ledger.approvals(status="pending")] == ["apr-2"]

    def test_another_treatment_for_the_same_customer_is_a_separate_request(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        outcome = ledger.allocate(held_request("run-2:C1", "C1", "apr-2", treatment_id="family_plan", run_id="run-2"))
        assert outcome.status == "held"
        assert sorted(r.treatment_id for r in ledger.approvals(status="pending")) == ["early_upgrade", "family_plan"]


class TestMaxPending:
    """max_pending caps the pending requests per treatment without taking capacity."""

    def test_limit_reached_yields_pending_approval_limit(self, ledger: Ledger) -> None:
        assert ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_pending=1)).status == "held"
        outcome = ledger.allocate(held_request("run-1:C2", "C2", "apr-2", max_pending=1))
        assert (outcome.status, outcome.allocated, outcome.request_id) == ("pending_approval_limit", False, None)
        assert ledger.used(TREATMENT, DAY) == 1
        assert ledger.allocation_for("run-1:C2") is None
        assert [r.request_id for r in ledger.approvals()] == ["apr-1"]

    def test_limit_counts_pending_only(self, ledger: Ledger) -> None:
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1", max_pending=1))
        ledger.decide_approval("apr-1", "approved", "alice", None, NOW)
        assert ledger.allocate(held_request("run-1:C2", "C2", "apr-2", max_pending=1)).status == "held"
        other = ledger.allocate(held_request("run-1:C3", "C3", "apr-3", treatment_id="family_plan", max_pending=1))
        assert other.status == "held"
