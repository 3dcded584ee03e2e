"""Executive reports: what a run decided, read back from the ledger, as Markdown, JSON and PNG charts.

The outside-world half of the Report agent:

* ``collect_run`` reads one run from the ledger: its recorded decisions (the
  ``decisions`` table, enumerated through the run's audit entries), the
  customers whose decision failed (``decision_error`` audit entries with no
  decision after them), its allocations, its approval requests and the
  capacity counters of the day(s) it allocated on.
* ``build_report`` turns those records, the customers' churn risk (read by the
  agent through the Data and Journey agents) and the config into a ``Report``:
  a typed model whose JSON dump is the machine-readable report.
* ``write_report`` writes ``report.md`` / ``report.json`` (portfolio) or
  ``customer-<ID>.md`` / ``.json`` (one customer) under
  ``<output_dir>/reports/<run_id>/``, atomically, with PNG charts beside them
  when matplotlib is installed (``pip install 'cvm[report]'``); without it the
  Markdown and JSON are still written and say how to get the charts.

Nothing here changes the ledger: a report is a read-only view, so a pending
approval past its deadline is shown as overdue, not expired.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from cvm.agents.governance import AUTO_APPROVER
from cvm.agents.messages import DecisionResult
from cvm.tools.results import finite_only, write_json_atomic, write_text_atomic
from cvm.utils.config import IGNORE_ID, CVMConfig
from cvm.utils.errors import LedgerError, UsageError
from cvm.utils.text import without_controls

log = structlog.get_logger(__name__)

REPORT_VERSION = 1
REPORTS_FOLDER = "reports"
CHARTS_HINT = "Charts need matplotlib: pip install 'cvm[report]'"
View = Literal["portfolio", "customer"]

PORTFOLIO_CHARTS = {
    "decisions_by_treatment": "decisions_by_treatment.png",
    "capacity_use": "capacity_use.png",
    "risk_distribution": "risk_distribution.png",
}
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
_CURRENCY_SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


# --- what the ledger holds about a run ----------------------------------------


class ReportLedger(Protocol):
    """What a report reads from the ledger (never writes)."""

    def decided_in_run(self, run_id: str) -> dict[str, dict[str, Any]]: ...
    def audit_entries(self, customer_id: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]: ...
    def allocations(self, customer_id: str | None = None, run_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]: ...
    def approvals(self, status: str | None = None, customer_id: str | None = None) -> list[dict[str, Any]]: ...
    def used(self, treatment_id: str, day: str) -> int: ...


@dataclass(frozen=True)
class DecisionRecord:
    """One row of the ledger's ``decisions`` table, read back as the result record."""

    customer_id: str
    result: DecisionResult


@dataclass(frozen=True)
class ErrorRecord:
    """A customer whose decision failed in the run and was never recorded since."""

    customer_id: str
    error: str
    at: str


@dataclass(frozen=True)
class RunRecords:
    """Everything the ledger holds about one run."""

    run_id: str
    decisions: dict[str, DecisionRecord]
    errors: dict[str, ErrorRecord]
    allocations: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    capacity_used: dict[tuple[str, str], int]
    """(treatment id, day) -> units used that day by every run (the ``capacity_usage`` table)."""
    days: tuple[str, ...]
    audit: list[dict[str, Any]]

    @property
    def customer_ids(self) -> list[str]:
        """Every customer of the run, decided or failed, in the order they were first handled."""
        return list(dict.fromkeys([*self.decisions, *self.errors]))


@dataclass(frozen=True)
class CustomerRisk:
    """A customer's churn risk as read from the data when the report is made."""

    customer_id: str
    churn_probability: float | None = None
    signals: Mapping[str, str] = field(default_factory=dict)
    """Journey signal -> its evidence in words."""
    error: str | None = None
    """Why the data could not be read (the risk is then unknown)."""


def _local_day(instant: str, tz: tzinfo) -> str:
    return datetime.fromisoformat(instant).astimezone(tz).date().isoformat()


