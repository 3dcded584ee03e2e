"""The Allocation agent through its messages, on a real SQLite ledger with a fixed clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cvm.agents.allocation import AllocationAgent
from cvm.agents.messages import (
    Ack,
    AllocationHistoryResponse,
    AllocationResponse,
    AvailabilityResponse,
    ConstraintsResponse,
    ContactPolicyResponse,
    ContactScreen,
    ErrorResponse,
)
from cvm.tools.clock import FixedClock
from cvm.tools.ledger import SQLiteLedger
from cvm.utils.config import load_config
from tests.conftest import AS_OF

NOW = datetime.fromisoformat(AS_OF)


@pytest.fixture
def ledger(db_url: str) -> SQLiteLedger:
    store = SQLiteLedger.from_url(db_url)
    yield store
    store.close()


@pytest.fixture
def config(config_path: Path):
    return load_config(config_path)


@pytest.fixture
def agent(config, ledger) -> AllocationAgent:
    return AllocationAgent(config, ledger, FixedClock(NOW))


def with_contact_policy(config, **changes: object):
    """The config with ``policies.contact`` fields changed (e.g. the daily cap off, to test the purpose cap alone)."""
    contact = config.policies.contact.model_copy(update=changes)
    return config.model_copy(update={"policies": config.policies.model_copy(update={"contact": contact})})


@pytest.fixture
def no_daily_cap_agent(config, ledger) -> AllocationAgent:
    """An agent whose config has no per-customer daily cap, so several contacts a day are possible."""
    return AllocationAgent(with_contact_policy(config, max_contacts_per_day=None), ledger, FixedClock(NOW))


def allocate(agent: AllocationAgent, treatment: str, customer: str, run: str = "run-1", **extra: object):
    return agent.process({"type": "allocate_resource", "treatment_key": treatment, "customer_id": customer, "run_id": run, **extra})


class TestAllocateResource:
    """allocate_resource takes one unit of today's capacity, once per run and customer."""

    def test_allocates_and_counts(self, agent, ledger):
        response = allocate(agent, "service_sms", "U123")
        assert isinstance(response, AllocationResponse)
        assert response.allocated and response.status == "allocated"
        assert response.treatment_key == "service_sms" and response.customer_id == "U123"
        assert ledger.used("service_sms", "2026-11-23") == 1
        rows = ledger.allocations(customer_id="U123")
        assert [(r["treatment_id"], r["run_id"], r["day"], r["channel"], r["purpose"]) for r in rows] == [
            ("service_sms", "run-1", "2026-11-23", "sms", "service_updates")
        ]

    def test_same_run_and_customer_is_a_duplicate(self, agent, ledger):
        first = allocate(agent, "service_sms", "U123")
        again = allocate(agent, "service_call_back", "U123")
        assert first.status == "allocated"
        assert again.status == "duplicate" and again.allocated
        assert again.treatment_key == "service_sms"
        assert ledger.used("service_sms", "2026-11-23") == 1
        assert ledger.used("service_call_back", "2026-11-23") == 0
        assert len(ledger.allocations(customer_id="U123")) == 1

    def test_capacity_runs_out(self, agent, ledger):
        # service_call_back has max_per_day 3 in the shipped config.
        statuses = [allocate(agent, "service_call_back", f"U{900 + i}").status for i in range(5)]
        assert statuses == ["allocated"] * 3 + ["capacity_exhausted"] * 2
        last = allocate(agent, "service_call_back", "U999")
        assert last.allocated is False
        assert ledger.used("service_call_back", "2026-11-23") == 3
        assert len([r for r in ledger.allocations() if r["treatment_id"] == "service_call_back"]) == 3

    def test_marketing_contact_cap_across_runs(self, no_daily_cap_agent):
        agent = no_daily_cap_agent
        assert allocate(agent, "retention_email", "U124", run="run-a").status == "allocated"
        second = allocate(agent, "family_plan", "U124", run="run-b")
        assert second.status == "contact_limit" and not second.allocated
        assert "daily cap" not in second.detail
        service = allocate(agent, "service_sms", "U124", run="run-c")
        assert service.status == "allocated"

    def test_new_day_has_fresh_capacity(self, config, ledger, agent):
        for i in range(3):
            allocate(agent, "service_call_back", f"U{900 + i}")
        tomorrow = AllocationAgent(config, ledger, FixedClock(NOW + timedelta(days=1)))
        assert allocate(tomorrow, "service_call_back", "U950").status == "allocated"
        assert ledger.used("service_call_back", "2026-11-24") == 1
        assert ledger.used("service_call_back", "2026-11-23") == 3

    def test_scheduled_contact_is_recorded(self, agent, ledger):
        later = NOW.replace(hour=18)
        response = allocate(agent, "service_sms", "U123", scheduled_for=later.isoformat())
        assert response.allocated and response.scheduled_for is not None
        assert datetime.fromisoformat(response.scheduled_for) == later
        row = ledger.allocations(customer_id="U123")[0]
        assert datetime.fromisoformat(row["contact_at"]) == later

    def test_unknown_treatment_is_an_error_response(self, agent, ledger):
        response = allocate(agent, "no_such_treatment", "U123")
        assert isinstance(response, ErrorResponse)
        assert "no_such_treatment" in response.message
        assert ledger.allocations() == []

    def test_invalid_message_is_an_error_response(self, agent):
        response = agent.process({"type": "allocate_resource", "treatment_key": "service_sms"})
        assert isinstance(response, ErrorResponse) and response.error_type == "invalid_message"

    def test_unknown_message_type_is_an_error_response(self, agent):
        response = agent.process({"type": "launch_rocket"})
        assert isinstance(response, ErrorResponse) and response.error_type == "unknown_message_type"
        assert "allocate_resource" in response.message


