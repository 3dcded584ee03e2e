"""Flow schedules: standard and AWS cron, time zones, and errors that say how to write them."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cvm.flows.schedule import aws_to_croniter, parse_schedule
from cvm.utils.errors import FlowError

MONDAY = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)  # a Monday


def iso(times: list[datetime]) -> list[str]:
    return [t.isoformat() for t in times]


class TestStandardCron:
    """Five fields, read in the schedule's zone (UTC by default)."""

    def test_daily_at_nine(self):
        s = parse_schedule("0 9 * * *")
        assert iso(s.next_times(MONDAY, 2)) == ["2026-11-24T09:00:00+00:00", "2026-11-25T09:00:00+00:00"]
        assert not s.aws

    def test_weekdays_skip_the_weekend(self):
        times = parse_schedule("30 8 * * 1-5").next_times(datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc), 2)
        assert iso(times) == ["2026-11-30T08:30:00+00:00", "2026-12-01T08:30:00+00:00"]

    def test_time_zone_follows_summer_time(self):
        s = parse_schedule("0 9 * * *", "Europe/London")
        summer = s.next_times(datetime(2027, 6, 1, 0, 0, tzinfo=timezone.utc), 1)[0]
        assert summer.isoformat() == "2027-06-01T09:00:00+01:00"
        assert summer.astimezone(timezone.utc).hour == 8

    def test_a_daily_time_the_zone_repeats_when_summer_time_ends_fires_once(self):
        """01:30 happens twice in London on 2026-10-25 (BST, then GMT): a daily schedule runs the first only."""
        before, after = datetime(2026, 10, 24, 12, 0, tzinfo=timezone.utc), datetime(2026, 10, 25, 12, 0, tzinfo=timezone.utc)
        for expression in ("30 1 * * *", "cron(30 1 * * ? *)"):
            s = parse_schedule(expression, "Europe/London")
            times, _ = s.times_between(before, after, 10)
            assert [t.astimezone(timezone.utc).isoformat() for t in times] == ["2026-10-25T00:30:00+00:00"]
            utc = [t.astimezone(timezone.utc).isoformat() for t in s.next_times(before, 2)]
            assert utc == ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        half_hourly = parse_schedule("*/30 * * * *", "Europe/London")  # hours as a wildcard: both passes run, like cron
        times, _ = half_hourly.times_between(datetime(2026, 10, 25, 0, 0, tzinfo=timezone.utc), datetime(2026, 10, 25, 2, 0, tzinfo=timezone.utc), 10)
        assert len(times) == 4

    def test_macro(self):
        assert iso(parse_schedule("@daily").next_times(MONDAY, 1)) == ["2026-11-24T00:00:00+00:00"]


class TestAwsCron:
    """The EventBridge form: 6 fields, '?' in one day field, day-of-week 1-7 = Sunday-Saturday."""

    def test_every_day_at_nine(self):
        s = parse_schedule("cron(0 9 * * ? *)")
        assert s.aws and s.cron == "0 9 * * *"
        assert iso(s.next_times(MONDAY, 1)) == ["2026-11-24T09:00:00+00:00"]

    def test_day_numbers_are_shifted(self):
        assert aws_to_croniter("0 9 ? * 2-6 *", "x") == "0 9 * * 1-5"
        assert aws_to_croniter("0 9 ? * 1,7 *", "x") == "0 9 * * 0,6"
        assert aws_to_croniter("0 9 ? * MON-FRI *", "x") == "0 9 * * MON-FRI"

    def test_weekday_schedule_matches_standard_one(self):
        aws = parse_schedule("cron(15 8-18 ? * MON-FRI *)").next_times(MONDAY, 20)
        standard = parse_schedule("15 8-18 * * 1-5").next_times(MONDAY, 20)
        assert aws == standard

    def test_last_friday_and_nth_weekday(self):
        last_friday = parse_schedule("cron(0 9 ? * 6L *)").next_times(MONDAY, 1)[0]
        assert last_friday.date().isoformat() == "2026-11-27"
        second_tuesday = parse_schedule("cron(0 9 ? * 3#2 *)").next_times(MONDAY, 1)[0]
        assert second_tuesday.date().isoformat() == "2026-12-08"

    def test_year_field(self):
        s = parse_schedule("cron(0 9 1 1 ? 2028)")
        assert iso(s.next_times(MONDAY, 3)) == ["2028-01-01T09:00:00+00:00"]

    def test_year_in_the_past_never_fires_again(self):
        assert parse_schedule("cron(0 9 1 1 ? 2020)").next_times(MONDAY, 3) == []


