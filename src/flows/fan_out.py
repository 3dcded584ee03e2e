"""Customer flows started without their customer: one child run per customer the trigger's filter selects.

``cvm flows run renewal.yaml`` without ``--param customer_id=...``, a scheduled
firing of a customer flow (``cvm flows scheduler``) or
``FlowEngine().execute_flow(flow_id)`` start a *fan-out* run. Its steps are the
customers the filter selects at the run's clock (step id = customer id, agent
``flow``, action ``run_for_customer``); each is an ordinary run of the flow for
that customer, with the id ``<run id>.<customer id>`` (``cvm flows show`` shows
either). Children run one after another, each with the flow's own parallelism;
a step's output is its child's ``{run_id, status, error}`` (a child that ended
partial is a failed step). The fan-out ends ``succeeded`` when every child
did, ``failed`` when every child failed, ``partial`` otherwise; the children send no failure notification, the fan-out sends one
for all of them. Resuming it resumes the children that did not succeed and
starts those never started; the customers are the ones chosen at the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from cvm.flows.schema import CUSTOMER_INPUT, FLOW_AGENT, FlowDefinition
from cvm.flows.store import FlowRunRecord, NewRun, NewStep, RunStatus, StepRecord, utc_now
from cvm.flows.validate import resolve_inputs
from cvm.utils.errors import CVMError

if TYPE_CHECKING:
    from cvm.flows.runner import FlowRunner

log = structlog.get_logger(__name__)

FAN_OUT = "fan_out"
"""The options key that marks a fan-out run (its filter and how many customers it selected)."""
RUN_FOR_CUSTOMER = "run_for_customer"
MAX_ERRORS_SHOWN = 5


def needs_fan_out(flow: FlowDefinition, given: Mapping[str, Any]) -> bool:
    """A customer flow started without a customer (and no default one)."""
    if not flow.customer_scoped or CUSTOMER_INPUT in given:
        return False
    return flow.all_inputs()[CUSTOMER_INPUT].default is None


def child_run_id(run_id: str, customer_id: str) -> str:
    return f"{run_id}.{customer_id}"


def start_fan_out(
    runner: FlowRunner, run_id: str, given: Mapping[str, Any], clock: datetime, options: Mapping[str, Any], from_text: bool,
) -> FlowRunRecord:
    """Choose the customers, record the fan-out run (one pending step per customer), and run their children."""
    d = runner.definition
    values = resolve_inputs(d, {**given, CUSTOMER_INPUT: "-"}, from_text=from_text)  # the other inputs are checked now
    values.pop(CUSTOMER_INPUT)
    customers = runner.matching_customers(clock)
    conditions = list(d.trigger.conditions) if d.trigger else []
    run = runner.store.create_run(
        NewRun(
            run_id=run_id, flow_id=d.flow_id, flow_version=d.version, flow_file=str(runner.flow.path), flow_digest=runner.flow.digest,
            inputs=values, options={**options, FAN_OUT: {"filter": conditions, "customers": len(customers)}},
            run_clock=clock.isoformat(), owner=runner.owner,
        ),
        [NewStep(cid, FLOW_AGENT, RUN_FOR_CUSTOMER, ()) for cid in customers],
    )
    runner.audit("flow_run_started", run, {"flow_id": d.flow_id, "version": d.version, "inputs": values, "customers": customers})
    return execute_fan_out(runner, run)


def execute_fan_out(runner: FlowRunner, run: FlowRunRecord) -> FlowRunRecord:
    """Run (or resume) the child of every customer step that has not succeeded, then finish the fan-out."""
    clock = datetime.fromisoformat(run.run_clock)
    child_options = {k: v for k, v in run.options.items() if k != FAN_OUT} | {"fan_out_of": run.run_id}
    pending = [s for s in run.steps.values() if s.status != "succeeded"]
    with structlog.contextvars.bound_contextvars(flow_run_id=run.run_id, flow_id=run.flow_id), \
            runner.progress.stage(f"flow {run.flow_id}: customers", total=len(run.steps)) as stage:
        stage.update(len(run.steps) - len(pending))
        for step in pending:
            _run_child(runner, run, step, clock, child_options)
            stage.advance()
    return _finish(runner, run.run_id)


def _run_child(runner: FlowRunner, run: FlowRunRecord, step: StepRecord, clock: datetime, options: Mapping[str, Any]) -> None:
    """One customer's run, recorded as the fan-out's step; never raises (a run that cannot start is a failed step)."""
    from cvm.flows.runner import StepEvent

    cid, child_id = step.step_id, child_run_id(run.run_id, step.step_id)
    started = utc_now()
    runner.store.step_started(run.run_id, cid, step.attempts + 1, started)
    try:
        existing = runner.store.run(child_id)
        if existing is None:
            child = runner.start_one(child_id, {**run.inputs, CUSTOMER_INPUT: cid}, clock, options, notify=False)
        elif existing.status == "succeeded":
            child = existing
        else:
            child = runner.resume_one(child_id, force=True, notify=False)
        status: str = child.status
        error = None if status == "succeeded" else f"run {child_id} {status}: {child.error}"
    except CVMError as exc:
        status, error = "failed", f"run {child_id} did not start: {exc.code}: {exc}"
    except Exception as exc:  # a bug in CVM: this customer's step fails, the other customers still run
        log.exception("fan_out_child_crashed", child_run_id=child_id)
        status, error = "failed", f"run {child_id} crashed: internal error ({type(exc).__name__}: {exc}); the traceback is in the log"
    finished = utc_now()
    ok = error is None
    sha = runner.store.step_finished(
        run.run_id, cid, status="succeeded" if ok else "failed", attempts=step.attempts + 1, started_at=started, finished_at=finished,
        output={"run_id": child_id, "status": status, "error": None} if ok else None, error=error,
    )
    runner.emit(StepEvent(cid, FLOW_AGENT, RUN_FOR_CUSTOMER, "succeeded" if ok else "failed", step.attempts + 1,
                          (finished - started).total_seconds(), sha, error))


def _finish(runner: FlowRunner, run_id: str) -> FlowRunRecord:
    record = runner.store.require_run(run_id)
    bad = [s for s in record.steps.values() if s.status != "succeeded"]
    children = [runner.store.run(child_run_id(run_id, s.step_id)) for s in bad]
    all_failed = len(bad) == len(record.steps) and all(c is None or c.status == "failed" for c in children)
    final: RunStatus = "succeeded" if not bad else ("failed" if all_failed else "partial")
    error = None
    if bad:
        shown = "; ".join(f"customer {s.step_id}: {s.error}" for s in bad[:MAX_ERRORS_SHOWN])
        error = shown + (f"; and {len(bad) - MAX_ERRORS_SHOWN} more customer(s)" if len(bad) > MAX_ERRORS_SHOWN else "")
    runner.store.finish_run(run_id, final, error)
    record = runner.store.require_run(run_id)
    log.info("flow_fan_out_finished", run_id=run_id, status=final, customers=len(record.steps), failed=len(bad))
    runner.audit("flow_run_finished", record, {"status": final, "failed_customers": [s.step_id for s in bad], "error": error})
    if final != "succeeded" and runner.definition.error_handling.failure_notification:
        runner.notify_failure(record)
        record = runner.store.require_run(run_id)
    return record
