"""Consent, eligibility, screening order and do-not-disturb timing (cvm.decision.policy)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cvm.agents.messages import Journey, JourneyFeatures
from cvm.decision import policy
from cvm.tools.records import Permissions, TimeWindow, parse_permissions
from cvm.utils.config import CHANNELS, IGNORE, PURPOSES, Eligibility, Treatment

LONDON = ZoneInfo("Europe/London")


def treatment(
    tid: str = "retention_sms", channel: str = "sms", purpose: str = "marketing", *,
    enabled: bool = True, eligibility: Eligibility | None = None,
) -> Treatment:
    return Treatment(
        id=tid, display_name=tid.replace("_", " ").title(), channel=channel, purpose=purpose,
        enabled=enabled, eligibility=eligibility or Eligibility(),
    )


def consents(value: bool = True) -> dict[str, dict[str, bool]]:
    return {c: {p: value for p in PURPOSES} for c in CHANNELS}


def journey(permissions: Permissions | None = None, signals: dict[str, str] | None = None, **features: object) -> Journey:
    return Journey(
        customer_id="U900", as_of=datetime(2026, 11, 23, 10, tzinfo=LONDON),
        features=JourneyFeatures(**features), signals=signals or {}, permissions=permissions,
    )


def perms(dnd: str | None = None, preferred: str | None = None) -> Permissions:
    return Permissions(
        consents=consents(True),
        do_not_disturb=TimeWindow.parse(dnd) if dnd else None,
        preferred_contact_time=TimeWindow.parse(preferred) if preferred else None,
    )


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=LONDON)


class TestConsentProblem:
    """Only an explicit Y for the treatment's channel and purpose is consent."""

    def test_no_permissions_record_is_no_consent(self):
        problem = policy.consent_problem(treatment(), None)
        assert problem is not None
        assert "no readable permissions" in problem

    def test_explicit_n_is_no_consent(self):
        raw = {"customer_id": "U900", "permissions": {"sms": {"marketing": "N", "service_updates": "Y", "billing": "Y"}}}
        parsed, _ = parse_permissions(raw)
        problem = policy.consent_problem(treatment(channel="sms", purpose="marketing"), parsed)
        assert problem is not None
        assert "marketing" in problem and "sms" in problem

    def test_missing_purpose_is_no_consent(self):
        raw = {"customer_id": "U900", "permissions": {"sms": {"service_updates": "Y"}}}
        parsed, _ = parse_permissions(raw)
        assert policy.consent_problem(treatment(channel="sms", purpose="marketing"), parsed) is not None
        assert policy.consent_problem(treatment("service_sms", "sms", "service_updates"), parsed) is None

    def test_missing_channel_is_no_consent(self):
        raw = {"customer_id": "U900", "permissions": {"email": {"marketing": "Y", "service_updates": "Y", "billing": "Y"}}}
        parsed, _ = parse_permissions(raw)
        assert policy.consent_problem(treatment("retention_email", "email", "marketing"), parsed) is None
        assert policy.consent_problem(treatment("loyalty_app", "push_notifications", "marketing"), parsed) is not None
        assert policy.consent_problem(treatment("marketing_call_back", "call", "marketing"), parsed) is not None

    @pytest.mark.parametrize("value", ["yes", "true", "1", "", "maybe"])
    def test_anything_but_y_is_no_consent(self, value):
        raw = {"customer_id": "U900", "permissions": {"sms": {"marketing": value}}}
        parsed, _ = parse_permissions(raw)
        assert policy.consent_problem(treatment(channel="sms", purpose="marketing"), parsed) is not None

    def test_explicit_y_is_consent(self):
        raw = {"customer_id": "U900", "permissions": {"sms": {"marketing": "Y", "service_updates": "N", "billing": "N"}}}
        parsed, _ = parse_permissions(raw)
        assert policy.consent_problem(treatment(channel="sms", purpose="marketing"), parsed) is None

    def test_consent_is_per_channel_and_purpose(self):
        only_email_billing = Permissions(consents={"email": {"marketing": False, "service_updates": False, "billing": True}})
        assert policy.consent_problem(treatment("bill_mail", "email", "billing"), only_email_billing) is None
        assert policy.consent_problem(treatment("bill_sms", "sms", "billing"), only_email_billing) is not None
        assert policy.consent_problem(treatment("offer_mail", "email", "marketing"), only_email_billing) is not None

    def test_ignore_needs_no_consent(self):
        assert policy.consent_problem(IGNORE, None) is None


class TestEligibilityProblem:
    """Eligibility bounds and required signals reject a treatment with the rule broken, in words."""

    def test_no_rules_is_always_eligible(self):
        assert policy.eligibility_problem(Eligibility(), journey()) is None

    def test_min_tenure(self):
        rules = Eligibility(min_tenure_months=12)
        short = policy.eligibility_problem(rules, journey(tenure_months=6))
        assert short is not None and "tenure" in short and "below" in short
        assert policy.eligibility_problem(rules, journey(tenure_months=12)) is None
        assert policy.eligibility_problem(rules, journey(tenure_months=40)) is None

    def test_max_tenure(self):
        rules = Eligibility(max_tenure_months=3)
        long = policy.eligibility_problem(rules, journey(tenure_months=4))
        assert long is not None and "above" in long
        assert policy.eligibility_problem(rules, journey(tenure_months=3)) is None

    def test_churn_probability_bounds(self):
        rules = Eligibility(min_churn_probability=0.5, max_churn_probability=0.8)
        low = policy.eligibility_problem(rules, journey(churn_probability=0.2))
        high = policy.eligibility_problem(rules, journey(churn_probability=0.9))
        assert low is not None and "churn probability" in low and "below" in low
        assert high is not None and "churn probability" in high and "above" in high
        assert policy.eligibility_problem(rules, journey(churn_probability=0.5)) is None
        assert policy.eligibility_problem(rules, journey(churn_probability=0.8)) is None

    def test_min_monthly_revenue(self):
        rules = Eligibility(min_monthly_revenue=50)
        cheap = policy.eligibility_problem(rules, journey(monthly_revenue=20.0))
        assert cheap is not None and "monthly revenue" in cheap
        assert policy.eligibility_problem(rules, journey(monthly_revenue=50.0)) is None

    def test_unknown_value_fails_a_bound(self):
        problem = policy.eligibility_problem(Eligibility(min_tenure_months=12), journey())
        assert problem is not None and "unknown" in problem

    def test_unknown_value_is_fine_without_a_bound_on_it(self):
        assert policy.eligibility_problem(Eligibility(min_churn_probability=0.1), journey(churn_probability=0.3)) is None

    def test_required_signals(self):
        rules = Eligibility(required_signals=("network_issue", "high_value"))
        missing_both = policy.eligibility_problem(rules, journey())
        missing_one = policy.eligibility_problem(rules, journey(signals={"network_issue": "poor"}))
        assert missing_both is not None and "network_issue" in missing_both and "high_value" in missing_both
        assert missing_one is not None and "high_value" in missing_one and "network_issue" not in missing_one
        assert policy.eligibility_problem(rules, journey(signals={"network_issue": "poor", "high_value": "rich"})) is None


