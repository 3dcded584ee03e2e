"""The Governance agent: the approval policy, and approval requests through real runs on a real ledger.

With the shipped config and the sample data, U128 and U134 are given early_upgrade
(60.00 per contact, at or above ``cost_per_contact_at_least: 50``), which needs approval.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvm.agents.base import expect
from cvm.agents.governance import AUTO_APPROVER, GovernanceAgent, approval_rule
from cvm.agents.messages import (
    Ack,
    ApprovalCheck,
    ApprovalRequestInfo,
    CheckApproval,
    DecideApproval,
    ErrorResponse,
    ExpireApprovals,
    ProcessCustomerWithTreatment,
)
from cvm.tools.clock import make_clock, zone
from cvm.tools.ledger import WITHDRAWN_BY, SQLiteLedger
from cvm.utils.config import ApprovalPolicy, Treatment, load_config
from cvm.utils.errors import ApprovalError, ConfigError, CVMError, UsageError
from tests.conftest import AS_OF, CONFIG, SAMPLE, withdraw_email_marketing

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))
GATED = ("U128", "U134")
TODAY = datetime.fromisoformat(AS_OF).date().isoformat()
EXPIRY = (datetime.fromisoformat(AS_OF) + timedelta(hours=24)).isoformat()
TABLES = ("capacity_usage", "allocations", "decisions", "approval_requests", "audit_log")


def treatment(**overrides: Any) -> Treatment:
    """A plain marketing email treatment that needs no approval unless told otherwise."""
    values: dict[str, Any] = dict(
        id="plain_offer", display_name="Plain Offer", channel="email", purpose="marketing", cost_per_contact=10.0,
    )
    values.update(overrides)
    return Treatment(**values)


def write_config(folder: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the shipped config with ``edit`` applied to its YAML document."""
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    edit(doc)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def snapshot(ledger: SQLiteLedger) -> dict[str, list[tuple]]:
    """Every row of every ledger table, read through a separate connection."""
    with closing(sqlite3.connect(ledger.path)) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES}


def decide(runtime, request_id: str, decision: str, by: str, reason: str | None = None) -> ApprovalRequestInfo:
    """Approve or reject through the Governance agent; a refusal is raised as its CVMError."""
    message = DecideApproval(request_id=request_id, decision=decision, by=by, reason=reason)
    return expect(runtime.orchestrator.governance.process(message), ApprovalRequestInfo)


def first_run(make_runtime, run_id: str = "run-1", ids: tuple[str, ...] = GATED) -> tuple[Any, dict[str, Any]]:
    """Decide ``ids`` in a fresh run; returns the runtime and the results by customer."""
    runtime = make_runtime(run_id=run_id)
    results = {r.customer_id: r for r in runtime.orchestrator.decide_many(list(ids))}
    for cid in GATED:
        if cid in results:
            assert results[cid].status == "pending_approval", results[cid]
            assert results[cid].selected_treatment == "early_upgrade"
    return runtime, results


def audit_events(ledger: SQLiteLedger, event: str) -> list[dict[str, Any]]:
    return [e for e in ledger.audit_entries() if e["event"] == event]


