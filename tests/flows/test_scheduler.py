"""The flow scheduler in process: due windows, missed policies, claims, leases and takeovers on a real SQLite file.

The multi-process cases (two schedulers racing, SIGTERM, a killed scheduler)
run the real console script: tests/cli/test_flows_scheduler.py.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from cvm.cli.flow_scheduler import RunDefaults, RuntimeLauncher
from cvm.flows.schedule import parse_schedule
from cvm.flows.scheduler import DuePlan, ScheduledFlow, Scheduler, firing_run_id, plan_due, scheduled_flows
from cvm.flows.store import FlowStore
from cvm.tools.firing_store import FiringStore
from cvm.utils.settings import RuntimeSettings
from tests.conftest import CONFIG, SAMPLE

NOW = datetime(2026, 11, 23, 10, 2, tzinfo=timezone.utc)
HOURLY = parse_schedule("0 * * * *")


def flow(missed: str = "run_once", max_catch_up: int = 24, schedule=HOURLY) -> ScheduledFlow:
    return ScheduledFlow(Path("f.yaml"), "demo", schedule, missed, max_catch_up)  # type: ignore[arg-type]


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=timezone.utc)


class TestDueWindow:
    """Due = the fire times in (latest recorded, now]; a never-fired flow counts only its latest time."""

    def test_never_fired_runs_the_latest_time_only(self):
        plan = plan_due(flow(), None, NOW)
        assert plan.fire == (at(10),) and plan.skip == () and plan.missed == 0

    def test_nothing_due_after_the_latest_was_recorded(self):
        assert plan_due(flow(), at(10), NOW).fire == ()

    def test_run_once_runs_the_latest_and_counts_the_missed(self):
        plan = plan_due(flow("run_once"), at(6), NOW)
        assert plan.fire == (at(10),) and plan.missed == 3

    def test_run_all_runs_each_missed_time_oldest_first(self):
        plan = plan_due(flow("run_all"), at(6), NOW)
        assert plan.fire == (at(7), at(8), at(9), at(10)) and plan.missed == 0

    def test_run_all_is_bounded_by_max_catch_up(self):
        plan = plan_due(flow("run_all", max_catch_up=2), at(6), NOW)
        assert plan.fire == (at(9), at(10)) and plan.missed == 2

    def test_run_all_after_a_long_outage_is_bounded_and_says_older_were_left_out(self):
        minutely = parse_schedule("* * * * *")
        plan = plan_due(flow("run_all", max_catch_up=3, schedule=minutely), NOW - timedelta(days=30), NOW)
        assert plan.fire == (at(10, 0), at(10, 1), at(10, 2)) and plan.missed > 900

    def test_skip_runs_a_time_reached_within_the_grace(self):
        plan = plan_due(flow("skip"), at(9), NOW, grace=timedelta(minutes=5))
        assert plan.fire == (at(10),) and plan.skip == ()

    def test_skip_records_a_late_time_as_skipped(self):
        plan = plan_due(flow("skip"), at(9), at(10, 30), grace=timedelta(minutes=5))
        assert plan.fire == () and plan.skip == (at(10),)

    def test_a_schedule_over_before_it_was_first_scheduled_never_fires(self):
        over = flow(schedule=parse_schedule("cron(0 9 1 1 ? 2020)"))
        assert plan_due(over, None, NOW) == DuePlan()
        one_time = flow(schedule=parse_schedule("cron(0 10 23 11 ? 2026)"))
        assert plan_due(one_time, None, NOW).fire == (at(10),)  # its only time, reached within the grace: it runs

    def test_time_zone_of_the_schedule(self):
        london_six = flow(schedule=parse_schedule("cron(0 6 * * ? *)", "Europe/London"))
        summer = datetime(2027, 6, 1, 5, 30, tzinfo=timezone.utc)
        assert [t.astimezone(timezone.utc).hour for t in plan_due(london_six, None, summer).fire] == [5]

    def test_run_id_is_the_same_for_every_scheduler(self):
        assert firing_run_id("demo", at(10)) == "sched-demo-20261123T1000Z"
        assert firing_run_id("demo", at(10).astimezone(parse_schedule("0 * * * *", "Asia/Tokyo").zone)) == "sched-demo-20261123T1000Z"


class TestFiringStore:
    @pytest.fixture
    def store(self, tmp_path: Path) -> FiringStore:
        return FiringStore(tmp_path / "state.sqlite3")

    def test_a_time_is_claimed_once(self, store: FiringStore):
        assert store.claim("demo", at(10), "r", "a:1:x", lease_seconds=60, now=NOW)
        assert not store.claim("demo", at(10), "r", "b:2:y", lease_seconds=60, now=NOW)
        assert store.claim("demo", at(11), "r2", "b:2:y", lease_seconds=60, now=NOW)
        assert store.last_scheduled("demo") == at(11)

    def test_a_takeover_is_won_once(self, store: FiringStore):
        store.claim("demo", at(10), "r", "a:1:x", lease_seconds=60, now=NOW)
        seen = store.unfinished()[0]
        assert store.take_over(seen, "b:2:y", lease_seconds=60, now=NOW) is not None
        assert store.take_over(seen, "c:3:z", lease_seconds=60, now=NOW) is None
        firing = store.unfinished()[0]
        assert (firing.owner, firing.takeovers) == ("b:2:y", 1)
        assert not store.renew("demo", firing.scheduled_for, "a:1:x", lease_seconds=60, now=NOW)
        assert store.renew("demo", firing.scheduled_for, "b:2:y", lease_seconds=60, now=NOW)

    def test_finished_firings_are_not_takeover_candidates(self, store: FiringStore):
        store.claim("demo", at(10), "r", "a:1:x", lease_seconds=60, now=NOW)
        store.finish("demo", at(10).isoformat(), "a:1:x", "succeeded", now=NOW)
        store.record_skipped("demo", at(11), "r2", now=NOW, note="late")
        assert store.unfinished() == []
        assert [f.state for f in store.firings("demo")] == ["skipped", "succeeded"]


FAST = """
    flow_id: fast
    trigger:
      schedule: "0 * * * *"
      missed: {missed}
    steps:
      - id: load
        agent: data
        action: list_customers
      - id: again
        agent: data
        action: list_customers
        depends_on: [load]
