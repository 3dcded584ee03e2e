"""The portfolio report at any size: built from grouped rows, never from one Python object per customer.

``collect_portfolio`` asks the ledger's SQL (``cvm.tools.run_aggregates``) for the
run's decisions grouped by status, treatment, channel, selector and approval state,
its allocations per treatment and day, its approval requests counted and timed, and
the first lines of each list. ``build_portfolio_report`` turns those and the churn
picture (``PortfolioRisk``, from the Insight agent) into the same ``Report`` the
customer view uses, with the same numbers the per-decision build computes (the
report tests check both against SQL on the ledger file).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from cvm.reporting.build import (
    RISK_BANDS,
    approval_line,
    at_risk_lines,
    auto_approved_warning,
    capacity_lines,
    cost,
    default_goal,
    goal_and_plan,
    overdue_note,
    status_now,
    treatment_and_channel_lines,
    triggers,
    unknown_band,
)
from cvm.reporting.collect import CustomerRisk, unknown_run
from cvm.reporting.model import (
    DataQualityLine,
    ErrorLine,
    HistogramBin,
    Report,
    ReportSection,
    RiskBand,
    SegmentLine,
    Totals,
)
from cvm.tools.ledger import utc_text
from cvm.tools.run_aggregates import ApprovalSummary, DecisionGroup, OpenError, RunAggregates
from cvm.utils.config import CVMConfig
from cvm.utils.progress import NO_PROGRESS, Progress

LIST_LIMIT = 50
"""Long lists (approvals, data-quality issues, errors) show this many lines; the totals count every one."""
_GIVEN = ("success", "pending_approval")


@dataclass(frozen=True)
class PortfolioRecords:
    """A run as grouped rows: what the portfolio report needs, a few hundred rows at most whatever the run's size."""

    run_id: str
    groups: list[DecisionGroup]
    open_errors: int
    errors: list[OpenError]
    data_quality: list[tuple[str, tuple[str, ...]]]
    allocations: dict[tuple[str, str, str], int]
    approvals: ApprovalSummary
    capacity_used: dict[tuple[str, str], int]
    days: tuple[str, ...]
    first_decided_at: str | None = None

    @property
    def decisions(self) -> int:
        return sum(g.customers for g in self.groups)

    @property
    def customers(self) -> int:
        return self.decisions + self.open_errors


@dataclass(frozen=True)
class PortfolioRisk:
    """The run's customers' churn as the Insight agent sees it now: counts for all, evidence for the most at risk."""

    customers: int
    scored: int
    at_risk: int
    bands: Sequence[int]
    histogram: Sequence[tuple[int, int]]
    most_at_risk: Sequence[CustomerRisk]
    unknown_ids: Sequence[str]
    segments: Sequence[SegmentLine] = ()
    horizon_days: int | None = None
    sample_per_segment: int = 0
    errors: Sequence[str] = field(default_factory=tuple)


def _local_days(span: tuple[str, str] | None, tz: tzinfo) -> list[str]:
    """Every local day from the first to the last instant of a span (the days a run wrote its audit entries)."""
    if span is None:
        return []
    first, last = (datetime.fromisoformat(t).astimezone(tz).date() for t in span)
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def collect_portfolio(
    aggregates: RunAggregates, run_id: str, tz: tzinfo, treatment_ids: Sequence[str], now: datetime, *,
    allow_empty: bool = False, limit: int = LIST_LIMIT, progress: Progress = NO_PROGRESS,
) -> PortfolioRecords:
    """The run's grouped rows; ``UsageError`` when the ledger knows nothing of it (unless ``allow_empty``)."""
    with progress.stage("reading the ledger", 5) as stage:
        groups = aggregates.decision_groups(run_id)
        stage.advance()
        open_errors, errors = aggregates.open_errors(run_id, limit)
        allocations = aggregates.allocation_counts(run_id)
        stage.advance()
        approvals = aggregates.approvals(run_id, utc_text(now.astimezone(timezone.utc)), limit)
        stage.advance()
        if not (groups or open_errors or allocations or approvals.by_status or allow_empty):
            raise unknown_run(run_id)
        quality = aggregates.data_quality(run_id, limit) if any(g.data_quality_customers for g in groups) else []
        stage.advance()
        days = sorted({d for _, d, _ in allocations} | aggregates.approval_days(run_id)) or _local_days(aggregates.audit_span(run_id), tz)
        used_ids = {t for t, _, _ in allocations}
        counters = aggregates.capacity_used(set(days))
        capacity = {(tid, day): counters.get((tid, day), 0) for day in days for tid in sorted(set(treatment_ids) | used_ids)}
        span = aggregates.audit_span(run_id)
        stage.advance()
    return PortfolioRecords(
        run_id=run_id, groups=groups, open_errors=open_errors, errors=errors, data_quality=quality, allocations=allocations,
        approvals=approvals, capacity_used=capacity, days=tuple(days), first_decided_at=span[0] if span else None,
    )


def _totals(records: PortfolioRecords, risk: PortfolioRisk, config: CVMConfig) -> Totals:
    groups, a = records.groups, records.approvals
    now = Counter[str]()
    for g in groups:
        now[status_now(g.status, g.approval_status)] += g.customers
    given = [g for g in groups if g.status in _GIVEN]
    pending = a.by_status.get("pending", 0)
    return Totals(
        customers=records.customers,
        decisions_recorded=records.decisions,
        by_status=dict(sorted((_count(groups, lambda g: g.status) + Counter({"error": records.open_errors})).items())),
        by_status_now=dict(sorted((now + Counter({"error": records.open_errors})).items())),
        given=sum(g.customers for g in given),
        expected_value_total=round(sum(g.expected_value for g in given), 2),
        contact_cost_total=round(sum(cost(config, g.treatment_id) * g.customers for g in given), 2),
        expected_value_now=round(sum(g.expected_value for g in given if status_now(g.status, g.approval_status) in _GIVEN), 2),
        at_risk_customers=risk.at_risk,
        pending_approvals=pending,
        decided_approvals=sum(a.by_status.values()) - pending,
        capacity_rejections=sum(g.capacity_rejections for g in groups),
        open_errors=records.open_errors,
        customers_with_data_quality_issues=sum(g.data_quality_customers for g in groups),
        data_quality_issues=sum(g.data_quality_issues for g in groups),
        auto_approved=sum(g.auto_approved for g in groups) + a.auto_decided_customers,
    )


