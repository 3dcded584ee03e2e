"""The standard onboarding flow: a customer flow run on the real agents, its filter, and the document's YAML through the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cvm.agents.messages import ErrorResponse
from cvm.flows.api import FlowEngine
from cvm.flows.testing import FlowTestCase
from tests.conftest import AS_OF, CONFIG, SAMPLE

REPO = Path(__file__).resolve().parents[2]
ONBOARDING = REPO / "config" / "flows" / "onboarding.yaml"
DOCUMENT = REPO / "tests" / "fixtures" / "flows_document" / "renewal_management.yaml"


def smtp_env(smtp_server: Any, tmp_path: Path) -> dict[str, str]:
    return {
        "CVM_SMTP_HOST": "127.0.0.1", "CVM_SMTP_PORT": str(smtp_server.port), "CVM_SMTP_FROM": "cvm@example.com",
        "CVM_SMTP_STARTTLS": "false", "CVM_OUTPUT_DIR": str(tmp_path / "output"), "CVM_NOTIFY_RETRIES": "0",
        "CVM_NOTIFY_TO": "account-team@example.com",
    }


def test_onboarding_runs_on_the_real_agents(tmp_path: Path, smtp_server: Any, monkeypatch: Any) -> None:
    for name, value in smtp_env(smtp_server, tmp_path).items():
        monkeypatch.setenv(name, value)
    with FlowTestCase(ONBOARDING, data_dir=SAMPLE, config=CONFIG, as_of=AS_OF, custom_treatments=tmp_path / "c.json") as case:
        run = case.run({"customer_id": "U134"})
    assert run.status == "succeeded", run.error
    assert [e.step_id for e in case.events if e.status == "succeeded"][:1] == ["profile"]
    assert run.output("welcome")["customer_id"] == "U134" and run.output("welcome")["status"]
    assert run.options["customer_filter"]["matched"] is False  # joined 2025-02-11: not new at the tests' clock
    [mail] = smtp_server.messages
    name = run.options["customer"]["name"]
    assert mail.message["Subject"] == f"New customer {name} (U134): {run.output('welcome')['status']}"
    assert Path(run.output("welcome_call")["path"]).is_file()


def test_a_customer_that_cannot_be_read_fails_its_own_run_not_the_fan_out(tmp_path: Path) -> None:
    def unreadable_u134(message: dict) -> Any:
        return ErrorResponse(error_type="data_error", message="bad profile row") if message["customer_id"] == "U134" else None

    with FlowTestCase(ONBOARDING, data_dir=SAMPLE, config=CONFIG, as_of="2025-02-20T09:00:00+00:00",
                      custom_treatments=tmp_path / "c.json") as case:
        case.script("data", "get_customer_data", unreadable_u134)
        run = case.run()
    assert run.status == "failed" and list(run.steps) == ["U134"]
    assert "cannot read customer 'U134' (bad profile row)" in (run.error or "")
    [note] = run.notifications  # the failure is told, not hidden
    assert note["run_status"] == "failed"


def test_the_filter_picks_the_new_customers(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CVM_DB_URL", f"sqlite:///{tmp_path / 'cvm.sqlite3'}")
    engine = FlowEngine(data_dir=SAMPLE, config=CONFIG, as_of="2025-02-20T09:00:00+00:00")
    try:
        assert engine.matching_customers("onboarding") == ["U134"]
    finally:
        engine.close()


@pytest.mark.slow
def test_the_documents_yaml_runs_through_the_cli(run_cli: Any, smtp_server: Any, tmp_path: Path) -> None:
    done = run_cli(
        "cvm", "flows", "run", str(DOCUMENT), "--param", "customer_id=U126", "--data-dir", str(SAMPLE), "--config", str(CONFIG),
        "--as-of", AS_OF, env=smtp_env(smtp_server, tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded: 5 succeeded" in done.stdout
    assert [m.rcpt_tos for m in smtp_server.messages] == [["account-team@example.com"]]
