"""The clock: --as-of/CVM_NOW parsing, fixed and system clocks, time zones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvm.tools.clock import FixedClock, SystemClock, make_clock, parse_as_of, zone
from cvm.utils.errors import ConfigError, UsageError

LONDON = ZoneInfo("Europe/London")


class TestParseAsOf:
    """parse_as_of reads naive times in the configured zone and keeps aware ones."""

    def test_naive_string_gets_the_configured_zone(self) -> None:
        parsed = parse_as_of("2026-07-01T10:00", LONDON)
        assert parsed == datetime(2026, 7, 1, 10, 0, tzinfo=LONDON)
        assert parsed.utcoffset() == timedelta(hours=1)
        assert parsed.astimezone(timezone.utc).hour == 9

    def test_naive_winter_time_is_gmt(self) -> None:
        assert parse_as_of("2026-11-23T10:00:00", LONDON).utcoffset() == timedelta(0)

    def test_date_only_is_midnight(self) -> None:
        assert parse_as_of("2026-11-23", LONDON) == datetime(2026, 11, 23, 0, 0, tzinfo=LONDON)

    def test_aware_string_keeps_its_offset(self) -> None:
        parsed = parse_as_of("2026-11-23T10:00:00+05:30", LONDON)
        assert parsed.utcoffset() == timedelta(hours=5, minutes=30)
        assert parsed.astimezone(timezone.utc) == datetime(2026, 11, 23, 4, 30, tzinfo=timezone.utc)

    def test_surrounding_whitespace_is_ignored(self) -> None:
        assert parse_as_of("  2026-11-23T10:00:00+00:00\n", LONDON) == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)

    def test_datetime_objects(self) -> None:
        aware = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
        assert parse_as_of(aware, LONDON) is aware
        assert parse_as_of(datetime(2026, 1, 1, 12), LONDON).tzinfo is LONDON

    @pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "23/11/2026", ""])
    def test_bad_string_is_usage_error(self, bad: str) -> None:
        with pytest.raises(UsageError) as err:
            parse_as_of(bad, LONDON)
        assert str(err.value) == f"--as-of/CVM_NOW {bad!r} is not an ISO date or time; use e.g. 2026-11-23T10:00"
        assert err.value.exit_code == 2

    @pytest.mark.parametrize("far", ["9999-12-31T23:59", "9001-01-01", "1999-12-31T23:59", "0001-01-01T00:00"])
    def test_time_outside_the_range_is_usage_error(self, far: str) -> None:
        with pytest.raises(UsageError, match="out of range; use a time between 2000-01-01 and 9000-12-31") as err:
            parse_as_of(far, LONDON)
        assert err.value.exit_code == 2

    def test_datetime_outside_the_range_is_usage_error(self) -> None:
        """CVM_NOW arrives already parsed (by the settings) as a datetime."""
        with pytest.raises(UsageError, match="9999-12-31T23:59:00"):
            parse_as_of(datetime(9999, 12, 31, 23, 59), LONDON)

    @pytest.mark.parametrize("edge", ["2000-01-01T00:00", "9000-12-31T23:59"])
    def test_range_ends_are_accepted(self, edge: str) -> None:
        assert parse_as_of(edge, LONDON) == datetime.fromisoformat(edge).replace(tzinfo=LONDON)

    @given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
    def test_naive_iso_round_trip(self, moment: datetime) -> None:
        parsed = parse_as_of(moment.isoformat(), timezone.utc)
        assert parsed == moment.replace(tzinfo=timezone.utc)


class TestClocks:
    """FixedClock stands still, SystemClock is aware and current, make_clock picks one."""

    def test_fixed_clock(self) -> None:
        instant = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
        clock = FixedClock(instant)
        assert clock.now() == instant
        assert clock.now() == instant

    def test_fixed_clock_rejects_naive(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            FixedClock(datetime(2026, 11, 23, 10))

    def test_system_clock_is_aware_and_now(self) -> None:
        now = SystemClock(LONDON).now()
        assert now.tzinfo is LONDON
        assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)

    def test_make_clock_fixed(self) -> None:
        clock = make_clock("2026-11-23T10:00", LONDON)
        assert isinstance(clock, FixedClock)
        assert clock.now() == datetime(2026, 11, 23, 10, tzinfo=LONDON)

    def test_make_clock_system(self) -> None:
        assert isinstance(make_clock(None, LONDON), SystemClock)

    def test_make_clock_bad_value(self) -> None:
        with pytest.raises(UsageError):
            make_clock("not a time", LONDON)


class TestZone:
    """zone() returns an IANA zone or a ConfigError naming settings.timezone."""

    @pytest.mark.parametrize("name", ["Europe/London", "UTC", "America/New_York"])
    def test_known_zones(self, name: str) -> None:
        assert zone(name) == ZoneInfo(name)

    @pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "Europe", "../../etc/passwd", "Europe/London "])
    def test_unknown_zone_is_config_error(self, name: str) -> None:
        with pytest.raises(ConfigError) as err:
            zone(name)
        assert str(err.value) == (
            f"settings.timezone: unknown time zone {name!r}; use an IANA name like Europe/London"
        )
