"""Decisions stored once per run and customer, their withdrawal, and the append-only audit log, on every ledger backend."""

from __future__ import annotations

import threading
from typing import Literal

import pytest

from cvm.tools.ledger import AuditEntry, Ledger, StoredDecision
from tests.tools.ledger_conformance.backends import LedgerBackend
from tests.tools.ledger_conformance.helpers import DAY, NOW, request


class TestDecisionsAndAudit:
    """Decisions are stored once per run and customer; the audit log is append-only."""

    def test_record_decision_once(self, ledger: Ledger) -> None:
        first = {"customer_id": "U1", "status": "success", "selected_treatment": "retention_email", "at": NOW}
        second = {"customer_id": "U1", "status": "no_action", "selected_treatment": "ignore"}
        assert ledger.record_decision("run-1", "U1", first, "digest-1", NOW) is True
        assert ledger.record_decision("run-1", "U1", second, "digest-2", NOW) is False
        stored = ledger.decision("run-1", "U1")
        assert stored == StoredDecision(
            run_id="run-1", customer_id="U1", status="success", treatment_id="retention_email",
            result={"at": "2026-11-23 10:00:00+00:00", "customer_id": "U1", "selected_treatment": "retention_email", "status": "success"},
            input_digest="digest-1", decided_at="2026-11-23T10:00:00+00:00",
        )
        assert ledger.decision("run-2", "U1") is None
        entries = ledger.audit_entries(run_id="run-1")
        assert [(e.event, e.customer_id, e.treatment_id, e.input_digest) for e in entries] == [
            ("decision", "U1", "retention_email", "digest-1")
        ]

    def test_same_customer_in_another_run_is_stored(self, ledger: Ledger) -> None:
        assert ledger.record_decision("run-1", "U1", {"status": "success"}, "d", NOW) is True
        assert ledger.record_decision("run-2", "U1", {"status": "no_action"}, "d", NOW) is True
        stored = ledger.decision("run-2", "U1")
        assert stored is not None and stored.result == {"status": "no_action"}

    def test_decided_in_run_returns_the_run_s_decisions_by_customer(self, ledger: Ledger) -> None:
        ledger.record_decision("run-1", "U1", {"status": "success"}, "d1", NOW)
        ledger.record_decision("run-1", "U2", {"status": "no_action"}, "d2", NOW)
        ledger.record_decision("run-2", "U3", {"status": "success"}, "d3", NOW)
        decided = ledger.decided_in_run("run-1")
        assert {cid: (d.result, d.input_digest) for cid, d in decided.items()} == {
            "U1": ({"status": "success"}, "d1"), "U2": ({"status": "no_action"}, "d2"),
        }
        assert ledger.decided_in_run("run-3") == {}

    def test_audit_entries_filter_and_order(self, ledger: Ledger) -> None:
        ledger.audit("approval_requested", {"n": 1}, NOW, customer_id="A", run_id="r1")
        ledger.audit("approval_granted", {"n": 2}, NOW, customer_id="B", run_id="r1")
        ledger.audit("approval_denied", {"n": 3}, NOW, customer_id="A", run_id="r2")
        assert [e.payload for e in ledger.audit_entries(customer_id="A")] == [{"n": 1}, {"n": 3}]
        assert [e.event for e in ledger.audit_entries(run_id="r1")] == ["approval_requested", "approval_granted"]
        assert [e.payload for e in ledger.audit_entries(run_id="r1", event="approval_granted")] == [{"n": 2}]
        assert [e.payload for e in ledger.audit_entries(event="approval_denied")] == [{"n": 3}]
        everything = ledger.audit_entries()
        assert len(everything) == 3 and all(isinstance(e, AuditEntry) for e in everything)
        assert everything[0].at == "2026-11-23T10:00:00+00:00"
        assert [e.id for e in everything] == sorted(e.id for e in everything)

    @pytest.mark.parametrize("how", ["update", "delete"])
    def test_audit_log_is_append_only(self, backend: LedgerBackend, ledger: Ledger, how: Literal["update", "delete"]) -> None:
        ledger.audit("decision", {"x": 1}, NOW, customer_id="U1")
        with pytest.raises(Exception, match="append-only"):
            backend.forge_audit(how)
        assert [(e.event, e.payload) for e in ledger.audit_entries()] == [("decision", {"x": 1})]


class TestWithdrawDecision:
    """A replay's withdrawal releases the decision's capacity once, even when replays race."""

    def test_concurrent_withdrawals_release_once(self, ledger: Ledger) -> None:
        for customer in ("U1", "U2"):
            assert ledger.allocate(request(f"run-1:{customer}", customer_id=customer)).status == "allocated"
            ledger.record_decision("run-1", customer, {"status": "success", "selected_treatment": "retention_email"}, "d", NOW)
        withdrawn = {"status": "no_action", "selected_treatment": "ignore", "customer_id": "U1"}
        outcomes: list[bool] = []
        barrier = threading.Barrier(6)

        def work() -> None:
            barrier.wait()
            outcomes.append(ledger.withdraw_decision("run-1", "U1", withdrawn, "consent_withdrawn", NOW))
            ledger.close()

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == [False] * 5 + [True]
        assert ledger.used("retention_email", DAY) == 1  # U2's unit stays taken
        assert {r.customer_id: r.state for r in ledger.allocations()} == {"U1": "released", "U2": "allocated"}
        stored = ledger.decision("run-1", "U1")
        assert stored is not None and (stored.result, stored.status, stored.treatment_id) == (withdrawn, "no_action", "ignore")
        assert [e.event for e in ledger.audit_entries(customer_id="U1")].count("decision_withdrawn") == 1

    def test_a_no_action_decision_is_not_withdrawn(self, ledger: Ledger) -> None:
        ledger.record_decision("run-1", "U1", {"status": "no_action", "selected_treatment": "ignore"}, "d", NOW)
        assert ledger.withdraw_decision("run-1", "U1", {"status": "no_action"}, "consent_withdrawn", NOW) is False
