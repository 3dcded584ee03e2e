"""The screening masks (cvm.decision.screening): one customer's row is what it gets among many, worded the same way."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from cvm.decision import screening
from cvm.decision.models import Journey, JourneyFeatures
from cvm.tools.ledger import WITHDRAWN_BY, utc_text
from cvm.tools.ledger_models import ApprovalRow, LiveContact
from cvm.tools.records import Permissions
from cvm.tools.results import Alternative
from cvm.utils.config import CHANNELS, IGNORE, PURPOSES, ContactPolicy, Eligibility, Treatment

LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 23, 10, tzinfo=LONDON)


def treatment(tid: str = "retention_sms", channel: str = "sms", purpose: str = "marketing", *,
              enabled: bool = True, eligibility: Eligibility | None = None) -> Treatment:
    return Treatment(id=tid, display_name=tid.replace("_", " ").title(), channel=channel, purpose=purpose,
                     enabled=enabled, eligibility=eligibility or Eligibility())


def consents(value: bool = True) -> dict[str, dict[str, bool]]:
    return {c: {p: value for p in PURPOSES} for c in CHANNELS}


def journey(permissions: Permissions | None = None, signals: dict[str, str] | None = None, **features: object) -> Journey:
    return Journey(customer_id="U900", as_of=NOW, features=JourneyFeatures(**features), signals=signals or {},
                   permissions=permissions)


def screen(t: Treatment, j: Journey):
    """The per-customer screen of one treatment: the policy masks on this one journey, worded."""
    return screening.refusals(screening.one_customer_policy_blocks(j, [t]), {}, 0, [t], j).get(t.id)


class TestPolicyScreen:
    """Screening reports the first problem in the order disabled, not eligible, no consent."""

    def test_disabled_comes_first(self):
        t = treatment(enabled=False, eligibility=Eligibility(min_tenure_months=100))
        found = screen(t, journey(permissions=None, tenure_months=1))
        assert found is not None and found.reason == "disabled" and found.treatment_id == t.id

    def test_not_eligible_before_no_consent_and_worded_from_the_journey(self):
        t = treatment(eligibility=Eligibility(min_tenure_months=100))
        found = screen(t, journey(permissions=None, tenure_months=1))
        assert found is not None and found.reason == "not_eligible"
        assert found.detail == "tenure 1 months is below the minimum 100"

    def test_unknown_value_is_not_eligible(self):
        found = screen(treatment(eligibility=Eligibility(min_churn_probability=0.5)), journey(permissions=None))
        assert found is not None and found.detail == "churn probability unknown; the treatment requires it"

    def test_required_signal(self):
        t = treatment(eligibility=Eligibility(required_signals=("network_issue",)))
        ok = Permissions(consents=consents(True))
        assert screen(t, journey(permissions=ok)).reason == "not_eligible"
        assert screen(t, journey(permissions=ok, signals={"network_issue": "poor"})) is None

    def test_no_consent_when_enabled_and_eligible(self):
        found = screen(treatment(), journey(permissions=Permissions(consents=consents(False))))
        assert found is not None and found.reason == "no_consent"
        assert found.detail == "customer has not said Y to marketing contact by sms"

    def test_no_permissions_record_is_no_consent(self):
        found = screen(treatment(), journey(permissions=None))
        assert found is not None and found.detail == "no readable permissions record, so no consent"

    def test_all_clear(self):
        assert screen(treatment(), journey(permissions=Permissions(consents=consents(True)))) is None

    def test_ignore_is_never_screened_out(self):
        assert screen(IGNORE, journey(permissions=None)) is None

    def test_one_customer_is_its_row_among_many(self):
        """The same rule over N customers' columns gives each its N = 1 answer."""
        ts = [treatment(eligibility=Eligibility(min_tenure_months=12)), treatment("service_sms", purpose="service_updates")]
        journeys = [journey(permissions=Permissions(consents=consents(yes)), tenure_months=tenure)
                    for yes, tenure in ((True, 24), (False, 24), (True, 3), (True, None))]
        singles = [screening.one_customer_policy_blocks(j, ts) for j in journeys]
        columns = {"tenure_months": np.array([24, 24, 3, np.nan]), "churn_probability": np.full(4, np.nan),
                   "monthly_revenue": np.full(4, np.nan)}
        consent = {(c, p): np.array([True, False, True, True]) for c in CHANNELS for p in PURPOSES}
        many = screening.policy_blocks(columns, consent, {}, ts, 4)
        for i, one in enumerate(singles):
            assert {k: v[0].tolist() for k, v in one.items()} == {k: v[i].tolist() for k, v in many.items()}