"""


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> RuntimeSettings:
    for name, value in dict(CVM_DATA_DIR=str(SAMPLE), CVM_CONFIG=str(CONFIG), CVM_DB_URL=db_url, CVM_SELECTOR="rules",
                            CVM_OUTPUT_DIR=str(tmp_path / "output"), CVM_CUSTOM_TREATMENTS=str(tmp_path / "ct.json")).items():
        monkeypatch.setenv(name, value)
    return RuntimeSettings(_env_file=None)


@pytest.fixture
def make_scheduler(settings: RuntimeSettings, tmp_path: Path) -> Callable[..., Scheduler]:
    def make(missed: str = "run_once", now: datetime = NOW, wall: datetime | None = None, lease_seconds: float = 60,
             on_step=None) -> Scheduler:
        path = tmp_path / f"fast-{missed}.yaml"
        path.write_text(textwrap.dedent(FAST.format(missed=missed)), encoding="utf-8")
        flows, problems = scheduled_flows([path])
        assert problems == []
        runs = FlowStore.from_url(settings.db_url)
        return Scheduler(
            flows, FiringStore.from_url(settings.db_url), runs, RuntimeLauncher(settings, runs, RunDefaults()),
            clock=lambda: now, wall=(lambda: wall) if wall else lambda: datetime.now(timezone.utc), lease_seconds=lease_seconds,
            on_step=on_step,
        )

    return make


class TestScheduler:
    def test_a_failing_round_is_logged_and_the_next_round_runs(self, make_scheduler):
        """The long-running loop outlives a round that raises (here the flows re-read fails once)."""
        scheduler = make_scheduler()
        rounds: list[int] = []

        def before_round() -> None:
            rounds.append(len(rounds))
            if len(rounds) == 1:
                raise sqlite3.OperationalError("database is locked")
            if len(rounds) == 3:  # the second round fired; stop in the third
                scheduler.request_stop()

        with capture_logs() as logs:
            outcomes = scheduler.run_forever(0.01, before_round)
        assert rounds == [0, 1, 2]
        assert [(o.run_id, o.state) for o in outcomes] == [("sched-fast-20261123T1000Z", "succeeded")]
        assert [e["error"] for e in logs if e["event"] == "scheduler_round_failed"] == ["database is locked"]

    def test_fires_a_due_time_once_across_rounds(self, make_scheduler):
        first = make_scheduler().run_once()
        assert [(o.run_id, o.state) for o in first] == [("sched-fast-20261123T1000Z", "succeeded")]
        assert make_scheduler().run_once() == []

    def test_run_all_catches_up_every_missed_time(self, make_scheduler):
        make_scheduler("run_all").run_once()
        later = make_scheduler("run_all", now=NOW + timedelta(hours=3)).run_once()
        assert [o.run_id for o in later] == [f"sched-fast-20261123T{h}00Z" for h in (11, 12, 13)]
        assert {o.state for o in later} == {"succeeded"}

    def test_run_once_after_missed_times_fires_the_latest(self, make_scheduler):
        make_scheduler().run_once()
        later = make_scheduler(now=NOW + timedelta(hours=3)).run_once()
        assert [(o.run_id, o.missed) for o in later] == [("sched-fast-20261123T1300Z", 2)]

    def test_skip_records_a_late_time_and_does_not_run_it(self, make_scheduler, settings):
        late = make_scheduler("skip", now=NOW + timedelta(minutes=40)).run_once()
        assert [(o.state, o.run_id) for o in late] == [("skipped", "sched-fast-20261123T1000Z")]
        assert FlowStore.from_url(settings.db_url).runs() == []
        assert make_scheduler("skip", now=NOW + timedelta(minutes=40)).run_once() == []

    def test_an_expired_lease_is_taken_over_and_the_run_resumed(self, make_scheduler, settings):
        firings = FiringStore.from_url(settings.db_url)
        firings.claim("fast", at(10), "sched-fast-20261123T1000Z", "elsewhere:1:dead", lease_seconds=60, now=NOW)
        held = make_scheduler(wall=NOW + timedelta(seconds=30)).run_once()  # the other host's lease still runs
        assert held == []
        taken = make_scheduler(wall=NOW + timedelta(seconds=61)).run_once()
        assert [(o.state, o.takeover) for o in taken] == [("succeeded", True)]
        assert firings.firings("fast")[0].takeovers == 1

    def test_a_scheduler_whose_firing_was_taken_over_stops_at_the_next_step(self, make_scheduler, settings):
        firings = FiringStore.from_url(settings.db_url)

        def stall_past_the_lease(event):  # while 'load' ran, another scheduler took the firing over
            if event.step_id == "load":
                (seen,) = firings.unfinished()
                assert firings.take_over(seen, "elsewhere:1:new", lease_seconds=60, now=NOW) is not None

        (outcome,) = make_scheduler(on_step=stall_past_the_lease).run_once()
        assert outcome.state == "lost_lease"
        run = FlowStore.from_url(settings.db_url).require_run(outcome.run_id)
        assert {sid: s.status for sid, s in run.steps.items()} == {"load": "succeeded", "again": "pending"}
        (firing,) = firings.firings("fast")
        assert (firing.state, firing.owner) == ("running", "elsewhere:1:new")  # left to its new owner

    def test_a_live_scheduler_of_this_host_keeps_its_firing_when_its_heartbeat_is_late(self, make_scheduler, settings,
                                                                                      other_process):
        firings = FiringStore.from_url(settings.db_url)
        owner = f"{socket.gethostname()}:{other_process}:tok"
        firings.claim("fast", at(10), "sched-fast-20261123T1000Z", owner, lease_seconds=60, now=NOW)
        assert make_scheduler(wall=NOW + timedelta(seconds=61)).run_once() == []  # not run a second time beside it
        (firing,) = firings.firings("fast")
        assert (firing.state, firing.owner, firing.takeovers) == ("running", owner, 0)

    def test_a_firing_released_by_a_scheduler_still_exiting_is_resumed(self, make_scheduler, settings, other_process):
        runs = FlowStore.from_url(settings.db_url)
        firings = FiringStore.from_url(settings.db_url)
        stopping = make_scheduler()
        stopping._on_step = lambda event: stopping.request_stop()  # SIGTERM while 'load' ran
        (stopped,) = stopping.run_once()
        assert stopped.state == "interrupted"
        # that scheduler is another process of this host that has not exited yet
        host = socket.gethostname()
        with sqlite3.connect(runs.path) as conn:
            conn.execute("UPDATE flow_runs SET owner = ? WHERE run_id = ?", (f"{host}:{other_process}", stopped.run_id))
            conn.execute("UPDATE schedule_firings SET owner = ?", (f"{host}:{other_process}:tok",))
        (resumed,) = make_scheduler().run_once()
        assert (resumed.state, resumed.takeover) == ("succeeded", True), resumed.note
        assert {sid: s.status for sid, s in runs.require_run(stopped.run_id).steps.items()} == {"load": "succeeded",
                                                                                                 "again": "succeeded"}
        assert firings.firings("fast")[0].state == "succeeded"


@pytest.fixture
def other_process() -> Iterator[int]:
    """The pid of a live process of this host that is not this one (standing in for another scheduler)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
