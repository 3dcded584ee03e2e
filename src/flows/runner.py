"""Running a validated flow: dependency-ready steps in parallel, retries, stop/continue, persisted, resumable.

    start(inputs)  -> record the run and every step as pending, then execute
    resume(run_id) -> keep the steps that succeeded (and their stored outputs), execute the rest

Executing: every step whose dependencies all succeeded is submitted to a
bounded thread pool (``max_parallel``). A step resolves its ``${...}``
references against the stored outputs, sends ``{"type": action, **parameters}``
to its agent, and counts an ``ErrorResponse`` (or an exception) as a failed
attempt. Failed attempts are retried per the step's ``RetryPolicy`` with
backoff, except failures that cannot change on retry (an invalid message, an
unknown message type, an unresolvable reference). A step that still fails
either stops the run (steps not started are ``skipped``, the run ``failed``) or,
under ``continue``, skips only its dependents (the run ends ``partial``).

A customer flow's customer (``cvm.flows.customer_runs``), the fan-out of one
started without a customer (``cvm.flows.fan_out``) and the failure notice of a
failed or partial run (``cvm.flows.failure_notice``) live beside this module.

Size: just over 400 lines because start, resume, the step loop and its retries share the run's state and
store writes; the customer, fan-out and notice parts are already split out.

Every state change is written to the ``FlowStore`` from the thread that did the
work, as it happens, so a run killed at any instant resumes without re-running a
step that finished. Steps that allocate capacity pass the flow's run id, so a
step re-run on resume replays its decisions instead of allocating twice.

Why this module imports ``cvm.agents``: it runs agents. It sends each step's
message to an agent (``BaseAgent.process``), reads an ``ErrorResponse`` as a
failed attempt, and makes the per-run ``FlowAgent`` that answers the built-in
``flow`` steps.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog
from pydantic import BaseModel

from cvm.agents.base import BaseAgent
from cvm.agents.flows import FlowAgent
from cvm.agents.messages import ErrorResponse
from cvm.flows.catalog import ActionCatalog
from cvm.flows.customer_runs import CustomerRuns
from cvm.flows.customers import customer_condition
from cvm.flows.failure_notice import FailureNotices
from cvm.flows.fan_out import FAN_OUT, execute_fan_out, needs_fan_out, start_fan_out
from cvm.flows.plan import topological_order
from cvm.flows.references import RunContext, UnresolvedReference
from cvm.flows.schema import CUSTOMER_INPUT, FLOW_AGENT, FlowStep
from cvm.flows.store import FlowRunRecord, FlowStore, NewRun, NewStep, RunStatus, StepStatus, canonical_json, utc_now
from cvm.flows.validate import FlowValidationError, LoadedFlow, catalog_problems, resolve_inputs
from cvm.tools.ledger import Ledger
from cvm.utils.errors import CVMError, FlowError
from cvm.utils.progress import NO_PROGRESS, Progress, Stage

log = structlog.get_logger(__name__)

NOT_RETRIED = frozenset({"invalid_message", "unknown_message_type", "unresolved_reference", "usage_error", "config_error"})
"""Failures a retry cannot fix (a bad message or reference, a wrong parameter, missing configuration): the step fails at once."""
MAX_PARALLEL = 64

Interceptor = Callable[["FlowStep", dict[str, Any]], Any]
"""Called with a step and its resolved message before the agent; a non-None answer replaces the agent's (``FlowTestCase``)."""


class StepInterrupted(BaseException):
    """A step's pause ended by Ctrl-C or a stop (``pauses_end``). Not an ``Exception``: no step handler may record it as a failed attempt,
    so the step stays ``running`` in the store and ``cvm flows resume`` runs it again."""


class RunInterrupted(FlowError):
    """The run was asked to stop (``pauses_end``): steps not done are left for ``cvm flows resume``."""