class TestApprovalRule:
    """approval_rule names the rule that sends a decision to a human, or None when none applies."""

    def test_requires_approval_flag(self) -> None:
        rule = approval_rule(treatment(requires_approval=True), ApprovalPolicy(), confidence=0.9, customer_value=10.0)
        assert rule is not None and "requires_approval" in rule and "plain_offer" in rule

    def test_listed_treatment(self) -> None:
        policy = ApprovalPolicy(treatments=["plain_offer"])
        rule = approval_rule(treatment(), policy, confidence=0.9, customer_value=10.0)
        assert rule is not None and "governance.approval_policy.treatments" in rule

    def test_treatment_not_listed_needs_nothing(self) -> None:
        policy = ApprovalPolicy(treatments=["other_offer"])
        assert approval_rule(treatment(), policy, confidence=0.9, customer_value=10.0) is None

    def test_cost_threshold_is_inclusive_at_equality(self) -> None:
        policy = ApprovalPolicy(cost_per_contact_at_least=50)
        rule = approval_rule(treatment(cost_per_contact=50.0), policy, confidence=0.9, customer_value=10.0)
        assert rule is not None and "cost_per_contact_at_least" in rule and "50.00" in rule

    def test_cost_above_threshold_applies_and_below_does_not(self) -> None:
        policy = ApprovalPolicy(cost_per_contact_at_least=50)
        assert approval_rule(treatment(cost_per_contact=60.0), policy, confidence=0.9, customer_value=10.0) is not None
        assert approval_rule(treatment(cost_per_contact=49.99), policy, confidence=0.9, customer_value=10.0) is None

    def test_customer_value_threshold(self) -> None:
        policy = ApprovalPolicy(customer_value_at_least=100)
        above = approval_rule(treatment(), policy, confidence=0.9, customer_value=150.0)
        assert above is not None and "customer_value_at_least" in above and "150.00" in above
        at = approval_rule(treatment(), policy, confidence=0.9, customer_value=100.0)
        assert at is not None and "customer_value_at_least" in at
        assert approval_rule(treatment(), policy, confidence=0.9, customer_value=99.99) is None
        assert approval_rule(treatment(), policy, confidence=0.9, customer_value=None) is None

    def test_confidence_below_threshold(self) -> None:
        policy = ApprovalPolicy(confidence_below=0.3)
        rule = approval_rule(treatment(), policy, confidence=0.29, customer_value=10.0)
        assert rule is not None and "confidence_below" in rule and "0.29" in rule

    def test_confidence_at_threshold_needs_nothing(self) -> None:
        policy = ApprovalPolicy(confidence_below=0.3)
        assert approval_rule(treatment(), policy, confidence=0.3, customer_value=10.0) is None
        assert approval_rule(treatment(), policy, confidence=None, customer_value=10.0) is None

    def test_no_rule_applies(self) -> None:
        policy = ApprovalPolicy(
            cost_per_contact_at_least=50, treatments=["other_offer"], customer_value_at_least=100, confidence_below=0.3,
        )
        assert approval_rule(treatment(cost_per_contact=10.0), policy, confidence=0.8, customer_value=40.0) is None
        assert approval_rule(treatment(), ApprovalPolicy(), confidence=0.0, customer_value=1e9) is None

    @pytest.mark.parametrize(
        ("drop", "expected"),
        [
            ((), "requires_approval"),
            (("flag",), "governance.approval_policy.treatments"),
            (("flag", "listed"), "cost_per_contact_at_least"),
            (("flag", "listed", "cost"), "customer_value_at_least"),
            (("flag", "listed", "cost", "value"), "confidence_below"),
        ],
    )
    def test_first_applicable_rule_wins_in_documented_order(self, drop: tuple[str, ...], expected: str) -> None:
        policy = ApprovalPolicy(
            cost_per_contact_at_least=50, treatments=[] if "listed" in drop else ["plain_offer"],
            customer_value_at_least=100, confidence_below=0.3,
        )
        t = treatment(requires_approval="flag" not in drop, cost_per_contact=10.0 if "cost" in drop else 80.0)
        rule = approval_rule(t, policy, confidence=0.1, customer_value=50.0 if "value" in drop else 200.0)
        assert rule is not None
        others = {"requires_approval", "governance.approval_policy.treatments", "cost_per_contact_at_least",
                  "customer_value_at_least", "confidence_below"} - {expected}
        assert expected in rule
        assert not any(other in rule for other in others), rule


class TestCheckApprovalMessage:
    """The Governance agent answers check_approval from the shipped config's policy."""

    @pytest.fixture
    def agent(self, tmp_path: Path) -> GovernanceAgent:
        config = load_config(CONFIG)
        return GovernanceAgent(config, SQLiteLedger(tmp_path / "gov.sqlite3"), make_clock(AS_OF, zone("Europe/London")))

    def test_expensive_treatment_needs_approval(self, agent: GovernanceAgent) -> None:
        check = expect(agent.process(CheckApproval(treatment_key="early_upgrade", confidence=0.9, customer_value=30)), ApprovalCheck)
        assert check.required is True and "cost_per_contact_at_least" in (check.rule or "")

    def test_cheap_confident_treatment_needs_none(self, agent: GovernanceAgent) -> None:
        check = expect(agent.process(CheckApproval(treatment_key="retention_email", confidence=0.9, customer_value=30)), ApprovalCheck)
        assert check.required is False and check.rule is None

    def test_low_confidence_needs_approval(self, agent: GovernanceAgent) -> None:
        check = expect(agent.process(CheckApproval(treatment_key="retention_email", confidence=0.2)), ApprovalCheck)
        assert check.required is True and "confidence_below" in (check.rule or "")

    def test_unknown_treatment_is_an_error_response(self, agent: GovernanceAgent) -> None:
        response = agent.process(CheckApproval(treatment_key="no_such_treatment", confidence=0.9))
        assert isinstance(response, ErrorResponse) and response.error_type == "config_error"


