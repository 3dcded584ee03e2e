"""Consent, eligibility and contact timing: the rules code enforces after any selector.

Pure functions. Consent follows DESIGN section 3 to the letter: a treatment
needs an explicit ``Y`` for its channel and purpose; no record, no ``Y`` or an
unreadable record means no consent. ``ignore`` needs none.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cvm.agents.messages import Alternative, Journey
from cvm.tools.records import Permissions, TimeWindow
from cvm.utils.config import IGNORE_ID, Eligibility, Treatment

# Channels that reach the customer in real time and so respect do-not-disturb.
INTERRUPTING_CHANNELS = frozenset({"call", "sms", "push_notifications"})


def consent_problem(treatment: Treatment, permissions: Permissions | None) -> str | None:
    """Why the customer has not consented to this treatment, or None when they have."""
    if treatment.id == IGNORE_ID:
        return None
    if permissions is None:
        return "no readable permissions record, so no consent"
    if not permissions.allows(treatment.channel, treatment.purpose):
        return f"customer has not said Y to {treatment.purpose} contact by {treatment.channel}"
    return None


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


def screen(treatment: Treatment, journey: Journey) -> Alternative | None:
    """Reject a treatment that is disabled, not eligible or without consent; None when it may go ahead."""
    if treatment.id == IGNORE_ID:
        return None
    if not treatment.enabled:
        return Alternative(treatment_id=treatment.id, reason="disabled", detail="treatment is disabled in config")
    problem = eligibility_problem(treatment.eligibility, journey)
    if problem:
        return Alternative(treatment_id=treatment.id, reason="not_eligible", detail=problem)
    problem = consent_problem(treatment, journey.permissions)
    if problem:
        return Alternative(treatment_id=treatment.id, reason="no_consent", detail=problem)
    return None


def _first_instant_in(window: TimeWindow, after: datetime) -> datetime:
    """The earliest moment at or after ``after`` that lies inside ``window``."""
    if window.contains(after.time()):
        return after
    start = after.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    return start if start > after else start + timedelta(days=1)


def next_contact_time(channel: str, now: datetime, permissions: Permissions | None) -> datetime | None:
    """When a contact on ``channel`` may happen, if do-not-disturb forbids ``now``; None means now is fine.

    The contact moves to the end of the quiet window, or, when the customer has a
    preferred contact time, to the first preferred moment after it that is not quiet.
    """
    if channel not in INTERRUPTING_CHANNELS or permissions is None or permissions.do_not_disturb is None:
        return None
    quiet = permissions.do_not_disturb
    if not quiet.contains(now.time()):
        return None
    end = now.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= now:
        end += timedelta(days=1)
    preferred = permissions.preferred_contact_time
    if preferred is not None:
        candidate = _first_instant_in(preferred, end)
        if not quiet.contains(candidate.time()) and candidate - end < timedelta(days=1):
            return candidate
    return end