def _count(groups: Sequence[DecisionGroup], key: Any) -> Counter[str]:
    counts = Counter[str]()
    for g in groups:
        if key(g) is not None:
            counts[key(g)] += g.customers
    return counts


def _risk_distribution(risk: PortfolioRisk) -> tuple[RiskBand, ...]:
    bands = [
        RiskBand(band=f"{lo:.1f}-{hi:.1f}", lower=lo, upper=hi, customers=n) for (lo, hi), n in zip(RISK_BANDS, risk.bands)
    ]
    return (*bands, unknown_band(risk.customers - risk.scored))


def _notes(records: PortfolioRecords, risk: PortfolioRisk, totals: Totals, listed_at_risk: int, limit: int) -> list[str]:
    notes = []
    if totals.auto_approved:
        notes.append(auto_approved_warning(totals.auto_approved))
    a = records.approvals
    if a.overdue:
        notes.append(overdue_note(a.overdue, [p.request_id for p in a.pending[: a.overdue]]))
    unknown = risk.customers - risk.scored
    if unknown:
        shown = ", ".join(risk.unknown_ids[:10]) + (f" and {unknown - 10} more" if unknown > 10 else "")
        notes.append(f"Churn risk unknown for {unknown} customer(s): {shown}.")
    if totals.at_risk_customers > listed_at_risk:
        notes.append(
            f"{totals.at_risk_customers} customers are at risk; the {listed_at_risk} most at risk are listed (reporting.top_at_risk)."
        )
    for what, total in (
        ("pending approvals", totals.pending_approvals), ("decided approvals", totals.decided_approvals),
        ("customers with data-quality issues", totals.customers_with_data_quality_issues), ("open errors", totals.open_errors),
    ):
        if total > limit:
            notes.append(f"The first {limit} of {total} {what} are listed; the totals count them all.")
    notes += [f"Churn feed: {e}" for e in risk.errors]
    return notes


def _forecast_note(risk: PortfolioRisk) -> str | None:
    if risk.horizon_days is None or not risk.segments:
        return None
    return (
        f"Churn now counts every customer's score. The {risk.horizon_days}-day forecast projects the journeys of a fixed"
        f" pseudo-random sample of up to {risk.sample_per_segment} scored customers per segment (the Insight agent's"
        " trajectory model: the score's hazard scaled by the journey's trends); the sample's mean now is shown beside it."
    )


def build_portfolio_report(
    records: PortfolioRecords,
    risk: PortfolioRisk,
    decided: Mapping[str, tuple[str, str | None]],
    config: CVMConfig,
    *,
    generated_at: datetime,
    goal: str | None = None,
    plan: Sequence[str] | Mapping[str, Any] | None = None,
    title: str | None = None,
    sections: Sequence[ReportSection] = (),
    limit: int = LIST_LIMIT,
) -> Report:
    """The whole run's report (``decided``: status now and treatment of the customers listed as most at risk)."""
    totals = _totals(records, risk, config)
    by_treatment, by_channel = treatment_and_channel_lines(
        config, ((g.status, g.treatment_id, g.channel, g.customers, g.expected_value) for g in records.groups)
    )
    at_risk = at_risk_lines(risk.most_at_risk[: config.reporting.top_at_risk], decided)
    goal_text, plan_value, plan_source = goal_and_plan(goal, plan, default_goal(records.run_id, records.customers))
    a = records.approvals
    return Report(
        view="portfolio", run_id=records.run_id, customer_id=None,
        title=title or f"Executive report: run {records.run_id}",
        generated_at=generated_at.isoformat(), currency=config.settings.currency, goal=goal_text,
        plan=plan_value, plan_source=plan_source, high_churn_threshold=config.scoring.high_churn_threshold,
        selectors=dict(sorted(_count(records.groups, lambda g: g.selector).items())),
        days=records.days, totals=totals, executive_triggers=triggers(config, totals),
        by_treatment=by_treatment, by_channel=by_channel,
        capacity=capacity_lines(config, records.capacity_used, records.allocations, "portfolio"),
        approvals_pending=tuple(approval_line(p, generated_at) for p in a.pending),
        approvals_decided=tuple(approval_line(p, generated_at) for p in a.decided),
        data_quality=tuple(DataQualityLine(customer_id=cid, issues=issues) for cid, issues in records.data_quality),
        errors=tuple(ErrorLine(customer_id=e.customer_id, error=e.error, at=e.at) for e in records.errors),
        at_risk=at_risk, risk_distribution=_risk_distribution(risk),
        risk_source=f"churn scores read from the data folder when the report was made ({generated_at.isoformat()})",
        notes=tuple(_notes(records, risk, totals, len(at_risk), limit)),
        churn_histogram=tuple(
            HistogramBin(lower=i / 10, upper=(i + 1) / 10, below=below, at_risk=hot) for i, (below, hot) in enumerate(risk.histogram)
        ),
        segments=tuple(risk.segments), forecast_horizon_days=risk.horizon_days, forecast_note=_forecast_note(risk),
        list_limit=limit, sections=tuple(sections),
    )
