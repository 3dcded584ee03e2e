"""``cvm flows``: validate, plan, run, resume and inspect declarative flows; show when they are scheduled.

Size: one module per command group, like the other CLIs: every flow command shares the plumbing at
the top (runtime, catalog, store, run ids, step lines); the scheduler loop lives in
``cvm.cli.flow_scheduler`` and the exports in ``cvm.flows``, so what stays here is option parsing and printing.

Exit codes: 0 the run succeeded (or the command did what it was asked); 1 the
run failed or ended partial (the run record says which step and why); 2 an
invalid flow, bad flags or a run that cannot start or resume (one line on
stderr naming the file, the step and the fix).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from cvm.cli.common import load_settings, new_app, output_path, setup_logging
from cvm.cli.options import AsOf, AutoApprove, ConfigFile, DataDir, DryRun, ListOutput, LogLevel, Selector
from cvm.cli.progress import terminal_progress
from cvm.tools.results import write_text_atomic
from cvm.utils.errors import FlowError, UsageError

if TYPE_CHECKING:
    from cvm.cli.run import Run
    from cvm.flows.runner import StepEvent
    from cvm.flows.store import FlowRunRecord, FlowStore

app = new_app(
    no_args_is_help=True,
    help="Declarative flows: validate, plan, run, resume, runs, show, next, export (Step Functions), scheduler.",
)

FlowFile = Annotated[str, typer.Argument(metavar="FILE", help="A flow YAML, e.g. config/flows/daily_cvm_cycle.yaml.")]
RunIdArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="A flow run id (see 'cvm flows runs').")]
Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="An input as NAME=VALUE (repeatable); VALUE is read as JSON when it parses (30, true, [\"a\",\"b\"]).")]
FlowRunId = Annotated[str | None, typer.Option("--run-id", "--run_id", help="The run's id (default flow-<flow_id>-<time>-<random>); resume it with this id.")]
MaxParallel = Annotated[int, typer.Option("--max-parallel", "--max_parallel", min=1, max=64, help="Steps run at the same time (default 4).")]
Output = Annotated[Literal["table", "text", "json"], typer.Option("--output", help="table (text is the same) or json.")]
PlanOutput = Annotated[Literal["markdown", "json"], typer.Option("--output", help="markdown or json.")]
OutputFile = Annotated[str | None, typer.Option("--output-file", "--output_file", help="Also write it to this file (a bare name goes under output/).")]
_RUN_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:")


# --- shared plumbing -------------------------------------------------------------------


def _runtime(*, log_level: str | None, config: str | None, data_dir: str | None, as_of: str | None, selector: str | None = None,
             run_id: str | None = None, dry_run: bool = False, auto_approve: bool = False) -> Run:
    from cvm.cli.run import start_run

    return start_run(
        log_level=log_level, selector=selector, run_id=run_id, data_dir=data_dir, config=config, as_of=as_of,
        dry_run=dry_run, auto_approve=auto_approve,
    )


def _catalog(run: Run):
    from cvm.flows.catalog import ActionCatalog

    return ActionCatalog.from_agents(run.runtime.agents())


def _store(db_url: str) -> FlowStore:
    from cvm.runtime import flow_store

    return flow_store(db_url)


def _parse_params(params: list[str] | None) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in params or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--param {item!r}: write NAME=VALUE, e.g. --param horizon_days=60")
        values[name.strip()] = value
    return values


def _check_run_id(run_id: str) -> str:
    if not run_id.strip() or len(run_id) > 128 or set(run_id) - _RUN_ID_CHARS:
        raise UsageError(f"--run-id {run_id!r}: use 1-128 letters, digits, '_', '-', '.' or ':'")
    return run_id


def _reader(log_level: str | None, config: str | None):
    """Settings and logging for commands that read only the flow store (the config, when given, sets up logging)."""
    from cvm.utils.config import load_config

    settings = load_settings()
    setup_logging(settings, log_level, load_config(Path(config)) if config is not None else None)
    return settings


def _new_run_id(flow_id: str) -> str:
    return f"flow-{flow_id}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def _print_step(event: StepEvent) -> None:
    label = {"succeeded": "ok", "failed": "FAILED", "skipped": "skipped"}.get(event.status, event.status)
    target = f"{event.agent}.{event.action}"
    if event.status == "skipped":
        line = f"  {label:<8} {event.step_id:<18} {target:<34} {event.error}"
    else:
        took = f"{event.duration_seconds:.2f}s" if event.duration_seconds is not None else "-"
        attempts = f"{event.attempts} attempt{'s' if event.attempts != 1 else ''}"
        tail = f"digest {event.output_digest[:12]}" if event.output_digest else f"error: {event.error}"
        line = f"  {label:<8} {event.step_id:<18} {target:<34} {took:>8}  {attempts:<10} {tail}"
    print(line, flush=True)


def _finish(record: FlowRunRecord, output: str, started: float) -> int:
    if output == "json":
        print(json.dumps(record.as_dict(with_outputs=False), indent=2, ensure_ascii=False))
    else:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(record.counts().items()))
        line = f"run {record.run_id} {record.status}: {counts} in {time.monotonic() - started:.2f}s"
        if record.error:
            line += f"\n  {record.error}"
        if record.status != "succeeded":
            line += f"\n  fix the cause, then: cvm flows resume {record.run_id}"
        print(line + f"\n  details: cvm flows show {record.run_id}", flush=True)
    return 0 if record.status == "succeeded" else 1


def _stored_options(run: Run) -> dict[str, Any]:
    o = run.options
    as_of = o.as_of.isoformat() if isinstance(o.as_of, datetime) else o.as_of
    return {
        "data_dir": str(Path(o.data_dir).resolve()), "config": str(Path(o.config_path).resolve()), "as_of": as_of,
        "selector": o.selector, "dry_run": o.dry_run, "auto_approve": o.auto_approve,
    }


# --- commands -------------------------------------------------------------------------


@app.command("validate")
def validate(
    file: FlowFile, config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """Check a flow without running it: every problem on its own line (exit 2), or a summary (exit 0)."""
    from cvm.flows.plan import stages
    from cvm.flows.validate import FlowValidationError, load_flow

    run = _runtime(log_level=log_level, config=config, data_dir=data_dir, as_of=as_of)
    try:
        loaded = load_flow(file, _catalog(run))
    except FlowValidationError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    d = loaded.definition
    summary = f"valid: flow {d.flow_id} version {d.version}: {len(d.steps)} step(s) in {len(stages(d))} stage(s)"
    schedule = d.trigger.parsed_schedule() if d.trigger else None
    if schedule is not None:
        upcoming = schedule.next_times(run.runtime.clock.now(), 1)
        summary += f"; schedule {schedule.expression}" + (f", next {upcoming[0].isoformat()}" if upcoming else ", never again")
    print(summary)


@app.command("plan")
def plan(
    file: FlowFile, output: PlanOutput = "markdown", output_file: OutputFile = None,
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """The plan artifact: goal, steps in order with dependencies, parameters and outputs, parallel stages."""
    from cvm.flows.plan import build_plan, plan_markdown
    from cvm.flows.validate import load_flow

    run = _runtime(log_level=log_level, config=config, data_dir=data_dir, as_of=as_of)
    path = output_path(run.settings, output_file) if output_file else None  # refused before any work
    catalog = _catalog(run)
    loaded = load_flow(file, catalog)
    artifact = build_plan(loaded.definition, catalog)
    text = plan_markdown(artifact) if output == "markdown" else json.dumps(artifact, indent=2, ensure_ascii=False, default=str) + "\n"
    if path is not None:
        write_text_atomic(path, text)
        print(f"plan written to {path}", file=sys.stderr)
    print(text, end="")


@app.command("run")
def run_flow(
    file: FlowFile,
    param: Params = None,
    run_id: FlowRunId = None,
    max_parallel: MaxParallel = 4,
    output: Output = "table",
    selector: Selector = None,
    dry_run: DryRun = False,
    auto_approve: AutoApprove = False,
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """Validate and run a flow; every step is printed as it finishes and persisted, so a killed run can be resumed."""
    from cvm.flows.validate import load_flow, read_flow
    from cvm.runtime import flow_runner

    params = _parse_params(param)
    definition, _, _, _ = read_flow(file)  # the flow id names the run; every problem is reported by load_flow below
    run_id = _check_run_id(run_id) if run_id is not None else _new_run_id(definition.flow_id)
    run = _runtime(log_level=log_level, config=config, data_dir=data_dir, as_of=as_of, selector=selector, run_id=run_id,
                   dry_run=dry_run, auto_approve=auto_approve)
    catalog = _catalog(run)
    loaded = load_flow(file, catalog)
    runner = flow_runner(
        loaded, run.runtime, _store(run.options.db_url), catalog=catalog, max_parallel=max_parallel,
        on_step=_print_step if output != "json" else None, progress=terminal_progress(),
    )
    started = time.monotonic()
    if output != "json":
        d = loaded.definition
        print(f"run {run_id}: flow {d.flow_id} version {d.version}, {len(d.steps)} step(s); "
              f"if it stops: cvm flows resume {run_id}", flush=True)
    record = runner.start(run_id, params, run_clock=run.runtime.clock.now(), options=_stored_options(run), inputs_from_text=True)
    raise typer.Exit(_finish(record, output, started))


@app.command("resume")
def resume(
    run_id: RunIdArg,
    flow: Annotated[str | None, typer.Option("--flow", help="The flow file, when it moved (its content must be unchanged).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Resume a run marked running by a process on another host.")] = False,
    max_parallel: MaxParallel = 4,
    output: Output = "table",
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """Continue a run that was killed or failed: steps that succeeded are kept (not re-run), the rest run.

    The run's own data folder, config, clock, selector and approval mode are used unless a flag says otherwise.
    """
    from cvm.flows.validate import file_digest, load_flow
    from cvm.runtime import flow_runner

    settings = load_settings()  # logging is set up once, with the run's config, by _runtime below
    store = _store(settings.db_url)
    record = store.require_run(run_id)
    if record.status == "succeeded":
        raise FlowError(f"run {run_id} already succeeded; nothing to resume (start a new run with 'cvm flows run')")
    path = Path(flow or record.flow_file)
    if not path.is_file():
        raise FlowError(f"run {run_id}: its flow file {path} is gone; give it with --flow FILE (the same content)")
    if file_digest(path) != record.flow_digest:
        raise FlowError(
            f"run {run_id}: the flow file {path} changed since the run started; resuming would mix two versions "
            "of the flow: restore the file, or start a new run with 'cvm flows run'"
        )
    stored = record.options
    run = _runtime(
        log_level=log_level, config=config or stored.get("config"), data_dir=data_dir or stored.get("data_dir"),
        as_of=as_of or stored.get("as_of"), selector=stored.get("selector"), run_id=run_id,
        dry_run=bool(stored.get("dry_run")), auto_approve=bool(stored.get("auto_approve")),
    )
    catalog = _catalog(run)
    loaded = load_flow(path, catalog)
    runner = flow_runner(
        loaded, run.runtime, store, catalog=catalog, max_parallel=max_parallel,
        on_step=_print_step if output != "json" else None, progress=terminal_progress(),
    )
    started = time.monotonic()
    if output != "json":
        kept = [s.step_id for s in record.steps.values() if s.status == "succeeded"]
        print(f"resuming run {run_id} (flow {record.flow_id}); kept: {', '.join(kept) or 'nothing'}", flush=True)
    final = runner.resume(run_id, force=force)
    raise typer.Exit(_finish(final, output, started))


RUN_COLUMNS = ("run_id", "flow_id", "flow_version", "status", "steps_ok", "steps", "started_at", "finished_at", "error")


@app.command("runs")
def runs(
    flow_id: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow id.")] = None,
    status: Annotated[Literal["running", "succeeded", "failed", "partial"] | None, typer.Option("--status", help="Only runs with this status.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")] = 20,
    output: ListOutput = "table",
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """Recent flow runs, newest first (read from CVM_DB_URL; --data-dir and --as-of are accepted and not needed)."""
    settings = _reader(log_level, config)
    store = _store(settings.db_url)
    found = store.runs(flow_id=flow_id, status=status, limit=limit)
    if output == "json":
        print(json.dumps([r.as_dict(with_outputs=False) for r in found], indent=2, ensure_ascii=False))
        return
    rows = [
        (r.run_id, r.flow_id, r.flow_version, r.status, sum(1 for s in r.steps.values() if s.status == "succeeded"),
         len(r.steps), r.started_at, r.finished_at, r.error)
        for r in found
    ]
    if output == "csv":
        from cvm.cli.listing import print_csv

        print_csv(RUN_COLUMNS, rows)
        return
    if not found:
        print(_no_runs_line(store, flow_id, status))
        return
    print(f"{'run id':<44} {'flow':<24} {'status':<10} {'steps':<14} started")
    for r in found:
        done = sum(1 for s in r.steps.values() if s.status == "succeeded")
        print(f"{r.run_id:<44} {r.flow_id + ' v' + r.flow_version:<24} {r.status:<10} {f'{done}/{len(r.steps)} ok':<14} {r.started_at}")


def _no_runs_line(store: FlowStore, flow_id: str | None, status: str | None) -> str:
    """Why nothing is listed: no runs at all, or none that match the filters (with what there is instead)."""
    first_run = "no flow runs yet; start one with 'cvm flows run FILE'"
    if flow_id is None and status is None:
        return first_run
    others = store.runs(flow_id=flow_id if status is not None else None, limit=10_000)
    wanted = " ".join(filter(None, [status, f"flow {flow_id}" if flow_id else None]))
    if not others:
        return f"no runs of flow {flow_id} at all" if status is not None and flow_id else first_run
    counts: dict[str, int] = {}
    for r in others:
        counts[r.status] = counts.get(r.status, 0) + 1
    there = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"no {wanted} runs (there are {len(others)}: {there}; drop the filter to list them)"


@app.command("show")
def show(
    run_id: RunIdArg,
    step: Annotated[str | None, typer.Option("--step", help="Print this step's stored output (JSON).")] = None,
    output: Output = "table",
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """One run: its flow, inputs, status, and every step's status, attempts, timing, output digest and error."""
    settings = _reader(log_level, config)
    record = _store(settings.db_url).require_run(run_id)
    if step is not None:
        print(json.dumps(record.step(step).as_dict(with_output=True), indent=2, ensure_ascii=False))
        return
    if output == "json":
        print(json.dumps(record.as_dict(with_outputs=True), indent=2, ensure_ascii=False))
        return
    print(f"run {record.run_id}: flow {record.flow_id} version {record.flow_version} ({record.flow_file})")
    print(f"  status {record.status}; started {record.started_at}; finished {record.finished_at or '-'}; resumed {record.resumes} time(s)")
    print(f"  inputs {json.dumps(record.inputs, ensure_ascii=False)}")
    if record.error:
        print(f"  error: {record.error}")
    for note in record.notifications:
        print(f"  failure notification {note['status']} ({', '.join(note['recipients']) or 'no recipient'}): {note['detail']}")
    print(f"  {'step':<18} {'agent.action':<34} {'status':<10} {'attempts':>8} {'seconds':>8}  digest / error")
    for s in record.steps.values():
        took = f"{s.duration_seconds:.2f}" if s.duration_seconds is not None else "-"
        tail = s.output_digest[:12] if s.output_digest else (s.error or "")
        print(f"  {s.step_id:<18} {s.agent + '.' + s.action:<34} {s.status:<10} {s.attempts:>8} {took:>8}  {tail}")


