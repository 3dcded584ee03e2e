"""``cvm flows scheduler``: run every flow whose schedule is due, once, even with several schedulers running.

A round (``run_once``):

1. take over firings left unfinished by another scheduler (released on SIGTERM,
   lease expired while its process is not a live one of this host, or its
   process gone) and resume their flow runs, keeping the steps that succeeded;
2. for each scheduled flow, the due times are its fire times in
   ``(latest recorded time, now]`` (a flow never fired: only its latest time,
   and not at all when that time is over the grace and the schedule is over),
   and its ``trigger.missed`` policy picks what runs: ``run_once`` (default)
   the latest, ``run_all`` each (at most ``trigger.max_catch_up``, the latest),
   ``skip`` the latest only when it is at most ``grace`` late (else it is
   recorded ``skipped``);
3. each chosen time is *claimed* in the firing store (an INSERT on
   ``(flow_id, scheduled_for)``: one winner) and its flow run started under the
   run id ``sched-<flow>-<time>``, with a lease renewed while it runs.

Stopping (``request_stop``, on SIGTERM/SIGINT): no new firing is taken; the
running flow stops at its next step boundary (steps already running finish and
are recorded, except a step pausing in a ``wait`` or a retry's backoff, whose
pause ends at once when the launcher's runner was given the same stop), the
firing is released as ``interrupted`` and the next scheduler resumes it.
Firings run one at a time, in time order.

The scheduler does not build runtimes (flows sit below the composition root): a
``Launcher`` from the CLI starts and resumes runs.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal, Protocol

import structlog

from cvm.flows.runner import RunInterrupted, StepEvent, owner_alive
from cvm.flows.schedule import Schedule
from cvm.flows.store import FlowRunRecord, FlowStore, utc_now
from cvm.flows.validate import parse_flow
from cvm.tools.firing_store import Firing, FiringState, FiringStore
from cvm.utils.errors import CVMError

log = structlog.get_logger(__name__)

MissedPolicy = Literal["run_once", "skip", "run_all"]
DEFAULT_GRACE = timedelta(minutes=15)
DEFAULT_LEASE_SECONDS = 120.0
COUNT_MISSED_UP_TO = 1000
"""How far back a round counts missed times (the count is only reported)."""


@dataclass(frozen=True)
class ScheduledFlow:
    """A flow file with a schedule, as the scheduler needs it."""

    path: Path
    flow_id: str
    schedule: Schedule
    missed: MissedPolicy = "run_once"
    max_catch_up: int = 24


def scheduled_flows(paths: Iterable[Path]) -> tuple[list[ScheduledFlow], list[str]]:
    """The flows among ``paths`` that have a ``trigger.schedule``, and a line per file that could not be read.

    A broken file does not stop the others from being scheduled; two files with one flow id are refused.
    """
    found: dict[str, ScheduledFlow] = {}
    problems: list[str] = []
    for path in sorted(paths):
        try:
            definition, resolved, _ = parse_flow(path)
        except CVMError as exc:
            problems.append(str(exc))
            continue
        trigger = definition.trigger
        schedule = trigger.parsed_schedule() if trigger else None
        if trigger is None or schedule is None:
            continue
        if definition.flow_id in found:
            problems.append(f"{path}: flow id {definition.flow_id!r} is also in {found[definition.flow_id].path}; not scheduled twice")
            continue
        found[definition.flow_id] = ScheduledFlow(resolved, definition.flow_id, schedule, trigger.missed, trigger.max_catch_up)
    return list(found.values()), problems


@dataclass(frozen=True)
class DuePlan:
    """What a round does for one flow: the times to run, the time to record as skipped, how many were missed."""

    fire: tuple[datetime, ...] = ()
    skip: tuple[datetime, ...] = ()
    missed: int = 0
    """Due times neither run nor recorded (older ones under ``run_once``, beyond ``max_catch_up`` under ``run_all``)."""


def plan_due(flow: ScheduledFlow, last: datetime | None, now: datetime, grace: timedelta = DEFAULT_GRACE) -> DuePlan:
    """Pure: which due times of ``flow`` run now under its ``missed`` policy."""
    times, more = flow.schedule.times_between(last, now, COUNT_MISSED_UP_TO)
    if not times:
        return DuePlan()
    if last is None and now - times[-1] > grace and not flow.schedule.next_times(now, 1):
        return DuePlan()  # a schedule that is over (its year passed) before it was first scheduled never fires
    older = len(times) - 1 + (1 if more else 0)
    if flow.missed == "run_all":
        fire = tuple(times[-flow.max_catch_up:])
        return DuePlan(fire=fire, missed=len(times) - len(fire) + (1 if more else 0))
    latest = times[-1]
    if flow.missed == "skip" and now - latest > grace:
        return DuePlan(skip=(latest,), missed=older)
    return DuePlan(fire=(latest,), missed=older)


def firing_run_id(flow_id: str, scheduled_for: datetime) -> str:
    """The flow run id of a firing: the same for every scheduler, so a takeover resumes the same run."""
    return f"sched-{flow_id}-{scheduled_for.astimezone(timezone.utc):%Y%m%dT%H%MZ}"


def scheduler_owner() -> str:
    """``host:pid:token``: which scheduler holds a lease (the token tells two schedulers of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_gone(owner: str | None) -> bool:
    """True only when the lease holder is known dead: a process of this host that no longer exists."""
    if not owner:
        return True
    host_pid, _, _token = owner.rpartition(":")
    host, _, pid = host_pid.rpartition(":")
    if host == socket.gethostname() and pid == str(os.getpid()):
        return False  # a scheduler of this very process: trust its lease
    return owner_alive(host_pid) is False


def owner_live_here(owner: str | None) -> bool:
    """True when the lease holder is another scheduler process of this host that is still running.

    Its lease ran out only because its heartbeat was late (a suspended machine, a stalled process): it still
    executes the run, which the runner would refuse to resume under it, so it is not taken over.
    """
    host_pid = (owner or "").rpartition(":")[0]
    return bool(host_pid) and owner_alive(host_pid) is True


class StopRequested(Exception):
    """Raised at a step boundary once a stop was requested: the run is left to be resumed."""


class Launcher(Protocol):
    """Starts and resumes flow runs with a runtime (built by the CLI)."""

    def start(self, flow: ScheduledFlow, run_id: str, scheduled_for: datetime, on_step: Callable[[StepEvent], None]) -> FlowRunRecord: ...

    def resume(self, flow: ScheduledFlow, run_id: str, on_step: Callable[[StepEvent], None], *, force: bool) -> FlowRunRecord: ...


@dataclass(frozen=True)
class Outcome:
    """One firing this scheduler handled in a round."""

    flow_id: str
    scheduled_for: str
    run_id: str
    state: FiringState | Literal["claimed_elsewhere", "lost_lease"]
    takeover: bool = False
    missed: int = 0
    note: str | None = None

    @property
    def failed(self) -> bool:
        return self.state in ("failed", "partial", "error")


class Scheduler:
    """Fires due flows through a ``Launcher``; claims and leases in a ``FiringStore``."""

    def __init__(
        self, flows: Sequence[ScheduledFlow], firings: FiringStore, runs: FlowStore, launcher: Launcher, *,
        clock: Callable[[], datetime], wall: Callable[[], datetime] = utc_now, lease_seconds: float = DEFAULT_LEASE_SECONDS,
        grace: timedelta = DEFAULT_GRACE, on_step: Callable[[StepEvent], None] | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ):
        self.flows = {f.flow_id: f for f in flows}
        self.firings = firings
        self.runs = runs
        self.launcher = launcher
        self.clock = clock
        self.wall = wall
        self.lease_seconds = lease_seconds
        self.grace = grace
        self.owner = scheduler_owner()
        self._on_step = on_step
        self._on_outcome = on_outcome
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._current: Firing | None = None

    # -- control -----------------------------------------------------------------

    def request_stop(self) -> None:
        """Take no new firing; stop the running flow at its next step boundary (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def set_flows(self, flows: Sequence[ScheduledFlow]) -> None:
        """Schedule these flows from the next round on (flow files added, changed or removed)."""
        self.flows = {f.flow_id: f for f in flows}

    def run_forever(self, poll_seconds: float, before_round: Callable[[], None] | None = None) -> list[Outcome]:
        """Rounds every ``poll_seconds`` until a stop is requested; ``before_round`` may re-read the flows.

        A round that fails (the state database locked past its timeout, a flow file broken while it is edited)
        is logged with its traceback and the next round tries again: a long-running scheduler outlives it.
        """
        outcomes: list[Outcome] = []
        while not self._stop.is_set():
            try:
                if before_round is not None:
                    before_round()
                outcomes += self.run_once()
            except Exception as exc:
                log.exception("scheduler_round_failed", error=str(exc), retry_in_seconds=poll_seconds)
            self._stop.wait(poll_seconds)
        return outcomes

    # -- one round ---------------------------------------------------------------

    def run_once(self) -> list[Outcome]:
        """Take over unfinished firings, then fire what is due now (oldest first); stops early on request."""
        outcomes: list[Outcome | None] = [self._take_over(f) for f in self._orphans()]
        now = self.clock()
        for flow in self.flows.values():
            if self._stop.is_set():
                break
            plan = plan_due(flow, self.firings.last_scheduled(flow.flow_id), now, self.grace)
            outcomes += [self._skip(flow, moment, plan.missed, now) for moment in plan.skip]
            for moment in plan.fire:
                if self._stop.is_set():
                    break
                outcomes.append(self._claim_and_run(flow, moment, plan.missed))
        return [o for o in outcomes if o is not None]

    def _orphans(self) -> list[Firing]:
        """Unfinished firings of known flows that no live scheduler holds."""
        wall = self.wall()
        return [
            f for f in self.firings.unfinished(list(self.flows))
            if f.state == "interrupted" or f.lease_expires_at is None or owner_gone(f.owner)
            or (datetime.fromisoformat(f.lease_expires_at) <= wall and not owner_live_here(f.owner))
        ]

    def _skip(self, flow: ScheduledFlow, moment: datetime, missed: int, now: datetime) -> Outcome | None:
        note = f"skipped: {now - moment} late, over the {self.grace} grace (trigger.missed: skip)"
        if missed:
            note += f"; {missed} earlier missed time(s) not run"
        run_id = firing_run_id(flow.flow_id, moment)
        if not self.firings.record_skipped(flow.flow_id, moment, run_id, now=self.wall(), note=note):
            return None  # another scheduler recorded it first
        log.info("schedule_skipped", flow_id=flow.flow_id, scheduled_for=moment.isoformat(), note=note)
        return self._emit(Outcome(flow.flow_id, moment.astimezone(timezone.utc).isoformat(), run_id, "skipped", missed=missed, note=note))

    def _claim_and_run(self, flow: ScheduledFlow, moment: datetime, missed: int) -> Outcome:
        run_id = firing_run_id(flow.flow_id, moment)
        if not self.firings.claim(flow.flow_id, moment, run_id, self.owner, lease_seconds=self.lease_seconds,
                                  now=self.wall(), missed=missed):
            return self._emit(Outcome(flow.flow_id, moment.astimezone(timezone.utc).isoformat(), run_id, "claimed_elsewhere"))
        firing = self.firings.get(flow.flow_id, moment.astimezone(timezone.utc).isoformat())
        assert firing is not None  # just inserted by this transaction's winner
        log.info("schedule_fired", flow_id=flow.flow_id, scheduled_for=firing.scheduled_for, run_id=run_id, missed=missed)
        return self._execute(flow, firing, takeover=False)

    def _take_over(self, seen: Firing) -> Outcome | None:
        if self._stop.is_set():
            return None
        firing = self.firings.take_over(seen, self.owner, lease_seconds=self.lease_seconds, now=self.wall())
        if firing is None:
            return None  # another scheduler took it first
        log.info("schedule_taken_over", flow_id=firing.flow_id, scheduled_for=firing.scheduled_for, previous_owner=seen.owner)
        return self._execute(self.flows[firing.flow_id], firing, takeover=True, released=seen.state == "interrupted")

    # -- running one firing ----------------------------------------------------

    def _execute(self, flow: ScheduledFlow, firing: Firing, *, takeover: bool, released: bool = False) -> Outcome:
        """Start (or resume) the firing's run under a renewed lease; record how it ended."""
        self._lost.clear()
        self._current = firing
        done = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(firing, done), name="cvm-lease", daemon=True)
        heartbeat.start()
        state: FiringState
        note: str | None = None
        try:
            record = self._start_or_resume(flow, firing, released)
            state = record.status if record.status != "running" else "error"
            note = record.error
        except (StopRequested, RunInterrupted):
            state, note = "interrupted", "stopped at a step boundary; the next scheduler resumes it"
        except CVMError as exc:
            state, note = "error", str(exc)
        except Exception as exc:  # a bug in a step must not kill the scheduler: recorded, logged with its traceback
            log.exception("schedule_firing_crashed", flow_id=flow.flow_id, run_id=firing.run_id)
            state, note = "error", f"internal error ({type(exc).__name__}: {exc})"
        finally:
            done.set()
            heartbeat.join()
            self._current = None
        if self._lost.is_set():
            return self._emit(Outcome(flow.flow_id, firing.scheduled_for, firing.run_id, "lost_lease", takeover, firing.missed,
                                      "the lease expired and another scheduler took the firing over"))
        self.firings.finish(flow.flow_id, firing.scheduled_for, self.owner, state, now=self.wall(), note=note)
        log.info("schedule_firing_finished", flow_id=flow.flow_id, run_id=firing.run_id, state=state)
        return self._emit(Outcome(flow.flow_id, firing.scheduled_for, firing.run_id, state, takeover, firing.missed, note))

    def _start_or_resume(self, flow: ScheduledFlow, firing: Firing, released: bool = False) -> FlowRunRecord:
        """A new run, or the firing's existing run resumed (kept as is when it already succeeded).

        ``released``: the previous scheduler stopped the run at a step boundary and released the firing, so the run
        is resumed even though it is still marked running by that process (which may not have exited yet).
        """
        existing = self.runs.run(firing.run_id)
        if existing is None:
            return self.launcher.start(flow, firing.run_id, datetime.fromisoformat(firing.scheduled_for), self._step)
        if existing.status == "succeeded":
            return existing
        # its lease ran out on another host, or its scheduler released it (stopped at a step boundary)
        force = existing.status == "running" and (released or owner_alive(existing.owner) is None)
        return self.launcher.resume(flow, firing.run_id, self._step, force=force)

    def _step(self, event: StepEvent) -> None:
        """Each finished step: report it, then stop here when asked or when the firing is no longer ours.

        The ownership check reads the firing's row at every step boundary, so a scheduler whose lease was
        taken over (it stalled past the lease) stops before its next step even if its heartbeat has not noticed.
        """
        if self._on_step is not None:
            self._on_step(event)
        current = self._current
        if current is not None and not self._lost.is_set() and not self.firings.holds(current.flow_id, current.scheduled_for, self.owner):
            log.warning("schedule_lease_lost", flow_id=current.flow_id, run_id=current.run_id, at_step=event.step_id)
            self._lost.set()
        if self._stop.is_set() or self._lost.is_set():
            raise StopRequested(event.step_id)

    def _heartbeat(self, firing: Firing, done: threading.Event) -> None:
        """Renew the lease every third of its length until the firing ends; note a lost lease."""
        while not done.wait(self.lease_seconds / 3):
            if not self.firings.renew(firing.flow_id, firing.scheduled_for, self.owner,
                                      lease_seconds=self.lease_seconds, now=self.wall()):
                log.warning("schedule_lease_lost", flow_id=firing.flow_id, run_id=firing.run_id)
                self._lost.set()
                return

    def _emit(self, outcome: Outcome) -> Outcome:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome
