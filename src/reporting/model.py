"""The report's typed model: its JSON dump is the machine-readable report; the file names derive from it."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

REPORT_VERSION = 1
View = Literal["portfolio", "customer"]
PORTFOLIO_CHARTS = {
    "decisions_by_treatment": "decisions_by_treatment.png",
    "capacity_use": "capacity_use.png",
    "risk_distribution": "risk_distribution.png",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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


class HistogramBin(_Row):
    """Customers whose churn probability falls in [lower, upper), split at the high-churn threshold."""

    lower: float
    upper: float
    below: int
    at_risk: int


class SegmentLine(_Row):
    """A customer segment's churn now (every customer) and its forecast (a fixed sample's journeys)."""

    segment: str
    customers: int
    scored: int
    churn_now_mean: float | None
    at_risk: int
    sampled: int
    sample_churn_now_mean: float | None
    sample_churn_at_horizon_mean: float | None
    rising: int
    drivers: dict[str, int]


class ReportSection(_Row):
    """A section another part of the system adds to the report (e.g. risk events, agent performance), rendered as given."""

    title: str
    lines: tuple[str, ...]
    """Markdown lines (each stays one line in the report)."""


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
    churn_histogram: tuple[HistogramBin, ...] = ()
    """The portfolio's churn probabilities in ten bins (the risk chart draws these)."""
    segments: tuple[SegmentLine, ...] = ()
    forecast_horizon_days: int | None = None
    forecast_note: str | None = None
    measured_value: float | None = None
    """Value measured from outcomes; None until the ledger records outcomes."""
    measured_note: str = "not yet measured (the ledger records no outcomes of contacts)"
    list_limit: int | None = None
    """Long lists (approvals, data quality, errors) show at most this many lines; the totals count them all."""
    sections: tuple[ReportSection, ...] = ()
    """Extension point: sections added by other parts of the system, rendered after the standard ones."""
    notes: tuple[str, ...] = ()
    charts: tuple[str, ...] = ()
    """Chart file names, beside the report."""
    charts_note: str | None = None

    @property
    def fired(self) -> tuple[ExecutiveTrigger, ...]:
        return tuple(t for t in self.executive_triggers if t.fired)


# --- names ---------------------------------------------------------------------------


def safe_name(text: str) -> str:
    """``text`` when it is a safe file name; else a readable slug plus a short hash (never a path)."""
    if _SAFE_NAME.fullmatch(text) and text not in (".", ".."):
        return text
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:64] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def file_stem(report: Report) -> str:
    return "report" if report.view == "portfolio" else f"customer-{safe_name(report.customer_id or '')}"