def collect_run(
    ledger: ReportLedger, run_id: str, tz: tzinfo, treatment_ids: Iterable[str] = (), *, allow_empty: bool = False
) -> RunRecords:
    """Read one run from the ledger; ``UsageError`` when the ledger knows nothing of it (unless ``allow_empty``).

    Decisions are the ``decisions`` table's rows for the run (per-customer and batch
    paths alike); errors are ``decision_error`` audit entries of customers the run
    never recorded a decision for (a failed decision is audited, not recorded).
    """
    decisions: dict[str, DecisionRecord] = {}
    for cid, stored in sorted(ledger.decided_in_run(run_id).items()):
        try:
            decisions[cid] = DecisionRecord(cid, DecisionResult.model_validate(finite_only(stored)))
        except ValidationError as exc:
            first = exc.errors()[0]
            field_name = ".".join(str(p) for p in first["loc"]) or "<record>"
            raise LedgerError(f"the decision of {cid} in run {run_id} cannot be read ({field_name}: {first['msg']})") from None
    audit = ledger.audit_entries(run_id=run_id)
    failed: dict[str, dict[str, Any]] = {}
    for entry in audit:
        if entry["event"] == "decision_error" and entry.get("customer_id"):
            failed[entry["customer_id"]] = entry  # the latest failure
    errors = {
        cid: ErrorRecord(cid, str(entry["payload"].get("error") or "unknown error"), entry["at"])
        for cid, entry in sorted(failed.items())
        if cid not in decisions
    }
    allocations = ledger.allocations(run_id=run_id, limit=10**9)
    referenced = {d.result.approval_request_id for d in decisions.values() if d.result.approval_request_id}
    approvals = [a for a in ledger.approvals() if a["run_id"] == run_id or a["request_id"] in referenced]
    if not (decisions or errors or allocations or approvals or allow_empty):
        raise UsageError(
            f"unknown run id {run_id!r}: the ledger has no decisions for it (dry runs are not recorded); "
            "the run id is printed by cvm process and stored in its result file"
        )
    days = sorted({a["day"] for a in allocations} | {a["day"] for a in approvals if a["run_id"] == run_id})
    if not days:  # nothing allocated: the day(s) the run's ledger entries were written
        days = sorted({_local_day(e["at"], tz) for e in audit})
    used_ids = {a["treatment_id"] for a in allocations}
    capacity = {(tid, day): ledger.used(tid, day) for day in days for tid in sorted(set(treatment_ids) | used_ids)}
    return RunRecords(run_id, decisions, errors, allocations, approvals, capacity, tuple(days), audit)


# --- the report model (its JSON dump is the machine-readable report) --------------


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExecutiveTrigger(_Row):
    name: str
    """``at_risk_customers``, ``pending_approvals``, ``capacity_rejections`` or ``open_errors``."""
    label: str
    value: int
    threshold: int | None
    """``reporting.executive_triggers.<name>_at_least``; None means switched off."""
    fired: bool
    headline: str


class TreatmentLine(_Row):
    treatment_id: str
    display_name: str
    channel: str
    decisions: int
    success: int
    pending_approval: int
    no_action: int
    expected_value: float
    contact_cost: float


class ChannelLine(_Row):
    channel: str
    decisions: int
    expected_value: float
    contact_cost: float


class CapacityLine(_Row):
    day: str
    treatment_id: str
    display_name: str
    enabled: bool
    max_per_day: int | None
    """None: unlimited."""
    used: int
    """Units used that day by every run (the ledger's capacity counter)."""
    used_by_run: int
    """Of which given by this run."""
    held_by_run: int
    """Of which held by this run for a pending approval."""
    remaining: int | None
    utilisation_pct: float | None


class ApprovalLine(_Row):
    request_id: str
    run_id: str
    customer_id: str
    treatment_id: str
    status: str
    rule: str
    explanation: str
    expected_value: float | None
    requested_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    reason: str | None
    overdue: bool
    """Still pending past its deadline (it expires at the next processing or approvals command)."""


class DataQualityLine(_Row):
    customer_id: str
    issues: tuple[str, ...]


class ErrorLine(_Row):
    customer_id: str
    error: str
    at: str


class AtRiskLine(_Row):
    customer_id: str
    churn_probability: float
    status: str
    treatment_id: str | None
    signals: tuple[str, ...]
    reasons: tuple[str, ...]


class RiskBand(_Row):
    band: str
    lower: float | None
    upper: float | None
    customers: int


class AuditLine(_Row):
    at: str
    event: str
    treatment_id: str | None
    detail: str


