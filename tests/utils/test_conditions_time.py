"""Time in conditions (the flows' customer filters): ``now()``, ``interval 'N days'``, dates compared as instants."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from cvm.utils.conditions import MAX_DEPTH, Condition, ConditionError, parse_interval

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
RENEWAL = "customer.renewal_date <= now() + interval '30 days'"


@pytest.mark.parametrize(
    ("renewal", "matched"),
    [("2026-12-15", True), ("2026-12-30", True), ("2026-12-31", False), (date(2026, 12, 1), True),
     (datetime(2026, 12, 30, 9, 0, tzinfo=timezone.utc), True), (datetime(2026, 12, 30, 9, 1, tzinfo=timezone.utc), False),
     ("not a date", False), (None, False)],
)
def test_the_flows_document_filter(renewal: object, matched: bool) -> None:
    outcome = Condition(RENEWAL, allow_time=True).evaluate({"customer": {"renewal_date": renewal}}, now=NOW)
    assert outcome.matched is matched
    if matched:
        assert outcome.fields == ("customer.renewal_date",)
        assert "<= 2026-12-30T09:00:00+00:00" in outcome.because[0]


def test_intervals_subtract_and_take_units() -> None:
    joined = Condition("customer.join_date >= now() - interval '2 weeks'", allow_time=True)
    assert joined.evaluate({"customer": {"join_date": "2026-11-20"}}, now=NOW).matched
    assert not joined.evaluate({"customer": {"join_date": "2026-11-01"}}, now=NOW).matched
    assert parse_interval("36 hours") == timedelta(hours=36)
    assert parse_interval(" 1 day ") == timedelta(days=1)
    assert Condition("customer.renewal_date - interval '1 day' < now()", allow_time=True).evaluate(
        {"customer": {"renewal_date": "2026-12-01"}}, now=NOW
    ).matched


def test_a_bare_date_is_midnight_in_the_clocks_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2026, 12, 1, 1, 0, tzinfo=plus_two)  # 2026-11-30 23:00 UTC
    assert Condition("customer.renewal_date <= now()", allow_time=True).evaluate({"customer": {"renewal_date": "2026-12-01"}}, now=at).matched


@pytest.mark.parametrize(
    ("text", "says"),
    [("now(1) > x", "takes no arguments"), ("x * interval '3 days' > now()", "Mult is not allowed"),
     ("x <= now() + interval 'soon'", "write a number and a unit"), ("x <= now() + interval '2 months'", "write a number and a unit"),
     ("x + 1 > 2", "only allowed with an interval"), ("open('f') == 1", "Call is not allowed"),
     ("x <= interval(y)", "one quoted duration")],
)
def test_bad_time_expressions_are_refused_with_the_column(text: str, says: str) -> None:
    with pytest.raises(ConditionError, match=says):
        Condition(text, allow_time=True)


def test_time_is_opt_in_and_needs_a_clock() -> None:
    with pytest.raises(ConditionError, match="syntax error"):
        Condition(RENEWAL)  # the trigger catalog's conditions stay without time
    with pytest.raises(ConditionError, match="Call is not allowed"):
        Condition("x <= now()")
    with pytest.raises(ValueError, match="reads now"):
        Condition(RENEWAL, allow_time=True).evaluate({"customer": {"renewal_date": "2026-12-01"}})


def test_interval_words_inside_strings_are_left_alone() -> None:
    outcome = Condition("x == 'interval 3 days' and y == \"interval '2'\"", allow_time=True).evaluate(
        {"x": "interval 3 days", "y": "interval '2'"}, now=NOW
    )
    assert outcome.matched


def test_time_keeps_the_size_bounds() -> None:
    chained = " + ".join(["now()"] + ["interval '1 day'"] * (MAX_DEPTH + 5)) + " > x"
    with pytest.raises(ConditionError, match="too deep"):
        Condition(chained, allow_time=True)


def test_enormous_intervals_are_refused_and_out_of_range_dates_are_no_value() -> None:
    with pytest.raises(ConditionError, match="longer than 36,525 days"):
        Condition("customer.renewal_date <= now() + interval '999999 weeks'", allow_time=True)
    with pytest.raises(ValueError, match="a century"):
        parse_interval("999999 days")
    assert parse_interval("36525 days") == timedelta(days=36_525)
    near_the_end = Condition("customer.renewal_date <= customer.end + interval '30 days'", allow_time=True)
    outcome = near_the_end.evaluate({"customer": {"renewal_date": "2026-12-01", "end": "9999-12-31"}}, now=NOW)
    assert outcome.matched is False
