"""``build_report``: the report's numbers, computed from a run's records, the customers' churn risk and the config.

A report is a read-only view: a pending approval past its deadline is shown
as overdue, not expired.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from cvm.reporting.collect import CustomerRisk, RunRecords
from cvm.reporting.model import (
    ApprovalLine,
    AtRiskLine,
    AuditLine,
    CapacityLine,
    ChannelLine,
    CustomerDetail,
    DataQualityLine,
    ErrorLine,
    ExecutiveTrigger,
    HistogramBin,
    Report,
    RiskBand,
    Totals,
    TreatmentLine,
    View,
)
from cvm.tools.ledger_models import ApprovalRow, AuditEntry
from cvm.tools.results import AUTO_APPROVER, DecisionResult
from cvm.utils.config import IGNORE_ID, CVMConfig
from cvm.utils.errors import UsageError

RISK_BANDS: tuple[tuple[float, float], ...] = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0))
DEFAULT_PLAN: tuple[str, ...] = (
    "Data: read each customer's tables (get_customer_data)",
    "Journey: build the timeline, features, signals and insights (build_journey)",
    "Screen every treatment in code: enabled, eligibility, consent, contact cap, capacity left",
    "Treatment: rank the allowed treatments by expected value (recommend_treatment)",
    "Governance: send decisions that policy says need a human for approval, holding their capacity",
    "Allocation: take capacity for the first candidate, falling back down the ranked list",
    "Ledger: record each decision with its input digest and an audit entry",
)


def status_now(status: str, approval_status: str | None) -> str:
    """A decision's status after what approvers decided since it was recorded (``approval_status``: its request's, if any)."""
    if status != "pending_approval" or approval_status is None:
        return status
    return {"approved": "success", "rejected": "no_action", "expired": "no_action"}.get(approval_status, status)


def _status_now(result: DecisionResult, approvals: Mapping[str, ApprovalRow]) -> str:
    request = approvals.get(result.approval_request_id or "")
    return status_now(result.status, request.status if request else None)


def cost(config: CVMConfig, treatment_id: str | None) -> float:
    if not treatment_id or treatment_id == IGNORE_ID or treatment_id not in config.treatments:
        return 0.0
    return config.treatments[treatment_id].cost_per_contact


def treatment_name(config: CVMConfig, treatment_id: str) -> str:
    if treatment_id == IGNORE_ID:
        return "No action"
    t = config.treatments.get(treatment_id)
    return t.display_name if t else f"{treatment_id} (no longer configured)"


def triggers(config: CVMConfig, totals: Totals) -> tuple[ExecutiveTrigger, ...]:
    t = config.reporting.executive_triggers
    threshold = config.scoring.high_churn_threshold
    specs = (
        ("at_risk_customers", "At-risk customers", totals.at_risk_customers, t.at_risk_customers_at_least,
         f"customer(s) at or above the high-churn threshold {threshold:.2f}"),
        ("pending_approvals", "Pending approvals", totals.pending_approvals, t.pending_approvals_at_least,
         "decision(s) waiting for a human approval, holding capacity"),
        ("capacity_rejections", "Capacity rejections", totals.capacity_rejections, t.capacity_rejections_at_least,
         "decision(s) where a wanted treatment was refused for lack of capacity"),
        ("open_errors", "Open errors", totals.open_errors, t.open_errors_at_least,
         "customer(s) whose decision failed and is not recorded"),
    )
    return tuple(
        ExecutiveTrigger(
            name=name, label=label, value=value, threshold=at_least,
            fired=at_least is not None and value >= at_least,
            headline=f"{label}: {value} {words}" + (f" (fires at {at_least} or more)" if at_least is not None else " (trigger off)"),
        )
        for name, label, value, at_least, words in specs
    )


def approval_line(row: ApprovalRow, now: datetime) -> ApprovalLine:
    overdue = row.status == "pending" and datetime.fromisoformat(row.expires_at) <= now
    return ApprovalLine(
        request_id=row.request_id, run_id=row.run_id, customer_id=row.customer_id,
        treatment_id=row.treatment_id, status=row.status, rule=row.rule, explanation=row.explanation,
        expected_value=row.expected_value, requested_at=row.requested_at, expires_at=row.expires_at,
        decided_by=row.decided_by, decided_at=row.decided_at, reason=row.reason, overdue=overdue,
    )


def capacity_lines(
    config: CVMConfig, capacity_used: Mapping[tuple[str, str], int], live: Mapping[tuple[str, str, str], int], view: View,
) -> tuple[CapacityLine, ...]:
    """One line per (treatment, day): the day's counter (every run), and what the run gave and holds (``live``)."""
    lines = []
    for (tid, day), used in sorted(capacity_used.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        t = config.treatments.get(tid)
        by_run, held = live.get((tid, day, "allocated"), 0), live.get((tid, day, "held"), 0)
        if view == "customer" and not (by_run or held):
            continue
        if view == "portfolio" and t is not None and not t.enabled and not (used or by_run or held):
            continue
        cap = t.max_per_day if t is not None else None
        lines.append(CapacityLine(
            day=day, treatment_id=tid, display_name=treatment_name(config, tid), enabled=t.enabled if t else False,
            max_per_day=cap, used=used, used_by_run=by_run, held_by_run=held,
            remaining=None if cap is None else max(0, cap - used),
            utilisation_pct=None if not cap else round(100.0 * used / cap, 1),
        ))
    return tuple(lines)


def unknown_band(customers: int) -> RiskBand:
    return RiskBand(band="unknown", lower=None, upper=None, customers=customers)


def _risk_bands(risks: Sequence[CustomerRisk]) -> tuple[RiskBand, ...]:
    bands = []
    for i, (lo, hi) in enumerate(RISK_BANDS):
        last = i == len(RISK_BANDS) - 1
        n = sum(1 for r in risks if r.churn_probability is not None and lo <= r.churn_probability and (r.churn_probability < hi or last))
        bands.append(RiskBand(band=f"{lo:.1f}-{hi:.1f}", lower=lo, upper=hi, customers=n))
    bands.append(unknown_band(sum(1 for r in risks if r.churn_probability is None)))
    return tuple(bands)


def _audit_lines(entries: Iterable[AuditEntry]) -> tuple[AuditLine, ...]:
    lines = []
    for e in entries:
        payload = e.payload or {}
        if e.event == "decision":
            detail = f"status {payload.get('status')}, treatment {payload.get('selected_treatment')}"
        elif e.event == "decision_error":
            detail = str(payload.get("error"))
        elif e.event.startswith("approval_"):
            parts = [f"request {payload.get('request_id')}"]
            parts += [f"{key} {payload[key]}" for key in ("rule", "by", "reason") if payload.get(key)]
            detail = ", ".join(parts)
        else:
            detail = json.dumps(payload, sort_keys=True, default=str)[:300]
        lines.append(AuditLine(at=e.at, event=e.event, treatment_id=e.treatment_id, detail=detail))
    return tuple(lines)


def treatment_and_channel_lines(
    config: CVMConfig, rows: Iterable[tuple[str, str | None, str | None, int, float]],
) -> tuple[tuple[TreatmentLine, ...], tuple[ChannelLine, ...]]:
    """Decisions by treatment and by channel from (status, treatment, channel, decisions, summed expected value) rows.

    Value and contact cost count only decisions that chose a treatment (success or pending approval when decided).
    """
    treatments: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    for status, treatment_id, recorded_channel, decisions, expected_value in rows:
        tid = treatment_id or IGNORE_ID
        channel = recorded_channel or (config.treatments[tid].channel if tid in config.treatments else "none")
        is_given = status in ("success", "pending_approval")
        value = expected_value if is_given else 0.0
        spent = cost(config, tid) * decisions if is_given else 0.0
        row = treatments.setdefault(tid, dict(
            treatment_id=tid, display_name=treatment_name(config, tid), channel=channel,
            decisions=0, success=0, pending_approval=0, no_action=0, expected_value=0.0, contact_cost=0.0,
        ))
        row["decisions"] += decisions
        if status in row:
            row[status] += decisions
        row["expected_value"] += value
        row["contact_cost"] += spent
        ch = channels.setdefault(channel, dict(channel=channel, decisions=0, expected_value=0.0, contact_cost=0.0))
        ch["decisions"] += decisions
        ch["expected_value"] += value
        ch["contact_cost"] += spent
    by_treatment = tuple(
        TreatmentLine(**{**row, "expected_value": round(row["expected_value"], 2), "contact_cost": round(row["contact_cost"], 2)})
        for row in sorted(treatments.values(), key=lambda r: (r["treatment_id"] == IGNORE_ID, -r["decisions"], r["treatment_id"]))
    )
    by_channel = tuple(
        ChannelLine(**{**row, "expected_value": round(row["expected_value"], 2), "contact_cost": round(row["contact_cost"], 2)})
        for row in sorted(channels.values(), key=lambda r: (r["channel"] == "none", -r["decisions"], r["channel"]))
    )
    return by_treatment, by_channel


def at_risk_lines(risks: Iterable[CustomerRisk], decided: Mapping[str, tuple[str, str | None]]) -> tuple[AtRiskLine, ...]:
    """The most at risk with their journey evidence; ``decided``: customer -> (status now, treatment) (absent: it failed)."""
    return tuple(
        AtRiskLine(
            customer_id=r.customer_id, churn_probability=r.churn_probability or 0.0,
            status=decided.get(r.customer_id, ("error", None))[0],
            treatment_id=decided.get(r.customer_id, ("error", None))[1],
            signals=tuple(s for s in r.signals if s != "high_churn_risk"),
            reasons=tuple(v for s, v in r.signals.items() if s != "high_churn_risk")
            or ("no other journey signal: the churn score alone",),
        )
        for r in risks
    )


def default_goal(run_id: str, customers: int) -> str:
    return f"Decide the next best treatment for the {customers} customer(s) of run {run_id} within consent, contact policy and daily capacity."


def goal_and_plan(
    goal: str | None, plan: Sequence[str] | Mapping[str, Any] | None, fallback: str,
) -> tuple[str, list[str] | dict[str, Any], Literal["given", "default"]]:
    """The goal (given, else the plan's, else ``fallback``) and the plan (given, or the standard pipeline)."""
    if plan is None:
        plan_value: list[str] | dict[str, Any] = list(DEFAULT_PLAN)
        plan_source: Literal["given", "default"] = "default"
    else:
        plan_value = dict(plan) if isinstance(plan, Mapping) else [str(step) for step in plan]
        plan_source = "given"
    if goal is None and isinstance(plan_value, dict) and isinstance(plan_value.get("goal"), str):
        goal = plan_value["goal"]
    return goal if goal is not None else fallback, plan_value, plan_source


def auto_approved_warning(count: int) -> str:
    return f"WARNING: {count} decision(s) were approved by '{AUTO_APPROVER}' (--auto-approve, for testing), not by a human."


def overdue_note(count: int, first: Sequence[str]) -> str:
    return (
        f"{count} pending approval(s) are past their deadline ({', '.join(first[:5])}); they expire and release "
        "their capacity at the next processing or approvals command."
    )


def build_report(
    records: RunRecords,
    risks: Mapping[str, CustomerRisk],
    config: CVMConfig,
    *,
    generated_at: datetime,
    customer_id: str | None = None,
    goal: str | None = None,
    plan: Sequence[str] | Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Report:
    """The report of the whole run (``customer_id`` None) or of one of its customers."""
    view: View = "portfolio" if customer_id is None else "customer"
    if customer_id is not None and customer_id not in records.decisions and customer_id not in records.errors:
        decided = records.customer_ids
        shown = ", ".join(decided[:10]) + (f" and {len(decided) - 10} more" if len(decided) > 10 else "")
        raise UsageError(f"customer {customer_id} has no decision in run {records.run_id}; the run decided {shown}")
    customers = records.customer_ids if customer_id is None else [customer_id]
    chosen = set(customers)
    decisions = [records.decisions[c] for c in customers if c in records.decisions]
    errors = [records.errors[c] for c in customers if c in records.errors]
    approvals = [a for a in records.approvals if a.customer_id in chosen]
    by_request = {a.request_id: a for a in approvals}
    now_status = {d.customer_id: _status_now(d.result, by_request) for d in decisions}
    given = [d for d in decisions if d.result.status in ("success", "pending_approval")]
    threshold = config.scoring.high_churn_threshold
    view_risks = [risks.get(c) or CustomerRisk(c, error="not read") for c in customers]
    at_risk_all = sorted(
        (r for r in view_risks if r.churn_probability is not None and r.churn_probability >= threshold),
        key=lambda r: (-(r.churn_probability or 0.0), r.customer_id),
    )
    pending = [approval_line(a, generated_at) for a in approvals if a.status == "pending"]
    decided_approvals = sorted(
        (approval_line(a, generated_at) for a in approvals if a.status != "pending"),
        key=lambda a: (a.decided_at or "", a.request_id),
    )
    issues = [DataQualityLine(customer_id=d.customer_id, issues=d.result.data_quality) for d in decisions if d.result.data_quality]

    totals = Totals(
        customers=len(customers),
        decisions_recorded=len(decisions),
        by_status=dict(sorted((Counter(d.result.status for d in decisions) + Counter({"error": len(errors)})).items())),
        by_status_now=dict(sorted((Counter(now_status.values()) + Counter({"error": len(errors)})).items())),
        given=len(given),
        expected_value_total=round(sum(d.result.expected_value or 0.0 for d in given), 2),
        contact_cost_total=round(sum(cost(config, d.result.selected_treatment) for d in given), 2),
        expected_value_now=round(
            sum(d.result.expected_value or 0.0 for d in given if now_status[d.customer_id] in ("success", "pending_approval")), 2
        ),
        at_risk_customers=len(at_risk_all),
        pending_approvals=len(pending),
        decided_approvals=len(decided_approvals),
        capacity_rejections=sum(1 for d in decisions if any(a.reason == "capacity_exhausted" for a in d.result.alternatives)),
        open_errors=len(errors),
        customers_with_data_quality_issues=len(issues),
        data_quality_issues=sum(len(i.issues) for i in issues),
        auto_approved=len(
            {d.customer_id for d in decisions if d.result.approved_by == AUTO_APPROVER}
            | {a.customer_id for a in decided_approvals if a.decided_by == AUTO_APPROVER}
        ),
    )

    by_treatment, by_channel = treatment_and_channel_lines(
        config, ((d.result.status, d.result.selected_treatment, d.result.channel, 1, d.result.expected_value or 0.0) for d in decisions)
    )

    at_risk = at_risk_lines(
        at_risk_all[: config.reporting.top_at_risk],
        {cid: (now_status[cid], records.decisions[cid].result.selected_treatment) for cid in now_status},
    )

    notes = []
    if totals.auto_approved:
        notes.append(auto_approved_warning(totals.auto_approved))
    overdue = [a.request_id for a in pending if a.overdue]
    if overdue:
        notes.append(overdue_note(len(overdue), overdue))
    unreadable = [r.customer_id for r in view_risks if r.churn_probability is None]
    if unreadable:
        notes.append(f"Churn risk unknown for {len(unreadable)} customer(s): {', '.join(unreadable[:10])}.")
    if len(at_risk_all) > len(at_risk):
        notes.append(f"{len(at_risk_all)} customers are at risk; the {len(at_risk)} most at risk are listed (reporting.top_at_risk).")

    goal, plan_value, plan_source = goal_and_plan(
        goal, plan, default_goal(records.run_id, len(customers)) if view == "portfolio"
        else f"Explain the decision for customer {customer_id} in run {records.run_id}.",
    )

    detail = None
    if customer_id is not None:
        record = records.decisions.get(customer_id)
        risk = risks.get(customer_id) or CustomerRisk(customer_id, error="not read")
        detail = CustomerDetail(
            customer_id=customer_id,
            status_now=now_status.get(customer_id, "error"),
            decision=record.result.model_dump(mode="json", exclude={"type"}) if record else None,
            error=records.errors[customer_id].error if customer_id in records.errors else None,
            contact_cost=cost(config, record.result.selected_treatment) if record and record.result.status != "no_action" else None,
            churn_probability=risk.churn_probability,
            signals=dict(risk.signals),
            risk_note=risk.error,
            audit=_audit_lines(e for e in records.audit if e.customer_id == customer_id),
        )

    return Report(
        view=view, run_id=records.run_id, customer_id=customer_id,
        title=title or (f"Executive report: run {records.run_id}" if view == "portfolio"
                        else f"Customer report: {customer_id} in run {records.run_id}"),
        generated_at=generated_at.isoformat(), currency=config.settings.currency, goal=goal,
        plan=plan_value, plan_source=plan_source, high_churn_threshold=threshold,
        selectors=dict(sorted(Counter(d.result.selector for d in decisions if d.result.selector).items())),
        days=records.days, totals=totals, executive_triggers=triggers(config, totals),
        by_treatment=by_treatment, by_channel=by_channel, capacity=capacity_lines(
            config, records.capacity_used,
            Counter((a.treatment_id, a.day, a.state) for a in records.allocations if a.customer_id in chosen), view,
        ),
        approvals_pending=tuple(sorted(pending, key=lambda a: (a.expires_at, a.request_id))), approvals_decided=tuple(decided_approvals),
        data_quality=tuple(issues),
        errors=tuple(ErrorLine(customer_id=e.customer_id, error=e.error, at=e.at) for e in errors),
        at_risk=at_risk, risk_distribution=_risk_bands(view_risks),
        risk_source=f"churn scores read from the data folder when the report was made ({generated_at.isoformat()})",
        customer=detail, notes=tuple(notes), churn_histogram=histogram(view_risks, threshold),
    )


def histogram(risks: Iterable[CustomerRisk], threshold: float) -> tuple[HistogramBin, ...]:
    """Ten bins of width 0.1 over the known churn probabilities, split at the threshold (as the churn feed counts them)."""
    counts = Counter((min(int(r.churn_probability * 10), 9), r.churn_probability >= threshold) for r in risks if r.churn_probability is not None)
    return tuple(HistogramBin(lower=i / 10, upper=(i + 1) / 10, below=counts[(i, False)], at_risk=counts[(i, True)]) for i in range(10))
