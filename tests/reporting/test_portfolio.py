"""The portfolio report from grouped SQL rows equals the report built from every decision record.

``build_report`` reads each decision back as a result record (right for one customer,
ruinous for a million); ``build_portfolio_report`` is built from ``GROUP BY`` rows of
the ledger. On the same ledger (approvals pending, approved, rejected and auto-approved,
a failed customer, a capacity refusal, data-quality issues, a stored NaN) both must say
the same thing, number for number.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest

from cvm.agents.messages import DecideApproval, ForecastPortfolio, PortfolioChurn
from cvm.agents.report import portfolio_risk
from cvm.reporting import build_report, collect_run
from cvm.reporting.build import status_now
from cvm.reporting.charts import dominated
from cvm.reporting.portfolio import build_portfolio_report, collect_portfolio
from cvm.tools.run_aggregates import RunAggregates
from cvm.utils.progress import Stage
from tests.reporting.conftest import RUN, SAMPLE_IDS, sql, write_config

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def _tight(doc: dict[str, Any]) -> None:
    doc["constraints"]["service_sms"]["max_per_day"] = 1  # a capacity refusal


def _both(runtime: Any, db_url: str) -> tuple[Any, Any]:
    """(the per-decision report, the aggregated report) of RUN on the same ledger, at the same instant."""
    config, tz = runtime.config, runtime.zone
    records = collect_run(runtime.ledger, RUN, tz, config.treatments)
    churn = runtime.insight.process(ForecastPortfolio(run_id=RUN, top=config.reporting.top_at_risk, sample_per_segment=0))
    assert isinstance(churn, PortfolioChurn), churn
    # The per-decision build reads every customer's journey, as the Report agent did before it aggregated.
    risks = {cid: runtime.report._risk(cid) for cid in records.customer_ids}
    by_record = build_report(records, risks, config, generated_at=NOW)
    aggregates = RunAggregates.from_url(db_url)
    grouped = collect_portfolio(aggregates, RUN, tz, list(config.treatments), NOW)
    top = [a.customer_id for a in churn.most_at_risk]
    decided = {cid: (status_now(s, a), t) for cid, (s, t, a) in aggregates.decided_of(RUN, top).items()}
    by_groups = build_portfolio_report(grouped, portfolio_risk(churn), decided, config, generated_at=NOW)
    return by_record, by_groups


@pytest.mark.usefixtures("no_charts")
class TestSameNumbers:
    def test_every_number_matches_the_per_decision_build(self, make_runtime, tmp_path, db_url):
        config = write_config(tmp_path, "tight.yaml", _tight)
        runtime = make_runtime(run_id=RUN, config_path=config)
        runtime.orchestrator.decide_many([*SAMPLE_IDS, "U999"])
        [(first,), (second,)] = sql(db_url, "SELECT request_id FROM approval_requests WHERE run_id = ? ORDER BY request_id", RUN)
        runtime.orchestrator.governance.process(DecideApproval(request_id=first, decision="approve", by="Ann", reason="ok"))
        runtime.orchestrator.governance.process(DecideApproval(request_id=second, decision="reject", by="Bob", reason="no"))

        by_record, by_groups = _both(runtime, db_url)
        assert by_groups.totals == by_record.totals
        assert by_groups.totals.capacity_rejections >= 1 and by_groups.totals.open_errors == 1
        assert by_groups.totals.decided_approvals == 2 and by_groups.totals.data_quality_issues >= 1
        for name in ("by_treatment", "by_channel", "capacity", "approvals_pending", "approvals_decided", "data_quality",
                     "errors", "at_risk", "risk_distribution", "churn_histogram", "selectors", "days", "executive_triggers"):
            assert getattr(by_groups, name) == getattr(by_record, name), name
        assert by_groups.goal == by_record.goal and by_groups.plan == by_record.plan

    def test_auto_approved_counted_once_per_customer(self, make_runtime, db_url):
        runtime = make_runtime(run_id=RUN, auto_approve=True)
        runtime.orchestrator.decide_many(list(SAMPLE_IDS))
        by_record, by_groups = _both(runtime, db_url)
        assert by_groups.totals.auto_approved == by_record.totals.auto_approved == 2

    def test_a_stored_nan_reads_as_no_value_on_both_paths(self, make_runtime, db_url):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(list(SAMPLE_IDS))
        stored = runtime.ledger.decision(RUN, "U123")
        result = {**stored.result, "status": "success", "selected_treatment": "retention_email", "expected_value": math.nan}
        runtime.ledger.withdraw_decision(RUN, "U123", result, "test: a NaN in a stored record", NOW)
        assert "NaN" in sql(db_url, "SELECT result_json FROM decisions WHERE run_id = ? AND customer_id = 'U123'", RUN)[0][0]
        by_record, by_groups = _both(runtime, db_url)
        assert by_groups.totals == by_record.totals and by_groups.by_treatment == by_record.by_treatment


class TestLimitsAndNotes:
    def test_long_lists_are_cut_and_said_so(self, make_runtime, db_url):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(list(SAMPLE_IDS))
        grouped = collect_portfolio(RunAggregates.from_url(db_url), RUN, runtime.zone, list(runtime.config.treatments), NOW, limit=1)
        churn = runtime.insight.process(ForecastPortfolio(run_id=RUN, sample_per_segment=0))
        report = build_portfolio_report(grouped, portfolio_risk(churn), {}, runtime.config, generated_at=NOW, limit=1)
        assert report.totals.pending_approvals == 2 and len(report.approvals_pending) == 1
        assert "The first 1 of 2 pending approvals are listed; the totals count them all." in report.notes

    def test_unknown_run(self, make_runtime, db_url):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U123"])
        with pytest.raises(Exception, match="unknown run id 'nope'"):
            collect_portfolio(RunAggregates.from_url(db_url), "nope", runtime.zone, [], NOW)


class _Recording:
    """A Progress that remembers each stage's name, total and the work reported."""

    def __init__(self) -> None:
        self.stages: dict[str, list[int | None]] = {}

    def stage(self, name: str, total: int | None = None) -> Any:
        from contextlib import contextmanager

        record = self.stages.setdefault(name, [total, 0])

        class _S(Stage):
            def advance(self, amount: int = 1) -> None:
                record[1] = (record[1] or 0) + amount

            def update(self, completed: int) -> None:
                record[1] = completed

        @contextmanager
        def running() -> Any:
            yield _S()

        return running()


@pytest.mark.usefixtures("no_charts")
def test_every_stage_of_a_portfolio_report_reports_progress(make_runtime):
    progress = _Recording()
    runtime = make_runtime(run_id=RUN)
    runtime.orchestrator.decide_many(list(SAMPLE_IDS))
    runtime.report.use_progress(progress)
    runtime.report.process({"type": "generate_report", "run_id": RUN})
    stages = progress.stages
    assert stages["reading the ledger"] == [5, 5]
    assert stages["reading churn scores"][1] == len(SAMPLE_IDS)
    [journeys] = [v for k, v in stages.items() if k.startswith("reading journeys")]
    assert journeys[0] == journeys[1] and journeys[1] >= 3  # the three at risk, and the sample
    assert stages["writing the report and charts"] == [1, 1]


def test_one_dominant_bar_switches_to_a_log_axis():
    assert dominated([48_015, 500, 2]) and not dominated([500, 300, 100]) and not dominated([0, 5])
