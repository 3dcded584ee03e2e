"""The Report agent as other agents (and flows) talk to it: messages, registry, goal and plan, risk source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cvm.agents.messages import ErrorResponse, GenerateReport, ReportArtifact
from cvm.agents.report import ReportAgent

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))
RUN = "run-agent-report"


@pytest.fixture(autouse=True)
def no_charts(monkeypatch):
    """Charts are checked in tests/tools/test_report.py; here only the content matters (and drawing is slow)."""
    monkeypatch.setattr("cvm.reporting.charts._figure_class", lambda: None)


def load(artifact: ReportArtifact) -> tuple[dict, str]:
    return (
        json.loads(Path(artifact.json_path).read_text(encoding="utf-8")),
        Path(artifact.markdown_path).read_text(encoding="utf-8"),
    )


class TestMessages:
    def test_registered_for_flows(self, make_runtime):
        runtime = make_runtime()
        agent = runtime.agents()["report"]
        assert isinstance(agent, ReportAgent) and agent is runtime.report
        assert set(agent.registry) == {"generate_report", "report_trend"}

    def test_plain_dict_message(self, make_runtime):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U123", "U128"])
        artifact = runtime.report.process({"type": "generate_report", "run_id": RUN, "customer_id": "U123"})
        assert isinstance(artifact, ReportArtifact) and artifact.view == "customer" and artifact.customer_id == "U123"

    def test_missing_run_id(self, make_runtime):
        answer = make_runtime().report.process({"type": "generate_report"})
        assert isinstance(answer, ErrorResponse) and answer.error_type == "invalid_message" and "run_id" in answer.message

    def test_unknown_type(self, make_runtime):
        answer = make_runtime().report.process({"type": "process_customer", "customer_id": "U123"})
        assert isinstance(answer, ErrorResponse) and answer.error_type == "unknown_message_type"
        assert "generate_report" in answer.message


class TestContent:
    def test_goal_plan_and_title_from_a_flow(self, make_runtime):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U123", "U127"])
        plan = ["1. load - data.list_customers", "2. decide - orchestrator.process_batch (after load)"]
        artifact = runtime.report.process(GenerateReport(run_id=RUN, goal="Keep the customers most likely to leave",
                                                         plan=plan, title="Churn prevention"))
        doc, markdown = load(artifact)
        assert markdown.startswith("# Churn prevention\n")
        assert "Goal: Keep the customers most likely to leave" in markdown
        assert "1. load - data.list_customers\n2. decide - orchestrator.process_batch (after load)" in markdown
        assert doc["plan"] == plan and doc["plan_source"] == "given"

    def test_plan_artifact_as_a_table(self, make_runtime):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U123"])
        plan = {
            "goal": "Daily cycle", "steps": [
                {"id": "load", "agent": "data", "action": "list_customers", "depends_on": [], "description": "everyone"},
                {"id": "decide", "agent": "orchestrator", "action": "process_batch", "depends_on": ["load"], "description": None},
            ],
        }
        doc, markdown = load(runtime.report.process(GenerateReport(run_id=RUN, plan=plan)))
        assert doc["goal"] == "Daily cycle"
        assert "| decide | orchestrator | process_batch | load |" in markdown

    def test_default_goal_and_plan(self, make_runtime):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U123", "U124"])
        doc, markdown = load(runtime.report.process(GenerateReport(run_id=RUN)))
        assert doc["plan_source"] == "default" and "2 customer(s) of run" in doc["goal"]
        assert "standard decision pipeline" in markdown

    def test_empty_run_allowed_for_flows(self, make_runtime):
        runtime = make_runtime()
        refused = runtime.report.process(GenerateReport(run_id="flow-run-nobody"))
        assert isinstance(refused, ErrorResponse) and refused.error_type == "usage_error"
        artifact = runtime.report.process(GenerateReport(run_id="flow-run-nobody", allow_empty=True))
        assert isinstance(artifact, ReportArtifact)
        doc, markdown = load(artifact)
        assert doc["totals"]["customers"] == 0 and doc["capacity"] == [] and artifact.executive_triggers_fired == ()
        assert "No executive trigger fired." in markdown

    def test_auto_approved_decisions_are_flagged(self, make_runtime):
        runtime = make_runtime(run_id=RUN, auto_approve=True)
        runtime.orchestrator.decide_many(list(SAMPLE_IDS))
        artifact = runtime.report.process(GenerateReport(run_id=RUN))
        doc, markdown = load(artifact)
        assert doc["totals"]["auto_approved"] == 2 and doc["totals"]["pending_approvals"] == 0
        assert "pending_approvals" not in artifact.executive_triggers_fired
        assert "> WARNING: 2 decision(s) were approved by 'auto-approve (testing)'" in markdown
        assert [a["decided_by"] for a in doc["approvals_decided"]] == ["auto-approve (testing)"] * 2


class TestRiskSource:
    def test_churn_is_read_from_the_data_now(self, make_runtime, data_copy):
        make_runtime(run_id=RUN, data_dir=data_copy).orchestrator.decide_many(list(SAMPLE_IDS))
        (data_copy / "churn_score.json").unlink()  # a missing table is "no data of that kind"
        artifact = make_runtime(run_id=RUN, data_dir=data_copy).report.process(GenerateReport(run_id=RUN))
        doc, markdown = load(artifact)
        assert artifact.at_risk_customers == 0 and doc["at_risk"] == []
        assert "at_risk_customers" not in artifact.executive_triggers_fired
        assert all(b["customers"] == 0 for b in doc["risk_distribution"] if b["band"] != "unknown")
        assert doc["totals"]["customers"] == len(SAMPLE_IDS)

    def test_unknown_customer_risk_is_unknown_not_a_failure(self, make_runtime):
        runtime = make_runtime(run_id=RUN)
        runtime.orchestrator.decide_many(["U127", "U999"])
        artifact = runtime.report.process(GenerateReport(run_id=RUN))
        doc, markdown = load(artifact)
        assert [a["customer_id"] for a in doc["at_risk"]] == ["U127"]
        assert {b["band"]: b["customers"] for b in doc["risk_distribution"]}["unknown"] == 1
        assert "Churn risk unknown for 1 customer(s): U999." in markdown
        assert artifact.open_errors == 1 and "open_errors" in artifact.executive_triggers_fired
