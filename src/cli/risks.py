"""``cvm risks``: the risk events executive triggers raised: list, show, acknowledge, close.

An event opens when a run's report fires an executive trigger, stays one event
while later runs keep firing it, and closes by itself when a run no longer
does; a person acknowledges it (``ack``) or closes it (``close``). Read from
and written to the state database (``CVM_DB_URL``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Literal

import typer

from cvm.cli.common import load_settings, new_app, setup_logging
from cvm.cli.listing import View, emit
from cvm.cli.options import DEFAULT_SHOW, AsOf, ConfigFile, ListOutput, LogLevel, Quiet, Show
from cvm.tools.risk_store import LIVE, RiskEvent, RiskState, RiskStore
from cvm.utils.errors import UsageError

app = new_app(no_args_is_help=True, help="Risk events raised by executive triggers: list, show, ack, close.")

RiskId = Annotated[str, typer.Argument(metavar="ID", help="A risk event id (see 'cvm risks list').")]
By = Annotated[str, typer.Option("--by", help="Who (recorded with the event and in its history).")]
StateFilter = Annotated[
    Literal["live", "open", "acknowledged", "closed", "all"],
    typer.Option("--state", help="live (open or acknowledged), open, acknowledged, closed or all."),
]
COLUMNS = ("risk_id", "state", "severity", "kind", "owner", "title", "value", "threshold", "opened_at", "updated_at",
           "last_seen_run", "times_seen", "acknowledged_by", "closed_by", "close_reason")
STATES: dict[str, tuple[RiskState, ...]] = {
    "live": LIVE, "open": ("open",), "acknowledged": ("acknowledged",), "closed": ("closed",),
    "all": ("open", "acknowledged", "closed"),
}


def _store(config: str | None, log_level: str | None) -> RiskStore:
    """The risk store of ``CVM_DB_URL``; logging set up once (with the config's file settings when one is given)."""
    from pathlib import Path

    from cvm.runtime import risk_store
    from cvm.utils.config import load_config

    settings = load_settings()
    setup_logging(settings, log_level, load_config(Path(config)) if config is not None else None)
    return risk_store(settings.db_url)


def _now(as_of: str | None) -> datetime:
    """When a person acted: ``--as-of``/``CVM_NOW`` when given (replays, tests), else now."""
    from cvm.tools.clock import parse_as_of

    value = as_of if as_of is not None else load_settings().now
    return parse_as_of(value, timezone.utc) if value is not None else datetime.now(timezone.utc)


def _id(text: str) -> int:
    digits = text.strip().upper().removeprefix("R-").removeprefix("R")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:  # '²' is a digit to isdigit; SQLite ids are 64-bit
        raise UsageError(f"risk event id {text!r}: give the number 'cvm risks list' shows, e.g. 3")
    return int(digits)


def _name(by: str) -> str:
    from cvm.agents.governance import approver_name

    return approver_name(by)


def _table(events: list[RiskEvent], bound: int | None, title: str) -> None:
    from cvm.cli.listing import bounded, left_out_line
    from cvm.cli.render import plain

    if not events:
        print(f"{title}: none")
        return
    shown, left_out = bounded(events, bound)
    print(f"{title} ({len(events)}):")
    print(f"  {'id':>4}  {'state':<12} {'severity':<9} {'owner':<18} {'since':<20} {'runs':>4}  headline")
    for e in shown:
        print(f"  {e.risk_id:>4}  {e.state:<12} {e.severity:<9} {plain(e.owner)[:18]:<18} {e.opened_at[:19]:<20} "
              f"{e.times_seen:>4}  {plain(e.detail)}")
    if left_out:
        print(left_out_line(left_out, len(events)))


@app.command("list")
def list_events(
    state: StateFilter = "live",
    kind: Annotated[str | None, typer.Option("--kind", help="Only this trigger, e.g. pending_approvals.")] = None,
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
    config: ConfigFile = None, log_level: LogLevel = None,
) -> None:
    """Risk events, newest first (default: the live ones, open or acknowledged)."""
    view = View.of(output, show, quiet)
    events = _store(config, log_level).events(states=STATES[state], kind=kind)
    emit(
        view, as_json=lambda: [e.as_dict() for e in events], header=COLUMNS,
        csv_rows=lambda: ([getattr(e, c) for c in COLUMNS] for e in events),
        table=lambda bound: _table(events, bound, f"Risk events, {state}"),
    )


@app.command("show")
def show(risk_id: RiskId, output: Annotated[Literal["table", "json"], typer.Option("--output", help="table or json.")] = "table",
         config: ConfigFile = None, log_level: LogLevel = None) -> None:
    """One event in full, with its history (opened, seen again, acknowledged, closed)."""
    store = _store(config, log_level)
    event, history = store.get(_id(risk_id)), store.history(_id(risk_id))
    if output == "json":
        print(json.dumps({**event.as_dict(), "history": history}, indent=2, ensure_ascii=False))
        return
    from cvm.cli.render import plain

    for key, value in event.as_dict().items():
        print(f"{key:>15}: {plain(value)}")
    print("        history:")
    for h in history:
        print(f"  {h['at']}  {h['action']:<12} {plain(h['actor'])}" + (f"  run {h['run_id']}" if h["run_id"] else "")
              + (f"  {plain(h['note'])}" if h["note"] else ""))


@app.command("ack")
def ack(
    risk_id: RiskId, by: By, note: Annotated[str | None, typer.Option("--note", help="What is being done (optional).")] = None,
    config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """Acknowledge: someone owns the follow-up; the event stays live until its condition clears or it is closed."""
    event = _store(config, log_level).acknowledge(_id(risk_id), _name(by), now=_now(as_of), note=note)
    print(f"acknowledged risk event {event.risk_id} ({event.kind}, {event.severity}) by {event.acknowledged_by}")


@app.command("close")
def close(
    risk_id: RiskId, by: By, reason: Annotated[str, typer.Option("--reason", help="Why it is closed (required).")],
    config: ConfigFile = None, log_level: LogLevel = None, as_of: AsOf = None,
) -> None:
    """Close by hand; if the condition still holds, the next run opens a new event."""
    if not reason.strip():
        raise UsageError("--reason is empty; say why the risk is closed")
    event = _store(config, log_level).close_event(_id(risk_id), _name(by), reason.strip(), now=_now(as_of))
    print(f"closed risk event {event.risk_id} ({event.kind}) by {event.closed_by}: {event.close_reason}")
