"""What ``cvm flows scheduler`` runs: the launcher that builds a runtime per firing, signals, and the output.

The scheduling itself (what is due, claims, leases, takeovers) is
``cvm.flows.scheduler``; this module gives it a ``Launcher`` over the
composition root (``cvm.runtime``), installs the SIGTERM/SIGINT handlers that
ask it to stop at the next step boundary, and prints one line per firing.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from cvm.flows.runner import StepEvent
from cvm.flows.scheduler import Outcome, ScheduledFlow, Scheduler, scheduled_flows
from cvm.flows.store import FlowRunRecord, FlowStore
from cvm.utils.errors import CVMError, UsageError
from cvm.utils.settings import RuntimeSettings


@dataclass(frozen=True)
class RunDefaults:
    """What a scheduled run is run with when it starts (a resumed run uses what its own run stored)."""

    data_dir: str | None = None
    config: str | None = None
    selector: str | None = None
    max_parallel: int = 4
    as_of: str | None = None
    """``--as-of``: the runs' clock too (else ``CVM_NOW``, else the machine's)."""


class RuntimeLauncher:
    """Starts and resumes scheduled flow runs, each with a runtime of its own (its run id is the firing's)."""

    def __init__(self, settings: RuntimeSettings, store: FlowStore, defaults: RunDefaults, pauses_end: threading.Event | None = None):
        """``pauses_end``: set on a stop signal; the running flow's pausing steps then end at once (left for resume)."""
        self.settings = settings
        self.store = store
        self.defaults = defaults
        self.pauses_end = pauses_end

    def _runner(self, path: str | Path, run_id: str, stored: dict[str, Any], on_step: Callable[[StepEvent], None]):
        from cvm.flows.catalog import ActionCatalog
        from cvm.flows.validate import load_flow
        from cvm.runtime import RunOptions, build_runtime, flow_runner

        options = RunOptions.from_settings(
            self.settings, run_id=run_id, data_dir=stored.get("data_dir"), config_path=stored.get("config"),
            selector=stored.get("selector"), as_of=stored.get("as_of"), dry_run=bool(stored.get("dry_run")),
            auto_approve=bool(stored.get("auto_approve")),
        )
        runtime = build_runtime(options, self.settings)
        catalog = ActionCatalog.from_agents(runtime.agents())
        loaded = load_flow(path, catalog)
        runner = flow_runner(loaded, runtime, self.store, catalog=catalog, max_parallel=self.defaults.max_parallel, on_step=on_step,
                             pauses_end=self.pauses_end)
        return runner, runtime, options

    def start(self, flow: ScheduledFlow, run_id: str, scheduled_for: datetime, on_step: Callable[[StepEvent], None]) -> FlowRunRecord:
        d = self.defaults
        runner, runtime, options = self._runner(
            flow.path, run_id, {"data_dir": d.data_dir, "config": d.config, "selector": d.selector, "as_of": d.as_of}, on_step,
        )
        stored = {
            "data_dir": str(Path(options.data_dir).resolve()), "config": str(Path(options.config_path).resolve()),
            "as_of": options.as_of.isoformat() if isinstance(options.as_of, datetime) else options.as_of,
            "selector": options.selector, "dry_run": False, "auto_approve": False,
            "scheduled_for": scheduled_for.isoformat(),
        }
        return runner.start(run_id, {}, run_clock=runtime.clock.now(), options=stored)

    def resume(self, flow: ScheduledFlow, run_id: str, on_step: Callable[[StepEvent], None], *, force: bool) -> FlowRunRecord:
        record = self.store.require_run(run_id)
        runner, _, _ = self._runner(record.flow_file, run_id, dict(record.options), on_step)
        return runner.resume(run_id, force=force)


def flow_files(flows_dir: str, flows: list[str] | None) -> list[Path]:
    """The flow files to schedule: the ``--flow`` files, else every ``*.yaml``/``*.yml`` in the folder."""
    if flows:
        missing = [f for f in flows if not Path(f).is_file()]
        if missing:
            raise UsageError(f"--flow {missing[0]}: no such file")
        return [Path(f) for f in flows]
    folder = Path(flows_dir)
    if not folder.is_dir():
        raise UsageError(f"--flows-dir {folder}: no such folder; point it at the flow files (default config/flows)")
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def clock_of(as_of: str | datetime | None) -> Callable[[], datetime]:
    """The scheduler's "now": fixed by ``--as-of``/``CVM_NOW`` (tests, replays), else the machine's UTC time."""
    from cvm.tools.clock import parse_as_of

    if as_of is None:
        return lambda: datetime.now(timezone.utc)
    fixed = parse_as_of(as_of, timezone.utc)
    return lambda: fixed


@contextmanager
def stop_on_signals(scheduler: Scheduler, say: Callable[[str], None], pauses_end: threading.Event | None = None) -> Iterator[None]:
    """SIGTERM and SIGINT ask the scheduler to stop at the next step boundary, ending a step's pause at once
    (``pauses_end``); the old handlers come back after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        first = not scheduler.stopping
        scheduler.request_stop()  # first: nothing below may keep the stop from being asked
        if pauses_end is not None:
            pauses_end.set()
        if first:
            try:
                say(f"scheduler: {signal.Signals(signum).name}: taking no new firing; stopping at the next step boundary")
            except RuntimeError:  # the signal came while the main thread was printing (stdout is not reentrant)
                pass

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def outcome_line(o: Outcome) -> str:
    """One line per firing, with what to do next when it needs a person."""
    head = f"{o.flow_id} @ {o.scheduled_for}: "
    if o.state == "claimed_elsewhere":
        return head + "already claimed by another scheduler; not fired here"
    if o.state == "lost_lease":
        return head + f"run {o.run_id}: lost the lease to another scheduler, which resumes it"
    if o.state == "skipped":
        return head + (o.note or "skipped")
    text = head + ("resumed " if o.takeover else "") + f"run {o.run_id} {o.state}"
    if o.missed:
        text += f" ({o.missed} earlier missed time(s) not run)"
    if o.state == "interrupted":
        text += f"; the next scheduler resumes it (or: cvm flows resume {o.run_id})"
    elif o.failed:
        text += f": {o.note}\n  fix the cause, then: cvm flows resume {o.run_id}"
    return text


def serve(
    settings: RuntimeSettings, files: Callable[[], list[Path]], defaults: RunDefaults, *, once: bool, poll_seconds: float,
    lease_seconds: float, grace_seconds: float, as_of: str | None, on_step: Callable[[StepEvent], None],
) -> int:
    """Run the scheduler (one round with ``once``) and print what happened; the exit code.

    ``--once``: 0 when everything due ran (or nothing was due, or it stopped on a signal); 1 when a firing
    failed or ended partial, or a flow file could not be read (the other flows were still scheduled).
    Long-running: the flow files are read again before every round (no restart to add or change a flow);
    it exits 0 when stopped, whatever its firings did (each is recorded: ``--status``).
    """
    from cvm.runtime import firing_store, flow_store

    flows, problems = scheduled_flows(files())
    _problems(problems)
    store = flow_store(settings.db_url)
    pauses_end = threading.Event()
    scheduler = Scheduler(
        flows, firing_store(settings.db_url), store, RuntimeLauncher(settings, store, defaults, pauses_end),
        clock=clock_of(as_of if as_of is not None else settings.now), lease_seconds=lease_seconds,
        grace=timedelta(seconds=grace_seconds), on_step=on_step, on_outcome=lambda o: _say(outcome_line(o)),
    )
    _say(f"scheduler {scheduler.owner}: {_names(flows)}" + ("" if once else f"; a round every {poll_seconds:g}s"))
    outcomes: list[Outcome] = []
    with stop_on_signals(scheduler, _say, pauses_end):
        if once:
            outcomes = scheduler.run_once()
        else:
            scheduler.run_forever(poll_seconds, Rescan(scheduler, files, flows, problems))
    if scheduler.stopping:
        _say("scheduler stopped")
    if not once:
        return 0
    if not outcomes:
        _say("nothing due")
    return 1 if problems or any(o.failed for o in outcomes) else 0


class Rescan:
    """Before each round of the long-running scheduler: read the flow files again, say what changed."""

    def __init__(self, scheduler: Scheduler, files: Callable[[], list[Path]], flows: list[ScheduledFlow], problems: list[str]):
        self.scheduler, self.files = scheduler, files
        self.seen, self.problems = _names(flows), problems

    def __call__(self) -> None:
        try:
            flows, problems = scheduled_flows(self.files())
        except CVMError as exc:  # the folder went away: keep what was scheduled, say so once
            flows, problems = list(self.scheduler.flows.values()), [str(exc)]
        if problems != self.problems:
            _problems(problems)
            self.problems = problems
        if _names(flows) != self.seen:
            self.seen = _names(flows)
            _say(f"flows changed: {self.seen}")
        self.scheduler.set_flows(flows)


def _names(flows: list[ScheduledFlow]) -> str:
    names = ", ".join(f"{f.flow_id} [{f.schedule.expression}, missed: {f.missed}]" for f in flows) or "none"
    return f"{len(flows)} scheduled flow(s): {names}"


def _problems(problems: list[str]) -> None:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr, flush=True)


def _say(text: str) -> None:
    print(text, flush=True)


def print_firings(db_url: str, limit: int = 20) -> None:
    """The most recent firings: when each was due, its state, run, owner and lease (``--status``)."""
    from cvm.cli.render import plain
    from cvm.runtime import firing_store

    found = firing_store(db_url).firings(limit=limit)
    if not found:
        print("no firings yet; start the scheduler with 'cvm flows scheduler' (or --once from a timer)")
        return
    print(f"{'flow':<24} {'scheduled for':<26} {'state':<12} {'run id':<40} owner / lease / note")
    for f in found:
        held = f" {f.owner} until {f.lease_expires_at[:19]}" if f.lease_expires_at else ""
        tail = " ".join(part for part in (held.strip(), f"takeovers {f.takeovers}" if f.takeovers else "", plain(f.note or "")) if part)
        print(f"{f.flow_id:<24} {f.scheduled_for:<26} {f.state:<12} {f.run_id:<40} {tail}")