class TestNextContactTime:
    """Interrupting channels move out of do-not-disturb; email never waits."""

    def test_email_is_never_scheduled(self):
        assert policy.next_contact_time("email", at(23, 23, 30), perms("22:00-08:00", "10:00-12:00")) is None

    @pytest.mark.parametrize("channel", ["call", "sms", "push_notifications"])
    def test_interrupting_channel_in_dnd_moves_to_dnd_end(self, channel):
        assert policy.next_contact_time(channel, at(23, 23, 30), perms("22:00-08:00")) == at(24, 8, 0)

    def test_after_midnight_moves_to_same_day_dnd_end(self):
        assert policy.next_contact_time("call", at(24, 1, 15), perms("22:00-08:00")) == at(24, 8, 0)

    def test_preferred_window_after_dnd(self):
        assert policy.next_contact_time("call", at(23, 23, 30), perms("22:00-08:00", "10:00-12:00")) == at(24, 10, 0)

    def test_preferred_window_later_in_the_day(self):
        assert policy.next_contact_time("sms", at(23, 23, 30), perms("22:00-08:00", "18:00-20:00")) == at(24, 18, 0)

    def test_preferred_window_spanning_dnd_end_starts_at_dnd_end(self):
        assert policy.next_contact_time("call", at(23, 23, 30), perms("22:00-08:00", "07:00-09:00")) == at(24, 8, 0)

    @pytest.mark.parametrize("preferred", ["23:00-23:45", "05:00-07:00"])
    def test_preferred_window_inside_dnd_falls_back_to_dnd_end(self, preferred):
        moved = policy.next_contact_time("call", at(23, 23, 30), perms("22:00-08:00", preferred))
        assert moved == at(24, 8, 0)

    def test_outside_dnd_is_now(self):
        assert policy.next_contact_time("call", at(23, 14, 0), perms("22:00-08:00", "10:00-12:00")) is None

    def test_dnd_end_is_not_quiet(self):
        assert policy.next_contact_time("call", at(23, 8, 0), perms("22:00-08:00")) is None

    def test_daytime_dnd_window(self):
        assert policy.next_contact_time("push_notifications", at(23, 13, 30), perms("13:00-14:00")) == at(23, 14, 0)

    def test_no_dnd_or_no_permissions_is_now(self):
        assert policy.next_contact_time("call", at(23, 23, 30), perms()) is None
        assert policy.next_contact_time("call", at(23, 23, 30), None) is None

    def test_scheduled_time_is_never_quiet_and_never_earlier(self):
        quiet = TimeWindow.parse("21:30-07:30")
        for hour in range(24):
            for preferred in (None, "18:00-20:00", "06:00-07:00", "07:00-10:00"):
                now = at(23, hour, 45)
                moved = policy.next_contact_time("sms", now, perms("21:30-07:30", preferred))
                if quiet.contains(now.time()):
                    assert moved is not None and moved > now
                    assert not quiet.contains(moved.time())
                else:
                    assert moved is None


class TestDailyCap:
    """The per-customer daily cap: on by default at one contact, exemptions only by name, days by the local calendar."""

    def test_default_config_caps_at_one_contact_a_day(self) -> None:
        from cvm.utils.config import ContactPolicy

        assert policy.daily_cap(treatment(), ContactPolicy()) == 1
        assert policy.daily_cap(treatment("service_sms", purpose="service_updates"), ContactPolicy()) == 1

    def test_only_named_treatments_are_exempt(self) -> None:
        from cvm.utils.config import ContactPolicy

        contact = ContactPolicy(daily_cap_exempt=("service_call_back",))
        assert policy.daily_cap(treatment("service_call_back", "call", "service_updates"), contact) is None
        assert policy.daily_cap(treatment("service_sms", purpose="service_updates"), contact) == 1
        assert policy.daily_cap(IGNORE, contact) is None

    def test_switched_off_only_on_purpose(self) -> None:
        from cvm.utils.config import ContactPolicy

        assert policy.daily_cap(treatment(), ContactPolicy(max_contacts_per_day=None)) is None
        with pytest.raises(ValueError):
            ContactPolicy(max_contacts_per_day=0)

    def test_contact_day_is_the_local_calendar_day(self) -> None:
        start, end = policy.contact_day(at(23, 22, 30))
        assert (start, end) == (at(23, 0), at(24, 0))
        # The day the clocks go back in London is 25 hours long.
        start, end = policy.contact_day(datetime(2026, 10, 25, 12, tzinfo=LONDON))
        assert end.astimezone(ZoneInfo("UTC")) - start.astimezone(ZoneInfo("UTC")) == timedelta(hours=25)