def contact(cid: str, tid: str, at: datetime, purpose: str = "marketing") -> LiveContact:
    return LiveContact(cid, purpose, tid, utc_text(at))


def context(quiet: dict[int, datetime] | None = None, **policy: object) -> screening.ContactContext:
    rules = ContactPolicy(**{"window_days": 7, "max_contacts": {"marketing": 1}, "max_contacts_per_day": 1, **policy})
    return screening.ContactContext(rules, NOW, lambda i: (quiet or {}).get(i))


TREATMENTS = [treatment("retention_email", "email"), treatment("retention_sms"), treatment("service_sms", purpose="service_updates"),
              treatment("service_call_back", "call", "service_updates")]


class TestContactBlocks:
    """The contact caps, repeat window, daily cap and rejections as masks, worded as the ledger's refusals are."""

    def test_purpose_cap_blocks_every_treatment_of_that_purpose(self):
        blocks = screening.contact_blocks([contact("U1", "retention_email", NOW - timedelta(days=3))], [], {"U1": 0, "U2": 1}, 2,
                                          TREATMENTS, context(max_contacts_per_day=None))
        assert blocks.masks["contact_limit"].tolist() == [[True, True, False, False], [False, False, False, False]]
        assert blocks.row(0, TREATMENTS)["contact_limit"]["retention_sms"] == "1 marketing contact(s) in the last 7 days (cap 1)"

    def test_contacts_before_the_window_do_not_count(self):
        blocks = screening.contact_blocks([contact("U1", "retention_email", NOW - timedelta(days=8))], [], {"U1": 0}, 1,
                                          TREATMENTS, context(max_contacts_per_day=None))
        assert not any(mask.any() for mask in blocks.masks.values())

    def test_repeat_window_blocks_the_same_treatment_only(self):
        blocks = screening.contact_blocks([contact("U1", "service_sms", NOW - timedelta(days=20), "service_updates")], [], {"U1": 0}, 1,
                                          TREATMENTS, context(max_contacts_per_day=None, repeat_window_days=30))
        assert blocks.row(0, TREATMENTS) == {"repeat_limit": {"service_sms": "already given to this customer in the last 30 days"}}

    def test_daily_cap_moves_with_do_not_disturb(self):
        """A contact today fills today's cap; an interrupting channel moved to tomorrow by quiet hours is not refused."""
        today = [contact("U1", "service_sms", NOW - timedelta(hours=1), "service_updates")]
        blocks = screening.contact_blocks(today, [], {"U1": 0}, 1, TREATMENTS, context())
        assert blocks.masks["daily_contact_limit"][0].tolist() == [True, True, True, True]
        assert blocks.details[("daily_contact_limit", 0, 0)].startswith("daily cap: 1 contact(s) on 2026-11-23")
        moved = screening.contact_blocks(today, [], {"U1": 0}, 1, TREATMENTS, context(quiet={0: NOW + timedelta(hours=23)}))
        assert moved.masks["daily_contact_limit"][0].tolist() == [True, False, False, False]  # email is not interrupting

    def test_exempt_treatments_are_never_refused_by_the_daily_cap(self):
        today = [contact("U1", "service_sms", NOW - timedelta(hours=1), "service_updates")]
        blocks = screening.contact_blocks(today, [], {"U1": 0}, 1, TREATMENTS, context(daily_cap_exempt=["service_call_back"]))
        assert blocks.masks["daily_contact_limit"][0].tolist() == [True, True, True, False]

    def test_rejection_within_the_repeat_window_blocks_and_comes_first(self):
        rejected = ApprovalRow(
            request_id="apr-1", idempotency_key="r:U1", run_id="r", customer_id="U1", treatment_id="retention_email",
            day="2026-11-20", rule="r", explanation="e", priority=1, requested_at="2026-11-20T09:00:00+00:00",
            expires_at="2026-11-21T09:00:00+00:00", status="rejected", decided_by="ann",
            decided_at="2026-11-20T10:00:00+00:00", reason="too pushy",
        )
        contacts = [contact("U1", "retention_email", NOW - timedelta(days=3))]
        blocks = screening.contact_blocks(contacts, [rejected], {"U1": 0}, 1, TREATMENTS,
                                          context(max_contacts_per_day=None, repeat_window_days=30))
        refused = screening.refusals(blocks.masks, blocks.details, 0, TREATMENTS, journey())
        assert list(refused)[0] == "retention_email"
        assert refused["retention_email"].reason == "approval_rejected"
        assert refused["retention_email"].detail == "rejected by ann on 2026-11-20: too pushy"
        assert refused["retention_sms"].reason == "contact_limit"

    @pytest.mark.parametrize("by", [WITHDRAWN_BY, "system (replay re-check)"])  # today's name, and the one ledgers hold from before
    def test_a_request_closed_by_a_system_withdrawal_is_no_approvers_rejection(self, by: str):
        closed = ApprovalRow(
            request_id="apr-2", idempotency_key="r:U1", run_id="r", customer_id="U1", treatment_id="retention_email",
            day="2026-11-20", rule="r", explanation="e", priority=1, requested_at="2026-11-20T09:00:00+00:00",
            expires_at="2026-11-21T09:00:00+00:00", status="rejected", decided_by=by,
            decided_at="2026-11-20T10:00:00+00:00", reason="consent_withdrawn",
        )
        blocks = screening.contact_blocks([], [closed], {"U1": 0}, 1, TREATMENTS, context(repeat_window_days=30))
        assert not blocks.masks["approval_rejected"].any()

    def test_a_large_run_keeps_no_words(self):
        blocks = screening.contact_blocks([contact("U1", "retention_email", NOW - timedelta(days=3))], [], {"U1": 0}, 1,
                                          TREATMENTS, context(), words=False)
        assert blocks.masks["contact_limit"][0, 0] and blocks.details == {}
        assert blocks.row(0, TREATMENTS)["contact_limit"]["retention_email"] == screening.BLOCKS["contact_limit"][1]

    def test_row_reads_back(self):
        blocks = screening.contact_blocks([contact("U1", "retention_email", NOW - timedelta(days=3))], [], {"U1": 0}, 1,
                                          TREATMENTS, context())
        again = screening.Blocks.of_one(blocks.row(0, TREATMENTS), TREATMENTS)
        for name, mask in again.masks.items():
            assert mask.tolist() == blocks.masks[name].tolist()
        assert again.details == blocks.details