class TestCheckAvailability:
    """check_availability reports today's use and what remains, without taking anything."""

    def test_fresh_treatment_is_available(self, agent, ledger):
        response = agent.process({"type": "check_availability", "treatment_key": "marketing_call_back"})
        assert isinstance(response, AvailabilityResponse)
        assert response.available and response.max_per_day == 2 and response.used_today == 0 and response.remaining == 2
        assert ledger.used("marketing_call_back", "2026-11-23") == 0

    def test_reflects_allocations(self, agent):
        allocate(agent, "marketing_call_back", "U126")
        one_left = agent.process({"type": "check_availability", "treatment_key": "marketing_call_back"})
        assert one_left.used_today == 1 and one_left.remaining == 1 and one_left.available
        allocate(agent, "marketing_call_back", "U127")
        none_left = agent.process({"type": "check_availability", "treatment_key": "marketing_call_back"})
        assert none_left.used_today == 2 and none_left.remaining == 0 and not none_left.available

    def test_unknown_treatment_is_an_error_response(self, agent):
        response = agent.process({"type": "check_availability", "treatment_key": "nope"})
        assert isinstance(response, ErrorResponse) and "nope" in response.message


class TestScreenContacts:
    """screen_contacts: every treatment the contact rules refuse one customer now, read from the ledger."""

    def test_nothing_refused_before_any_contact(self, agent):
        response = agent.process({"type": "screen_contacts", "customer_id": "U124"})
        assert isinstance(response, ContactScreen) and response.blocked == {}

    def test_a_contact_fills_the_purpose_cap_and_the_daily_cap(self, agent, config):
        allocate(agent, "retention_email", "U124")
        response = agent.process({"type": "screen_contacts", "customer_id": "U124"})
        marketing = {t.id for t in config.treatments.values() if t.purpose == "marketing"}
        assert set(response.blocked["contact_limit"]) == marketing
        assert set(response.blocked["daily_contact_limit"]) == set(config.treatments)
        assert response.blocked["contact_limit"]["retention_email"] == "1 marketing contact(s) in the last 7 days (cap 1)"
        other = agent.process({"type": "screen_contacts", "customer_id": "U125"})
        assert other.blocked == {}

    def test_quiet_hours_move_interrupting_contacts_past_todays_cap(self, agent, config):
        allocate(agent, "retention_email", "U124")
        tomorrow = (NOW + timedelta(days=1)).replace(hour=9, minute=0).isoformat()
        response = agent.process({"type": "screen_contacts", "customer_id": "U124", "quiet_until": tomorrow})
        interrupting = {t.id for t in config.treatments.values() if t.channel in ("call", "sms", "push_notifications")}
        assert set(response.blocked["daily_contact_limit"]) == set(config.treatments) - interrupting


