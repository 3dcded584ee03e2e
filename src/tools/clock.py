"""The clock agents read, so runs can be replayed at a fixed time (``--as-of``/``CVM_NOW``)."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cvm.utils.errors import ConfigError, UsageError


class Clock(Protocol):
    """Tells the current time, always timezone-aware."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's clock in the configured zone."""

    def __init__(self, tz: tzinfo):
        self._tz = tz

    def now(self) -> datetime:
        return datetime.now(self._tz)


class FixedClock:
    """A clock stopped at one instant (``--as-of``)."""

    def __init__(self, instant: datetime):
        if instant.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._instant = instant

    def now(self) -> datetime:
        return self._instant


def zone(name: str) -> tzinfo:
    """The ``ZoneInfo`` for ``settings.timezone``, or a config error naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"settings.timezone: unknown time zone {name!r}; use an IANA name like Europe/London") from None


EARLIEST_YEAR = 2000
LATEST_YEAR = 9000
"""The clock's accepted range: day keys, contact windows and approval deadlines are computed by
adding and subtracting days and hours, which overflows ``datetime`` near years 1 and 9999."""


def parse_as_of(value: str | datetime, tz: tzinfo) -> datetime:
    """Parse an ``--as-of`` value; a naive time is read in the configured zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UsageError(
                f"--as-of/CVM_NOW {value!r} is not an ISO date or time; use e.g. 2026-11-23T10:00"
            ) from None
    _check_in_range(value)
    return value if value.tzinfo else value.replace(tzinfo=tz)


def _check_in_range(value: datetime) -> None:
    """Refuse a clock so far out that the windows computed from it would overflow (a usage error, not a crash)."""
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise UsageError(
            f"--as-of/CVM_NOW {value.isoformat()} is out of range; use a time between "
            f"{EARLIEST_YEAR}-01-01 and {LATEST_YEAR}-12-31, e.g. 2026-11-23T10:00"
        )


def make_clock(as_of: str | datetime | None, tz: tzinfo) -> Clock:
    """A fixed clock when ``as_of`` is given, else the system clock; both tell time in ``tz``.

    An ``--as-of`` with another offset is the same instant read in the configured
    zone, so day keys and do-not-disturb windows are local.
    """
    return FixedClock(parse_as_of(as_of, tz).astimezone(tz)) if as_of is not None else SystemClock(tz)