@app.command("next")
def next_times(
    file: FlowFile,
    count: Annotated[int, typer.Option("--count", min=1, max=1000, help="How many times to show.")] = 5,
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """The next times a flow's schedule fires, after the clock (--as-of / CVM_NOW, else now; a time without an offset is read in the schedule's zone)."""
    from cvm.flows.validate import parse_flow
    from cvm.tools.clock import parse_as_of

    settings = _reader(log_level, config)
    definition, _, _ = parse_flow(file)
    schedule = definition.trigger.parsed_schedule() if definition.trigger else None
    if schedule is None:
        raise UsageError(f"{file}: flow {definition.flow_id} has no trigger.schedule; add one, e.g. schedule: cron(0 9 * * ? *)")
    clock_value = as_of or settings.now
    now = parse_as_of(clock_value, schedule.zone) if clock_value is not None else datetime.now(timezone.utc)
    times = schedule.next_times(now, count)
    zone_name = definition.trigger.timezone if definition.trigger and definition.trigger.timezone else "UTC"
    print(f"{definition.flow_id}: {schedule.expression} ({zone_name}), after {now.isoformat()}")
    for moment in times:
        print(moment.isoformat())
    if len(times) < count:
        print(f"(the schedule fires {len(times)} more time(s) only)")


@app.command("scheduler")
def scheduler(
    once: Annotated[bool, typer.Option("--once", help="Run what is due now, then exit (for cron or a systemd timer).")] = False,
    flows_dir: Annotated[str, typer.Option("--flows-dir", envvar="CVM_FLOWS_DIR", help="Schedule every flow file with a trigger.schedule in this folder.")] = "config/flows",
    flow: Annotated[list[str] | None, typer.Option("--flow", help="Schedule only this flow file (repeatable).")] = None,
    poll_seconds: Annotated[float, typer.Option("--poll-seconds", min=1, max=3600, help="Seconds between rounds (without --once).")] = 30.0,
    lease_seconds: Annotated[float, typer.Option("--lease-seconds", min=3, max=86_400, help="A firing whose scheduler stops renewing it for this long is taken over.")] = 120.0,
    grace_seconds: Annotated[float, typer.Option("--grace-seconds", min=0, max=86_400 * 7, help="Under trigger.missed: skip, a time reached later than this is skipped.")] = 900.0,
    max_parallel: MaxParallel = 4,
    selector: Selector = None,
    status: Annotated[bool, typer.Option("--status", help="Print the recent firings (state, run, owner, lease) and exit.")] = False,
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """Run every flow whose schedule is due, each scheduled time once even with several schedulers; SIGTERM stops at a step boundary.

    Missed times follow each flow's trigger.missed (run_once, skip, run_all). A run a stopped or crashed scheduler
    left unfinished is resumed by the next one. Exit 0, or 1 when a firing failed or a flow file is broken.
    """
    from cvm.cli.flow_scheduler import RunDefaults, flow_files, print_firings, serve
    from cvm.utils.config import load_config

    settings = load_settings()
    if status:  # reads the state database only: no config file needed (like 'cvm flows runs')
        setup_logging(settings, log_level, load_config(Path(config)) if config else None)
        print_firings(settings.db_url)
        return
    setup_logging(settings, log_level, load_config(Path(config) if config else settings.config_path))
    flow_files(flows_dir, flow)  # a wrong folder or file is a usage error before anything runs
    raise typer.Exit(serve(
        settings, lambda: flow_files(flows_dir, flow), RunDefaults(data_dir, config, selector, max_parallel, as_of), once=once, poll_seconds=poll_seconds,
        lease_seconds=lease_seconds, grace_seconds=grace_seconds, as_of=as_of, on_step=_print_step,
    ))


# --- export (issue 13 item 4) ------------------------------------------------------------


def _flow_source(flow: str, options: Any) -> Path:
    """FLOW is a flow file, or the id of a flow in CVM_FLOWS_DIR or config/flows."""
    from cvm.flows.api import flow_folders
    from cvm.flows.registry import find_flow

    path = Path(flow)
    if path.is_file() or path.suffix in (".yaml", ".yml") or "/" in flow:
        return path
    return find_flow(flow, flow_folders(options.config_path)).path


@app.command("export")
def export(
    flow: Annotated[str, typer.Argument(metavar="FLOW", help="A flow YAML, or a flow id found in CVM_FLOWS_DIR or config/flows.")],
    fmt: Annotated[Literal["asl"], typer.Option("--format", help="asl: Amazon States Language (AWS Step Functions).")] = "asl",
    output_file: OutputFile = None,
    arn_template: Annotated[str | None, typer.Option(
        "--arn-template", envvar="CVM_ASL_ARN_TEMPLATE",
        help="Each Task's Resource; placeholders ${region}, ${account}, ${agent}, ${action}, ${flow}, ${step} "
             "(default arn:aws:lambda:${region}:${account}:function:cvm-${agent}-${action}).")] = None,
    region: Annotated[str | None, typer.Option("--region", envvar="CVM_ASL_REGION", help="${region} (default us-east-1).")] = None,
    account: Annotated[str | None, typer.Option("--account", envvar="CVM_ASL_ACCOUNT", help="${account} (default 123456789012).")] = None,
    config: ConfigFile = None, data_dir: DataDir = None, as_of: AsOf = None, log_level: LogLevel = None,
) -> None:
    """Export a validated flow as a Step Functions state machine: a Task per step, Parallel for independent steps, Retry and Catch."""
    from cvm.flows.asl import DEFAULT_ACCOUNT, DEFAULT_ARN_TEMPLATE, DEFAULT_REGION, ArnTemplate, export_asl_text
    from cvm.flows.validate import load_flow

    run = _runtime(log_level=log_level, config=config, data_dir=data_dir, as_of=as_of)
    path = output_path(run.settings, output_file) if output_file else None  # refused before any work
    loaded = load_flow(_flow_source(flow, run.options), _catalog(run))
    arn = ArnTemplate(arn_template or DEFAULT_ARN_TEMPLATE, region or DEFAULT_REGION, account or DEFAULT_ACCOUNT)
    text = export_asl_text(loaded.definition, arn)
    if path is not None:
        write_text_atomic(path, text)
        print(f"ASL state machine of flow {loaded.flow_id} written to {path}", file=sys.stderr)
        return
    print(text, end="")
