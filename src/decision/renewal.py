"""Contract renewal: when a customer's contract renews, and how much their renewal is at risk (pure).

The data contract has no renewal date column, so ``renewal_date`` reads one
when the customer's row carries it (``renewal_date``, ``contract_end_date`` or
``contract_end``) and otherwise takes the next anniversary of ``join_date`` at
the contract term (24 months unless told): the date the customer is next free
to leave. The source is returned with the date, so a report can say which.

``renewal_risk`` scores a renewal from the churn probability, the nearness of
the renewal date and the journey's signals, with the reasons in words.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

DEFAULT_TERM_MONTHS = 24
RENEWAL_FIELDS = ("renewal_date", "contract_end_date", "contract_end")
UNKNOWN_CHURN = 0.3
"""The churn probability assumed when the churn feed has none for the customer."""
HIGH, MEDIUM = 0.6, 0.35
RISK_SIGNALS = ("cancellation_intent", "network_issue", "bill_shock", "negative_sentiment", "low_satisfaction", "overdue_payment", "cheaper_plan_interest")
"""Journey signals that make a renewal riskier."""

RiskLevel = Literal["low", "medium", "high"]


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (the 31st becomes the month's last day)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def renewal_date(customer: Mapping[str, Any], today: date, term_months: int = DEFAULT_TERM_MONTHS) -> tuple[date | None, str]:
    """(the renewal date, where it came from): a field of the row, else the next term anniversary of ``join_date`` on or after today."""
    for name in RENEWAL_FIELDS:
        found = _as_date(customer.get(name))
        if found is not None:
            return found, name
    joined = _as_date(customer.get("join_date"))
    if joined is None or term_months < 1:
        return None, "unknown"
    terms = max(1, -(-((today.year - joined.year) * 12 + today.month - joined.month) // term_months))
    try:
        renews = add_months(joined, terms * term_months)
        while renews < today:
            terms += 1
            renews = add_months(joined, terms * term_months)
    except ValueError:  # past year 9999 (a join date near it): no renewal date, not a crash of the whole filter
        return None, "unknown"
    return renews, f"join_date + {term_months}-month term"


@dataclass(frozen=True)
class RenewalRisk:
    score: float
    level: RiskLevel
    reasons: tuple[str, ...]


def renewal_risk(
    churn_probability: float | None, days_to_renewal: int | None, signals: Mapping[str, str], window_days: int = 30,
) -> RenewalRisk:
    """The renewal's risk, 0-1: churn probability, plus 0.15 when the renewal falls in the window (or the contract
    has already ended), plus 0.05 per risk signal (at most 0.2)."""
    churn = UNKNOWN_CHURN if churn_probability is None else churn_probability
    reasons = [f"churn probability {churn:.2f}" + (" (assumed: no churn score)" if churn_probability is None else "")]
    score = churn
    if days_to_renewal is not None and days_to_renewal < 0:  # a contract end date from the data that has passed
        score += 0.15
        reasons.append(f"contract ended {-days_to_renewal} day(s) ago: out of contract, free to leave")
    elif days_to_renewal is not None and days_to_renewal <= window_days:
        score += 0.15
        reasons.append(f"renews in {days_to_renewal} day(s), within {window_days}")
    risky = [name for name in RISK_SIGNALS if name in signals]
    if risky:
        score += min(0.2, 0.05 * len(risky))
        reasons += [f"{name}: {signals[name]}" for name in risky]
    score = round(min(1.0, max(0.0, score)), 4)
    level: RiskLevel = "high" if score >= HIGH else "medium" if score >= MEDIUM else "low"
    return RenewalRisk(score, level, tuple(reasons))
