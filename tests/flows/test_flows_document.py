"""The flows document, as written: its renewal YAML validates and runs on real agents, its test example passes,
its Python API builds the same flow, and a failed or partial run notifies ``failure_notification``."""

from __future__ import annotations

import importlib.util
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cvm.agents.messages import ErrorResponse
from cvm.flows.api import Flow, FlowEngine, Step, Trigger
from cvm.flows.catalog import ActionCatalog
from cvm.flows.plan import build_plan, plan_markdown
from cvm.flows.registry import find_flow, unregister
from cvm.flows.store import FlowStore
from cvm.flows.testing import FlowTestCase
from cvm.flows.validate import FlowValidationError, load_flow
from cvm.utils.errors import FlowError
from tests.conftest import AS_OF, CONFIG, SAMPLE, RecordingProgress
from tests.notify_servers import closed_port

DOCUMENT = Path(__file__).resolve().parents[1] / "fixtures" / "flows_document"
RENEWAL = DOCUMENT / "renewal_management.yaml"
STEPS = ["retrieve_customer_data", "assess_renewal_risk", "generate_recommendations", "notify_account_team", "schedule_follow_up"]


@pytest.fixture
def email_env(monkeypatch: pytest.MonkeyPatch, smtp_server: Any, tmp_path: Path) -> Any:
    """The execution agent sends e-mail to the local SMTP server; the runtime reads the sample data at the tests' clock."""
    for name, value in {
        "CVM_SMTP_HOST": "127.0.0.1", "CVM_SMTP_PORT": str(smtp_server.port), "CVM_SMTP_FROM": "cvm@example.com",
        "CVM_SMTP_STARTTLS": "false", "CVM_OUTPUT_DIR": str(tmp_path / "output"), "CVM_NOTIFY_RETRIES": "0",
        "CVM_NOTIFY_TO": "account-team@example.com", "CVM_DATA_DIR": str(SAMPLE), "CVM_CONFIG": str(CONFIG), "CVM_NOW": AS_OF,
        "CVM_DB_URL": f"sqlite:///{tmp_path / 'state' / 'cvm.sqlite3'}",
    }.items():
        monkeypatch.setenv(name, value)
    return smtp_server


@contextmanager
def renewal_case(tmp_path: Path, **options: Any) -> Iterator[FlowTestCase]:
    case = FlowTestCase(RENEWAL, data_dir=SAMPLE, config=CONFIG, as_of=AS_OF, custom_treatments=tmp_path / "custom.json", **options)
    try:
        yield case
    finally:
        case.close()


class TestTheYamlAsWritten:
    def test_it_validates_against_the_real_agents(self, catalog: ActionCatalog) -> None:
        loaded = load_flow(RENEWAL, catalog)
        d = loaded.definition
        assert [(s.agent, s.action) for s in d.steps] == [
            ("data", "get_customer_data"), ("decision", "assess_renewal_risk"), ("decision", "generate_renewal_recommendations"),
            ("execution", "send_notifications"), ("execution", "create_calendar_event"),
        ]
        assert d.trigger is not None and d.trigger.type == "schedule" and d.trigger.parsed_schedule() is not None
        assert d.trigger.conditions == ("customer.renewal_date <= now() + interval '30 days'",)
        assert d.error_handling.failure_notification == ("${admin_email}",)
        assert d.customer_scoped and d.all_inputs()["customer_id"].required
        assert [p.max_attempts for p in map(d.policy, d.steps)] == [4] * 5
        plan = build_plan(d, catalog)
        assert plan["customer_filter"] == ["customer.renewal_date <= now() + interval '30 days'"]
        assert plan["failure_notification"] == ["${admin_email}"] and plan["stages"][-1] == ["notify_account_team", "schedule_follow_up"]
        assert "**For each customer where:** `customer.renewal_date <= now() + interval '30 days'`" in plan_markdown(plan)

    def test_the_cli_validates_it(self, run_cli: Any) -> None:
        done = run_cli("cvm", "flows", "validate", str(RENEWAL), "--data-dir", str(SAMPLE), "--config", str(CONFIG), "--as-of", AS_OF)
        assert done.returncode == 0, done.stderr
        assert "valid: flow renewal_management version 1.0: 5 step(s)" in done.stdout

    def test_it_runs_on_the_real_agents(self, tmp_path: Path, email_env: Any) -> None:
        """U126 renews on 2026-11-27, four days after the clock: inside the filter; every agent is real."""
        with renewal_case(tmp_path) as case:
            run = case.run({"customer_id": "U126"})
        assert run.status == "succeeded", run.error
        assert list(run.steps) == STEPS
        customer = run.options["customer"]
        assert (customer["id"], customer["renewal_date"], customer["days_to_renewal"]) == ("U126", "2026-11-27", 4)
        assert run.options["customer_filter"]["matched"] is True
        assert run.output("assess_renewal_risk")["days_to_renewal"] == 4
        assert run.output("generate_recommendations")["risk_level"] == run.output("assess_renewal_risk")["risk_level"]
        [mail] = email_env.messages
        assert mail.rcpt_tos == ["account-team@example.com"]
        assert mail.message["Subject"] == "Renewal due: Sophie Marsh (U126) on 2026-11-27"
        assert Path(run.output("schedule_follow_up")["path"]).is_file()
        assert run.output("schedule_follow_up")["start"].startswith("2026-11-27T10:00:00")

    def test_a_named_customer_outside_the_filter_runs_and_says_so(self, tmp_path: Path, email_env: Any) -> None:
        with renewal_case(tmp_path) as case:
            case.script("execution_agent", "send_notifications", {"notification_id": "n"})
            case.script("execution_agent", "create_calendar_event", {"path": "x.ics"})
            run = case.run({"customer_id": "U123"})
        assert run.status == "succeeded"
        assert run.options["customer_filter"] == {"matched": False, "because": []}

    def test_without_a_customer_it_runs_for_each_customer_the_filter_selects(self, tmp_path: Path, email_env: Any) -> None:
        with renewal_case(tmp_path) as case:
            run = case.run({}, run_id="daily")
            child = case.store.require_run("daily.U126")
        assert (run.status, list(run.steps), run.options["fan_out"]["customers"]) == ("succeeded", ["U126"], 1)
        assert run.output("U126") == {"run_id": "daily.U126", "status": "succeeded", "error": None}
        assert child.status == "succeeded" and child.inputs == {"customer_id": "U126"} and child.options["fan_out_of"] == "daily"