class CustomerDetail(_Row):
    """The single-customer view's own section."""

    customer_id: str
    status_now: str
    decision: dict[str, Any] | None
    """The decision as recorded (the result-file record); None when it failed."""
    error: str | None
    contact_cost: float | None
    churn_probability: float | None
    signals: dict[str, str]
    risk_note: str | None
    audit: tuple[AuditLine, ...]


class Totals(_Row):
    customers: int
    decisions_recorded: int
    by_status: dict[str, int]
    """As recorded when decided (``error``: open errors, which have no decision row)."""
    by_status_now: dict[str, int]
    """After the approvals decided since the run (approved -> success, rejected/expired -> no_action)."""
    given: int
    """Decisions that chose a treatment (success or pending approval when decided)."""
    expected_value_total: float
    """Sum of the expected value of the given decisions (net of contact cost)."""
    contact_cost_total: float
    expected_value_now: float
    """Expected value still live after the approvals decided since (approved or still pending)."""
    at_risk_customers: int
    pending_approvals: int
    decided_approvals: int
    capacity_rejections: int
    open_errors: int
    customers_with_data_quality_issues: int
    data_quality_issues: int
    auto_approved: int


class Report(_Row):
    report_version: int = REPORT_VERSION
    view: View
    run_id: str
    customer_id: str | None
    title: str
    generated_at: str
    currency: str
    goal: str
    plan: list[str] | dict[str, Any]
    plan_source: Literal["given", "default"]
    high_churn_threshold: float
    selectors: dict[str, int]
    days: tuple[str, ...]
    totals: Totals
    executive_triggers: tuple[ExecutiveTrigger, ...]
    by_treatment: tuple[TreatmentLine, ...]
    by_channel: tuple[ChannelLine, ...]
    capacity: tuple[CapacityLine, ...]
    approvals_pending: tuple[ApprovalLine, ...]
    approvals_decided: tuple[ApprovalLine, ...]
    data_quality: tuple[DataQualityLine, ...]
    errors: tuple[ErrorLine, ...]
    at_risk: tuple[AtRiskLine, ...]
    """Customers at or above the high-churn threshold, most at risk first (at most ``reporting.top_at_risk``)."""
    risk_distribution: tuple[RiskBand, ...]
    risk_source: str
    customer: CustomerDetail | None = None
    notes: tuple[str, ...] = ()
    charts: tuple[str, ...] = ()
    """Chart file names, beside the report."""
    charts_note: str | None = None

    @property
    def fired(self) -> tuple[ExecutiveTrigger, ...]:
        return tuple(t for t in self.executive_triggers if t.fired)


# --- building it -------------------------------------------------------------------


def _status_now(result: DecisionResult, approvals: Mapping[str, Mapping[str, Any]]) -> str:
    """The decision's status after what approvers decided since it was recorded."""
    request = approvals.get(result.approval_request_id or "")
    if result.status != "pending_approval" or request is None:
        return result.status
    return {"approved": "success", "rejected": "no_action", "expired": "no_action"}.get(request["status"], result.status)


def _cost(config: CVMConfig, treatment_id: str | None) -> float:
    if not treatment_id or treatment_id == IGNORE_ID or treatment_id not in config.treatments:
        return 0.0
    return config.treatments[treatment_id].cost_per_contact


def _name(config: CVMConfig, treatment_id: str) -> str:
    if treatment_id == IGNORE_ID:
        return "No action"
    t = config.treatments.get(treatment_id)
    return t.display_name if t else f"{treatment_id} (no longer configured)"


def _triggers(config: CVMConfig, totals: Totals) -> tuple[ExecutiveTrigger, ...]:
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


def _approval_line(row: Mapping[str, Any], now: datetime) -> ApprovalLine:
    overdue = row["status"] == "pending" and datetime.fromisoformat(row["expires_at"]) <= now
    return ApprovalLine(
        request_id=row["request_id"], run_id=row["run_id"], customer_id=row["customer_id"],
        treatment_id=row["treatment_id"], status=row["status"], rule=row["rule"], explanation=row["explanation"],
        expected_value=row["expected_value"], requested_at=row["requested_at"], expires_at=row["expires_at"],
        decided_by=row["decided_by"], decided_at=row["decided_at"], reason=row["reason"], overdue=overdue,
    )


