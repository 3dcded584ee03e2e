"""The report as Markdown: tables on one line each, money without ``£inf``, charts linked by file name."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cvm.reporting.model import PORTFOLIO_CHARTS, Report
from cvm.utils.text import without_controls

_CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}


def _cell(value: Any) -> str:
    """One table cell on one line: no pipes, no control characters, ``-`` for nothing or a non-finite number."""
    text = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else str(value)
    return re.sub(r"\s+", " ", without_controls(text)).replace("|", "\\|").strip() or "-"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def money(amount: float | None, currency: str) -> str:
    """``£1,234.50``; ``-`` when unknown or not finite, so no report ever shows ``£inf`` or ``£nan``."""
    if amount is None or not math.isfinite(amount):
        return "-"
    symbol = _CURRENCY_SYMBOLS.get(currency.upper())
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.2f}" if symbol else f"{amount:,.2f} {currency}"


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.0f}%"


def _plan_lines(report: Report) -> list[str]:
    plan = report.plan
    source = "the standard decision pipeline" if report.plan_source == "default" else "the plan given with the request"
    lines = [f"Plan ({source}):", ""]
    if isinstance(plan, list):
        # Steps already numbered ("1. load - data.list_customers") keep their numbers.
        return lines + [_cell(step) if re.match(r"\d+[.)]\s", str(step)) else f"{i}. {_cell(step)}" for i, step in enumerate(plan, 1)]
    steps = plan.get("steps")
    if isinstance(steps, list) and all(isinstance(s, Mapping) for s in steps):
        rows = []
        for s in steps:
            deps = s.get("depends_on") or []
            rows.append((
                s.get("id") or s.get("name"), s.get("agent"), s.get("action"),
                ", ".join(map(str, deps)) if isinstance(deps, list) else deps, s.get("status") or s.get("description"),
            ))
        return lines + _table(("step", "agent", "action", "depends on", "status / description"), rows)
    return lines + ["```json", *json.dumps(plan, indent=2, sort_keys=True, default=str).splitlines(), "```"]


def render_markdown(report: Report) -> str:
    """The report as Markdown, with the charts beside it linked by file name."""
    t, cur = report.totals, report.currency
    out: list[str] = [f"# {report.title}", ""]
    out += [
        f"- Run: `{report.run_id}`" + (f", customer `{report.customer_id}`" if report.customer_id else ""),
        f"- View: {report.view}",
        f"- Generated: {report.generated_at}",
        f"- Day(s): {', '.join(report.days) or '-'}",
        f"- Selector(s): {', '.join(f'{k} ({v})' for k, v in report.selectors.items()) or '-'}",
        "",
    ]
    warnings = [f"> {note}" for note in report.notes if note.startswith("WARNING")]
    out += [*warnings, ""] if warnings else []
    out += ["## Executive triggers", ""]
    fired = report.fired
    if fired:
        out += [f"- **FIRED** {trig.headline}" for trig in fired]
    else:
        out.append("No executive trigger fired.")
    out += [""] + _table(
        ("trigger", "value", "fires at", "fired"),
        ((trig.label, trig.value, trig.threshold if trig.threshold is not None else "off", "yes" if trig.fired else "no")
         for trig in report.executive_triggers),
    )

    if report.customer is not None:
        out += _customer_markdown(report)

    out += ["", "## Goal and plan", "", f"Goal: {_cell(report.goal)}", ""] + _plan_lines(report)

    out += ["", "## Decisions", ""]
    out.append(
        f"{t.customers} customer(s): {t.decisions_recorded} decision(s) recorded, {t.given} with a treatment, {t.open_errors} error(s)."
    )
    statuses = sorted(set(t.by_status) | set(t.by_status_now))
    out += [""] + _table(
        ("status", "when decided", "now (after approvals)"),
        ((s, t.by_status.get(s, 0), t.by_status_now.get(s, 0)) for s in statuses),
    )
    out += ["", "### By treatment", ""] + _table(
        ("treatment", "name", "channel", "decisions", "success", "pending approval", "no action", "expected value", "contact cost"),
        ((r.treatment_id, r.display_name, r.channel, r.decisions, r.success, r.pending_approval, r.no_action,
          money(r.expected_value, cur), money(r.contact_cost, cur)) for r in report.by_treatment),
    )
    out += ["", "### By channel", ""] + _table(
        ("channel", "decisions", "expected value", "contact cost"),
        ((r.channel, r.decisions, money(r.expected_value, cur), money(r.contact_cost, cur)) for r in report.by_channel),
    )

    out += ["", "## Expected value and cost", ""]
    out += [
        f"- Expected value of the {t.given} decision(s) with a treatment: **{money(t.expected_value_total, cur)}**"
        " (P(accept) x value at stake - contact cost, so already net of cost)",
        f"- Contact cost: {money(t.contact_cost_total, cur)}",
        f"- Expected value still live after approvals decided since: {money(t.expected_value_now, cur)}",
    ]
    if t.given:
        out.append(f"- Average expected value per treated customer: {money(t.expected_value_total / t.given, cur)}")
    out.append(
        f"- Measured value: {money(report.measured_value, cur)}" if report.measured_value is not None
        else f"- Measured value: {report.measured_note}"
    )

    out += ["", "## Capacity", ""]
    if report.capacity:
        out.append("Used is the day's total across every run; 'this run' is what this run took or holds.")
        out += [""] + _table(
            ("day", "treatment", "used", "available", "remaining", "utilisation", "this run", "held for approval"),
            ((c.day, c.treatment_id, c.used, c.max_per_day if c.max_per_day is not None else "unlimited",
              c.remaining if c.remaining is not None else "unlimited", _pct(c.utilisation_pct), c.used_by_run, c.held_by_run)
             for c in report.capacity),
        )
    else:
        out.append("No capacity was taken.")

    out += ["", "## Approvals", "", f"### Pending ({t.pending_approvals}){_listed(report, len(report.approvals_pending), t.pending_approvals)}", ""]
    if report.approvals_pending:
        out += _table(
            ("request", "customer", "treatment", "rule", "expected value", "requested", "expires", "overdue"),
            ((a.request_id, a.customer_id, a.treatment_id, a.rule, money(a.expected_value, cur), a.requested_at,
              a.expires_at, "yes" if a.overdue else "no") for a in report.approvals_pending),
        )
    else:
        out.append("None.")
    out += ["", f"### Decided ({t.decided_approvals}){_listed(report, len(report.approvals_decided), t.decided_approvals)}", ""]
    if report.approvals_decided:
        out += _table(
            ("request", "customer", "treatment", "decision", "by", "when", "why"),
            ((a.request_id, a.customer_id, a.treatment_id, a.status, a.decided_by, a.decided_at, a.reason)
             for a in report.approvals_decided),
        )
    else:
        out.append("None.")

    out += ["", "## Data quality and errors", ""]
    out.append(
        f"{t.customers_with_data_quality_issues} customer(s) with {t.data_quality_issues} data-quality issue(s);"
        f" {t.open_errors} customer(s) with an open error."
    )
    if report.data_quality:
        out += [""] + _table(("customer", "issue"), ((d.customer_id, issue) for d in report.data_quality for issue in d.issues))
    if report.errors:
        out += ["", "Errors (no decision recorded):", ""] + _table(
            ("customer", "error", "when"), ((e.customer_id, e.error, e.at) for e in report.errors)
        )

    out += ["", "## Customers most at risk", ""]
    out.append(f"Churn probability at or above {report.high_churn_threshold:.2f}; {report.risk_source}.")
    if report.at_risk:
        out += [""] + _table(
            ("customer", "churn", "status", "treatment", "why"),
            ((a.customer_id, f"{a.churn_probability:.2f}", a.status, a.treatment_id, "; ".join(a.reasons)) for a in report.at_risk),
        )
    else:
        out += ["", "No customer is at or above the threshold."]
    out += ["", "Risk distribution:", ""] + _table(("churn band", "customers"), ((b.band, b.customers) for b in report.risk_distribution))
    out += _segment_lines(report)

    for section in report.sections:
        out += ["", f"## {_cell(section.title)}", "", *section.lines]

    other_notes = [n for n in report.notes if not n.startswith("WARNING")]
    if other_notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in other_notes]

    out += ["", "## Charts", ""]
    titles = {
        PORTFOLIO_CHARTS["decisions_by_treatment"]: "Decisions by treatment",
        PORTFOLIO_CHARTS["capacity_use"]: "Capacity used against available",
        PORTFOLIO_CHARTS["risk_distribution"]: "Churn-risk distribution",
    }
    for chart in report.charts:
        out += [f"![{titles.get(chart, 'Options considered')}]({chart})", ""]
    if report.charts_note:
        out.append(report.charts_note)
    elif not report.charts:
        out.append("No charts.")
    # Defence in depth: whatever a field holds, each line stays one line without control characters.
    return "\n".join(without_controls(line) for line in out).rstrip() + "\n"


def _listed(report: Report, shown: int, total: int) -> str:
    return f", the first {shown} listed" if shown < total else ""


def _share(part: float | None) -> str:
    return "-" if part is None else f"{100 * part:.1f}%"


def _segment_lines(report: Report) -> list[str]:
    """Churn per customer segment: every customer's score now, and the forecast of the segment's sample."""
    if not report.segments:
        return []
    horizon = report.forecast_horizon_days
    out = ["", f"### Churn by segment and its {horizon}-day forecast", ""]
    if report.forecast_note:
        out += [report.forecast_note, ""]
    out += _table(
        ("segment", "customers", "scored", "mean churn now", "at risk", "sampled", "sample now", f"sample at {horizon} days",
         "rising in sample", "what moves it"),
        ((s.segment, s.customers, s.scored, _share(s.churn_now_mean), s.at_risk, s.sampled, _share(s.sample_churn_now_mean),
          _share(s.sample_churn_at_horizon_mean), s.rising,
          "; ".join(f"{words} ({n})" for words, n in list(s.drivers.items())[:3]) or "-")
         for s in report.segments),
    )
    return out


def _customer_markdown(report: Report) -> list[str]:
    c, cur = report.customer, report.currency
    assert c is not None
    out = ["", f"## Customer {c.customer_id}", ""]
    d = c.decision
    if d is None:
        out.append(f"The decision failed: {_cell(c.error)}")
    else:
        out += [
            f"- Status: **{d['status']}** when decided; now **{c.status_now}**",
            f"- Treatment: {d.get('selected_treatment')} ({d.get('display_name')}), channel {d.get('channel')}"
            + (f", scheduled for {d['scheduled_for']}" if d.get("scheduled_for") else ""),
            f"- Expected value: {money(d.get('expected_value'), cur)}; contact cost: {money(c.contact_cost, cur)};"
            f" confidence: {d.get('confidence') if d.get('confidence') is not None else '-'}",
            f"- Selector: {d.get('selector')}" + (f" (fell back: {d['selector_fallback']})" if d.get("selector_fallback") else ""),
        ]
        if d.get("approval_request_id"):
            out.append(
                f"- Approval: request {d['approval_request_id']} ({_cell(d.get('approval_rule'))})"
                + (f", approved by {d['approved_by']}" if d.get("approved_by") else "")
            )
        out += ["", f"Explanation: {_cell(d.get('explanation'))}"]
        if d.get("reasons"):
            out += ["", "Reasons:", ""] + [f"- {_cell(r)}" for r in d["reasons"]]
        if d.get("insights"):
            out += ["", "Insights when decided:", ""] + [f"- {_cell(i)}" for i in d["insights"]]
        if d.get("alternatives"):
            out += ["", "Alternatives not given:", ""] + _table(
                ("treatment", "reason", "detail", "expected value"),
                ((a["treatment_id"], a["reason"], a["detail"], money(a.get("expected_value"), cur)) for a in d["alternatives"]),
            )
    out += ["", "Risk now:", ""]
    if c.churn_probability is None:
        out.append(f"- Churn probability unknown ({_cell(c.risk_note)})")
    else:
        out.append(f"- Churn probability {c.churn_probability:.2f} (high-churn threshold {report.high_churn_threshold:.2f})")
    out += [f"- {name.replace('_', ' ')}: {_cell(evidence)}" for name, evidence in c.signals.items()]
    if c.audit:
        out += ["", "Audit trail:", ""] + _table(
            ("when", "event", "treatment", "detail"), ((a.at, a.event, a.treatment_id, a.detail) for a in c.audit)
        )
    return out
