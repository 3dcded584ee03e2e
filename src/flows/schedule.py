"""Flow schedules: standard 5-field cron and the AWS ``cron(...)`` form, next fire times.

Two spellings are accepted:

* standard cron, 5 fields: ``minute hour day-of-month month day-of-week``
  (``0 9 * * 1-5``: 09:00 Monday to Friday; day-of-week 0-6 = Sunday-Saturday,
  or ``MON``...), plus croniter's ``L``, ``W`` and ``#`` extensions and the
  ``@daily`` style macros;
* the AWS EventBridge form, 6 fields inside ``cron(...)``:
  ``cron(minutes hours day-of-month month day-of-week year)``
  (``cron(0 9 * * ? *)``: 09:00 every day). As in AWS, one of day-of-month and
  day-of-week must be ``?``, day-of-week 1-7 is Sunday-Saturday, ``6L`` is the
  last Friday of the month and ``3#2`` the second Tuesday.

Times are read in the schedule's time zone (default UTC, as EventBridge does).
A schedule at fixed hours fires once when summer time ends and its wall-clock
time happens twice (the first pass), as cron does.
The AWS form is translated into croniter's syntax; croniter computes the times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from cvm.utils.errors import FlowError

_AWS = re.compile(r"^\s*cron\((?P<body>.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_RATE = re.compile(r"^\s*rate\(", re.IGNORECASE)
STANDARD_EXAMPLE = "'0 9 * * *' (09:00 every day) or 'cron(0 9 * * ? *)' (the AWS form)"
AWS_FIELDS = "minutes hours day-of-month month day-of-week year"


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the expression as written, croniter's equivalent, and its zone."""

    expression: str
    cron: str
    """The croniter expression it was translated to (the same text for standard cron)."""
    zone: tzinfo
    aws: bool = False

    def next_times(self, after: datetime, count: int = 1) -> list[datetime]:
        """The next ``count`` fire times strictly after ``after``, in the schedule's zone (fewer if it stops firing)."""
        if after.tzinfo is None:
            raise ValueError("next_times needs a timezone-aware datetime")
        it = croniter(self.cron, after.astimezone(self.zone))
        times: list[datetime] = []
        while len(times) < count:
            try:
                moment = it.get_next(datetime)
            except CroniterBadDateError:  # a year field in the past: it never fires again
                break
            if not self._repeat(moment):
                times.append(moment)
        return times

    def _repeat(self, moment: datetime) -> bool:
        """The second pass of a wall-clock time the zone repeats (summer time ends) for a schedule at fixed hours.

        ``30 1 * * *`` in Europe/London matches 01:30 twice on the last Sunday of October; like cron, a job at a
        fixed hour runs once then (a schedule with a wildcard or range of hours runs through both passes).
        """
        if not self._fixed_hours:
            return False
        local = moment.astimezone(self.zone)
        wall = local.replace(tzinfo=None)
        first, second = wall.replace(tzinfo=self.zone, fold=0), wall.replace(tzinfo=self.zone, fold=1)
        return first.utcoffset() != second.utcoffset() and local.utcoffset() == second.utcoffset()

    @property
    def _fixed_hours(self) -> bool:
        if self.cron.startswith("@"):
            return self.cron.lower() != "@hourly"
        return re.fullmatch(r"\d+(,\d+)*", self.cron.split()[1]) is not None

    def times_between(self, after: datetime | None, until: datetime, limit: int) -> tuple[list[datetime], bool]:
        """The fire times in ``(after, until]``, oldest first: at most the latest ``limit`` of them.

        The scheduler's "due" window. Walks back from ``until`` so a long outage costs
        ``limit`` steps, not one per missed time; the flag says whether older times were
        left out. ``after=None`` (never fired) means only the latest time counts.
        """
        if until.tzinfo is None or (after is not None and after.tzinfo is None):
            raise ValueError("times_between needs timezone-aware datetimes")
        it = croniter(self.cron, until.astimezone(self.zone) + timedelta(seconds=1))
        wanted = limit if after is not None else 1
        found: list[datetime] = []
        while True:
            try:
                moment = it.get_prev(datetime)
            except CroniterBadDateError:  # a year field: no earlier time exists
                return list(reversed(found)), False
            if moment > until or self._repeat(moment):  # croniter's start rounding (whole minutes); a repeated wall time
                continue
            if after is not None and moment <= after:
                return list(reversed(found)), False
            if len(found) >= wanted:
                return list(reversed(found)), after is not None
            found.append(moment)


