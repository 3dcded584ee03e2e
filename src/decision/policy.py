"""Consent, eligibility, the daily contact cap and contact timing: the rules code enforces after any selector.

Pure functions. Consent follows DESIGN section 3 to the letter: a treatment
needs an explicit ``Y`` for its channel and purpose; no record, no ``Y`` or an
unreadable record means no consent. ``ignore`` needs none.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TypeGuard, get_args

from cvm.decision import vector
from cvm.decision.models import Journey
from cvm.tools.records import Permissions, TimeWindow
from cvm.tools.results import Alternative, DecisionResult, RejectionReason
from cvm.utils.config import IGNORE_ID, ContactPolicy, Eligibility, Purpose, Treatment

# Channels that reach the customer in real time and so respect do-not-disturb.
INTERRUPTING_CHANNELS = frozenset({"call", "sms", "push_notifications"})


def consent_problem(treatment: Treatment, permissions: Permissions | None) -> str | None:
    """Why the customer has not consented to this treatment, or None when they have."""
    if treatment.id == IGNORE_ID:
        return None
    if permissions is None:
        return "no readable permissions record, so no consent"
    if not permissions.allows(treatment.channel, treatment.purpose):
        return no_consent_detail(treatment)
    return None


def no_consent_detail(treatment: Treatment) -> str:
    """The words for a missing ``Y``, the same on every path."""
    return f"customer has not said Y to {treatment.purpose} contact by {treatment.channel}"


def eligibility_problem(rules: Eligibility, journey: Journey) -> str | None:
    """The first eligibility rule the journey breaks, in words, or None."""
    f = journey.features
    bounds = (
        ("tenure", f.tenure_months, rules.min_tenure_months, rules.max_tenure_months, "months"),
        ("churn probability", f.churn_probability, rules.min_churn_probability, rules.max_churn_probability, ""),
        ("monthly revenue", f.monthly_revenue, rules.min_monthly_revenue, None, "GBP"),
    )
    for label, value, low, high, unit in bounds:
        if low is None and high is None:
            continue
        if value is None:
            return f"{label} unknown; the treatment requires it"
        if low is not None and value < low:
            return f"{label} {value:g} {unit} is below the minimum {low:g}".replace("  ", " ")
        if high is not None and value > high:
            return f"{label} {value:g} {unit} is above the maximum {high:g}".replace("  ", " ")
    missing = [s for s in rules.required_signals if s not in journey.signals]
    if missing:
        return f"requires journey signal(s) {', '.join(missing)}"
    return None


def daily_cap(treatment: Treatment, contact: ContactPolicy) -> int | None:
    """The per-customer contacts-per-day cap that can refuse this treatment; None when it cannot.

    Every contact counts against the cap; only treatments the policy names in
    ``daily_cap_exempt`` (service-critical ones) are never refused by it.
    """
    if treatment.id == IGNORE_ID or treatment.id in contact.daily_cap_exempt:
        return None
    return contact.max_contacts_per_day


def is_purpose(value: str) -> TypeGuard[Purpose]:
    """A purpose the contact policy can cap (not ``none``, not an unknown word)."""
    return value in get_args(Purpose)


def purpose_cap(contact: ContactPolicy, purpose: str) -> int | None:
    """The rolling-window contact cap for ``purpose``; None when it has none (``none`` and unknown purposes too)."""
    return contact.max_contacts.get(purpose) if is_purpose(purpose) else None


def contact_day(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar day ``moment`` falls on in its own zone, as [midnight, next midnight).

    Built from dates, not by adding 24 hours, so a daylight-saving day is 23 or 25 hours long.
    """
    start = datetime.combine(moment.date(), time(), tzinfo=moment.tzinfo)
    return start, datetime.combine(moment.date() + timedelta(days=1), time(), tzinfo=moment.tzinfo)


def daily_cap_detail(contacts: int, cap: int, day: datetime) -> str:
    """Why the daily cap refuses a contact, in words (both decision paths say it the same way)."""
    return f"daily cap: {contacts} contact(s) on {day.date().isoformat()} already, across all purposes (cap {cap} per customer per day)"


def withdrawn(result: DecisionResult, reason: RejectionReason, detail: str) -> DecisionResult:
    """A replayed contact that is no longer allowed, as the no-action record a replay reports instead.

    The given-up treatment leads the alternatives with ``reason`` (``consent_withdrawn``
    or ``contact_limit``), so summaries count it as no action and nobody makes the contact.
    """
    given_up = Alternative(treatment_id=result.selected_treatment or IGNORE_ID, reason=reason, detail=detail,
                           expected_value=result.expected_value)
    return result.model_copy(update={
        "status": "no_action", "selected_treatment": IGNORE_ID, "display_name": "No action", "channel": "none",
        "purpose": None, "expected_value": 0.0, "scheduled_for": None, "alternatives": (given_up, *result.alternatives),
        "explanation": f"Withdrawn on replay: {result.display_name or result.selected_treatment} is no longer allowed"
        f" ({detail}); its capacity was released and the customer must not be contacted.",
    })


def _minutes(window: TimeWindow | None) -> tuple[int, int]:
    """A daily window as (start, end) minutes of the day; (-1, -1) for none (``vector.quiet_hours_shift``'s form)."""
    if window is None:
        return -1, -1
    return window.start.hour * 60 + window.start.minute, window.end.hour * 60 + window.end.minute


def next_contact_time(channel: str, now: datetime, permissions: Permissions | None) -> datetime | None:
    """When a contact on ``channel`` may happen, if do-not-disturb forbids ``now``; None means now is fine.

    The contact moves to the end of the quiet window, or, when the customer has a
    preferred contact time, to the first preferred moment after it that is not quiet:
    ``vector.quiet_hours_shift`` (the batch path's rule) on this one customer's windows.
    """
    return quiet_shift(permissions, now) if channel in INTERRUPTING_CHANNELS else None


def quiet_shift(permissions: Permissions | None, now: datetime) -> datetime | None:
    """Where the customer's do-not-disturb moves an interrupting contact planned for ``now``; None means now is fine."""
    if permissions is None or permissions.do_not_disturb is None:
        return None
    return vector.quiet_hours_shift(_minutes(permissions.do_not_disturb), _minutes(permissions.preferred_contact_time), now)
