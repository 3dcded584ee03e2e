"""Mission Control in real reports: risk events opening and closing across runs, and the agent performance section.

Real runtimes over the sample data and one SQLite file; run 2 is a day later
with the at-risk trigger's threshold raised, so the condition that opened an
event in run 1 clears and closes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml

from cvm.agents.messages import CustomerListResponse, GenerateReport, ListCustomers
from cvm.runtime import risk_store, telemetry_store
from cvm.tools.telemetry import AGENT_CALLS
from tests.conftest import AS_OF, CONFIG

DAY_2 = (datetime.fromisoformat(AS_OF) + timedelta(days=1)).isoformat()


@pytest.fixture
def config_with(tmp_path: Path):
    def write(at_risk_at_least: int) -> Path:
        doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        doc["reporting"]["executive_triggers"] = {
            "at_risk_customers_at_least": at_risk_at_least, "pending_approvals_at_least": None,
            "capacity_rejections_at_least": None, "open_errors_at_least": None,
        }
        doc["reporting"]["risk_owners"] = {"at_risk_customers": "retention-team"}
        path = tmp_path / f"config-{at_risk_at_least}.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return path

    return write


def decide_and_report(make_runtime, run_id: str, config: Path, as_of: str):
    runtime = make_runtime(run_id=run_id, config_path=config, as_of=as_of)
    ids = runtime.orchestrator.data.ask(ListCustomers())
    assert isinstance(ids, CustomerListResponse)
    runtime.orchestrator.decide_many(list(ids.customer_ids)[:3], run_id=run_id)
    artifact = runtime.report.ask(GenerateReport(run_id=run_id))
    return Path(artifact.markdown_path).read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_risk_event_opens_in_one_run_and_closes_when_the_next_clears_it(make_runtime, config_with, db_url):
    first = decide_and_report(make_runtime, "r1", config_with(1), AS_OF)
    (event,) = risk_store(db_url).events()
    assert (event.kind, event.state, event.owner, event.first_seen_run) == ("at_risk_customers", "open", "retention-team", "r1")
    assert "## Risk events" in first and f"| {event.risk_id} |" in first

    second = decide_and_report(make_runtime, "r2", config_with(1000), DAY_2)
    assert risk_store(db_url).events() == []
    closed = risk_store(db_url).get(event.risk_id)
    assert (closed.state, closed.closed_by, closed.close_reason.split(":")[0]) == ("closed", "cvm", "cleared in run r2")
    assert "No open risk event." in second and "Closed by this run (1)" in second


@pytest.mark.slow
def test_remaking_an_older_run_s_report_changes_no_event(make_runtime, config_with, db_url):
    decide_and_report(make_runtime, "r1", config_with(1), AS_OF)
    decide_and_report(make_runtime, "r2", config_with(1000), DAY_2)
    again = make_runtime(run_id="r1", config_path=config_with(1), as_of=DAY_2).report.ask(GenerateReport(run_id="r1"))
    assert "Not evaluated: a newer run than r1" in Path(again.markdown_path).read_text(encoding="utf-8")
    assert risk_store(db_url).events() == []  # r1's fired trigger did not reopen what r2 closed


def test_the_report_shows_the_agent_performance_recorded_for_its_run(make_runtime, config_with, db_url):
    AGENT_CALLS.drain()
    runtime = make_runtime(run_id="r1", config_path=config_with(1))
    runtime.orchestrator.decide_many(["U123", "U124"], run_id="r1")
    telemetry_store(db_url).flush("r1", AGENT_CALLS.drain())
    text = Path(runtime.report.ask(GenerateReport(run_id="r1")).markdown_path).read_text(encoding="utf-8")
    section = text.split("## Agent performance", 1)[1].split("\n## ", 1)[0]
    assert "| DataAgent | get_customer_data | 2 | 0 |" in section  # written once for the run, shown by its report
