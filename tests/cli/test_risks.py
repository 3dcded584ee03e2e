"""``cvm risks`` as a user runs it: list (table, json, csv), ack, close, show, and the errors, over a real state file.

The events are raised the way a run raises them (``RiskStore.observe`` with the
report's executive triggers), across two runs: the second clears one condition.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest

from cvm.reporting.model import ExecutiveTrigger
from cvm.tools.risk_store import RiskStore
from cvm.tools.sqlite_store import sqlite_path

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def trigger(name: str, value: int, threshold: int = 1) -> ExecutiveTrigger:
    label = name.replace("_", " ").capitalize()
    return ExecutiveTrigger(name=name, label=label, value=value, threshold=threshold, fired=value >= threshold,
                            headline=f"{label}: {value}")


@pytest.fixture
def events(db_url: str) -> RiskStore:
    store = RiskStore(sqlite_path(db_url))
    store.observe([trigger("pending_approvals", 2), trigger("open_errors", 5)], run_id="run-1", now=T0,
                  owners={"open_errors": "data-team"})
    return store


def test_list_shows_the_live_events_newest_first(events, run_cli):
    result = run_cli("cvm", "risks", "list")
    assert result.returncode == 0, result.stderr
    assert "Risk events, live (2):" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "Open errors: 5" in line or "Pending approvals: 2" in line]
    assert len(lines) == 2 and "data-team" in lines[0] and "critical" in lines[0]


def test_json_and_csv_carry_every_field(events, run_cli):
    as_json = json.loads(run_cli("cvm", "risks", "list", "--output", "json").stdout)
    assert {e["kind"]: (e["state"], e["owner"], e["value"]) for e in as_json} == {
        "open_errors": ("open", "data-team", 5), "pending_approvals": ("open", "cvm-operations", 2)}
    rows = list(csv.DictReader(io.StringIO(run_cli("cvm", "risks", "list", "--output", "csv").stdout)))
    assert {r["kind"] for r in rows} == {"open_errors", "pending_approvals"}


@pytest.mark.slow
def test_ack_then_close_by_a_person(events, run_cli):
    risk_id = str(events.events(kind="open_errors")[0].risk_id)
    acked = run_cli("cvm", "risks", "ack", risk_id, "--by", "Dana", "--note", "feed owner paged")
    assert acked.returncode == 0, acked.stderr
    assert f"acknowledged risk event {risk_id}" in acked.stdout
    closed = run_cli("cvm", "risks", "close", risk_id, "--by", "Lee", "--reason", "feed fixed")
    assert closed.returncode == 0, closed.stderr
    event = events.get(int(risk_id))
    assert (event.state, event.acknowledged_by, event.closed_by, event.close_reason) == ("closed", "Dana", "Lee", "feed fixed")
    shown = json.loads(run_cli("cvm", "risks", "show", risk_id, "--output", "json").stdout)
    assert [h["action"] for h in shown["history"]] == ["opened", "acknowledged", "closed"]
    assert run_cli("cvm", "risks", "list", "--state", "closed", "--output", "json").stdout.count('"risk_id"') == 1


def test_a_condition_that_clears_in_the_next_run_closes_its_event(events, run_cli):
    events.observe([trigger("pending_approvals", 0), trigger("open_errors", 6)], run_id="run-2", now=T0)
    live = json.loads(run_cli("cvm", "risks", "list", "--output", "json").stdout)
    assert [(e["kind"], e["times_seen"], e["last_seen_run"]) for e in live] == [("open_errors", 2, "run-2")]
    closed = json.loads(run_cli("cvm", "risks", "list", "--state", "closed", "--output", "json").stdout)
    assert [(e["kind"], e["closed_by"], e["close_reason"]) for e in closed] == [
        ("pending_approvals", "cvm", "cleared in run run-2: Pending approvals: 0")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ack", "99", "--by", "Dana"), "no risk event 99"),
        (("ack", "abc", "--by", "Dana"), "risk event id 'abc'"),
        (("show", "\u00b2"), "risk event id '\u00b2'"),
        (("ack", "9" * 30, "--by", "Dana"), f"risk event id '{'9' * 30}'"),
        (("ack", "1", "--by", "  "), "--by is blank"),
        (("close", "1", "--by", "Dana", "--reason", " "), "--reason is empty"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(events, run_cli, args, message):
    result = run_cli("cvm", "risks", *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