class TestPolicyConfigValidation:
    """governance.approval_policy.treatments may only name treatments the config defines."""

    def test_unknown_treatment_is_a_config_error_naming_the_key(self, tmp_path: Path) -> None:
        def edit(doc: dict[str, Any]) -> None:
            doc["governance"]["approval_policy"]["treatments"] = ["early_upgrade", "gold_plated_phone"]

        path = write_config(tmp_path, "bad.yaml", edit)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        message = str(caught.value)
        assert "governance.approval_policy.treatments" in message
        assert "gold_plated_phone" in message
        assert str(path) in message

    def test_unknown_treatment_message_does_not_echo_the_whole_config(self, tmp_path: Path) -> None:
        # DESIGN section 8: bad config is "one clear line on stderr"; the message should not carry the whole document.
        def edit(doc: dict[str, Any]) -> None:
            doc["governance"]["approval_policy"]["treatments"] = ["gold_plated_phone"]

        with pytest.raises(ConfigError) as caught:
            load_config(write_config(tmp_path, "bad.yaml", edit))
        message = str(caught.value)
        assert "Offer an early handset upgrade" not in message, f"{len(message)} chars: {message[:300]}..."
        assert len(message) < 400, f"{len(message)} chars: {message[:300]}..."

    def test_known_treatments_are_accepted_and_then_need_approval(self, tmp_path: Path) -> None:
        def edit(doc: dict[str, Any]) -> None:
            doc["governance"]["approval_policy"]["treatments"] = ["retention_email"]

        config = load_config(write_config(tmp_path, "ok.yaml", edit))
        assert config.governance.approval_policy.treatments == ["retention_email"]
        rule = approval_rule(config.treatment("retention_email"), config.governance.approval_policy, confidence=0.9, customer_value=1.0)
        assert rule is not None and "treatments" in rule


class TestNoDuplicateRequests:
    """Re-running the sample never opens a second request or takes more capacity for the gated customers."""

    def test_reruns_keep_one_pending_request_per_customer_and_treatment(self, make_runtime) -> None:
        first, results = first_run(make_runtime, "run-1", SAMPLE_IDS)
        ledger = first.ledger
        originals = {cid: results[cid].approval_request_id for cid in GATED}
        assert all(originals.values())
        assert ledger.used("early_upgrade", TODAY) == 2

        second = {r.customer_id: r for r in make_runtime(run_id="run-2").orchestrator.decide_many(list(SAMPLE_IDS))}
        again = {r.customer_id: r for r in make_runtime(run_id="run-1").orchestrator.decide_many(list(SAMPLE_IDS))}

        rows = ledger.approvals()
        assert sorted((r["customer_id"], r["treatment_id"], r["status"]) for r in rows) == [
            ("U128", "early_upgrade", "pending"), ("U134", "early_upgrade", "pending"),
        ]
        assert {r["customer_id"]: r["request_id"] for r in rows} == originals
        assert ledger.used("early_upgrade", TODAY) == 2
        assert len(audit_events(ledger, "approval_requested")) == 2
        for cid in GATED:
            waiting = second[cid]
            assert waiting.status == "pending_approval"
            assert waiting.selected_treatment == "early_upgrade"
            assert waiting.approval_request_id == originals[cid]
            assert waiting.explanation.startswith("Waiting for approval"), waiting.explanation
            replay = again[cid]
            assert replay.status == "pending_approval" and replay.replayed is True
            assert replay.approval_request_id == originals[cid]
        # run-2 took nothing for the gated customers: their only allocation is run-1's hold.
        for cid in GATED:
            assert [(a["run_id"], a["state"]) for a in ledger.allocations(customer_id=cid)] == [("run-1", "held")]