class TestErrors:
    """A bad schedule is a FlowError that shows a correct example."""

    @pytest.mark.parametrize(
        ("expression", "words"),
        [
            ("0 9 * *", "has 4 field(s); standard cron has 5"),
            ("0 9 * * * *", "has 6 field(s)"),
            ("61 9 * * *", "is not a valid cron"),
            ("0 9 31 2 *", "never fires"),
            ("cron(0 9 * * ?)", "the AWS form has 6 fields"),
            ("cron(0 9 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
            ("cron(0 9 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
            ("cron(? 9 * * ? *)", "'?' is only allowed in day-of-month or day-of-week"),
            ("cron(0 9 ? * 8 *)", "AWS day-of-week numbers are 1-7"),
            ("cron(0 25 * * ? *)", "is not a valid AWS cron"),
            ("rate(5 minutes)", "rate(...) is not supported"),
            ("cron 0 9 * * ? *", "the AWS form is cron(...)"),
        ],
    )
    def test_message_names_the_problem_and_an_example(self, expression: str, words: str):
        with pytest.raises(FlowError) as caught:
            parse_schedule(expression)
        message = str(caught.value)
        assert words in message
        assert expression.strip() in message

    def test_unknown_zone(self):
        with pytest.raises(FlowError, match="unknown time zone 'Mars/Base'"):
            parse_schedule("0 9 * * *", "Mars/Base")


class TestTimesBetween:
    """The scheduler's due window: fire times in (after, until], oldest first, bounded."""

    def test_the_window_is_open_at_the_start_and_closed_at_the_end(self):
        s = parse_schedule("0 * * * *")
        times, more = s.times_between(datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc), MONDAY, 10)
        assert iso(times) == ["2026-11-23T08:00:00+00:00", "2026-11-23T09:00:00+00:00", "2026-11-23T10:00:00+00:00"]
        assert not more

    def test_never_fired_counts_only_the_latest_time(self):
        times, more = parse_schedule("0 6 * * *").times_between(None, MONDAY, 10)
        assert iso(times) == ["2026-11-23T06:00:00+00:00"] and not more

    def test_the_bound_keeps_the_latest_and_says_more_were_left_out(self):
        times, more = parse_schedule("* * * * *").times_between(datetime(2026, 1, 1, tzinfo=timezone.utc), MONDAY, 2)
        assert iso(times) == ["2026-11-23T09:59:00+00:00", "2026-11-23T10:00:00+00:00"] and more

    def test_aws_form_in_its_zone(self):
        s = parse_schedule("cron(0 9 ? * MON-FRI *)", "Europe/London")
        times, _ = s.times_between(datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc), MONDAY, 10)
        assert iso(times) == ["2026-11-23T09:00:00+00:00"]  # Friday 20th 09:00 is before the window; the weekend is skipped

    def test_a_schedule_whose_years_are_over_is_never_due_again(self):
        times, more = parse_schedule("cron(0 6 * * ? 2020)").times_between(datetime(2021, 1, 1, tzinfo=timezone.utc), MONDAY, 5)
        assert times == [] and not more

    def test_naive_times_are_refused(self):
        with pytest.raises(ValueError, match="timezone-aware"):
            parse_schedule("0 * * * *").times_between(None, datetime(2026, 11, 23, 10, 0), 1)