class TestCheckContactPolicy:
    """check_contact_policy counts the customer's contacts per purpose in the rolling window."""

    def test_marketing_capped_after_one_contact(self, agent):
        before = agent.process({"type": "check_contact_policy", "customer_id": "U124", "purpose": "marketing"})
        assert isinstance(before, ContactPolicyResponse)
        assert before.allowed and before.contacts_in_window == 0 and before.cap == 1 and before.window_days == 7
        allocate(agent, "retention_email", "U124")
        after = agent.process({"type": "check_contact_policy", "customer_id": "U124", "purpose": "marketing"})
        assert not after.allowed and after.contacts_in_window == 1

    def test_uncapped_purpose_stays_allowed(self, no_daily_cap_agent):
        agent = no_daily_cap_agent
        allocate(agent, "service_sms", "U124", run="r1")
        allocate(agent, "service_call_back", "U124", run="r2")
        response = agent.process({"type": "check_contact_policy", "customer_id": "U124", "purpose": "service_updates"})
        assert response.allowed and response.cap is None and response.contacts_in_window == 2

    def test_other_customers_do_not_count(self, agent):
        allocate(agent, "retention_email", "U125")
        response = agent.process({"type": "check_contact_policy", "customer_id": "U124", "purpose": "marketing"})
        assert response.allowed and response.contacts_in_window == 0

    def test_contacts_older_than_the_window_do_not_count(self, config, ledger):
        old = AllocationAgent(config, ledger, FixedClock(NOW - timedelta(days=8)))
        assert allocate(old, "retention_email", "U124", run="old").status == "allocated"
        today = AllocationAgent(config, ledger, FixedClock(NOW))
        response = today.process({"type": "check_contact_policy", "customer_id": "U124", "purpose": "marketing"})
        assert response.allowed and response.contacts_in_window == 0
        assert allocate(today, "family_plan", "U124", run="new").status == "allocated"


class TestGetConstraints:
    """get_constraints lists every treatment with today's use, ordered by priority."""

    def test_lists_every_treatment(self, agent, config):
        allocate(agent, "family_plan", "U129")
        response = agent.process({"type": "get_constraints"})
        assert isinstance(response, ConstraintsResponse)
        assert response.day == "2026-11-23"
        by_id = {c.treatment_id: c for c in response.constraints}
        assert set(by_id) == set(config.treatments)
        assert by_id["family_plan"].used_today == 1 and by_id["family_plan"].remaining == 29
        assert by_id["retention_email"].used_today == 0 and by_id["retention_email"].max_per_day == 500
        assert by_id["early_upgrade"].cost_per_contact == 60.0
        priorities = [c.priority for c in response.constraints]
        assert priorities == sorted(priorities)