class TestApprove:
    """Approving turns the hold into an allocation without taking capacity twice."""

    def test_approve_keeps_one_unit_per_request_and_allocates(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        ledger = runtime.ledger
        assert ledger.used("early_upgrade", TODAY) == 2

        done = decide(runtime, results["U128"].approval_request_id, "approve", "alice", "fine")
        assert (done.status, done.decided_by, done.reason, done.decided_at) == ("approved", "alice", "fine", AS_OF)
        assert ledger.allocation_for("run-1:U128")["state"] == "allocated"
        assert ledger.allocation_for("run-1:U134")["state"] == "held"
        assert ledger.used("early_upgrade", TODAY) == 2

        decide(runtime, results["U134"].approval_request_id, "approve", "alice")
        assert ledger.allocation_for("run-1:U134")["state"] == "allocated"
        assert ledger.used("early_upgrade", TODAY) == 2
        approved = audit_events(ledger, "approval_approved")
        assert [(e["customer_id"], e["payload"]["by"]) for e in approved] == [("U128", "alice"), ("U134", "alice")]
        assert approved[0]["payload"]["reason"] == "fine"

    def test_approved_contact_counts_for_the_contact_cap(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        decide(runtime, results["U128"].approval_request_id, "approve", "alice")
        other = make_runtime(run_id="run-2").orchestrator.process(
            ProcessCustomerWithTreatment(customer_id="U128", treatment_key="retention_email")
        )
        assert other.status == "no_action"
        assert [a.reason for a in other.alternatives] == ["contact_limit"]

    def test_blank_approver_is_refused(self, make_runtime) -> None:
        # Decisions record who decided: "--by '   '" must not be recorded as an empty approver.
        runtime, results = first_run(make_runtime, ids=("U128",))
        request_id = results["U128"].approval_request_id
        before = snapshot(runtime.ledger)
        with pytest.raises(CVMError):
            decide(runtime, request_id, "approve", "   ")
        assert runtime.ledger.approval(request_id)["status"] == "pending"
        assert snapshot(runtime.ledger) == before


class TestReject:
    """Rejecting releases the held capacity and the contact, and keeps who and why."""

    def test_reject_releases_capacity_and_audits_by_and_reason(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        ledger = runtime.ledger
        done = decide(runtime, results["U128"].approval_request_id, "reject", "bob", "too expensive")
        assert (done.status, done.decided_by, done.reason) == ("rejected", "bob", "too expensive")
        assert ledger.allocation_for("run-1:U128")["state"] == "released"
        assert ledger.allocation_for("run-1:U134")["state"] == "held"
        assert ledger.used("early_upgrade", TODAY) == 1
        rejected = audit_events(ledger, "approval_rejected")
        assert len(rejected) == 1
        assert rejected[0]["customer_id"] == "U128" and rejected[0]["treatment_id"] == "early_upgrade"
        assert rejected[0]["payload"] == {
            "request_id": results["U128"].approval_request_id, "by": "bob", "reason": "too expensive",
        }

    def test_rejected_contact_no_longer_counts_for_the_contact_cap(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        decide(runtime, results["U128"].approval_request_id, "reject", "bob", "too expensive")
        assert runtime.ledger.contacts_since("U128", "marketing", datetime.fromisoformat(AS_OF) - timedelta(days=7)) == 0
        other = make_runtime(run_id="run-2").orchestrator.process(
            ProcessCustomerWithTreatment(customer_id="U128", treatment_key="retention_email")
        )
        assert other.status == "success" and other.selected_treatment == "retention_email"
        assert runtime.ledger.allocation_for("run-2:U128")["state"] == "allocated"

    def test_control_characters_are_removed_from_the_reason_before_it_is_stored(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        hostile = "too\x1b[2J expensive\r\nFORGED: approved by ceo\x07\u202e"
        done = decide(runtime, results["U128"].approval_request_id, "reject", "bob", hostile)
        assert done.reason == "too[2J expensive  FORGED: approved by ceo"
        assert runtime.ledger.approval(done.request_id)["reason"] == done.reason
        assert audit_events(runtime.ledger, "approval_rejected")[0]["payload"]["reason"] == done.reason

    def test_a_reason_of_control_characters_only_is_no_reason(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        with pytest.raises(UsageError, match="--reason"):
            decide(runtime, results["U128"].approval_request_id, "reject", "bob", "\x1b\x07\r\n")

    @pytest.mark.parametrize("reason", [None, "", "   "])
    def test_reject_without_reason_is_a_usage_error(self, make_runtime, reason: str | None) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        request_id = results["U128"].approval_request_id
        before = snapshot(runtime.ledger)
        with pytest.raises(UsageError, match="--reason"):
            decide(runtime, request_id, "reject", "bob", reason)
        assert runtime.ledger.approval(request_id)["status"] == "pending"
        assert snapshot(runtime.ledger) == before


class TestAlreadyDecided:
    """A decided request cannot be decided again, and trying changes nothing in the ledger."""

    @pytest.mark.parametrize("first", ["approve", "reject"])
    @pytest.mark.parametrize("second", ["approve", "reject"])
    def test_second_decision_is_refused_and_changes_nothing(self, make_runtime, first: str, second: str) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        request_id = results["U128"].approval_request_id
        decide(runtime, request_id, first, "alice", "first call")
        before = snapshot(runtime.ledger)
        with pytest.raises(ApprovalError) as caught:
            decide(runtime, request_id, second, "mallory", "second call")
        assert "alice" in str(caught.value)
        assert ("approved" if first == "approve" else "rejected") in str(caught.value)
        assert snapshot(runtime.ledger) == before

    def test_ledger_refuses_deciding_an_expired_request(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        request_id = results["U128"].approval_request_id
        later = make_runtime(run_id="run-later", as_of=EXPIRY)
        expect(later.orchestrator.governance.process(ExpireApprovals()), Ack)
        before = snapshot(later.ledger)
        with pytest.raises(ApprovalError, match="expired"):
            later.ledger.decide_approval(request_id, "approved", "alice", None, datetime.fromisoformat(EXPIRY))
        assert snapshot(later.ledger) == before

    def test_ledger_refuses_a_decision_past_the_deadline_before_any_expiry_sweep(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        request_id = results["U128"].approval_request_id
        before = snapshot(runtime.ledger)
        with pytest.raises(ApprovalError, match=f"{request_id} expired at {re.escape(EXPIRY)}"):
            runtime.ledger.decide_approval(request_id, "approved", "alice", None, datetime.fromisoformat(EXPIRY))
        assert snapshot(runtime.ledger) == before

    def test_ledger_refuses_a_decision_before_the_request(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime, ids=("U128",))
        request_id = results["U128"].approval_request_id
        before = snapshot(runtime.ledger)
        earlier = datetime.fromisoformat(AS_OF) - timedelta(seconds=1)
        with pytest.raises(ApprovalError, match="would come before it"):
            runtime.ledger.decide_approval(request_id, "rejected", "alice", "no", earlier)
        assert snapshot(runtime.ledger) == before

    def test_unknown_request_is_an_approval_error(self, make_runtime) -> None:
        runtime, _ = first_run(make_runtime, ids=("U128",))
        before = snapshot(runtime.ledger)
        with pytest.raises(ApprovalError, match="apr-nope"):
            decide(runtime, "apr-nope", "approve", "alice")
        assert snapshot(runtime.ledger) == before


class TestExpiry:
    """Requests not decided within expiry_hours expire before the next batch decides anything."""

    def test_not_expired_one_second_before_the_deadline(self, make_runtime) -> None:
        runtime, _ = first_run(make_runtime)
        just_before = (datetime.fromisoformat(EXPIRY) - timedelta(seconds=1)).isoformat()
        make_runtime(run_id="run-2", as_of=just_before).orchestrator.decide_many(["U123"])
        assert [r["status"] for r in runtime.ledger.approvals()] == ["pending", "pending"]
        assert runtime.ledger.used("early_upgrade", TODAY) == 2

    def test_decide_many_expires_pending_requests_first(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        old = {cid: results[cid].approval_request_id for cid in GATED}
        later = make_runtime(run_id="run-2", as_of=EXPIRY)
        fresh = later.orchestrator.decide_many(["U128"])[0]

        for cid in GATED:
            row = later.ledger.approval(old[cid])
            assert row["status"] == "expired"
            assert row["decided_by"] == "system (expiry)"
            assert row["decided_at"] == EXPIRY
            assert later.ledger.allocation_for(f"run-1:{cid}")["state"] == "released"
        assert later.ledger.used("early_upgrade", TODAY) == 0
        expired = audit_events(later.ledger, "approval_expired")
        assert sorted(e["customer_id"] for e in expired) == ["U128", "U134"]
        assert {e["payload"]["by"] for e in expired} == {"system (expiry)"}
        # U128 was decided after the expiry: a new request, not "waiting for" the expired one.
        assert fresh.status == "pending_approval"
        assert fresh.approval_request_id not in (None, old["U128"])
        assert not fresh.explanation.startswith("Waiting"), fresh.explanation

    def test_dry_run_expires_nothing(self, make_runtime) -> None:
        runtime, _ = first_run(make_runtime)
        before = snapshot(runtime.ledger)
        make_runtime(run_id="run-2", as_of=EXPIRY, dry_run=True).orchestrator.decide_many(["U123"])
        assert snapshot(runtime.ledger) == before


class TestReplayOverlay:
    """Replaying a run shows what the approver decided since the run."""

    def test_replay_after_approval_is_success_with_approver(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        decide(runtime, results["U128"].approval_request_id, "approve", "alice", "ok")
        replay = {r.customer_id: r for r in make_runtime(run_id="run-1").orchestrator.decide_many(list(GATED))}
        assert replay["U128"].replayed is True
        assert replay["U128"].status == "success" and replay["U128"].approved_by == "alice"
        assert replay["U128"].selected_treatment == "early_upgrade"
        assert replay["U134"].status == "pending_approval" and replay["U134"].approved_by is None
        assert runtime.ledger.used("early_upgrade", TODAY) == 2

    def test_replay_after_approval_explanation_names_the_approver(self, make_runtime) -> None:
        # A success must not still explain itself as "Needs approval ...; capacity is held".
        runtime, results = first_run(make_runtime, ids=("U128",))
        decide(runtime, results["U128"].approval_request_id, "approve", "alice", "ok")
        replay = make_runtime(run_id="run-1").orchestrator.decide("U128")
        assert replay.status == "success"
        assert "capacity is held" not in replay.explanation, replay.explanation
        assert "alice" in replay.explanation, replay.explanation

    def test_replay_after_rejection_is_no_action_with_the_rejection(self, make_runtime) -> None:
        runtime, results = first_run(make_runtime)
        decide(runtime, results["U134"].approval_request_id, "reject", "bob", "not this month")
        replay = make_runtime(run_id="run-1").orchestrator.decide("U134")
        assert replay.replayed is True
        assert replay.status == "no_action" and replay.selected_treatment == "ignore"
        first = replay.alternatives[0]
        assert (first.treatment_id, first.reason) == ("early_upgrade", "approval_rejected")
        assert "bob" in first.detail and "not this month" in first.detail
        assert "rejected by bob" in replay.explanation

    def test_replay_after_expiry_is_no_action_with_the_expiry(self, make_runtime) -> None:
        first_run(make_runtime, ids=("U128",))
        replay = make_runtime(run_id="run-1", as_of=EXPIRY).orchestrator.decide_many(["U128"])[0]
        assert replay.status == "no_action"
        assert replay.alternatives[0].reason == "approval_expired"
        assert "system (expiry)" in replay.alternatives[0].detail


class TestMaxPendingPerTreatment:
    """max_pending_per_treatment stops further requests and the walk falls back to the next candidate."""

    def test_second_gated_customer_falls_back(self, make_runtime, tmp_path: Path) -> None:
        def edit(doc: dict[str, Any]) -> None:
            doc["governance"]["approval_policy"]["max_pending_per_treatment"] = 1

        runtime = make_runtime(run_id="run-1", config_path=write_config(tmp_path, "limit.yaml", edit))
        u128, u134 = runtime.orchestrator.decide_many(list(GATED))
        assert u128.status == "pending_approval" and u128.selected_treatment == "early_upgrade"
        assert u134.selected_treatment != "early_upgrade"
        limited = [a for a in u134.alternatives if a.treatment_id == "early_upgrade"]
        assert [a.reason for a in limited] == ["pending_approval_limit"]
        assert runtime.ledger.used("early_upgrade", TODAY) == 1
        assert [r["customer_id"] for r in runtime.ledger.approvals()] == ["U128"]


class TestAutoApproveInProcess:
    """auto_approve approves as AUTO_APPROVER in the same run and leaves nothing pending."""

    def test_auto_approve_run(self, make_runtime) -> None:
        runtime = make_runtime(run_id="run-auto", auto_approve=True)
        results = {r.customer_id: r for r in runtime.orchestrator.decide_many(list(GATED))}
        for cid in GATED:
            assert results[cid].status == "success" and results[cid].approved_by == AUTO_APPROVER
            assert results[cid].approval_request_id is not None
            assert runtime.ledger.allocation_for(f"run-auto:{cid}")["state"] == "allocated"
        assert runtime.ledger.approvals(status="pending") == []
        assert runtime.ledger.used("early_upgrade", TODAY) == 2


class TestApprovingRechecksConsent:
    """A person's yes never turns a hold into a contact the customer has said no to since the request was opened."""

    def test_consent_withdrawn_since_the_request(self, make_runtime, data_copy: Path) -> None:
        first = make_runtime(run_id="run-1", data_dir=data_copy).orchestrator.decide("U128")
        assert (first.status, first.channel, first.purpose) == ("pending_approval", "email", "marketing")
        withdraw_email_marketing(data_copy, "U128")
        runtime = make_runtime(run_id="run-2", data_dir=data_copy)
        with pytest.raises(ApprovalError, match=r"not approved: early_upgrade for U128: consent withdrawn since the request: .* withdrawn and its capacity released"):
            decide(runtime, first.approval_request_id, "approve", "alice")
        request = runtime.ledger.approval(first.approval_request_id)
        assert (request.status, request.decided_by) == ("rejected", WITHDRAWN_BY)
        assert [a["state"] for a in runtime.ledger.allocations(customer_id="U128")] == ["released"]
        assert runtime.ledger.used(first.selected_treatment, TODAY) == 0
        assert runtime.ledger.decision("run-1", "U128").result["status"] == "no_action"

    def test_a_treatment_no_longer_configured_is_withdrawn_not_approved(self, make_runtime, tmp_path: Path) -> None:
        first = make_runtime(run_id="run-1").orchestrator.decide("U128")

        def without_early_upgrade(doc: dict[str, Any]) -> None:
            del doc["treatments"]["early_upgrade"]
            doc["constraints"].pop("early_upgrade", None)

        runtime = make_runtime(run_id="run-2", config_path=write_config(tmp_path, "without.yaml", without_early_upgrade))
        with pytest.raises(ApprovalError, match="not approved: early_upgrade for U128: treatment early_upgrade is no longer in the"):
            decide(runtime, first.approval_request_id, "approve", "alice")
        assert runtime.ledger.approval(first.approval_request_id).status == "rejected"

    def test_consent_unchanged_is_approved(self, make_runtime, data_copy: Path) -> None:
        first = make_runtime(run_id="run-1", data_dir=data_copy).orchestrator.decide("U128")
        done = decide(make_runtime(run_id="run-2", data_dir=data_copy), first.approval_request_id, "approve", "alice")
        assert (done.status, done.decided_by) == ("approved", "alice")

    def test_a_folder_without_the_customer_changes_nothing(self, make_runtime, tmp_path: Path) -> None:
        first = make_runtime(run_id="run-1").orchestrator.decide("U128")
        other = tmp_path / "other-folder"
        other.mkdir()
        rows = json.loads((SAMPLE / "permissions.json").read_text(encoding="utf-8"))
        (other / "permissions.json").write_text(json.dumps([r for r in rows if r["customer_id"] != "U128"]), encoding="utf-8")
        runtime = make_runtime(run_id="run-2", data_dir=other)
        before = snapshot(runtime.ledger)
        with pytest.raises(ApprovalError, match=r"cannot approve .*unknown customer U128.*--data-dir.*nothing changed"):
            decide(runtime, first.approval_request_id, "approve", "alice")
        assert snapshot(runtime.ledger) == before

    def test_without_a_data_folder_it_refuses_to_approve_but_rejects(self, make_runtime, db_url: str) -> None:
        first = make_runtime(run_id="run-1").orchestrator.decide("U128")
        ledger = SQLiteLedger.from_url(db_url)
        agent = GovernanceAgent(load_config(CONFIG), ledger, make_clock(AS_OF, zone("Europe/London")))
        approve = DecideApproval(request_id=first.approval_request_id, decision="approve", by="alice")
        with pytest.raises(UsageError, match="re-checks the customer's consent"):
            expect(agent.process(approve), ApprovalRequestInfo)
        reject = DecideApproval(request_id=first.approval_request_id, decision="reject", by="bob", reason="too costly")
        assert expect(agent.process(reject), ApprovalRequestInfo).status == "rejected"
