"""iCalendar files written under the output folder and parsed back with ``icalendar``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from icalendar import Calendar

from cvm.tools.calendar import CALENDAR_FOLDER, CalendarEvent, file_name_for, ics_bytes, write_event
from cvm.utils.errors import UsageError

START = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
STAMP = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def event(**extra: object) -> CalendarEvent:
    values: dict = dict(
        uid="3f1c2a9e-uid@cvm", summary="Review: nightly flow, partial", start=START, end=START + timedelta(minutes=45),
        stamp=STAMP, description="2 steps failed; see report.md\nSecond line, with commas",
    )
    values.update(extra)
    return CalendarEvent(**values)


def parse(path: Path):
    calendar = Calendar.from_ical(path.read_bytes())
    (vevent,) = calendar.walk("VEVENT")
    return calendar, vevent


class TestWritten:
    """Every required property is there and reads back as written (times in UTC)."""

    def test_parsed_back(self, tmp_path: Path):
        path = write_event(event(location="Room 4", organizer="ops@example.com", attendees=("a@example.com", "b@example.com")), tmp_path)
        assert path.parent == tmp_path / CALENDAR_FOLDER and path.name == "review-nightly-flow-partial-3f1c2a9e.ics"
        calendar, vevent = parse(path)
        assert str(calendar["VERSION"]) == "2.0" and str(calendar["PRODID"]) == "-//CVM//execution agent//EN"
        assert str(vevent["UID"]) == "3f1c2a9e-uid@cvm"
        assert vevent.decoded("DTSTART") == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
        assert vevent.decoded("DTEND") == datetime(2026, 12, 1, 9, 15, tzinfo=UTC)
        assert vevent.decoded("DTSTAMP") == STAMP
        assert str(vevent["SUMMARY"]) == "Review: nightly flow, partial"
        assert str(vevent["DESCRIPTION"]) == "2 steps failed; see report.md\nSecond line, with commas"
        assert str(vevent["LOCATION"]) == "Room 4"
        assert str(vevent["ORGANIZER"]) == "mailto:ops@example.com"
        assert [str(a) for a in vevent["ATTENDEE"]] == ["mailto:a@example.com", "mailto:b@example.com"]

    def test_lines_end_with_crlf(self):
        data = ics_bytes(event())
        assert data.startswith(b"BEGIN:VCALENDAR\r\n") and b"\n" not in data.replace(b"\r\n", b"")

    def test_replaced_whole_and_no_temporary_left(self, tmp_path: Path):
        write_event(event(), tmp_path, "review")
        path = write_event(event(summary="Second"), tmp_path, "review")
        assert str(parse(path)[1]["SUMMARY"]) == "Second"
        assert sorted(p.name for p in (tmp_path / CALENDAR_FOLDER).iterdir()) == ["review.ics"]


class TestFileNames:
    """A requested name is a plain file name; a made one comes from the summary and the UID."""

    @pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "x" * 120, "name with space", "..ics"])
    def test_unsafe_names_refused(self, name):
        with pytest.raises(UsageError, match="is not a plain file name"):
            file_name_for(event(), name)

    def test_ics_added(self):
        assert file_name_for(event(), "quarterly-review") == "quarterly-review.ics"
        assert file_name_for(event(), "q.ICS") == "q.ICS"

    def test_made_from_a_summary_without_letters(self):
        assert file_name_for(event(summary="!!!"), None) == "event-3f1c2a9e.ics"


class TestRefused:
    def test_end_before_start(self):
        with pytest.raises(UsageError, match="ends .* before or when it starts"):
            event(end=START - timedelta(minutes=1))

    def test_naive_times(self):
        with pytest.raises(ValueError, match="timezone-aware"):
            event(start=datetime(2026, 12, 1, 9), end=datetime(2026, 12, 1, 10))

    def test_unwritable_folder(self, tmp_path: Path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(UsageError, match="cannot write the calendar file .*check CVM_OUTPUT_DIR"):
            write_event(event(), tmp_path / "file")
