"""Renewal dates and renewal risk: the rules the decision agent and the flows' customer filter use."""

from __future__ import annotations

from datetime import date

import pytest

from cvm.decision.renewal import add_months, renewal_date, renewal_risk

TODAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"renewal_date": "2027-01-05", "join_date": "2020-01-01"}, (date(2027, 1, 5), "renewal_date")),
        ({"contract_end_date": "2026-12-01T00:00:00"}, (date(2026, 12, 1), "contract_end_date")),
        ({"contract_end": date(2025, 1, 1)}, (date(2025, 1, 1), "contract_end")),  # a past end date is kept: out of contract
        ({"join_date": "2020-11-27"}, (date(2026, 11, 27), "join_date + 24-month term")),
        ({"join_date": "2024-11-23"}, (date(2026, 11, 23), "join_date + 24-month term")),  # renews today
        ({"join_date": "2026-11-01"}, (date(2028, 11, 1), "join_date + 24-month term")),
        ({"join_date": "2024-02-29"}, (date(2028, 2, 29), "join_date + 24-month term")),
        ({"join_date": "not a date"}, (None, "unknown")),
        ({"join_date": "9998-06-01"}, (None, "unknown")),  # its next term is past year 9999: no date, not a crash
        ({}, (None, "unknown")),
    ],
)
def test_renewal_date(row: dict, expected: tuple) -> None:
    assert renewal_date(row, TODAY) == expected


def test_the_term_is_a_setting_and_months_clip_to_the_month_end() -> None:
    assert renewal_date({"join_date": "2026-01-31"}, TODAY, term_months=1) == (date(2026, 11, 30), "join_date + 1-month term")
    assert renewal_date({"join_date": "2025-06-10"}, TODAY, term_months=12) == (date(2027, 6, 10), "join_date + 12-month term")
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert renewal_date({"join_date": "2025-06-10"}, TODAY, term_months=0) == (None, "unknown")


def test_renewal_risk() -> None:
    low = renewal_risk(0.1, 200, {})
    assert (low.level, low.score, low.reasons) == ("low", 0.1, ("churn probability 0.10",))
    near = renewal_risk(0.3, 10, {"bill_shock": "bill up 80%", "loyal": "ten years"})
    assert (near.level, near.score) == ("medium", 0.5)
    assert near.reasons == ("churn probability 0.30", "renews in 10 day(s), within 30", "bill_shock: bill up 80%")
    unknown = renewal_risk(None, None, {})
    assert unknown.reasons == ("churn probability 0.30 (assumed: no churn score)",)
    signals = {name: "x" for name in ("cancellation_intent", "network_issue", "bill_shock", "negative_sentiment", "low_satisfaction")}
    high = renewal_risk(0.9, 1, signals)
    assert (high.level, high.score) == ("high", 1.0)


def test_a_contract_that_has_ended_is_out_of_contract_not_renewing_in_negative_days() -> None:
    ended = renewal_risk(0.3, -40, {})
    assert ended.reasons == ("churn probability 0.30", "contract ended 40 day(s) ago: out of contract, free to leave")
    assert ended.score == renewal_risk(0.3, 0, {}).score == 0.45
