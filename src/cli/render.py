"""Human output of processing commands: a table of decisions and a summary line.

Every cell is plain text (no rich markup) with control characters removed:
treatment names, reasons and evidence come from config, custom treatment files,
transcripts and approvers, and must not be able to drive the terminal.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cvm.agents.messages import ApprovalRequestInfo, DecisionResult, TriggerCatalog, TriggerResult
from cvm.utils.errors import EXIT_BROKEN_PIPE
from cvm.utils.text import without_controls

_STATUS_STYLE = {"success": "green", "no_action": "yellow", "pending_approval": "cyan", "error": "red"}


def headline(r: DecisionResult) -> str:
    """The one reason that matters most, short enough for a table cell."""
    if r.error:
        return r.error
    decided = next((a for a in r.alternatives if a.reason in ("approval_rejected", "approval_expired")), None)
    if r.status == "no_action" and decided is not None:
        return f"{decided.treatment_id} {decided.detail}"
    if r.status == "no_action":
        counts: dict[str, int] = {}
        for alt in r.alternatives:
            counts[alt.reason] = counts.get(alt.reason, 0) + 1
        return "no action: " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(counts.items()))
    if r.status == "pending_approval":
        request = f" ({r.approval_request_id})" if r.approval_request_id else ""  # a dry run holds no request
        return f"waiting for approval{request}: {r.approval_rule}"
    if r.approved_by:
        return f"approved by {r.approved_by}"
    if r.explanation.startswith("First choice"):
        return r.explanation.split(";", 1)[0]
    fit = next((reason for reason in r.reasons if reason.startswith(("fits the journey", "addresses no journey"))), None)
    return (fit.split(", so it", 1)[0] if fit else r.explanation) + (" [needs approval]" if r.requires_approval else "")


def plain(value: object) -> str:
    """A value shown to a person: text without control characters; ``-`` for nothing or a non-finite number."""
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return without_controls(str(value))


def _number(value: float | None) -> str:
    """Two decimals, or ``-`` when unknown or not finite (never ``inf``/``nan`` on screen)."""
    return f"{value:.2f}" if value is not None and math.isfinite(value) else "-"


def _table(title: str, columns: Sequence[str]) -> Table:
    table = Table(title=plain(title), show_lines=False, expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


class _StdoutConsole(Console):
    """Rich's console on stdout; when the reader goes away (``cvm ... | head``) the command ends with
    ``EXIT_BROKEN_PIPE``, not rich's 1, which here means "some customers failed"."""

    def on_broken_pipe(self) -> None:
        try:
            super().on_broken_pipe()  # points stdout at /dev/null, then exits with 1
        except SystemExit:
            raise SystemExit(EXIT_BROKEN_PIPE) from None


def _console() -> Console:
    return _StdoutConsole(soft_wrap=False, width=None if Console().is_terminal else 160)


def print_rows(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], show: int | None, where: str = "", total: int | None = None,
) -> None:
    """A table of at most ``show`` rows (None: all), then one line for the rows left out (of ``total``, default all rows)."""
    from cvm.cli.listing import bounded, left_out_line

    shown, left_out = bounded(rows, show)
    left_out = left_out if total is None else total - len(shown)
    table = _table(title, columns)
    for row in shown:
        table.add_row(*(cell if isinstance(cell, Text) else plain(cell) for cell in row))
    console = _console()
    console.print(table, markup=False)
    if left_out:
        console.print(left_out_line(left_out, total if total is not None else len(rows), where), markup=False, highlight=False)


def result_row(r: DecisionResult) -> tuple[Any, ...]:
    why = plain(headline(r))
    return (
        plain(r.customer_id),
        Text(r.status, style=_STATUS_STYLE.get(r.status, "white")),
        plain(r.selected_treatment),
        plain(r.channel) + (f" @ {r.scheduled_for[11:16]}" if r.scheduled_for else ""),
        _number(r.expected_value),
        _number(r.confidence),
        why if len(why) <= 100 else why[:97] + "...",
    )


def summary_line(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in summary["by_status"].items()) or "no customers"
    return (
        f"{summary['total_customers']} customer(s): {counts}; expected value "
        f"{_number(summary['expected_value_total'])} {summary['currency']}; selector {summary['selector']}"
        + (f"; {summary['llm_fallbacks']} LLM fallback(s)" if summary.get("llm_fallbacks") else "")
    )


def results_title(summary: dict[str, Any], run_id: str) -> str:
    title = f"CVM decisions - run {run_id}" + ("  [DRY RUN: nothing allocated]" if summary.get("dry_run") else "")
    if summary.get("auto_approve", "off") != "off":
        title += "  [AUTO-APPROVE (testing): approvals granted without a human]"
    return title


def print_results(results: Sequence[DecisionResult], summary: dict[str, Any], *, run_id: str, show: int | None, where: str = "") -> None:
    """The decisions table, bounded: when rows are left out, errors and approvals waiting come first."""
    total = len(results)
    if show is not None and total > show:
        first = {"error": 0, "pending_approval": 1}
        results = sorted(results, key=lambda r: first.get(r.status, 2))[:show]  # stable: input order within a status
    columns = ("customer", "status", "treatment", "channel", "EV", "conf.", "why")
    print_rows(results_title(summary, run_id), columns, _LazyRows(results, result_row), show, where, total)


class _LazyRows(Sequence[tuple[Any, ...]]):
    """Rows made only for what is shown: a 20,000-customer run formats 20 rows, not 20,000."""

    def __init__(self, items: Sequence[Any], make: Any):
        self._items = items
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._make(item) for item in self._items[index]]
        return self._make(self._items[index])


def print_trigger_result(result: TriggerResult, show: int | None = None) -> None:
    def row(m: Any) -> tuple[str, ...]:
        evidence = "\n".join(plain(f"[{e.source} {e.date or ''}] {e.text}") for e in m.evidence[:3])
        return plain(m.customer_id), plain(m.reason), evidence

    title = f"Trigger {result.trigger_type} - matcher {result.matcher}"
    print_rows(title, ("customer", "reason", "evidence"), _LazyRows(result.matches, row), show)
    _console().print(f"{result.total_matches} of {result.total_customers} customer(s) matched", markup=False)
    for error in result.errors:
        print(f"warning: {plain(error['customer_id'])}: {plain(error['error'])}", file=sys.stderr)


def print_trigger_catalog(catalog: TriggerCatalog, show: int | None = None) -> None:
    rows = [(t.name, t.source, t.description, t.condition) for t in catalog.triggers]
    print_rows("Triggers", ("name", "source", "description", "condition"), rows, show)


def approval_row(r: ApprovalRequestInfo) -> tuple[str, ...]:
    decided = f"{r.decided_by} {r.decided_at[:16]}" + (f": {r.reason}" if r.reason else "") if r.decided_at else f"expires {r.expires_at[:16]}"
    return (
        plain(r.request_id), r.status, plain(r.customer_id), plain(r.treatment_id),
        _number(r.expected_value), plain(r.rule), r.requested_at[:16], plain(decided),
    )


def print_approvals(requests: Sequence[ApprovalRequestInfo], title: str, show: int | None = None) -> None:
    columns = ("request", "status", "customer", "treatment", "EV", "rule", "requested", "decided")
    print_rows(title, columns, _LazyRows(requests, approval_row), show)
    _console().print(f"{len(requests)} request(s)", markup=False)