def test_refusals_keep_treatment_order_with_capacity_between_the_rules():
    """Capacity is each treatment's last check, in treatment order, so results list alternatives as the config does."""
    j = journey(permissions=Permissions(consents={"sms": {p: True for p in PURPOSES}}))
    masks = screening.one_customer_policy_blocks(j, TREATMENTS)
    full = {"retention_sms"}

    def capacity(_: int, t: Treatment):
        return Alternative(treatment_id=t.id, reason="capacity_exhausted", detail="full") if t.id in full else None

    refused = screening.refusals(masks, {}, 0, TREATMENTS, j, capacity=capacity)
    assert [(tid, alt.reason) for tid, alt in refused.items()] == [
        ("retention_email", "no_consent"), ("retention_sms", "capacity_exhausted"), ("service_call_back", "no_consent"),
    ]


def test_daily_cap_counts_each_customer_and_a_large_run_words_nothing():
    now = NOW
    contacts = [contact("U1", "service_sms", now - timedelta(hours=1), "service_updates"),
                contact("U2", "service_sms", now - timedelta(hours=2), "service_updates"),
                contact("U2", "retention_email", now - timedelta(hours=1))]
    index = {"U1": 0, "U2": 1, "U3": 2}
    blocks = screening.contact_blocks(contacts, [], index, 3, TREATMENTS, context(max_contacts_per_day=2, max_contacts={}), words=False)
    assert blocks.masks["daily_contact_limit"].any(axis=1).tolist() == [False, True, False]
    assert blocks.details == {}


def test_a_do_not_disturb_moment_in_another_offset_counts_on_its_local_day():
    """23:30 in Tokyo with a contact today: quiet hours move an SMS to 08:00 tomorrow, however the moment is written."""
    tokyo = ZoneInfo("Asia/Tokyo")
    now = datetime(2026, 11, 23, 23, 30, tzinfo=tokyo)
    rules = ContactPolicy(window_days=7, max_contacts={}, max_contacts_per_day=1)
    today = [contact("U1", "service_sms", now - timedelta(hours=1), "service_updates")]
    for written in (datetime(2026, 11, 24, 8, tzinfo=tokyo), datetime(2026, 11, 23, 23, tzinfo=ZoneInfo("UTC"))):
        blocks = screening.contact_blocks(today, [], {"U1": 0}, 1, TREATMENTS, screening.ContactContext(rules, now, lambda _, w=written: w))
        assert blocks.masks["daily_contact_limit"][0].tolist() == [True, False, False, False], written
