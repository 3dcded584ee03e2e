"""What the flows document's forms get wrong is reported before anything runs; progress and flow variables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cvm.flows.catalog import ActionCatalog
from cvm.flows.testing import FlowTestCase
from cvm.flows.validate import FlowValidationError, load_flow
from cvm.runtime import flow_variables
from tests.conftest import AS_OF, CONFIG, SAMPLE, RecordingProgress


def problems(path: Path, catalog: ActionCatalog | None = None) -> list[str]:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(path, catalog)
    return [str(p) for p in caught.value.problems]


def test_document_forms_are_checked(write: Callable[..., Path], catalog: ActionCatalog) -> None:
    path = write("""
        flow_id: x
        trigger: {type: schedule, filter: ["customer.renewal_date <= now() + interval '30 days'"]}
        steps:
          - {id: a, agent: data_agent, action: retrieve_customer_data}
    """)
    assert problems(path) == [
        "trigger: a trigger of type schedule needs schedule:, e.g. schedule: cron(0 9 * * ? *); "
        "correct the value (see the Flows section of the README)"
    ]
    path = write("""
        flow_id: x
        error_handling: {failure_notification: ["${steps.a.output}", "${inputs.nobody}"]}
        steps:
          - {id: a, agent: data_agent, action: retrieve_customer_data, parameters: {customer_id: "${who}"}}
          - {id: b, agent: decision_agent, action: assess_renewal_risk, parameters: {customer_id: "${customer.id}", days: 3}}
    """)
    assert problems(path, catalog) == [
        "step 'a': ${who} names an undeclared input 'who'; declare it under inputs: (known: customer_id)",
        "error_handling.failure_notification reads ${steps.a.output}; use an address, ${NAME} (input or CVM_NAME), "
        "${inputs.NAME}, ${customer.FIELD} or ${run.id}",
        "error_handling.failure_notification: ${inputs.nobody} names an undeclared input; declare it under inputs:",
        "step 'b': unknown parameter 'days' for decision.assess_renewal_risk; decision.assess_renewal_risk takes: "
        "customer_id, window_days",
    ]


def test_progress_counts_failed_and_skipped_steps_and_resumes_from_the_done_ones(
    write: Callable[..., Path], tmp_path: Path,
) -> None:
    path = write("""
        flow_id: p
        steps:
          - {id: load, agent: data, action: list_customers}
          - {id: fuse, agent: insight, action: fuse_signals, depends_on: [load]}
          - {id: report, agent: governance, action: list_approvals, depends_on: [fuse]}
    """)
    progress = RecordingProgress()
    with FlowTestCase(path, data_dir=SAMPLE, config=CONFIG, as_of=AS_OF, custom_treatments=tmp_path / "c.json",
                      progress=progress) as case:
        case.script("insight", "fuse_signals", RuntimeError("down"), {"customers": 0, "customer_ids": [], "signal_counts": {},
                                                                    "customers_by_signal": {}, "at_risk": []})
        assert case.run(run_id="p-1").status == "failed"
        assert case.resume("p-1").status == "succeeded"
    assert progress.stages == [["flow p", 3, 3], ["flow p", 3, 3]]  # 1 ok + 1 failed + 1 skipped; then 1 kept + 2 run


def test_flow_variables_leave_secrets_out() -> None:
    env = {"CVM_ADMIN_EMAIL": "a@x", "CVM_SMTP_PASSWORD": "p", "CVM_WEBHOOK_SECRET": "s", "CVM_API_TOKEN": "t",
           "CVM_DEPLOY_KEY": "k", "CVM_DB_URL": "postgresql://u:p@h/db", "CVM_WEBHOOK_URLS": "https://x?t=1", "HOME": "/root",
           "CVM_": "empty", "CVM_PASSWD": "p", "CVM_AUTH_HEADER": "h", "CVM_PRIVATE_PEM": "k", "CVM_BEARER": "b",
           "CVM_SMTP_FROM": "cvm@x", "CVM_NOTIFY_TO": "ops@x", "CVM_SELECTOR": "rules", "CVM_REGION_NAME": "north"}
    # CVM's own settings (sender, recipients, selector) are engine configuration, not flow variables
    assert flow_variables(env) == {"admin_email": "a@x", "region_name": "north"}
