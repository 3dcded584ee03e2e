"""Mission Control over time: one small snapshot of KPIs per run, and the trend across runs.

A snapshot holds aggregates only (a few hundred bytes whatever the run's size):
contacts, expected and measured value, churn bands, capacity use, the approval
backlog and delay. The Report agent takes one whenever it reports on a run and
for every run in the ledger that has none when the trend is asked for
(``cvm report --trend``). Churn is the data as it was when the snapshot was
taken (``churn_read_at``); measured value stays empty until the ledger records
outcomes of contacts: it is never estimated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from cvm.reporting.build import RISK_BANDS
from cvm.reporting.markdown import _table, money
from cvm.reporting.model import Report
from cvm.reporting.portfolio import PortfolioRecords, PortfolioRisk
from cvm.tools.results import write_json_atomic, write_text_atomic
from cvm.utils.errors import UsageError

SNAPSHOT_VERSION = 1
TREND_STEM = "trend"


class Snapshot(BaseModel):
    """One run's portfolio KPIs, as they were when the snapshot was taken."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    snapshot_version: int = SNAPSHOT_VERSION
    run_id: str
    run_at: str | None
    """When the run wrote to the ledger first (UTC)."""
    taken_at: str
    currency: str
    customers: int
    contacts: int
    """Decisions that chose a treatment (success or pending approval when decided)."""
    contacts_now: int
    """Of which still live after the approvals decided since."""
    expected_value: float
    expected_value_now: float
    contact_cost: float
    measured_value: float | None = None
    """From outcomes; None while the ledger records none (shown as not yet measured)."""
    churn_bands: dict[str, int]
    at_risk: int
    churn_read_at: str
    segments: dict[str, dict[str, float | int | None]] = {}
    """Segment -> customers, mean churn now, at risk, and the forecast mean at the horizon (None when not forecast)."""
    forecast_horizon_days: int | None = None
    capacity_available: int
    """Sum of the day's maximum over the capped treatments on the run's day(s)."""
    capacity_used_by_run: int
    capacity_held_by_run: int
    capacity_used_all_runs: int
    approvals_pending: int
    approvals_decided: int
    approvals_overdue: int
    approval_mean_hours: float | None
    approval_max_hours: float | None
    oldest_pending_hours: float | None
    open_errors: int

    @property
    def capacity_use_pct(self) -> float | None:
        """What the run gave and holds, as a share of the capacity available on its day(s)."""
        if not self.capacity_available:
            return None
        return round(100.0 * (self.capacity_used_by_run + self.capacity_held_by_run) / self.capacity_available, 1)


def take_snapshot(report: Report, records: PortfolioRecords, churn_of: Snapshot | None = None) -> Snapshot:
    """A portfolio report's KPIs (the report is built from aggregates, so this costs nothing more).

    ``churn_of``: an earlier snapshot of the run whose churn figures are kept as they were read (a refresh).
    """
    if report.view != "portfolio":
        raise ValueError("a snapshot is taken of a portfolio report")
    t = report.totals
    capped = [c for c in report.capacity if c.max_per_day]
    a = records.approvals
    snapshot = Snapshot(
        run_id=report.run_id, run_at=records.first_decided_at, taken_at=report.generated_at, currency=report.currency,
        customers=t.customers, contacts=t.given,
        contacts_now=sum(n for status, n in t.by_status_now.items() if status in ("success", "pending_approval")),
        expected_value=t.expected_value_total, expected_value_now=t.expected_value_now, contact_cost=t.contact_cost_total,
        measured_value=report.measured_value, churn_bands={b.band: b.customers for b in report.risk_distribution},
        at_risk=t.at_risk_customers, churn_read_at=report.generated_at,
        segments={
            s.segment: {"customers": s.customers, "churn_now_mean": s.churn_now_mean, "at_risk": s.at_risk,
                        "forecast_mean": s.sample_churn_at_horizon_mean if s.sampled else None}
            for s in report.segments
        },
        forecast_horizon_days=report.forecast_horizon_days,
        capacity_available=sum(c.max_per_day or 0 for c in capped),
        capacity_used_by_run=sum(c.used_by_run for c in report.capacity),
        capacity_held_by_run=sum(c.held_by_run for c in report.capacity),
        capacity_used_all_runs=sum(c.used for c in capped),
        approvals_pending=t.pending_approvals, approvals_decided=t.decided_approvals, approvals_overdue=a.overdue,
        approval_mean_hours=a.mean_hours_to_decision, approval_max_hours=a.max_hours_to_decision,
        oldest_pending_hours=a.oldest_pending_hours, open_errors=t.open_errors,
    )
    if churn_of is None:
        return snapshot
    kept = ("churn_bands", "at_risk", "churn_read_at", "segments", "forecast_horizon_days")
    return snapshot.model_copy(update={name: getattr(churn_of, name) for name in kept})


class Trend(BaseModel):
    """Every run's snapshot, oldest first: the machine-readable trend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    generated_at: str
    runs: tuple[Snapshot, ...]
    computed: tuple[str, ...] = ()
    """Runs whose snapshot was taken for this trend (no report had been made of them)."""
    refreshed: tuple[str, ...] = ()
    """Runs whose ledger KPIs were read again (approvals were pending); their churn stays as first read."""
    charts: tuple[str, ...] = ()
    charts_note: str | None = None


def risk_from_snapshot(snapshot: Snapshot) -> PortfolioRisk:
    """The churn counts a snapshot kept, to rebuild its run's ledger KPIs without reading the data again."""
    unknown = snapshot.churn_bands.get("unknown", 0)
    return PortfolioRisk(
        customers=snapshot.customers, scored=snapshot.customers - unknown, at_risk=snapshot.at_risk,
        bands=[snapshot.churn_bands.get(f"{lo:.1f}-{hi:.1f}", 0) for lo, hi in RISK_BANDS], histogram=[(0, 0)] * 10,
        most_at_risk=(), unknown_ids=(),
    )


