"""Human output of processing commands: a table of decisions and a summary line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cvm.agents.messages import ApprovalRequestInfo, DecisionResult, TriggerCatalog, TriggerResult

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
        return f"waiting for approval ({r.approval_request_id}): {r.approval_rule}"
    if r.approved_by:
        return f"approved by {r.approved_by}"
    if r.explanation.startswith("First choice"):
        return r.explanation.split(";", 1)[0]
    fit = next((reason for reason in r.reasons if reason.startswith(("fits the journey", "addresses no journey"))), None)
    return (fit.split(", so it", 1)[0] if fit else r.explanation) + (" [needs approval]" if r.requires_approval else "")


def print_results(results: Sequence[DecisionResult], summary: dict[str, Any], *, run_id: str, path: Path) -> None:
    console = Console(soft_wrap=False, width=None if Console().is_terminal else 160)
    title = f"CVM decisions - run {run_id}" + ("  [DRY RUN: nothing allocated]" if summary.get("dry_run") else "")
    if summary.get("auto_approve", "off") != "off":
        title += "  [AUTO-APPROVE (testing): approvals granted without a human]"
    table = Table(title=title, show_lines=False, expand=False)
    for column in ("customer", "status", "treatment", "channel", "EV", "conf.", "why"):
        table.add_column(column, overflow="fold")
    for r in results:
        why = headline(r)
        table.add_row(
            r.customer_id,
            f"[{_STATUS_STYLE.get(r.status, 'white')}]{r.status}[/]",
            r.selected_treatment or "-",
            (r.channel or "-") + (f" @ {r.scheduled_for[11:16]}" if r.scheduled_for else ""),
            f"{r.expected_value:.2f}" if r.expected_value is not None else "-",
            f"{r.confidence:.2f}" if r.confidence is not None else "-",
            why if len(why) <= 100 else why[:97] + "...",
        )
    console.print(table)
    counts = ", ".join(f"{n} {status}" for status, n in summary["by_status"].items()) or "no customers"
    console.print(
        f"{summary['total_customers']} customer(s): {counts}; expected value "
        f"{summary['expected_value_total']:.2f} {summary['currency']}; selector {summary['selector']}"
        + (f"; {summary['llm_fallbacks']} LLM fallback(s)" if summary["llm_fallbacks"] else "")
    )
    console.print(f"results written to {path}", markup=False, highlight=False)


def print_trigger_result(result: TriggerResult) -> None:
    console = Console(soft_wrap=False, width=None if Console().is_terminal else 160)
    table = Table(title=f"Trigger {result.trigger_type} - matcher {result.matcher}")
    for column in ("customer", "reason", "evidence"):
        table.add_column(column, overflow="fold")
    for m in result.matches:
        evidence = "\n".join(f"[{e.source} {e.date or ''}] {e.text}" for e in m.evidence[:3])
        table.add_row(m.customer_id, m.reason, evidence)
    console.print(table, markup=False)
    console.print(f"{result.total_matches} of {result.total_customers} customer(s) matched", markup=False)
    for error in result.errors:
        print(f"warning: {error['customer_id']}: {error['error']}", file=sys.stderr)


def print_trigger_catalog(catalog: TriggerCatalog) -> None:
    console = Console(soft_wrap=False, width=None if Console().is_terminal else 160)
    table = Table(title="Triggers")
    for column in ("name", "source", "description", "condition"):
        table.add_column(column, overflow="fold")
    for t in catalog.triggers:
        table.add_row(t.name, t.source, t.description, t.condition or "-")
    console.print(table, markup=False)


def print_approvals(requests: Sequence[ApprovalRequestInfo], title: str) -> None:
    console = Console(soft_wrap=False, width=None if Console().is_terminal else 160)
    table = Table(title=title)
    for column in ("request", "status", "customer", "treatment", "EV", "rule", "requested", "decided"):
        table.add_column(column, overflow="fold")
    for r in requests:
        decided = f"{r.decided_by} {r.decided_at[:16]}" + (f": {r.reason}" if r.reason else "") if r.decided_at else f"expires {r.expires_at[:16]}"
        table.add_row(
            r.request_id, r.status, r.customer_id, r.treatment_id,
            "-" if r.expected_value is None else f"{r.expected_value:.2f}", r.rule, r.requested_at[:16], decided,
        )
    console.print(table, markup=False)
    console.print(f"{len(requests)} request(s)", markup=False)