def time_zone(name: str | None) -> tzinfo:
    """The zone of a schedule (``None`` is UTC)."""
    if name is None or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise FlowError(f"unknown time zone {name!r}; use an IANA name like Europe/London or UTC") from None


def parse_schedule(expression: str, zone_name: str | None = None) -> Schedule:
    """Parse a standard or AWS cron expression; ``FlowError`` says what is wrong and how to write it."""
    zone = time_zone(zone_name)
    text = expression.strip()
    if _RATE.match(text):
        raise FlowError(f"schedule {expression!r}: rate(...) is not supported; write it as a cron expression, e.g. {STANDARD_EXAMPLE}")
    aws = _AWS.match(text)
    if aws:
        cron = aws_to_croniter(aws.group("body"), expression)
    else:
        if text.lower().startswith("cron"):
            raise FlowError(f"schedule {expression!r}: the AWS form is cron(...) with 6 fields ({AWS_FIELDS}), e.g. cron(0 9 * * ? *)")
        fields = text.split()
        if not text.startswith("@") and len(fields) != 5:
            raise FlowError(
                f"schedule {expression!r} has {len(fields)} field(s); standard cron has 5 "
                f"(minute hour day-of-month month day-of-week), e.g. {STANDARD_EXAMPLE}"
            )
        cron = " ".join(fields)
    _check(cron, expression, aws=bool(aws))
    return Schedule(expression=text, cron=cron, zone=zone, aws=bool(aws))


def _check(cron: str, expression: str, *, aws: bool) -> None:
    form = f"AWS cron ({AWS_FIELDS}), e.g. cron(0 9 * * ? *)" if aws else f"cron, e.g. {STANDARD_EXAMPLE}"
    if not croniter.is_valid(cron):
        raise FlowError(f"schedule {expression!r} is not a valid {form}")
    fields = cron.split()
    years = [int(y) for y in re.findall(r"\d{4}", fields[6])] if len(fields) == 7 else []
    base = datetime(min(years) - 1, 1, 1, tzinfo=timezone.utc) if years else datetime(2000, 1, 1, tzinfo=timezone.utc)
    try:
        croniter(cron, base).get_next(datetime)
    except CroniterBadDateError:
        raise FlowError(f"schedule {expression!r} never fires (no date matches it); check the day and month fields") from None
    except (ValueError, KeyError) as exc:
        raise FlowError(f"schedule {expression!r} is not a valid {form} ({exc})") from None


def aws_to_croniter(body: str, expression: str) -> str:
    """``0 9 ? * 2-6 *`` (AWS) -> ``0 9 * * 1-5`` (croniter)."""
    fields = body.split()
    if len(fields) != 6:
        raise FlowError(
            f"schedule {expression!r}: the AWS form has 6 fields ({AWS_FIELDS}), got {len(fields)}; e.g. cron(0 9 * * ? *)"
        )
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise FlowError(
            f"schedule {expression!r}: in the AWS form exactly one of day-of-month and day-of-week must be '?', "
            "e.g. cron(0 9 * * ? *) or cron(0 9 ? * MON-FRI *)"
        )
    if "?" in (minute, hour, month, year):
        raise FlowError(f"schedule {expression!r}: '?' is only allowed in day-of-month or day-of-week")
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else _aws_day_of_week(dow, expression)
    cron = f"{minute} {hour} {dom} {month} {dow}"
    return cron if year == "*" else f"{cron} 0 {year}"


def _aws_day(token: str, expression: str) -> str:
    """One AWS day-of-week value (1-7 = SUN-SAT, or a name) in croniter's numbering (0-6)."""
    if token.isdigit():
        n = int(token)
        if not 1 <= n <= 7:
            raise FlowError(f"schedule {expression!r}: AWS day-of-week numbers are 1-7 (1 = Sunday), not {n}")
        return str(n - 1)
    return token


def _aws_day_of_week(field: str, expression: str) -> str:
    items = []
    for item in field.split(","):
        if item.upper() == "L":
            items.append("6")  # AWS: L alone is the last day of the week, Saturday
        elif item.upper().endswith("L") and len(item) > 1:
            items.append(f"L{_aws_day(item[:-1], expression)}")  # 6L: the last Friday of the month
        elif "#" in item:
            day, nth = item.split("#", 1)
            items.append(f"{_aws_day(day, expression)}#{nth}")
        else:
            base, slash, step = item.partition("/")
            start, dash, end = base.partition("-")
            converted = _aws_day(start, expression) + (dash + _aws_day(end, expression) if dash else "")
            items.append(converted + (slash + step if slash else ""))
    return ",".join(items)