class TestResetConstraints:
    """reset_constraints forgets today's use (all or one treatment), keeps allocations and is audited."""

    def test_reset_everything(self, agent, ledger):
        allocate(agent, "service_sms", "U123")
        allocate(agent, "retention_email", "U124")
        response = agent.process({"type": "reset_constraints"})
        assert isinstance(response, Ack) and "2 counter" in response.detail
        assert ledger.used("service_sms", "2026-11-23") == 0
        assert ledger.used("retention_email", "2026-11-23") == 0
        assert len(ledger.allocations()) == 2
        audits = [e for e in ledger.audit_entries() if e["event"] == "capacity_reset"]
        assert len(audits) == 1
        assert audits[0]["payload"]["day"] == "2026-11-23" and audits[0]["payload"]["treatment_id"] is None

    def test_reset_one_treatment(self, agent, ledger):
        allocate(agent, "service_sms", "U123")
        allocate(agent, "retention_email", "U124")
        response = agent.process({"type": "reset_constraints", "treatment_key": "service_sms"})
        assert isinstance(response, Ack) and "service_sms" in response.detail
        assert ledger.used("service_sms", "2026-11-23") == 0
        assert ledger.used("retention_email", "2026-11-23") == 1
        audits = [e for e in ledger.audit_entries() if e["event"] == "capacity_reset"]
        assert [a["payload"]["treatment_id"] for a in audits] == ["service_sms"]

    def test_reset_frees_capacity(self, agent):
        for i in range(2):
            allocate(agent, "marketing_call_back", f"U{900 + i}")
        assert allocate(agent, "marketing_call_back", "U950").status == "capacity_exhausted"
        agent.process({"type": "reset_constraints", "treatment_key": "marketing_call_back"})
        assert allocate(agent, "marketing_call_back", "U951").status == "allocated"

    def test_reset_unknown_treatment_is_an_error_response(self, agent, ledger):
        response = agent.process({"type": "reset_constraints", "treatment_key": "nope"})
        assert isinstance(response, ErrorResponse) and "nope" in response.message
        assert [e for e in ledger.audit_entries() if e["event"] == "capacity_reset"] == []


class TestAllocationHistory:
    """get_allocation_history filters by customer and run and honours the limit."""

    def test_filters(self, no_daily_cap_agent):
        agent = no_daily_cap_agent
        allocate(agent, "service_sms", "U123", run="r1")
        allocate(agent, "retention_email", "U124", run="r1")
        allocate(agent, "service_call_back", "U123", run="r2")
        everything = agent.process({"type": "get_allocation_history"})
        assert isinstance(everything, AllocationHistoryResponse) and len(everything.allocations) == 3
        mine = agent.process({"type": "get_allocation_history", "customer_id": "U123"})
        assert sorted(a["treatment_id"] for a in mine.allocations) == ["service_call_back", "service_sms"]
        run_one = agent.process({"type": "get_allocation_history", "run_id": "r1"})
        assert sorted(a["customer_id"] for a in run_one.allocations) == ["U123", "U124"]
        both = agent.process({"type": "get_allocation_history", "customer_id": "U123", "run_id": "r2"})
        assert [a["treatment_id"] for a in both.allocations] == ["service_call_back"]
        limited = agent.process({"type": "get_allocation_history", "limit": 1})
        assert len(limited.allocations) == 1

    def test_bad_limit_is_an_error_response(self, agent):
        response = agent.process({"type": "get_allocation_history", "limit": 0})
        assert isinstance(response, ErrorResponse) and response.error_type == "invalid_message"


class TestDailyCap:
    """By default a customer gets one contact a day across every purpose; named treatments may be exempt."""

    def test_second_contact_on_the_day_is_a_contact_limit_naming_the_daily_cap(self, agent, ledger):
        assert allocate(agent, "retention_email", "U124", run="run-a").status == "allocated"
        service = allocate(agent, "service_sms", "U124", run="run-b")
        assert (service.status, service.allocated) == ("contact_limit", False)
        assert service.detail.startswith("daily cap: 1 contact(s) on 2026-11-23")
        assert ledger.used("service_sms", "2026-11-23") == 0

    def test_an_exempt_treatment_is_given_and_still_counts(self, config, ledger):
        exempt = AllocationAgent(with_contact_policy(config, daily_cap_exempt=("service_call_back",)), ledger, FixedClock(NOW))
        assert allocate(exempt, "retention_email", "U124", run="run-a").status == "allocated"
        assert allocate(exempt, "service_call_back", "U124", run="run-b").status == "allocated"
        assert allocate(exempt, "service_sms", "U124", run="run-c").status == "contact_limit"

    def test_a_contact_moved_to_tomorrow_leaves_today_free(self, agent):
        tomorrow = (NOW + timedelta(days=1)).isoformat()
        assert allocate(agent, "service_sms", "U124", run="run-a", scheduled_for=tomorrow).status == "allocated"
        assert allocate(agent, "retention_email", "U124", run="run-b").status == "allocated"