@dataclass(frozen=True)
class StepEvent:
    """A step reached its final state in this execution (what ``cvm flows run`` prints)."""

    step_id: str
    agent: str
    action: str
    status: str
    attempts: int = 0
    duration_seconds: float | None = None
    output_digest: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Outcome:
    step_id: str
    status: StepStatus
    attempts: int
    output: Any = None
    digest: str | None = None
    error: str | None = None
    duration: float | None = None


def process_owner() -> str:
    """``host:pid`` of this process: who is executing a run."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process that owns a run is alive: True/False on this host, None when it is on another host."""
    if not owner or ":" not in owner:
        return False
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname():
        return None
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # this very process: whatever ran it here is over (FlowTestCase, a test harness)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FlowRunner(CustomerRuns, FailureNotices):
    """Executes one loaded flow against an agent registry, persisting every step in a ``FlowStore``."""

    def __init__(
        self,
        flow: LoadedFlow,
        agents: Mapping[str, BaseAgent],
        store: FlowStore,
        *,
        catalog: ActionCatalog | None = None,
        max_parallel: int = 4,
        on_step: Callable[[StepEvent], None] | None = None,
        ledger: Ledger | None = None,
        sleep: Callable[[float], None] | None = None,
        pauses_end: threading.Event | None = None,
        intercept: Interceptor | None = None,
        variables: Mapping[str, Any] | None = None,
        progress: Progress = NO_PROGRESS,
    ):
        """``variables``: values of bare ``${NAME}`` references that are not inputs (``${admin_email}``).

        ``pauses_end``: set it to stop the run (a scheduler asked to stop): steps pausing (a ``wait``, a retry's
        backoff) end at once, no further step starts, and ``start``/``resume`` raise ``RunInterrupted``.
        """
        if not 1 <= max_parallel <= MAX_PARALLEL:
            raise FlowError(f"--max-parallel must be 1-{MAX_PARALLEL}, not {max_parallel}")
        self.flow = flow
        self.definition = flow.definition
        self.store = store
        self.catalog = catalog or ActionCatalog.from_agents(agents)
        problems = catalog_problems(self.definition, self.catalog)
        if problems:
            raise FlowValidationError(str(flow.path), problems)
        self._agents = {k: v for k, v in agents.items() if k != FLOW_AGENT}
        self.max_parallel = max_parallel
        self._on_step = on_step
        self._ledger = ledger
        self._interrupted = pauses_end if pauses_end is not None else threading.Event()
        self._sleep = sleep or self._sleep_unless_interrupted
        self._intercept = intercept
        self._variables = dict(variables or {})
        self.progress = progress
        self._filter = [customer_condition(c) for c in self.definition.trigger.conditions] if self.definition.trigger else []
        self.owner = process_owner()

    # -- entry points -------------------------------------------------------------

    def start(
        self, run_id: str, inputs: Mapping[str, Any] | None = None, *, run_clock: datetime | None = None,
        options: Mapping[str, Any] | None = None, inputs_from_text: bool = False,
    ) -> FlowRunRecord:
        """Record a new run (every step ``pending``) and execute it; returns the final record.

        A customer flow started without its customer runs once per customer its filter selects (``cvm.flows.fan_out``).
        """
        given = dict(inputs or {})
        clock = run_clock or utc_now()
        if needs_fan_out(self.definition, given):
            return start_fan_out(self, run_id, given, clock, dict(options or {}), inputs_from_text)
        return self.start_one(run_id, given, clock, dict(options or {}), inputs_from_text)

    def start_one(
        self, run_id: str, given: Mapping[str, Any], clock: datetime, options: Mapping[str, Any], inputs_from_text: bool = False,
        *, notify: bool = True,
    ) -> FlowRunRecord:
        """One run of the flow's steps (``notify``: tell ``failure_notification`` when it fails; a fan-out's children do not)."""
        values = resolve_inputs(self.definition, given, from_text=inputs_from_text)
        d = self.definition
        stored = dict(options)
        if d.customer_scoped:
            stored.update(self.customer_options(values[CUSTOMER_INPUT], clock))
        steps = [d.step(sid) for sid in topological_order(d)]
        run = self.store.create_run(
            NewRun(
                run_id=run_id, flow_id=d.flow_id, flow_version=d.version, flow_file=str(self.flow.path),
                flow_digest=self.flow.digest, inputs=values, options=stored,
                run_clock=clock.isoformat(), owner=self.owner,
            ),
            [NewStep(s.id, s.agent, s.action, s.depends_on) for s in steps],
        )
        self.audit("flow_run_started", run, {"flow_id": d.flow_id, "version": d.version, "inputs": values})
        return self._execute(run, notify=notify)

    def resume(self, run_id: str, *, force: bool = False) -> FlowRunRecord:
        """Execute the steps of a stopped run that did not succeed; steps that succeeded keep their outputs."""
        return self.resume_one(run_id, force=force)

    def resume_one(self, run_id: str, *, force: bool = False, notify: bool = True) -> FlowRunRecord:
        """``resume``, with ``notify`` off for a fan-out's children (the fan-out tells for all of them)."""
        run = self.store.require_run(run_id)
        if run.flow_id != self.definition.flow_id:
            raise FlowError(f"run {run_id} is a run of flow {run.flow_id}, not {self.definition.flow_id}; give its own flow file")
        if run.flow_digest != self.flow.digest:
            raise FlowError(
                f"the flow file {self.flow.path} changed since run {run_id} started (digest {run.flow_digest[:12]} then, "
                f"{self.flow.digest[:12]} now); resuming would mix two versions of the flow: restore the file, "
                "or start a new run with 'cvm flows run'"
            )
        if run.status == "succeeded":
            raise FlowError(f"run {run_id} already succeeded; nothing to resume (start a new run with 'cvm flows run')")
        if run.status == "running" and not force:
            alive = owner_alive(run.owner)
            if alive:
                raise FlowError(f"run {run_id} is still running in process {run.owner}; wait for it to finish or stop it, then resume")
            if alive is None:
                raise FlowError(
                    f"run {run_id} is marked running by {run.owner} on another host; if that process is gone, resume with --force"
                )
        claimed = self.store.claim_for_resume(run_id, run.owner, self.owner)
        done = [s.step_id for s in claimed.steps.values() if s.status == "succeeded"]
        log.info("flow_run_resumed", run_id=run_id, kept_steps=done)
        self.audit("flow_run_resumed", claimed, {"kept_steps": done, "resumes": claimed.resumes})
        return self._execute(claimed, notify=notify)

    # -- execution ------------------------------------------------------------------

    def _execute(self, run: FlowRunRecord, *, notify: bool = True) -> FlowRunRecord:
        if run.options.get(FAN_OUT):
            return execute_fan_out(self, run)
        d = self.definition
        order = topological_order(d)
        steps = {s.id: s for s in d.steps}
        status = {sid: run.steps[sid].status for sid in order}
        outputs: dict[str, Any] = {sid: run.steps[sid].output for sid in order if status[sid] == "succeeded"}
        agents: dict[str, BaseAgent] = {
            **self._agents, FLOW_AGENT: FlowAgent(d, self.catalog, run.inputs, sleep=self._sleep),
        }
        base = self._context(run)
        stopped_by: str | None = None
        failed: list[str] = []
        with structlog.contextvars.bound_contextvars(flow_run_id=run.run_id, flow_id=d.flow_id), \
                self.progress.stage(f"flow {d.flow_id}", total=len(order)) as progress, \
                ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="cvm-flow") as pool, \
                self._ctrl_c_ends_pauses():  # listed after the pool: it runs before the pool waits for its workers
            progress.update(sum(1 for sid in order if status[sid] == "succeeded"))
            running: dict[Future[_Outcome], str] = {}
            while True:
                if stopped_by is None and not self._interrupted.is_set():
                    for sid in order:
                        if len(running) >= self.max_parallel:
                            break
                        if status[sid] == "pending" and all(status[dep] == "succeeded" for dep in steps[sid].depends_on):
                            status[sid] = "running"
                            context = replace(base, outputs=dict(outputs))
                            logging_context = contextvars.copy_context()  # the run's log fields in the worker thread
                            running[pool.submit(logging_context.run, self._run_step, run.run_id, steps[sid], agents, context)] = sid
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    sid = running.pop(future)
                    if isinstance(future.exception(), StepInterrupted):
                        continue  # its pause was ended: the step stays 'running' in the store, for resume
                    outcome = future.result()
                    status[sid] = outcome.status
                    progress.advance()
                    step = steps[sid]
                    self.emit(StepEvent(sid, step.agent, step.action, outcome.status, outcome.attempts,
                                           outcome.duration, outcome.digest, outcome.error))
                    if outcome.status == "succeeded":
                        outputs[sid] = outcome.output
                        continue
                    failed.append(sid)
                    if d.policy(step).on_failure == "stop":
                        stopped_by = stopped_by or sid
                    else:
                        self._skip(run.run_id, status, self._dependents(sid), f"skipped: step '{sid}' failed", progress)
            if self._interrupted.is_set() and any(status[sid] in ("pending", "running") for sid in order):
                raise RunInterrupted(f"run {run.run_id} stopped before its steps were done; cvm flows resume {run.run_id}")
            if stopped_by is not None:
                self._skip(
                    run.run_id, status, [sid for sid in order if status[sid] == "pending"],
                    f"not started: the run stopped after step '{stopped_by}' failed", progress,
                )
        final: RunStatus = "failed" if stopped_by else ("partial" if failed else "succeeded")
        error = None
        if failed:
            record = self.store.require_run(run.run_id)
            error = "; ".join(f"step '{sid}' failed: {record.steps[sid].error}" for sid in failed)
        self.store.finish_run(run.run_id, final, error)
        record = self.store.require_run(run.run_id)
        log.info("flow_run_finished", status=final, failed_steps=failed)
        self.audit("flow_run_finished", record, {"status": final, "failed_steps": failed, "error": error})
        if notify and final != "succeeded" and d.error_handling.failure_notification:
            self.notify_failure(record, base)
            record = self.store.require_run(run.run_id)
        return record

    def _context(self, run: FlowRunRecord) -> RunContext:
        d = self.definition
        return RunContext(
            run_id=run.run_id, started_at=run.run_clock, flow_id=d.flow_id, inputs=run.inputs, outputs={},
            trigger_filter=d.trigger.filter if d.trigger else {}, customer=run.options.get("customer"),
            variables=self._variables,
        )

    def _dependents(self, sid: str) -> list[str]:
        """Every step downstream of ``sid``."""
        found: list[str] = []
        frontier = [sid]
        while frontier:
            current = frontier.pop()
            for s in self.definition.steps:
                if current in s.depends_on and s.id not in found:
                    found.append(s.id)
                    frontier.append(s.id)
        return found

    def _skip(self, run_id: str, status: dict[str, StepStatus], ids: list[str], reason: str, progress: Stage) -> None:
        reasons = {sid: reason for sid in ids if status[sid] == "pending"}
        for sid in reasons:
            status[sid] = "skipped"
            progress.advance()
        self.store.steps_skipped(run_id, reasons)
        for sid in reasons:
            step = self.definition.step(sid)
            self.emit(StepEvent(sid, step.agent, step.action, "skipped", error=reason))

    @contextmanager
    def _ctrl_c_ends_pauses(self) -> Iterator[None]:
        """Ctrl-C: steps pausing (a wait, a retry's backoff) wake and stop at once, so leaving the pool does not sit
        out their pause; they stay 'running' in the store, like a killed run's, for ``cvm flows resume``."""
        try:
            yield
        except KeyboardInterrupt:
            self._interrupted.set()
            raise

    def _sleep_unless_interrupted(self, seconds: float) -> None:
        """A step's pause (a ``wait``, a retry's backoff) that Ctrl-C ends at once instead of after the pause."""
        if self._interrupted.wait(seconds):
            raise StepInterrupted

    def emit(self, event: StepEvent) -> None:
        if self._on_step is not None:
            self._on_step(event)

    def _run_step(self, run_id: str, step: FlowStep, agents: Mapping[str, BaseAgent], context: RunContext) -> _Outcome:
        """One step, with its retries; never raises (a failure is an outcome). Runs in a worker thread."""
        policy = self.definition.policy(step)
        agent = agents.get(step.agent)
        first_start = utc_now()
        attempt = 0
        error: str | None = "not run"
        with structlog.contextvars.bound_contextvars(step_id=step.id):
            while attempt < policy.max_attempts:
                attempt += 1
                self.store.step_started(run_id, step.id, attempt, utc_now())
                output, error, kind = self._attempt(step, agent, context)
                if error is None:
                    finished = utc_now()
                    sha = self.store.step_finished(
                        run_id, step.id, status="succeeded", attempts=attempt, started_at=first_start,
                        finished_at=finished, output=output,
                    )
                    log.info("flow_step_succeeded", attempts=attempt, output_digest=sha)
                    return _Outcome(step.id, "succeeded", attempt, output, sha, None, (finished - first_start).total_seconds())
                if kind in NOT_RETRIED or attempt >= policy.max_attempts:
                    break
                delay = policy.backoff.delay(attempt)
                log.warning("flow_step_retrying", attempt=attempt, error=error, delay_seconds=delay)
                self.store.attempt_failed(run_id, step.id, attempt, error)
                if delay > 0:
                    self._sleep(delay)
            finished = utc_now()
            self.store.step_finished(
                run_id, step.id, status="failed", attempts=attempt, started_at=first_start, finished_at=finished, error=error,
            )
            log.warning("flow_step_failed", attempts=attempt, error=error)
            return _Outcome(step.id, "failed", attempt, None, None, error, (finished - first_start).total_seconds())

    def _attempt(
        self, step: FlowStep, agent: BaseAgent | None, context: RunContext, message: dict[str, Any] | None = None,
    ) -> tuple[Any, str | None, str | None]:
        """(output, error, error kind) of one try; the output as it is stored (JSON), so a resumed run reads the same."""
        if message is None:
            try:
                parameters = context.resolve(step.parameters)
            except UnresolvedReference as exc:
                return None, f"unresolved reference {exc}", "unresolved_reference"
            message = {**parameters, "type": step.action}
        try:
            response = self._intercept(step, message) if self._intercept is not None else None
            if response is None:
                if agent is None:
                    raise FlowError(f"no agent {step.agent!r} in this runtime")
                response = agent.process(message)
        except CVMError as exc:
            log.warning("flow_step_error", agent=step.agent, action=step.action, error=str(exc))
            return None, f"{exc.code}: {exc}", exc.code
        except Exception as exc:  # an agent bug or a broken tool: retried, recorded, the traceback in the log
            log.exception("flow_step_crashed", agent=step.agent, action=step.action)
            return None, f"internal error ({type(exc).__name__}: {exc})", type(exc).__name__
        if isinstance(response, ErrorResponse):
            return None, f"{response.error_type}: {response.message}", response.error_type
        if isinstance(response, BaseModel):
            response = response.model_dump(mode="json")
        return json.loads(canonical_json(response)), None, None

    def audit(self, event: str, run: FlowRunRecord, payload: dict[str, Any]) -> None:
        if self._ledger is None:
            return
        try:
            self._ledger.audit(event, {"flow_run_id": run.run_id, **payload}, utc_now(), run_id=run.run_id)
        except Exception:  # the audit trail must not break a run that is otherwise recorded
            log.exception("flow_audit_failed", audit_event=event)
