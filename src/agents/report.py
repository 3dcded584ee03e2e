"""The Report agent: the executive report of a run, for people (Markdown, charts) and machines (JSON).

``generate_report`` reads the run back from the ledger (decisions, errors,
allocations, approvals, capacity), asks the Data and Journey agents for each
customer's churn risk, and has the reporting package (``cvm.reporting``) write
``<output_dir>/reports/<run_id>/report.md|json`` (portfolio) or
``customer-<ID>.md|json`` (one customer) with PNG charts beside them.

Where churn comes from: a decision records its insights as text, not the
churn probability, and the orchestrator stays as it is. Parsing numbers back
out of words would be brittle, so the agent rebuilds each customer's journey
through the Data and Journey agents (typed messages, the same code the
decision used) and reads ``features.churn_probability`` and the signals with
their evidence. The report says so: its risk figures are the data as it is
when the report is made; the decision's own insights (as they were when it
was decided) are shown beside them in the customer view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path

from cvm.agents.base import BaseAgent, expect, handles
from cvm.agents.data import DataAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.messages import (
    BuildJourney,
    CustomerDataResponse,
    GenerateReport,
    GetCustomerData,
    JourneyResponse,
    ReportArtifact,
)
from cvm.reporting import REPORTS_FOLDER, CustomerRisk, ReportLedger, build_report, collect_run, write_report
from cvm.tools.clock import Clock
from cvm.utils.config import CVMConfig
from cvm.utils.errors import CVMError


class ReportAgent(BaseAgent):
    """Reads the ledger and the customers' journeys; the reporting package (``cvm.reporting``) writes the files."""

    name = "ReportAgent"

    def __init__(
        self, *, ledger: ReportLedger, config: CVMConfig, output_dir: Path, clock: Clock, data: DataAgent, journey: JourneyAgent,
    ):
        self._ledger = ledger
        self._config = config
        self._reports_dir = Path(output_dir) / REPORTS_FOLDER
        self._clock = clock
        self._data = data
        self._journey = journey

    @property
    def reports_dir(self) -> Path:
        return self._reports_dir

    def _zone(self) -> tzinfo:
        tz = self._clock.now().tzinfo
        assert tz is not None  # the clocks are always timezone-aware
        return tz

    def _risk(self, customer_id: str) -> CustomerRisk:
        try:
            data = expect(self._data.process(GetCustomerData(customer_id=customer_id)), CustomerDataResponse).data
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
            self._data.check_customer_id(message.customer_id)
        records = collect_run(
            self._ledger, message.run_id, self._zone(), self._config.treatments, allow_empty=message.allow_empty
        )
        ids: Sequence[str] = records.customer_ids if message.customer_id is None else [message.customer_id]
        # Only customers of the run are read (build_report refuses a customer the run did not decide).
        risks = {cid: self._risk(cid) for cid in ids if cid in records.decisions or cid in records.errors}
        report = build_report(
            records, risks, self._config, generated_at=self._clock.now(), customer_id=message.customer_id,
            goal=message.goal, plan=message.plan, title=message.title,
        )
        churn = [r.churn_probability for r in risks.values() if r.churn_probability is not None]
        written = write_report(report, self._reports_dir, churn)
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