class TestFanOut:
    """Each selected customer gets its own run; one failure notification for the lot; resume finishes what failed."""

    def test_a_failing_customer_makes_it_partial_and_resume_finishes_it(self, tmp_path: Path, email_env: Any) -> None:
        flow = tmp_path / "renewal_120.yaml"
        flow.write_text(RENEWAL.read_text(encoding="utf-8").replace("interval '30 days'", "interval '120 days'"), encoding="utf-8")
        broken = {"U134": True}

        def risk(message: dict[str, Any]) -> Any:
            if broken.get(message["customer_id"]):
                return ErrorResponse(error_type="unavailable", message="risk model down", customer_id=message["customer_id"])
            return None  # the real decision agent answers

        with FlowTestCase(flow, data_dir=SAMPLE, config=CONFIG, as_of=AS_OF, custom_treatments=tmp_path / "c.json",
                          variables={"admin_email": "admin@example.com"}, sleep=lambda _s: None) as case:
            case.script("decision_agent", "assess_renewal_risk", risk)
            run = case.run({}, run_id="weekly")
            assert (run.status, list(run.steps)) == ("partial", ["U123", "U126", "U134"])
            assert run.error == "customer U134: run weekly.U134 failed: step 'assess_renewal_risk' failed: unavailable: risk model down"
            assert case.store.require_run("weekly.U134").notifications == ()  # the children do not notify
            [note] = run.notifications
            assert (note["status"], note["recipients"], note["run_status"]) == ("sent", ["admin@example.com"], "partial")
            assert [m.rcpt_tos for m in email_env.messages].count(["admin@example.com"]) == 1
            broken["U134"] = False
            again = case.resume("weekly")
        assert again.status == "succeeded" and again.error is None
        assert again.output("U134") == {"run_id": "weekly.U134", "status": "succeeded", "error": None}
        assert again.step("U123").attempts == 1  # kept, not run again

    def test_a_crash_starting_one_customer_fails_that_step_and_the_others_run(self, tmp_path: Path, email_env: Any,
                                                                           mocker: Any) -> None:
        """A bug (not a CVMError) while starting one child run: recorded as that customer's failure, never the whole run's."""
        from cvm.flows.runner import FlowRunner

        flow = tmp_path / "renewal_120.yaml"
        flow.write_text(RENEWAL.read_text(encoding="utf-8").replace("interval '30 days'", "interval '120 days'"), encoding="utf-8")
        start_one = FlowRunner.start_one

        def crash_for_u126(runner: Any, run_id: str, *args: Any, **kwargs: Any) -> Any:
            if run_id.endswith(".U126"):
                raise KeyError("a bug")
            return start_one(runner, run_id, *args, **kwargs)

        mocker.patch.object(FlowRunner, "start_one", autospec=True, side_effect=crash_for_u126)
        with FlowTestCase(flow, data_dir=SAMPLE, config=CONFIG, as_of=AS_OF, custom_treatments=tmp_path / "c.json",
                          variables={"admin_email": "admin@example.com"}, sleep=lambda _s: None) as case:
            run = case.run({}, run_id="weekly")
        assert (run.status, list(run.steps)) == ("partial", ["U123", "U126", "U134"])
        assert run.step("U126").status == "failed" and "crashed: internal error (KeyError" in (run.step("U126").error or "")
        assert run.step("U123").status == run.step("U134").status == "succeeded"

    def test_an_unknown_customer_is_refused_before_the_run(self, tmp_path: Path) -> None:
        with renewal_case(tmp_path) as case, pytest.raises(FlowError, match="cannot read customer 'U999'"):
            case.run({"customer_id": "U999"})


