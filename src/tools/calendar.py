"""iCalendar (.ics, RFC 5545) events written with the ``icalendar`` package under ``<output>/calendar/``.

One VEVENT per file with UID, DTSTAMP, DTSTART, DTEND, SUMMARY, DESCRIPTION
and, when given, LOCATION, ORGANIZER and ATTENDEEs (``mailto:``). Times are
written in UTC (``...Z``), which every calendar reads without a VTIMEZONE.
The file name is checked (letters, digits, ``.``, ``_``, ``-``; no folders)
or made from the summary and the UID, and the file is written whole or not at
all (a temporary file renamed into place).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from icalendar import Calendar, Event, vCalAddress, vText

from cvm.utils.errors import UsageError

CALENDAR_FOLDER = "calendar"
PRODID = "-//CVM//execution agent//EN"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    summary: str
    start: datetime
    end: datetime
    stamp: datetime
    """DTSTAMP: when the event was written (the CVM clock)."""
    description: str = ""
    location: str | None = None
    organizer: str | None = None
    """An e-mail address (written as ``mailto:``)."""
    attendees: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("start", "end", "stamp"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"CalendarEvent.{name} must be timezone-aware")
        if self.end <= self.start:
            raise UsageError(f"the event ends ({self.end.isoformat()}) before or when it starts ({self.start.isoformat()}); fix end or duration")


def ics_bytes(event: CalendarEvent) -> bytes:
    """The event as a VCALENDAR document (CRLF lines, folded and escaped by ``icalendar``)."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    vevent = Event()
    vevent.add("uid", event.uid)
    vevent.add("dtstamp", event.stamp.astimezone(UTC))
    vevent.add("dtstart", event.start.astimezone(UTC))
    vevent.add("dtend", event.end.astimezone(UTC))
    vevent.add("summary", event.summary)
    vevent.add("description", event.description)
    if event.location:
        vevent.add("location", vText(event.location))
    if event.organizer:
        vevent.add("organizer", _address(event.organizer, {"CN": event.organizer}))
    for attendee in event.attendees:
        vevent.add("attendee", _address(attendee, {"ROLE": "REQ-PARTICIPANT", "RSVP": "FALSE"}))
    calendar.add_component(vevent)
    return calendar.to_ical()


def _address(email: str, params: dict[str, str]) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    for key, value in params.items():
        address.params[key] = vText(value)
    return address


def file_name_for(event: CalendarEvent, requested: str | None) -> str:
    """A safe ``.ics`` file name: the requested one checked, or ``<summary slug>-<uid start>.ics``."""
    if requested is not None:
        name = requested if requested.lower().endswith(".ics") else f"{requested}.ics"
        if not _SAFE_NAME.match(name) or ".." in name:
            raise UsageError(
                f"file_name {requested[:80]!r} is not a plain file name; use letters, digits, '.', '_' and '-' (no folders)"
            )
        return name
    slug = _SLUG.sub("-", event.summary.lower()).strip("-")[:40].strip("-") or "event"
    uid = _SLUG.sub("", event.uid.lower())[:8] or "event"
    return f"{slug}-{uid}.ics"


def write_event(event: CalendarEvent, output_dir: Path, file_name: str | None = None) -> Path:
    """Write the event to ``<output_dir>/calendar/<name>.ics`` atomically; an existing file of that name is replaced."""
    folder = Path(output_dir) / CALENDAR_FOLDER
    path = folder / file_name_for(event, file_name)
    data = ics_bytes(event)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".", suffix=".ics.tmp", dir=folder)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"cannot write the calendar file {path} ({exc.strerror or exc}); check CVM_OUTPUT_DIR") from None
    return path