def _hours(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.1f} h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _segment_trend(runs: Sequence[Snapshot]) -> list[str]:
    """Each segment's churn per run, and the Insight agent's forecast where the snapshot's report made one."""
    rows = [(s, name, seg) for s in runs for name, seg in sorted(s.segments.items())]
    if not rows:
        return []
    out = ["", "## Churn by segment", "", "Mean churn now over every customer of the segment; the forecast is the Insight agent's"
           " trajectory of a sample of them (kept when the run's report was made).", ""]
    return out + _table(
        ("run", "segment", "customers", "mean churn now", "at risk", "forecast at horizon"),
        ((s.run_id, name, seg.get("customers"), _share(seg.get("churn_now_mean")), seg.get("at_risk"),
          f"{_share(seg.get('forecast_mean'))} at {s.forecast_horizon_days} days" if seg.get("forecast_mean") is not None else "-")
         for s, name, seg in rows),
    )


def _share(value: float | int | None) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def render_trend_markdown(trend: Trend) -> str:
    """The KPIs over runs, one row per run, oldest first."""
    runs = trend.runs
    out = ["# Mission Control: KPIs over runs", "", f"- Generated: {trend.generated_at}", f"- Runs: {len(runs)}", ""]
    if not runs:
        return "\n".join([*out, "The ledger holds no recorded run yet (dry runs are not recorded).", ""])
    if trend.computed:
        out += [f"Snapshots taken now for {len(trend.computed)} run(s) never reported on; their churn is the data as it is now.", ""]
    if trend.refreshed:
        out += [
            f"Approvals, live contacts and live value read again for {len(trend.refreshed)} run(s) whose approvals were pending;"
            " their churn is as first read.", "",
        ]
    cur = runs[-1].currency
    out += ["## Contacts and value", ""] + _table(
        ("run", "run at", "customers", "contacts", "live now", "expected value", "live value now", "contact cost", "measured value"),
        ((s.run_id, s.run_at, s.customers, s.contacts, s.contacts_now, money(s.expected_value, cur), money(s.expected_value_now, cur),
          money(s.contact_cost, cur), money(s.measured_value, cur) if s.measured_value is not None else "not yet measured")
         for s in runs),
    )
    bands = list(dict.fromkeys(b for s in runs for b in s.churn_bands))
    out += ["", "## Churn bands", "", "Customers per churn-probability band, as read when each snapshot was taken.", ""]
    out += _table(("run", "read at", *bands, "at risk"), ((s.run_id, s.churn_read_at, *(s.churn_bands.get(b, 0) for b in bands), s.at_risk) for s in runs))
    out += _segment_trend(runs)
    out += ["", "## Capacity", "", "Given and held by the run against the capacity of its day(s) (capped treatments).", ""]
    out += _table(
        ("run", "available", "used by the run", "held for approval", "use", "used by all runs"),
        ((s.run_id, s.capacity_available, s.capacity_used_by_run, s.capacity_held_by_run, _pct(s.capacity_use_pct), s.capacity_used_all_runs)
         for s in runs),
    )
    out += ["", "## Approvals", ""] + _table(
        ("run", "backlog (pending)", "overdue", "decided", "mean delay", "longest delay", "oldest pending", "open errors"),
        ((s.run_id, s.approvals_pending, s.approvals_overdue, s.approvals_decided, _hours(s.approval_mean_hours),
          _hours(s.approval_max_hours), _hours(s.oldest_pending_hours), s.open_errors) for s in runs),
    )
    out += ["", "Measured value stays 'not yet measured' until the ledger records outcomes of contacts; it is never estimated."]
    if trend.charts:
        out += ["", "## Charts", ""] + [f"![KPIs over runs]({c})" for c in trend.charts]
    if trend.charts_note:
        out += ["", trend.charts_note]
    return "\n".join(out).rstrip() + "\n"


def write_trend(trend: Trend, reports_dir: Path, draw: bool = True) -> tuple[Trend, Path, Path]:
    """``trend.json``, ``trend.md`` and ``trend.png`` under ``reports_dir``."""
    from cvm.reporting.charts import draw_trend

    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the report folder {reports_dir} ({exc.strerror or exc}); choose another --output-dir") from None
    if draw:
        charts, note = draw_trend(trend, reports_dir)
        trend = trend.model_copy(update={"charts": charts, "charts_note": note})
    json_path, md_path = reports_dir / f"{TREND_STEM}.json", reports_dir / f"{TREND_STEM}.md"
    document = trend.model_dump(mode="json")
    for snap, row in zip(trend.runs, document["runs"]):
        row["capacity_use_pct"] = snap.capacity_use_pct
    try:
        write_json_atomic(json_path, document)
        write_text_atomic(md_path, render_trend_markdown(trend))
    except OSError as exc:
        raise UsageError(f"cannot write the trend in {reports_dir} ({exc.strerror or exc}); choose another --output-dir") from None
    return trend, md_path, json_path


def ordered(snapshots: Sequence[Snapshot]) -> tuple[Snapshot, ...]:
    """Oldest run first (by when it ran, then by id)."""
    return tuple(sorted(snapshots, key=lambda s: (s.run_at or s.taken_at, s.run_id)))