def _capacity(config: CVMConfig, records: RunRecords, customers: set[str], view: View) -> tuple[CapacityLine, ...]:
    live = Counter(
        (a["treatment_id"], a["day"], a["state"]) for a in records.allocations if a["customer_id"] in customers
    )
    lines = []
    for (tid, day), used in sorted(records.capacity_used.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        t = config.treatments.get(tid)
        by_run, held = live[(tid, day, "allocated")], live[(tid, day, "held")]
        if view == "customer" and not (by_run or held):
            continue
        if view == "portfolio" and t is not None and not t.enabled and not (used or by_run or held):
            continue
        cap = t.max_per_day if t is not None else None
        lines.append(CapacityLine(
            day=day, treatment_id=tid, display_name=_name(config, tid), enabled=t.enabled if t else False,
            max_per_day=cap, used=used, used_by_run=by_run, held_by_run=held,
            remaining=None if cap is None else max(0, cap - used),
            utilisation_pct=None if not cap else round(100.0 * used / cap, 1),
        ))
    return tuple(lines)


def _risk_bands(risks: Sequence[CustomerRisk]) -> tuple[RiskBand, ...]:
    bands = []
    for i, (lo, hi) in enumerate(RISK_BANDS):
        last = i == len(RISK_BANDS) - 1
        n = sum(1 for r in risks if r.churn_probability is not None and lo <= r.churn_probability and (r.churn_probability < hi or last))
        bands.append(RiskBand(band=f"{lo:.1f}-{hi:.1f}", lower=lo, upper=hi, customers=n))
    bands.append(RiskBand(band="unknown", lower=None, upper=None, customers=sum(1 for r in risks if r.churn_probability is None)))
    return tuple(bands)


def _audit_lines(entries: Iterable[Mapping[str, Any]]) -> tuple[AuditLine, ...]:
    lines = []
    for e in entries:
        payload = e.get("payload") or {}
        if e["event"] == "decision":
            detail = f"status {payload.get('status')}, treatment {payload.get('selected_treatment')}"
        elif e["event"] == "decision_error":
            detail = str(payload.get("error"))
        elif e["event"].startswith("approval_"):
            parts = [f"request {payload.get('request_id')}"]
            parts += [f"{key} {payload[key]}" for key in ("rule", "by", "reason") if payload.get(key)]
            detail = ", ".join(parts)
        else:
            detail = json.dumps(payload, sort_keys=True, default=str)[:300]
        lines.append(AuditLine(at=e["at"], event=e["event"], treatment_id=e.get("treatment_id"), detail=detail))
    return tuple(lines)


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
    approvals = [a for a in records.approvals if a["customer_id"] in chosen]
    by_request = {a["request_id"]: a for a in approvals}
    now_status = {d.customer_id: _status_now(d.result, by_request) for d in decisions}
    given = [d for d in decisions if d.result.status in ("success", "pending_approval")]
    threshold = config.scoring.high_churn_threshold
    view_risks = [risks.get(c) or CustomerRisk(c, error="not read") for c in customers]
    at_risk_all = sorted(
        (r for r in view_risks if r.churn_probability is not None and r.churn_probability >= threshold),
        key=lambda r: (-(r.churn_probability or 0.0), r.customer_id),
    )
    pending = [_approval_line(a, generated_at) for a in approvals if a["status"] == "pending"]
    decided_approvals = sorted(
        (_approval_line(a, generated_at) for a in approvals if a["status"] != "pending"),
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
        contact_cost_total=round(sum(_cost(config, d.result.selected_treatment) for d in given), 2),
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

    treatments: dict[str, dict[str, Any]] = {}
    channels: dict[str, dict[str, Any]] = {}
    for d in decisions:
        r = d.result
        tid = r.selected_treatment or IGNORE_ID
        channel = r.channel or (config.treatments[tid].channel if tid in config.treatments else "none")
        is_given = r.status in ("success", "pending_approval")
        value = (r.expected_value or 0.0) if is_given else 0.0
        cost = _cost(config, tid) if is_given else 0.0
        row = treatments.setdefault(tid, dict(
            treatment_id=tid, display_name=_name(config, tid), channel=channel,
            decisions=0, success=0, pending_approval=0, no_action=0, expected_value=0.0, contact_cost=0.0,
        ))
        row["decisions"] += 1
        if r.status in row:
            row[r.status] += 1
        row["expected_value"] += value
        row["contact_cost"] += cost
        ch = channels.setdefault(channel, dict(channel=channel, decisions=0, expected_value=0.0, contact_cost=0.0))
        ch["decisions"] += 1
        ch["expected_value"] += value
        ch["contact_cost"] += cost
    by_treatment = tuple(
        TreatmentLine(**{**row, "expected_value": round(row["expected_value"], 2), "contact_cost": round(row["contact_cost"], 2)})
        for row in sorted(treatments.values(), key=lambda r: (r["treatment_id"] == IGNORE_ID, -r["decisions"], r["treatment_id"]))
    )
    by_channel = tuple(
        ChannelLine(**{**row, "expected_value": round(row["expected_value"], 2), "contact_cost": round(row["contact_cost"], 2)})
        for row in sorted(channels.values(), key=lambda r: (r["channel"] == "none", -r["decisions"], r["channel"]))
    )

    at_risk = tuple(
        AtRiskLine(
            customer_id=r.customer_id, churn_probability=r.churn_probability or 0.0,
            status=now_status.get(r.customer_id, "error"),
            treatment_id=records.decisions[r.customer_id].result.selected_treatment if r.customer_id in records.decisions else None,
            signals=tuple(s for s in r.signals if s != "high_churn_risk"),
            reasons=tuple(v for s, v in r.signals.items() if s != "high_churn_risk")
            or ("no other journey signal: the churn score alone",),
        )
        for r in at_risk_all[: config.reporting.top_at_risk]
    )

    notes = []
    if totals.auto_approved:
        notes.append(
            f"WARNING: {totals.auto_approved} decision(s) were approved by '{AUTO_APPROVER}' (--auto-approve, for testing), not by a human."
        )
    overdue = [a.request_id for a in pending if a.overdue]
    if overdue:
        notes.append(
            f"{len(overdue)} pending approval(s) are past their deadline ({', '.join(overdue[:5])}); they expire and release "
            "their capacity at the next processing or approvals command."
        )
    unreadable = [r.customer_id for r in view_risks if r.churn_probability is None]
    if unreadable:
        notes.append(f"Churn risk unknown for {len(unreadable)} customer(s): {', '.join(unreadable[:10])}.")
    if len(at_risk_all) > len(at_risk):
        notes.append(f"{len(at_risk_all)} customers are at risk; the {len(at_risk)} most at risk are listed (reporting.top_at_risk).")

    if plan is None:
        plan_value: list[str] | dict[str, Any] = list(DEFAULT_PLAN)
        plan_source: Literal["given", "default"] = "default"
    else:
        plan_value = dict(plan) if isinstance(plan, Mapping) else [str(step) for step in plan]
        plan_source = "given"
    if goal is None and isinstance(plan_value, dict) and isinstance(plan_value.get("goal"), str):
        goal = plan_value["goal"]
    if goal is None:
        goal = (
            f"Decide the next best treatment for the {len(customers)} customer(s) of run {records.run_id} "
            "within consent, contact policy and daily capacity."
            if view == "portfolio" else f"Explain the decision for customer {customer_id} in run {records.run_id}."
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
            contact_cost=_cost(config, record.result.selected_treatment) if record and record.result.status != "no_action" else None,
            churn_probability=risk.churn_probability,
            signals=dict(risk.signals),
            risk_note=risk.error,
            audit=_audit_lines(e for e in records.audit if e.get("customer_id") == customer_id),
        )

    return Report(
        view=view, run_id=records.run_id, customer_id=customer_id,
        title=title or (f"Executive report: run {records.run_id}" if view == "portfolio"
                        else f"Customer report: {customer_id} in run {records.run_id}"),
        generated_at=generated_at.isoformat(), currency=config.settings.currency, goal=goal,
        plan=plan_value, plan_source=plan_source, high_churn_threshold=threshold,
        selectors=dict(sorted(Counter(d.result.selector for d in decisions if d.result.selector).items())),
        days=records.days, totals=totals, executive_triggers=_triggers(config, totals),
        by_treatment=by_treatment, by_channel=by_channel, capacity=_capacity(config, records, chosen, view),
        approvals_pending=tuple(sorted(pending, key=lambda a: (a.expires_at, a.request_id))), approvals_decided=tuple(decided_approvals),
        data_quality=tuple(issues),
        errors=tuple(ErrorLine(customer_id=e.customer_id, error=e.error, at=e.at) for e in errors),
        at_risk=at_risk, risk_distribution=_risk_bands(view_risks),
        risk_source=f"churn scores read from the data folder when the report was made ({generated_at.isoformat()})",
        customer=detail, notes=tuple(notes),
    )


# --- Markdown ----------------------------------------------------------------------


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

    out += ["", "## Approvals", "", f"### Pending ({len(report.approvals_pending)})", ""]
    if report.approvals_pending:
        out += _table(
            ("request", "customer", "treatment", "rule", "expected value", "requested", "expires", "overdue"),
            ((a.request_id, a.customer_id, a.treatment_id, a.rule, money(a.expected_value, cur), a.requested_at,
              a.expires_at, "yes" if a.overdue else "no") for a in report.approvals_pending),
        )
    else:
        out.append("None.")
    out += ["", f"### Decided ({len(report.approvals_decided)})", ""]
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


# --- charts ------------------------------------------------------------------------

_CHART_LOCK = threading.Lock()
_STATUS_COLOURS = {"success": "#2e7d32", "pending_approval": "#0277bd", "no_action": "#9e9e9e"}


def _figure_class() -> Any | None:
    """matplotlib's Figure with the Agg canvas, imported on first use; None when matplotlib is not installed."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None

    def make(**kwargs: Any) -> Any:
        fig = Figure(**kwargs)
        FigureCanvasAgg(fig)
        return fig

    return make


def _save(fig: Any, path: Path) -> None:
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp.png"
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _chart_decisions(make: Callable[..., Any], report: Report, path: Path) -> bool:
    rows = list(reversed(report.by_treatment))
    if not rows:
        return False
    fig = make(figsize=(8, 0.45 * len(rows) + 1.6))
    ax = fig.subplots()
    labels = [r.treatment_id for r in rows]
    left = [0] * len(rows)
    for status, colour in _STATUS_COLOURS.items():
        values = [getattr(r, status) for r in rows]
        ax.barh(labels, values, left=left, color=colour, label=status.replace("_", " "))
        left = [a + b for a, b in zip(left, values)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total}", va="center", fontsize=8)
    ax.set_xlim(0, max(left) * 1.12 + 0.5)
    ax.set_xlabel("decisions")
    ax.set_title(f"Decisions by treatment - run {report.run_id}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path)
    return True


def _chart_capacity(make: Callable[..., Any], report: Report, path: Path) -> bool:
    rows = [c for c in report.capacity if c.max_per_day]
    if not rows:
        return False
    many_days = len({c.day for c in rows}) > 1
    rows = list(reversed(rows))
    fig = make(figsize=(8, 0.45 * len(rows) + 1.6))
    ax = fig.subplots()
    labels = [f"{c.treatment_id} ({c.day})" if many_days else c.treatment_id for c in rows]
    used = [100.0 * c.used / c.max_per_day for c in rows]  # type: ignore[operator]
    by_run = [100.0 * (c.used_by_run + c.held_by_run) / c.max_per_day for c in rows]  # type: ignore[operator]
    ax.barh(labels, [100.0] * len(rows), color="#eeeeee", label="available")
    ax.barh(labels, used, color="#90caf9", label="used (all runs)")
    ax.barh(labels, by_run, color="#1565c0", label="this run")
    for y, c in enumerate(rows):
        ax.text(101, y, f"{c.used}/{c.max_per_day}", va="center", fontsize=8)
    ax.set_xlim(0, 118)
    ax.set_xlabel("% of the day's capacity")
    day = "" if many_days else f" on {rows[0].day}"
    ax.set_title(f"Capacity used against available{day}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    _save(fig, path)
    return True


def _chart_risk(make: Callable[..., Any], report: Report, path: Path, values: Sequence[float]) -> bool:
    fig = make(figsize=(7, 3.8))
    ax = fig.subplots()
    bins = [i / 10 for i in range(11)]
    threshold = report.high_churn_threshold
    below = [v for v in values if v < threshold]
    above = [v for v in values if v >= threshold]
    ax.hist([below, above], bins=bins, stacked=True, color=["#ffb74d", "#c62828"], edgecolor="white",
            label=["below the threshold", "at risk"])
    ax.axvline(threshold, color="#424242", linestyle="--", label=f"high-churn threshold {threshold:.2f}")
    unknown = next((b.customers for b in report.risk_distribution if b.band == "unknown"), 0)
    ax.set_xlabel("churn probability" + (f" ({unknown} unknown not shown)" if unknown else ""))
    ax.set_ylabel("customers")
    ax.set_xlim(0, 1)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Churn-risk distribution - {report.totals.at_risk_customers} at risk")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _chart_options(make: Callable[..., Any], report: Report, path: Path) -> bool:
    c = report.customer
    d = c.decision if c else None
    if not d:
        return False
    options = []
    if d.get("status") != "no_action" and d.get("expected_value") is not None:
        options.append((f"{d['selected_treatment']} (chosen)", d["expected_value"], "#2e7d32"))
    options += [
        (f"{a['treatment_id']} ({a['reason'].replace('_', ' ')})", a["expected_value"], "#9e9e9e")
        for a in d.get("alternatives", ()) if a.get("expected_value") is not None
    ]
    if not options:
        return False
    options.reverse()
    fig = make(figsize=(8, 0.4 * len(options) + 1.6))
    ax = fig.subplots()
    ax.barh([o[0] for o in options], [o[1] for o in options], color=[o[2] for o in options])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"expected value ({report.currency})")
    ax.set_title(f"Options considered for {c.customer_id}")  # type: ignore[union-attr]
    _save(fig, path)
    return True


def draw_charts(report: Report, folder: Path, churn_values: Sequence[float]) -> tuple[tuple[str, ...], str | None]:
    """Draw the view's PNG charts into ``folder``; (file names, a note when charts could not be drawn)."""
    make = _figure_class()
    if make is None:
        return (), CHARTS_HINT
    if report.view == "portfolio":
        plan = [
            (PORTFOLIO_CHARTS["decisions_by_treatment"], lambda p: _chart_decisions(make, report, p)),
            (PORTFOLIO_CHARTS["capacity_use"], lambda p: _chart_capacity(make, report, p)),
            (PORTFOLIO_CHARTS["risk_distribution"], lambda p: _chart_risk(make, report, p, churn_values)),
        ]
    else:
        plan = [(f"{_file_stem(report)}-options.png", lambda p: _chart_options(make, report, p))]
    drawn, failed = [], []
    with _CHART_LOCK:
        for name, draw in plan:
            path = folder / name
            try:
                if draw(path):
                    drawn.append(name)
                else:
                    path.unlink(missing_ok=True)  # nothing to show this time: no stale picture beside the report
            except Exception as exc:  # a chart must never cost the report itself
                log.warning("report_chart_failed", chart=name, error=f"{type(exc).__name__}: {exc}", exc_info=True)
                failed.append(name)
    note = f"Chart(s) {', '.join(failed)} could not be drawn; see logs/cvm.log." if failed else None
    return tuple(drawn), note


# --- files ---------------------------------------------------------------------------


def safe_name(text: str) -> str:
    """``text`` when it is a safe file name; else a readable slug plus a short hash (never a path)."""
    if _SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:64] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def report_folder(reports_dir: Path, run_id: str) -> Path:
    return reports_dir / safe_name(run_id)


def _file_stem(report: Report) -> str:
    return "report" if report.view == "portfolio" else f"customer-{safe_name(report.customer_id or '')}"


@dataclass(frozen=True)
class WrittenReport:
    report: Report
    folder: Path
    markdown_path: Path
    json_path: Path
    chart_paths: tuple[Path, ...]


def write_report(report: Report, reports_dir: Path, churn_values: Sequence[float] = ()) -> WrittenReport:
    """Write the charts, then the JSON and the Markdown, under ``reports_dir/<run_id>/``."""
    folder = report_folder(reports_dir, report.run_id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report folder {folder} ({exc.strerror or exc}); choose another --output-dir") from None
    charts, note = draw_charts(report, folder, churn_values)
    report = report.model_copy(update={"charts": charts, "charts_note": note})
    stem = _file_stem(report)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    try:
        write_json_atomic(json_path, report.model_dump(mode="json"))
        write_text_atomic(md_path, render_markdown(report))
    except OSError as exc:
        raise UsageError(f"cannot write the report in {folder} ({exc.strerror or exc}); choose another --output-dir") from None
    return WrittenReport(report, folder, md_path, json_path, tuple(folder / c for c in charts))
