"""Capacity per treatment per day, idempotency, the contact caps and capacity resets, on every ledger backend."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvm.tools.ledger import AllocationOutcome, AllocationRequest, AllocationRow, Ledger
from tests.tools.ledger_conformance.backends import LedgerBackend
from tests.tools.ledger_conformance.helpers import DAY, NOW, request


class TestCapacity:
    """One process: capacity per treatment per day, idempotency, unlimited treatments."""

    def test_allocates_up_to_max_then_exhausted(self, ledger: Ledger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", customer_id=f"C{i}", max_per_day=3)).status for i in range(5)]
        assert statuses == ["allocated", "allocated", "allocated", "capacity_exhausted", "capacity_exhausted"]
        assert ledger.used("retention_email", DAY) == 3
        assert [row.idempotency_key for row in ledger.allocations()] == ["k0", "k1", "k2"]

    def test_exhausted_outcome_is_not_allocated(self, ledger: Ledger) -> None:
        outcome = ledger.allocate(request("k0", max_per_day=0))
        assert outcome == AllocationOutcome("capacity_exhausted", "retention_email")
        assert outcome.allocated is False
        assert ledger.used("retention_email", DAY) == 0
        assert ledger.allocation_for("k0") is None

    def test_same_key_is_duplicate_with_the_first_treatment(self, ledger: Ledger) -> None:
        first = ledger.allocate(request("run-1:U1", treatment_id="retention_email"))
        again = ledger.allocate(request("run-1:U1", treatment_id="retention_sms", channel="sms"))
        assert first.status == "allocated"
        assert again.status == "duplicate"
        assert again.treatment_id == "retention_email"
        assert again.allocated is True
        assert ledger.used("retention_email", DAY) == 1
        assert ledger.used("retention_sms", DAY) == 0
        assert len(ledger.allocations()) == 1

    def test_unlimited_capacity_counts_use(self, ledger: Ledger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", customer_id=f"C{i}", max_per_day=None)).status for i in range(6)]
        assert statuses == ["allocated"] * 6
        assert ledger.used("retention_email", DAY) == 6

    def test_days_have_separate_capacity(self, ledger: Ledger) -> None:
        day1 = [ledger.allocate(request(f"d1-{i}", customer_id=f"C{i}", max_per_day=2)).status for i in range(3)]
        day2 = [
            ledger.allocate(request(f"d2-{i}", customer_id=f"C{i}", day="2026-11-24", max_per_day=2)).status
            for i in range(3)
        ]
        assert day1 == ["allocated", "allocated", "capacity_exhausted"]
        assert day2 == ["allocated", "allocated", "capacity_exhausted"]
        assert ledger.used("retention_email", DAY) == 2
        assert ledger.used("retention_email", "2026-11-24") == 2
        assert ledger.used("retention_email", "2026-11-25") == 0

    def test_treatments_have_separate_capacity(self, ledger: Ledger) -> None:
        assert ledger.allocate(request("a", customer_id="A", treatment_id="retention_email", max_per_day=1)).status == "allocated"
        assert ledger.allocate(request("b", customer_id="B", treatment_id="retention_sms", max_per_day=1)).status == "allocated"
        assert ledger.allocate(request("c", customer_id="C", treatment_id="retention_email", max_per_day=1)).status == "capacity_exhausted"

    def test_allocation_row_stores_utc_times(self, ledger: Ledger) -> None:
        london = ZoneInfo("Europe/London")
        contact = datetime(2026, 7, 1, 10, 0, tzinfo=london)  # BST: 09:00 UTC
        outcome = ledger.allocate(request("k", contact_at=contact, scheduled_for=contact))
        assert outcome.scheduled_for == "2026-07-01T09:00:00+00:00"
        row = ledger.allocation_for("k")
        assert isinstance(row, AllocationRow)
        assert row.contact_at == "2026-07-01T09:00:00+00:00"
        assert row.scheduled_for == "2026-07-01T09:00:00+00:00"
        assert (row.customer_id, row.treatment_id, row.channel, row.purpose, row.day, row.state) == (
            "U1", "retention_email", "email", "marketing", DAY, "allocated",
        )

    def test_allocations_filter_by_customer_and_run(self, ledger: Ledger) -> None:
        ledger.allocate(request("r1:A", customer_id="A", run_id="r1"))
        ledger.allocate(request("r1:B", customer_id="B", run_id="r1"))
        ledger.allocate(request("r2:A", customer_id="A", run_id="r2"))
        assert sorted(r.idempotency_key for r in ledger.allocations(customer_id="A")) == ["r1:A", "r2:A"]
        assert sorted(r.idempotency_key for r in ledger.allocations(run_id="r1")) == ["r1:A", "r1:B"]
        assert [r.idempotency_key for r in ledger.allocations(customer_id="A", run_id="r2")] == ["r2:A"]
        assert len(ledger.allocations(limit=2)) == 2

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        demands=st.lists(
            st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["2026-11-23", "2026-11-24"])), max_size=25
        ),
        caps=st.fixed_dictionaries({"a": st.integers(0, 4), "b": st.none() | st.integers(0, 4)}),
    )
    def test_used_is_min_of_demand_and_capacity(self, backend: LedgerBackend, demands: list[tuple[str, str]], caps: dict) -> None:
        led = backend.open(f"example-{next(_examples)}")  # a fresh ledger for every example
        statuses: Counter[tuple[str, str, str]] = Counter()
        for i, (treatment, day) in enumerate(demands):
            out = led.allocate(request(f"k{i}", customer_id=f"C{i}", treatment_id=treatment, day=day, max_per_day=caps[treatment]))
            statuses[(treatment, day, out.status)] += 1
        for treatment in ("a", "b"):
            for day in ("2026-11-23", "2026-11-24"):
                demand = sum(1 for t, d in demands if (t, d) == (treatment, day))
                expected = demand if caps[treatment] is None else min(demand, caps[treatment])
                assert led.used(treatment, day) == expected
                assert statuses[(treatment, day, "allocated")] == expected


_examples = itertools.count()


class TestContactCap:
    """At most ``contact_cap`` contacts per customer and purpose inside the window."""

    def test_second_contact_in_window_is_limited_and_takes_no_capacity(self, ledger: Ledger) -> None:
        first = ledger.allocate(request("k1", treatment_id="retention_email", contact_cap=1))
        second = ledger.allocate(
            request("k2", treatment_id="retention_sms", channel="sms", contact_cap=1, contact_at=NOW + timedelta(hours=1))
        )
        assert first.status == "allocated"
        assert second == AllocationOutcome("contact_limit", "retention_sms")
        assert second.allocated is False
        assert ledger.used("retention_sms", DAY) == 0
        assert ledger.allocation_for("k2") is None

    def test_contact_older_than_window_does_not_count(self, ledger: Ledger) -> None:
        old = NOW - timedelta(days=10)
        ledger.allocate(request("old", contact_at=old, day="2026-11-13", contact_cap=1, window_start=old - timedelta(days=7)))
        fresh = ledger.allocate(request("new", contact_cap=1, window_start=NOW - timedelta(days=7)))
        assert fresh.status == "allocated"
        assert ledger.contacts_since("U1", "marketing", NOW - timedelta(days=7)) == 1
        assert ledger.contacts_since("U1", "marketing", NOW - timedelta(days=11)) == 2

    def test_future_scheduled_contact_counts(self, ledger: Ledger) -> None:
        later = NOW + timedelta(hours=11)
        ledger.allocate(request("scheduled", contact_at=later, scheduled_for=later, contact_cap=1))
        assert ledger.contacts_since("U1", "marketing", NOW) == 1
        second = ledger.allocate(request("again", contact_cap=1))
        assert second.status == "contact_limit"

    def test_other_purpose_and_other_customer_are_not_limited(self, ledger: Ledger) -> None:
        ledger.allocate(request("m", contact_cap=1))
        service = ledger.allocate(request("s", treatment_id="service_sms", channel="sms", purpose="service_updates", contact_cap=1))
        other = ledger.allocate(request("o", customer_id="U2", contact_cap=1))
        assert (service.status, other.status) == ("allocated", "allocated")

    def test_no_cap_means_no_limit(self, ledger: Ledger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", contact_cap=None)).status for i in range(3)]
        assert statuses == ["allocated"] * 3
        assert ledger.contacts_since("U1", "marketing", NOW - timedelta(days=1)) == 3

    def test_cap_of_two_allows_two(self, ledger: Ledger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", treatment_id=f"t{i}", contact_cap=2)).status for i in range(3)]
        assert statuses == ["allocated", "allocated", "contact_limit"]


class TestRepeatWindow:
    """The same treatment given to the customer after ``repeat_window_start`` blocks the request."""

    def test_repeat_is_refused_and_counted(self, ledger: Ledger) -> None:
        assert ledger.allocate(request("a")).status == "allocated"
        again = replace(request("b", run_id="run-2"), repeat_window_start=NOW - timedelta(days=30))
        assert ledger.allocate(again) == AllocationOutcome("repeat_limit", "retention_email")
        assert ledger.given_since("U1", "retention_email", NOW - timedelta(days=30)) == 1
        assert ledger.given_since("U1", "retention_sms", NOW - timedelta(days=30)) == 0
        assert ledger.used("retention_email", DAY) == 1


class TestDailyContactCap:
    """The per-customer daily cap is checked in the same transaction that takes the capacity."""

    @staticmethod
    def capped(key: str, contact_at: datetime = NOW, **kwargs: object) -> AllocationRequest:
        start = contact_at.replace(hour=0, minute=0)
        return replace(request(key, contact_at=contact_at, **kwargs), daily_cap=1, contact_day=(start, start + timedelta(days=1)))

    def test_second_contact_on_the_day_is_refused_whatever_the_purpose(self, ledger: Ledger) -> None:
        assert ledger.allocate(self.capped("a", treatment_id="service_call_back", purpose="service_updates")).status == "allocated"
        second = ledger.allocate(self.capped("b", run_id="run-2", treatment_id="service_sms", purpose="service_updates"))
        assert (second.status, second.contacts, second.allocated) == ("daily_contact_limit", 1, False)
        assert ledger.used("service_sms", DAY) == 0
        assert ledger.contacts_between("U1", NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1)) == 1

    def test_a_contact_scheduled_for_tomorrow_counts_on_tomorrow(self, ledger: Ledger) -> None:
        tomorrow = NOW + timedelta(days=1)
        assert ledger.allocate(self.capped("a", contact_at=tomorrow)).status == "allocated"
        assert ledger.allocate(self.capped("b", run_id="run-2", treatment_id="service_sms")).status == "allocated"
        assert ledger.allocate(self.capped("c", run_id="run-3", contact_at=tomorrow, treatment_id="data_boost")).status == "daily_contact_limit"

    def test_an_exempt_request_is_given_and_counts(self, ledger: Ledger) -> None:
        assert ledger.allocate(self.capped("a")).status == "allocated"
        exempt = request("b", run_id="run-2", treatment_id="service_call_back", purpose="service_updates")
        assert ledger.allocate(exempt).status == "allocated"
        assert ledger.contacts_between("U1", NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1)) == 2


class TestResetUsage:
    """reset_usage clears one day's counters and leaves an audit entry."""

    def test_reset_one_treatment(self, ledger: Ledger) -> None:
        for i in range(3):
            ledger.allocate(request(f"k{i}", customer_id=f"C{i}", max_per_day=3))
        ledger.allocate(request("sms", customer_id="S", treatment_id="retention_sms", max_per_day=3))
        assert ledger.allocate(request("k3", customer_id="C3", max_per_day=3)).status == "capacity_exhausted"

        cleared = ledger.reset_usage(DAY, "retention_email", NOW)

        assert cleared == 1
        assert ledger.used("retention_email", DAY) == 0
        assert ledger.used("retention_sms", DAY) == 1
        assert ledger.allocate(request("k4", customer_id="C4", max_per_day=3)).status == "allocated"
        assert len(ledger.allocations()) == 5  # allocations stay recorded
        resets = [e for e in ledger.audit_entries() if e.event == "capacity_reset"]
        assert [e.payload for e in resets] == [{"day": DAY, "treatment_id": "retention_email", "rows": 1}]

    def test_reset_whole_day_keeps_other_days(self, ledger: Ledger) -> None:
        ledger.allocate(request("a", treatment_id="a"))
        ledger.allocate(request("b", treatment_id="b"))
        ledger.allocate(request("c", treatment_id="a", day="2026-11-24"))
        assert ledger.reset_usage(DAY, None, NOW) == 2
        assert (ledger.used("a", DAY), ledger.used("b", DAY), ledger.used("a", "2026-11-24")) == (0, 0, 1)
        assert ledger.audit_entries()[-1].payload == {"day": DAY, "treatment_id": None, "rows": 2}

    def test_reset_of_unused_day_is_audited_with_zero_rows(self, ledger: Ledger) -> None:
        assert ledger.reset_usage("2030-01-01", None, NOW) == 0
        assert [e.event for e in ledger.audit_entries()] == ["capacity_reset"]
