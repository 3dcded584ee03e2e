"""The Report agent: the executive report of a run, for people (Markdown, charts) and machines (JSON), at any size.

The portfolio view never holds a Python object per customer: the run's numbers
are grouped in the ledger's SQL (``cvm.tools.run_aggregates`` through
``cvm.reporting.portfolio``) and the churn picture comes from the Insight agent
(``forecast_portfolio``: every score counted in the columnar churn feed, journeys
read only for the most at risk and a sample per segment). The single-customer
view reads that customer's rows only. ``cvm.reporting`` writes
``<output_dir>/reports/<run_id>/report.md|json`` (portfolio) or
``customer-<ID>.md|json`` (one customer) with PNG charts beside them.

Where churn comes from: a decision records its insights as text, not the
churn probability, and the orchestrator stays as it is. Parsing numbers back
out of words would be brittle, so churn is read from the data folder when the
report is made (the same rules the journey uses) and the report says so; the
decision's own insights (as they were when it was decided) are shown beside
them in the customer view.

Mission Control over time: every portfolio report keeps a snapshot of the
run's KPIs (``cvm.tools.snapshot_store``); ``report_trend`` lists every run in
the ledger with its snapshot, taking the missing ones (a run never reported on)
and refreshing from the ledger those whose approvals were still pending.
Sections from other parts of the system (risk events, agent performance) plug
in through ``add_section_source`` (run id -> ``ReportSection``s) and
``add_report_hook`` (the built report -> sections); they are rendered after the
standard sections.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import tzinfo
from pathlib import Path

from cvm.agents.base import BaseAgent, expect, handles
from cvm.agents.data import DataAgent
from cvm.agents.insight import InsightAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.messages import (
    BuildJourney,
    CustomerDataResponse,
    ForecastPortfolio,
    GenerateReport,
    GetCustomerData,
    JourneyResponse,
    PortfolioChurn,
    ReportArtifact,
    ReportTrend,
    TrendArtifact,
)
from cvm.reporting import REPORTS_FOLDER, CustomerRisk, ReportLedger, build_report, collect_run, write_report
from cvm.reporting.build import status_now
from cvm.reporting.collect import unknown_run
from cvm.reporting.files import WrittenReport
from cvm.reporting.model import Report, ReportSection
from cvm.reporting.portfolio import PortfolioRecords, PortfolioRisk, build_portfolio_report, collect_portfolio
from cvm.reporting.trend import Snapshot, Trend, ordered, risk_from_snapshot, take_snapshot, write_trend
from cvm.tools.churn_feed import PortfolioData
from cvm.tools.clock import Clock
from cvm.tools.run_aggregates import RunAggregates
from cvm.tools.snapshot_store import SnapshotStore
from cvm.utils.config import CVMConfig
from cvm.utils.errors import CVMError, UsageError
from cvm.utils.progress import NO_PROGRESS, Progress

SectionSource = Callable[[str], Sequence[ReportSection]]
"""Run id -> extra sections for its portfolio report (the extension point for risk events, agent performance ...)."""
ReportHook = Callable[[Report, str | None], Sequence[ReportSection]]
"""(built portfolio report, when its run decided) -> extra sections; for what needs the report's own numbers
(the risk events its executive triggers open or close, ``cvm.agents.mission_control``)."""


def portfolio_risk(churn: PortfolioChurn) -> PortfolioRisk:
    """The Insight agent's answer in the reporting package's terms."""
    return PortfolioRisk(
        customers=churn.customers, scored=churn.scored, at_risk=churn.at_risk, bands=churn.bands, histogram=churn.histogram,
        most_at_risk=[
            CustomerRisk(a.customer_id, a.churn_probability, dict(zip(a.signals, a.reasons))) for a in churn.most_at_risk
        ],
        unknown_ids=churn.unknown_ids,
        segments=churn.segments,
        horizon_days=churn.horizon_days, sample_per_segment=churn.sample_per_segment,
        errors=tuple(e.get("error", "") for e in churn.errors if "customer_id" not in e),
    )


class ReportAgent(BaseAgent):
    """Reads the ledger (through its aggregates) and asks the Insight agent for churn; ``cvm.reporting`` writes the files."""

    name = "ReportAgent"

    def __init__(
        self, *, ledger: ReportLedger, config: CVMConfig, output_dir: Path, clock: Clock, data: DataAgent, journey: JourneyAgent,
        insight: InsightAgent, aggregates: RunAggregates, portfolio: PortfolioData, snapshots: SnapshotStore,
        progress: Progress = NO_PROGRESS,
    ):
        self._ledger = ledger
        self._config = config
        self._reports_dir = Path(output_dir) / REPORTS_FOLDER
        self._clock = clock
        self._data = data
        self._journey = journey
        self._insight = insight
        self._aggregates = aggregates
        self._portfolio = portfolio
        self._snapshots = snapshots
        self._progress = progress
        self._section_sources: list[SectionSource] = []
        self._report_hooks: list[ReportHook] = []

    @property
    def reports_dir(self) -> Path:
        return self._reports_dir

    def use_progress(self, progress: Progress) -> None:
        """Report each stage here from now on (the CLI passes a terminal bar); the Insight agent reports there too."""
        self._progress = progress
        self._insight.use_progress(progress)

    def add_section_source(self, source: SectionSource) -> None:
        """Add sections to every portfolio report from now on (risk events, agent performance ...)."""
        self._section_sources.append(source)

    def add_report_hook(self, hook: ReportHook) -> None:
        """Call ``hook`` with every portfolio report once its numbers are known, before it is written; its sections are added."""
        self._report_hooks.append(hook)

    def _zone(self) -> tzinfo:
        tz = self._clock.now().tzinfo
        assert tz is not None  # the clocks are always timezone-aware
        return tz

    def _risk(self, customer_id: str) -> CustomerRisk:
        """One customer's churn risk now, reading only that customer's rows from the data folder."""
        reader = DataAgent(self._portfolio.subset([customer_id]), self._portfolio.customer_id_pattern)
        try:
            data = expect(reader.process(GetCustomerData(customer_id=customer_id)), CustomerDataResponse).data
            journey = expect(
                self._journey.process(BuildJourney(customer_id=customer_id, customer_data=data)), JourneyResponse
            ).journey
        except CVMError as exc:
            return CustomerRisk(customer_id, error=str(exc))
        churn = journey.features.churn_probability
        if churn is not None and not math.isfinite(churn):  # a risk band, an average or a chart cannot use it
            return CustomerRisk(customer_id, None, dict(journey.signals), error=f"the churn probability in the data is {churn}, not a number")
        return CustomerRisk(customer_id, churn, dict(journey.signals))

    @handles(GenerateReport)
    def _generate(self, message: GenerateReport) -> ReportArtifact:
        if message.customer_id is not None:
            return _artifact(self._customer_report(message, message.customer_id))
        report, records = self._portfolio_report(message.run_id, allow_empty=message.allow_empty, message=message)
        extra = [section for hook in self._report_hooks for section in hook(report, records.first_decided_at)]
        if extra:
            report = report.model_copy(update={"sections": (*report.sections, *extra)})
        with self._progress.stage("writing the report and charts", 1) as stage:
            written = write_report(report, self._reports_dir)
            stage.advance()
        if records.customers:
            self._keep_snapshot(take_snapshot(written.report, records))
        return _artifact(written)

    def _customer_report(self, message: GenerateReport, customer_id: str) -> WrittenReport:
        self._data.check_customer_id(customer_id)
        if not (message.allow_empty or self._aggregates.knows(message.run_id)):
            raise unknown_run(message.run_id)
        records = collect_run(
            self._ledger, message.run_id, self._zone(), self._config.treatments, allow_empty=True, customer_id=customer_id
        )
        if customer_id not in records.decisions and customer_id not in records.errors:
            first = next(self._aggregates.customer_id_chunks(message.run_id, 11), [])
            shown = ", ".join(sorted(first)[:10]) + (" and more" if len(first) > 10 else "")
            raise UsageError(f"customer {customer_id} has no decision in run {message.run_id}; the run decided {shown or 'nobody'}")
        report = build_report(
            records, {customer_id: self._risk(customer_id)}, self._config, generated_at=self._clock.now(),
            customer_id=customer_id, goal=message.goal, plan=message.plan, title=message.title,
        )
        return write_report(report, self._reports_dir)

    def _portfolio_report(
        self, run_id: str, *, allow_empty: bool = False, message: GenerateReport | None = None, top: int | None = None,
        sample: int = 200, risk: PortfolioRisk | None = None,
    ) -> tuple[Report, PortfolioRecords]:
        """The run's portfolio report (not yet written) and the grouped rows it was built from (``risk``: churn already known)."""
        now = self._clock.now()
        records = collect_portfolio(
            self._aggregates, run_id, self._zone(), list(self._config.treatments), now, allow_empty=allow_empty,
            progress=self._progress,
        )
        if risk is None:
            risk = portfolio_risk(expect(self._insight.process(ForecastPortfolio(
                run_id=run_id, top=self._config.reporting.top_at_risk if top is None else top, sample_per_segment=sample,
            )), PortfolioChurn))
        top_ids = [r.customer_id for r in risk.most_at_risk]
        decided = {
            cid: (status_now(status, approval), treatment)
            for cid, (status, treatment, approval) in self._aggregates.decided_of(run_id, top_ids).items()
        }
        # Extra sections only for a report that will be written (a trend's snapshot needs the numbers alone).
        sections = [section for source in self._section_sources for section in source(run_id)] if message else []
        report = build_portfolio_report(
            records, risk, decided, self._config, generated_at=now,
            goal=message.goal if message else None, plan=message.plan if message else None,
            title=message.title if message else None, sections=sections,
        )
        return report, records

    def _keep_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshots.put(snapshot.run_id, snapshot.run_at, snapshot.taken_at, snapshot.model_dump(mode="json"))

    @handles(ReportTrend)
    def _trend(self, message: ReportTrend) -> TrendArtifact:
        """Every run's snapshot: missing ones taken, and those with approvals still pending refreshed from the ledger.

        A run's approvals are decided (or expire) after it, which moves its backlog, delay, live contacts and
        live value; its churn stays as read when the snapshot was first taken.
        """
        runs = self._aggregates.runs()
        known = {r.run_id for r in runs}
        snapshots = {run_id: Snapshot.model_validate(doc) for run_id, doc in self._snapshots.all().items() if run_id in known}
        missing = [r.run_id for r in runs if r.run_id not in snapshots]
        stale = [run_id for run_id, s in snapshots.items() if s.approvals_pending]
        with self._progress.stage("taking and refreshing snapshots", len(missing) + len(stale)) as stage:
            for run_id in missing:
                report, records = self._portfolio_report(run_id, top=0, sample=0)
                snapshots[run_id] = take_snapshot(report, records)
                self._keep_snapshot(snapshots[run_id])
                stage.advance()
            for run_id in stale:
                before = snapshots[run_id]
                report, records = self._portfolio_report(run_id, risk=risk_from_snapshot(before))
                snapshots[run_id] = take_snapshot(report, records, churn_of=before)
                self._keep_snapshot(snapshots[run_id])
                stage.advance()
        trend = Trend(
            generated_at=self._clock.now().isoformat(), runs=ordered(list(snapshots.values())),
            computed=tuple(missing), refreshed=tuple(stale),
        )
        trend, md_path, json_path = write_trend(trend, self._reports_dir)
        return TrendArtifact(
            markdown_path=str(md_path), json_path=str(json_path), charts=tuple(str(self._reports_dir / c) for c in trend.charts),
            charts_note=trend.charts_note, runs=tuple(s.run_id for s in trend.runs), computed=trend.computed,
            refreshed=trend.refreshed,
        )


def _artifact(written: WrittenReport) -> ReportArtifact:
    report, t = written.report, written.report.totals
    return ReportArtifact(
        run_id=report.run_id, view=report.view, customer_id=report.customer_id,
        markdown_path=str(written.markdown_path), json_path=str(written.json_path),
        charts=tuple(str(p) for p in written.chart_paths), charts_note=report.charts_note,
        executive_triggers_fired=tuple(trig.name for trig in report.fired),
        headlines=tuple(trig.headline for trig in report.fired),
        customers=t.customers, by_status=t.by_status, by_status_now=t.by_status_now,
        expected_value_total=t.expected_value_total,
        contact_cost_total=t.contact_cost_total, currency=report.currency, at_risk_customers=t.at_risk_customers,
        pending_approvals=t.pending_approvals, capacity_rejections=t.capacity_rejections, open_errors=t.open_errors,
    )