def test_the_documents_test_example_passes_as_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {"CVM_FLOWS_DIR": str(DOCUMENT), "CVM_DATA_DIR": str(SAMPLE), "CVM_CONFIG": str(CONFIG), "CVM_NOW": AS_OF}.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("document_example", DOCUMENT / "document_example.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.test_renewal_flow()


class TestFailureNotifications:
    """A run that ends failed or partial tells failure_notification through the execution agent; the outcome is stored."""

    def test_a_failed_run_is_notified_by_email(self, tmp_path: Path, email_env: Any) -> None:
        waits: list[float] = []
        with renewal_case(tmp_path, variables={"admin_email": "admin@example.com"}, sleep=waits.append) as case:
            case.script("decision_agent", "assess_renewal_risk", ErrorResponse(error_type="unavailable", message="risk model down"))
            run = case.run({"customer_id": "U126"})
            assert len(case.calls("decision_agent", "assess_renewal_risk")) == 4  # retry_count 3
        assert run.status == "failed"
        assert run.error == "step 'assess_renewal_risk' failed: unavailable: risk model down"
        [note] = run.notifications
        assert (note["status"], note["recipients"], note["run_status"]) == ("sent", ["admin@example.com"], "failed")
        [mail] = email_env.messages
        assert mail.rcpt_tos == ["admin@example.com"]
        assert mail.message["Subject"] == f"CVM flow renewal_management: run {run.run_id} failed"
        body = mail.message.get_content()
        assert "risk model down" in body and f"cvm flows resume {run.run_id}" in body

    def test_a_notification_that_fails_does_not_hide_the_runs_failure(self, tmp_path: Path, email_env: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CVM_SMTP_PORT", str(closed_port()))
        with renewal_case(tmp_path, variables={"admin_email": "admin@example.com"}, sleep=lambda _s: None) as case:
            case.script("decision_agent", "assess_renewal_risk", RuntimeError("boom"))
            run = case.run({"customer_id": "U126"})
        assert run.status == "failed" and "boom" in (run.error or "")
        [note] = run.notifications
        assert note["status"] == "failed" and note["detail"].startswith("notification_unavailable")

    def test_a_notice_that_cannot_be_recorded_does_not_hide_the_runs_failure(self, tmp_path: Path) -> None:
        db_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
        store = FlowStore.from_url(db_url)
        with sqlite3.connect(store.path) as conn:  # the notice's row cannot be written (a full disk, a broken table)
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON flow_notifications BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with renewal_case(tmp_path, variables={"admin_email": "admin@example.com"}, sleep=lambda _s: None, db_url=db_url) as case:
            case.script("decision_agent", "assess_renewal_risk", RuntimeError("boom"))
            case.script("execution", "send_notifications", {"notification_id": "ntf-1"})
            run = case.run({"customer_id": "U126"})
        assert run.status == "failed" and "boom" in (run.error or "")
        assert run.notifications == ()

    def test_a_partial_run_is_notified_and_a_missing_address_is_recorded(self, tmp_path: Path) -> None:
        flow = tmp_path / "partial.yaml"
        flow.write_text(RENEWAL.read_text(encoding="utf-8").replace(
            "    depends_on: [generate_recommendations]\n    parameters:\n      channel: email",
            "    depends_on: [generate_recommendations]\n    error_handling: {strategy: continue, retry_count: 0}\n"
            "    parameters:\n      channel: email",
        ), encoding="utf-8")
        with FlowTestCase(flow, data_dir=SAMPLE, config=CONFIG, as_of=AS_OF, custom_treatments=tmp_path / "c.json") as case:
            case.script("execution", "send_notifications", RuntimeError("mail relay down"))
            case.script("execution", "create_calendar_event", {"path": "x.ics"})
            run = case.run({"customer_id": "U126"})
        assert run.status == "partial"
        assert run.step("notify_account_team").status == "failed"
        [note] = run.notifications
        assert note["status"] == "not_sent" and "CVM_ADMIN_EMAIL" in note["detail"]

    def test_a_run_that_succeeds_notifies_nobody(self, tmp_path: Path, email_env: Any) -> None:
        with renewal_case(tmp_path, variables={"admin_email": "admin@example.com"}) as case:
            case.script("execution", "create_calendar_event", {"path": "x.ics"})
            run = case.run({"customer_id": "U126"})
        assert run.status == "succeeded" and run.notifications == ()
        assert [m.rcpt_tos for m in email_env.messages] == [["account-team@example.com"]]


def the_document_flow_in_python() -> Flow:
    """The renewal flow built with the document's Python API (the same flow as the YAML)."""
    flow = Flow(flow_id="renewal_management", description=(
        "Identify customers approaching contract renewal, assess their renewal risk and engage them with tailored offers"
    ), version="1.0")
    flow.add_step(Step(id="retrieve_customer_data", agent="data_agent", action="retrieve_customer_data",
                       parameters={"customer_id": "${customer.id}"}))
    flow.add_step(Step(id="assess_renewal_risk", agent="decision_agent", action="assess_renewal_risk",
                       depends_on=["retrieve_customer_data"], parameters={"customer_id": "${customer.id}", "window_days": 30}))
    flow.add_step(Step(id="generate_recommendations", agent="decision_agent", action="generate_renewal_recommendations",
                       depends_on=["assess_renewal_risk"],
                       parameters={"customer_id": "${customer.id}", "risk_level": "${steps.assess_renewal_risk.output.risk_level}"}))
    flow.set_trigger(Trigger.schedule(cron="cron(0 9 * * ? *)", filter=["customer.renewal_date <= now() + interval '30 days'"]))
    flow.set_error_handling(default_strategy="retry", retry_count=3, failure_notification="${admin_email}")
    return flow


class TestThePythonApi:
    def test_it_builds_what_the_yaml_says(self, tmp_path: Path) -> None:
        flow = the_document_flow_in_python()
        yaml_flow = load_flow(RENEWAL).definition
        built = flow.definition
        assert built.model_dump(exclude={"steps"}) == yaml_flow.model_dump(exclude={"steps"})
        assert built.steps == yaml_flow.steps[:3]
        saved = flow.save(tmp_path / "saved.yaml")
        assert load_flow(saved).definition == built

    def test_register_execute_and_status(self, tmp_path: Path, email_env: Any) -> None:
        flow = the_document_flow_in_python()
        flow.register()
        progress = RecordingProgress()
        engine = FlowEngine(flows_dir=tmp_path, progress=progress)
        try:
            execution = engine.execute_flow(flow_id="renewal_management", input_parameters={"customer_id": "U126"})
            status = engine.get_execution_status(execution.id)
            assert engine.matching_customers("renewal_management") == ["U126"]
        finally:
            engine.close()
            unregister("renewal_management")
        assert execution.status == "succeeded", execution.error
        assert execution.completed_steps == STEPS[:3]
        assert execution.step_outputs["assess_renewal_risk"]["customer_id"] == "U126"
        assert (status.id, status.status, status.completed_steps) == (execution.id, "succeeded", STEPS[:3])
        assert execution.record is not None and execution.record.options["data_dir"] == str(SAMPLE.resolve())
        assert progress.stages == [["flow renewal_management", 3, 3]]

    def test_an_invalid_flow_lists_its_problems(self) -> None:
        flow = Flow(flow_id="broken")
        flow.add_step(Step(id="a", agent="data_agent", action="retrieve_customer_data", depends_on=["missing"]))
        flow.set_trigger(Trigger.schedule(cron="cron(0 9 * * ? *)", filter=["churn > 0.5"]))
        with pytest.raises(FlowValidationError) as raised:
            flow.register()
        lines = [str(p) for p in raised.value.problems]
        assert lines == [
            "step 'a': depends_on names a missing step 'missing'; known steps: a",
            "trigger.filter 'churn > 0.5' reads churn; a filter reads customer fields: customer.NAME (e.g. customer.id, "
            "customer.customer_id, customer.name, customer.segment)",
        ]

    def test_unknown_flow_ids_name_the_known_ones(self, tmp_path: Path) -> None:
        with pytest.raises(FlowError, match="no flow 'nope'.*known flows: renewal_management"):
            find_flow("nope", [DOCUMENT])
