"""Risk events across runs on a real SQLite file: open once, refresh while firing, close when cleared or by a person."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cvm.reporting.model import ExecutiveTrigger
from cvm.tools.risk_store import RiskStore, severity_of
from cvm.utils.errors import UsageError

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Trig:
    name: str
    value: int
    threshold: int | None = 1
    label: str = "Pending approvals"

    @property
    def fired(self) -> bool:
        return self.threshold is not None and self.value >= self.threshold

    @property
    def headline(self) -> str:
        return f"{self.label}: {self.value}"


@pytest.fixture
def store(tmp_path: Path) -> RiskStore:
    return RiskStore(tmp_path / "state.sqlite3")


def run(store: RiskStore, n: int, **values: int):
    triggers = [Trig(name, value) for name, value in values.items()]
    return store.observe(triggers, run_id=f"run-{n}", now=T0 + timedelta(days=n), owners={"pending_approvals": "governance-team"})


class TestAcrossRuns:
    def test_a_fired_trigger_opens_one_event_that_later_runs_refresh(self, store: RiskStore):
        first = run(store, 1, pending_approvals=2, open_errors=0)
        assert [(e.kind, e.state, e.owner) for e in first.opened] == [("pending_approvals", "open", "governance-team")]
        second = run(store, 2, pending_approvals=5, open_errors=0)
        assert second.opened == [] and len(second.still_open) == 1
        (event,) = store.events()
        assert (event.times_seen, event.first_seen_run, event.last_seen_run, event.value, event.severity) == (
            2, "run-1", "run-2", 5, "critical")

    def test_the_same_run_evaluated_twice_is_seen_once(self, store: RiskStore):
        run(store, 1, pending_approvals=2)
        run(store, 1, pending_approvals=2)
        assert store.events()[0].times_seen == 1

    def test_a_cleared_condition_closes_its_event(self, store: RiskStore):
        run(store, 1, pending_approvals=2)
        cleared = run(store, 2, pending_approvals=0)
        (event,) = cleared.closed
        assert (event.state, event.closed_by) == ("closed", "cvm")
        assert event.close_reason == "cleared in run run-2: Pending approvals: 0"
        assert store.events() == []
        assert [h["action"] for h in store.history(event.risk_id)] == ["opened", "closed"]

    def test_firing_again_after_it_cleared_opens_a_new_event(self, store: RiskStore):
        run(store, 1, pending_approvals=2)
        run(store, 2, pending_approvals=0)
        again = run(store, 3, pending_approvals=1)
        assert len(again.opened) == 1
        assert [e.state for e in store.events(states=("open", "closed"))] == ["open", "closed"]

    def test_an_acknowledged_event_stays_live_and_still_closes_when_cleared(self, store: RiskStore):
        (opened,) = run(store, 1, pending_approvals=2).opened
        acked = store.acknowledge(opened.risk_id, "Dana", now=T0, note="chasing the approvers")
        assert (acked.state, acked.acknowledged_by) == ("acknowledged", "Dana")
        assert run(store, 2, pending_approvals=3).opened == []
        assert run(store, 3, pending_approvals=0).closed[0].risk_id == opened.risk_id

    def test_a_person_closes_it_and_a_still_firing_condition_opens_a_new_one(self, store: RiskStore):
        (opened,) = run(store, 1, pending_approvals=2).opened
        closed = store.close_event(opened.risk_id, "Dana", "accepted for this week", now=T0)
        assert (closed.state, closed.closed_by, closed.close_reason) == ("closed", "Dana", "accepted for this week")
        (reopened,) = run(store, 2, pending_approvals=2).opened
        assert reopened.risk_id != opened.risk_id

    def test_the_report_of_the_same_run_made_again_does_not_reopen_what_a_person_closed(self, store: RiskStore):
        (opened,) = run(store, 1, pending_approvals=2).opened
        store.close_event(opened.risk_id, "Dana", "handled", now=T0)
        again = run(store, 1, pending_approvals=2)  # 'cvm report' of run-1 once more
        assert again.opened == [] and store.events() == []
        (reopened,) = run(store, 2, pending_approvals=2).opened  # the next run that sees it
        assert reopened.risk_id != opened.risk_id

    def test_events_persist_across_store_instances(self, store: RiskStore, tmp_path: Path):
        run(store, 1, open_errors=3)
        assert [e.kind for e in RiskStore(tmp_path / "state.sqlite3").events()] == ["open_errors"]

    def test_the_database_refuses_a_second_live_event_of_one_kind(self, store: RiskStore, tmp_path: Path):
        run(store, 1, open_errors=3)
        conn = sqlite3.connect(tmp_path / "state.sqlite3")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO risk_events (kind, scope, title, detail, severity, owner, state, opened_at, updated_at,"
                " first_seen_run, last_seen_run) VALUES ('open_errors', 'portfolio', 't', 'd', 'high', 'o', 'open', 'x', 'x', 'r', 'r')"
            )

    def test_the_report_s_executive_triggers_are_accepted_as_they_are(self, store: RiskStore):
        trig = ExecutiveTrigger(name="open_errors", label="Open errors", value=2, threshold=1, fired=True, headline="Open errors: 2")
        (event,) = store.observe([trig], run_id="r1", now=T0).opened
        assert (event.kind, event.title, event.owner, event.severity) == ("open_errors", "Open errors", "cvm-operations", "high")


class TestPeople:
    def test_unknown_id_and_closed_events_are_usage_errors(self, store: RiskStore):
        with pytest.raises(UsageError, match="no risk event 9"):
            store.acknowledge(9, "Dana", now=T0)
        (opened,) = run(store, 1, pending_approvals=2).opened
        store.close_event(opened.risk_id, "Dana", "done", now=T0)
        with pytest.raises(UsageError, match="already closed"):
            store.close_event(opened.risk_id, "Lee", "again", now=T0)
        with pytest.raises(UsageError, match="is closed"):
            store.acknowledge(opened.risk_id, "Lee", now=T0)


@pytest.mark.parametrize(("value", "threshold", "severity"), [(1, 1, "medium"), (2, 1, "high"), (4, 1, "critical"), (5, None, "high")])
def test_severity_grows_with_the_distance_over_the_threshold(value: int, threshold: int | None, severity: str):
    assert severity_of(value, threshold) == severity
