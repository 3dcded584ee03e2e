"""Mission Control sections of the portfolio report: risk events and agent performance (issue 13 item 6).

Both plug into the Report agent (``cvm.agents.report``), wired by the
composition root (``cvm.runtime.build_runtime``):

* ``agent_performance(store)`` is a *section source* (run id -> sections): the
  run's calls, errors and p50/p95 latency per agent and action, from the
  telemetry store plus what the process has counted for that run and not yet
  written (a report step inside a flow run sees its own run);
* ``RiskEvents(store, owners, clock)`` is a *report hook* (the built report ->
  sections): the report's executive triggers open, refresh or close the risk
  events (``cvm.tools.risk_store``), then the section lists what is live and
  what this run closed. It needs the triggers the report computed, so it runs
  after the report's numbers and before it is written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cvm.reporting.model import Report, ReportSection
from cvm.tools.clock import Clock
from cvm.tools.risk_store import RiskEvent, RiskStore
from cvm.tools.telemetry import AGENT_CALLS, CallStats, TelemetryStore

AGENT_TITLE = "Agent performance"
RISK_TITLE = "Risk events"


def _cell(value: object) -> str:
    """A Markdown table cell: one line, no pipes."""
    return str("-" if value is None else value).replace("|", "/").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
    ]


def agent_performance_lines(rows: Sequence[Mapping[str, object]]) -> list[str]:
    """The section's Markdown: one row per agent and action (``TelemetryStore.rows``)."""
    if not rows:
        return ["No agent calls were recorded for this run (flow runs record them; see `cvm flows scheduler`)."]
    return [
        "Latency per message an agent handled (a call includes the agents it called); p50/p95 within 5%.", "",
        *_table(
            ("agent", "action", "calls", "errors", "p50 ms", "p95 ms", "max ms"),
            [(r["agent"], r["action"], r["calls"], r["errors"], r["p50_ms"], r["p95_ms"], r["max_ms"]) for r in rows],
        ),
    ]


def agent_performance(store: TelemetryStore, live: CallStats = AGENT_CALLS) -> Callable[[str], Sequence[ReportSection]]:
    """A section source: the run's agent performance table."""

    def source(run_id: str) -> Sequence[ReportSection]:
        rows = [s.row() for s in store.run_stats(run_id, live)]
        return (ReportSection(title=AGENT_TITLE, lines=tuple(agent_performance_lines(rows))),)

    return source


def risk_lines(live: Sequence[RiskEvent], closed: Sequence[RiskEvent]) -> list[str]:
    """The section's Markdown: live events, most severe first, then the ones this run closed."""
    order = {"critical": 0, "high": 1, "medium": 2}
    out: list[str] = []
    if live:
        out += _table(
            ("id", "severity", "state", "owner", "since", "runs", "headline"),
            [(e.risk_id, e.severity, e.state, e.owner, e.opened_at[:16], e.times_seen, e.detail)
             for e in sorted(live, key=lambda e: (order.get(e.severity, 9), e.risk_id))],
        )
        out += ["", "Acknowledge or close one: `cvm risks ack ID --by NAME`, `cvm risks close ID --by NAME --reason TEXT`."]
    else:
        out.append("No open risk event.")
    if closed:
        out += ["", f"Closed by this run ({len(closed)}): " + "; ".join(f"{e.risk_id} {e.title}" for e in closed) + "."]
    return out


class RiskEvents:
    """A report hook: the report's executive triggers update the risk events; returns the section listing them."""

    def __init__(self, store: RiskStore, owners: Mapping[str, str], clock: Clock):
        self._store = store
        self._owners = dict(owners)
        self._clock = clock

    def __call__(self, report: Report, run_at: str | None = None) -> Sequence[ReportSection]:
        if report.view != "portfolio":
            return ()
        sync = self._store.observe(
            report.executive_triggers, run_id=report.run_id, now=self._clock.now(), owners=self._owners, run_at=run_at,
        )
        if sync.stale:
            note = f"Not evaluated: a newer run than {report.run_id} already updated the risk events; the live ones are:"
            return (ReportSection(title=RISK_TITLE, lines=(note, "", *risk_lines(self._store.events(), []))),)
        return (ReportSection(title=RISK_TITLE, lines=tuple(risk_lines(self._store.events(), sync.closed))),)
