"""``cvm runs``: past processing runs, from their artifacts (``output/runs/<run id>/run.json``) and the ledger.

``list`` reads every ``run.json`` under ``CVM_OUTPUT_DIR/runs``; ``show RUN_ID``
prints one run's record and what the ledger holds for it now (decisions
recorded, by status: approvals decided since the run change them). A run with
no artifacts (a flow step, or a run before artifacts existed) is shown from
the ledger alone.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cvm.cli.common import load_settings, new_app, setup_logging
from cvm.cli.listing import View, emit, print_json
from cvm.cli.options import DEFAULT_SHOW, ConfigFile, ListOutput, LogLevel, Quiet, Show
from cvm.tools import run_artifacts
from cvm.utils.errors import UsageError
from cvm.utils.settings import RuntimeSettings
from cvm.utils.text import without_controls

app = new_app(no_args_is_help=True, help="Past processing runs: list them, show one (output/runs/RUN_ID/run.json).")

RunIdArg = Annotated[str, typer.Argument(metavar="RUN_ID", help="A run id (printed by cvm process; see: cvm runs list).")]
ShowOutput = Annotated[Literal["table", "json"], typer.Option("--output", help="table, or json (the run record and the ledger view).")]
LIST_COLUMNS = ("run_id", "started_at", "command", "path", "dry_run", "customers", "by_status", "exit_code", "seconds", "folder")


def _settings(log_level: str | None, config: str | None) -> RuntimeSettings:
    from cvm.utils.config import load_config

    settings = load_settings()
    setup_logging(settings, log_level, load_config(Path(config)) if config is not None else None)
    return settings


def _row(r: dict[str, Any]) -> list[Any]:
    counts = r.get("counts", {})
    command = r.get("command") or []
    return [
        r.get("run_id"), str(r.get("started_at", ""))[:19], " ".join(command[:2]) if command else None, r.get("path"), r.get("dry_run"),
        counts.get("customers"), ", ".join(f"{n} {s}" for s, n in counts.get("by_status", {}).items()),
        r.get("exit_code"), r.get("timings_seconds", {}).get("total"), r.get("folder"),
    ]


@app.command("list")
def list_runs(
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
    config: ConfigFile = None, log_level: LogLevel = None,
) -> None:
    """Every recorded processing run, newest first (output/runs/*/run.json under CVM_OUTPUT_DIR)."""
    view = View.of(output, show, quiet)
    settings = _settings(log_level, config)
    found = run_artifacts.list_runs(settings.output_dir)

    def table(bound: int | None) -> None:
        from cvm.cli.render import print_rows

        if not found:
            print(f"no runs recorded under {run_artifacts.runs_dir(settings.output_dir)}; cvm process records each run there")
            return
        columns = ("run id", "started", "command", "path", "dry run", "customers", "by status", "exit", "seconds")
        print_rows(f"Runs ({len(found)}, newest first)", columns, [_row(r)[:-1] for r in found], bound)

    emit(view, as_json=lambda: found, header=LIST_COLUMNS, csv_rows=lambda: (_row(r) for r in found), table=table)


@app.command("show")
def show_run(run_id: RunIdArg, output: ShowOutput = "table", config: ConfigFile = None, log_level: LogLevel = None) -> None:
    """One run: its record (version, command, config and data digests, as-of, timings, counts, exit code) and the ledger now."""
    if not run_id.strip():
        raise UsageError("RUN_ID is empty; see cvm runs list")
    settings = _settings(log_level, config)
    records = run_artifacts.find_runs(settings.output_dir, run_id)
    ledger = _ledger_view(settings, records[0]["run_id"] if records else run_id)
    if not records and ledger is None:
        raise UsageError(f"no run {run_id!r}: nothing under {run_artifacts.runs_dir(settings.output_dir)} and no decisions in the ledger; see cvm runs list")
    if output == "json":
        print_json({"run": records[0] if records else None, "earlier": [r["folder"] for r in records[1:]], "ledger": ledger})
        return
    if records:
        _print_record(records[0])
        for earlier in records[1:]:
            _say(f"  earlier invocation: {earlier['folder']} (exit {earlier.get('exit_code')}, {earlier.get('started_at')})")
    else:
        _say(f"run {run_id}: no artifacts under {run_artifacts.runs_dir(settings.output_dir)} (a flow step, or an older run)")
    if ledger is not None:
        counts = ", ".join(f"{n} {s}" for s, n in ledger["by_status"].items()) or "none"
        if ledger["by_status_now"] != ledger["by_status"]:
            counts += "; after approvals decided since: " + ", ".join(f"{n} {s}" for s, n in ledger["by_status_now"].items())
        _say(f"  ledger now: {ledger['decisions']} decision(s) recorded: {counts}")


def _say(line: str) -> None:
    """A line of a run's record: its run id, command line and paths are the user's text, never terminal control."""
    print(without_controls(line))


def _print_record(r: dict[str, Any]) -> None:
    config, data = r.get("config", {}), r.get("data", {})
    _say(f"run {r.get('run_id')}{'  [DRY RUN]' if r.get('dry_run') else ''}: exit {r.get('exit_code')}, {r.get('path')} path, "
          f"selector {r.get('selector')}, CVM {r.get('cvm_version')}")
    _say(f"  command:   {' '.join(map(str, r.get('command', [])))}")
    _say(f"  started:   {r.get('started_at')}; finished {r.get('finished_at')}; as of {r.get('as_of')} ({r.get('clock')})")
    _say(f"  config:    {config.get('path')} (sha256 {str(config.get('digest'))[:12]})")
    _say(f"  data:      {data.get('folder')} ({len(data.get('tables', {}))} file(s), digest {str(data.get('digest'))[:12]}, {data.get('method')})")
    timings = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in r.get("timings_seconds", {}).items())
    _say(f"  timings:   {timings}")
    counts = r.get("counts", {})
    _say(f"  customers: {counts.get('customers')}: " + ", ".join(f"{n} {s}" for s, n in counts.get("by_status", {}).items()))
    _say(f"  results:   {r.get('results_parquet') or r.get('results_file')}")
    for copy in r.get("copies", []):
        _say(f"  copied to: {copy}")


def _ledger_view(settings: RuntimeSettings, run_id: str) -> dict[str, Any] | None:
    """What the ledger holds for the run now; None when there is no ledger file or no decision of that run.

    ``by_status`` as recorded, ``by_status_now`` after what approvers decided since (as ``cvm report`` counts them).
    Counted in SQL (``RunAggregates.status_counts``): reading a million-decision run back as records took gigabytes.
    """
    from cvm.reporting.build import status_now
    from cvm.tools.run_aggregates import RunAggregates
    from cvm.tools.sqlite_store import sqlite_path

    if not sqlite_path(settings.db_url).is_file():
        return None
    aggregates = RunAggregates.from_url(settings.db_url)
    try:
        groups = aggregates.status_counts(run_id)
    finally:
        aggregates.close()
    if not groups:
        return None
    recorded: Counter[str] = Counter()
    now: Counter[str] = Counter()
    for status, approval, n in groups:
        recorded[status] += n
        now[status_now(status, approval)] += n
    return {"decisions": sum(recorded.values()), "by_status": dict(sorted(recorded.items())), "by_status_now": dict(sorted(now.items()))}
