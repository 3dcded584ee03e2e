"""Step Functions export: every standard flow's state machine passes ``asl-validator``; the mapping of steps,
stages, retries, catches and references; ``cvm flows export``."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cvm.flows.asl import ArnTemplate, export_asl, path
from cvm.flows.validate import parse_flow
from cvm.utils.errors import FlowError
from tests.conftest import CONFIG, SAMPLE

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "build" / "node" / "node_modules" / ".bin" / "asl-validator"
FLOWS = sorted((REPO / "config" / "flows").glob("*.yaml")) + [REPO / "tests" / "fixtures" / "flows_document" / "renewal_management.yaml"]


@pytest.fixture(scope="module")
def validator() -> Path:
    """The asl-validator npm binary (``make test`` and ``.ci/run`` install it); missing, the test fails and says how to install it."""
    if not VALIDATOR.is_file():
        pytest.fail(
            f"asl-validator is not installed at {VALIDATOR}: run 'make test', or "
            "'npm install --prefix build/node --no-audit --no-fund asl-validator@4' (Node.js is needed)"
        )
    return VALIDATOR


def validate(validator: Path, machine: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    target = tmp_path / "machine.json"
    target.write_text(json.dumps(machine), encoding="utf-8")
    return subprocess.run([str(validator), "--json-path", str(target)], capture_output=True, text=True, timeout=60)


def machine_of(text: str, tmp_path: Path, **arn: Any) -> dict[str, Any]:
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(text), encoding="utf-8")
    return export_asl(parse_flow(flow)[0], ArnTemplate(**arn) if arn else None)


@pytest.mark.parametrize("flow", FLOWS, ids=lambda p: p.stem if "fixtures" not in str(p) else "flows_document")
def test_every_standard_flow_exports_valid_asl(flow: Path, validator: Path, tmp_path: Path) -> None:
    machine = export_asl(parse_flow(flow)[0])
    done = validate(validator, machine, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout


def test_the_validator_has_teeth(validator: Path, tmp_path: Path) -> None:
    machine = export_asl(parse_flow(FLOWS[0])[0])
    machine["States"][machine["StartAt"]]["Next"] = "nowhere"
    done = validate(validator, machine, tmp_path)
    assert done.returncode != 0 and "nowhere" in done.stdout + done.stderr


class TestTheMapping:
    def test_the_documents_renewal_flow(self) -> None:
        machine = export_asl(parse_flow(FLOWS[-1])[0], ArnTemplate(region="eu-west-2", account="111122223333"))
        states = machine["States"]
        assert machine["StartAt"] == "retrieve_customer_data"
        assert list(states) == [
            "retrieve_customer_data", "assess_renewal_risk", "generate_recommendations", "Stage 4", "NotifyFailure", "FlowFailed",
        ]
        risk = states["assess_renewal_risk"]
        assert risk["Resource"] == "arn:aws:lambda:eu-west-2:111122223333:function:cvm-decision-assess_renewal_risk"
        assert risk["Parameters"] == {"customer_id.$": "$.customer.id", "window_days": 30}
        assert risk["ResultPath"] == "$.steps.assess_renewal_risk.output"
        assert risk["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0,
                                  "MaxDelaySeconds": 60}]
        assert risk["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotifyFailure"}]
        assert states["generate_recommendations"]["Parameters"]["risk_level.$"] == "$.steps.assess_renewal_risk.output.risk_level"
        stage = states["Stage 4"]
        assert [b["StartAt"] for b in stage["Branches"]] == ["notify_account_team", "schedule_follow_up"]
        assert "Catch" not in stage["Branches"][0]["States"]["notify_account_team"]  # the Parallel state catches
        assert stage["Catch"][0]["Next"] == "NotifyFailure" and stage["ResultPath"] == "$.steps"
        assert stage["ResultSelector"]["notify_account_team.$"] == "$[0].steps.notify_account_team"
        assert stage["ResultSelector"]["schedule_follow_up.$"] == "$[1].steps.schedule_follow_up"
        assert stage["ResultSelector"]["assess_renewal_risk.$"] == "$[0].steps.assess_renewal_risk"
        subject = stage["Branches"][0]["States"]["notify_account_team"]["Parameters"]["subject.$"]
        assert subject == "States.Format('Renewal due: {} ({}) on {}', $.customer.name, $.customer.id, $.customer.renewal_date)"
        notify = states["NotifyFailure"]
        assert notify["Resource"].endswith(":function:cvm-execution-send_notifications")
        assert notify["Parameters"]["recipients.$"] == "States.Array($.variables.admin_email)"
        assert notify["Next"] == "FlowFailed" and notify["Catch"][0]["Next"] == "FlowFailed"
        assert states["FlowFailed"]["Type"] == "Fail"

    def test_continue_steps_catch_into_the_next_state(self) -> None:
        states = export_asl(parse_flow(REPO / "config" / "flows" / "churn_prevention.yaml")[0])["States"]
        stage = next(s for s in states.values() if s["Type"] == "Parallel")
        trajectory = stage["Branches"][0]["States"]
        assert trajectory["trajectory"]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.steps.trajectory.error", "Next": "trajectory failed"}
        ]
        assert trajectory["trajectory failed"] == {"Type": "Pass", "Comment": "step trajectory failed; the flow goes on", "End": True}
        assert trajectory["trajectory"]["Parameters"]["customer_ids.$"] == "$.steps.signals.output.at_risk[*].customer_id"
        assert "FlowFailed" in states and "NotifyFailure" not in states  # no failure_notification: straight to Fail
        assert states["signals"]["Catch"][0]["Next"] == "FlowFailed"

    def test_references_become_paths_formats_arrays_and_values(self, tmp_path: Path, validator: Path) -> None:
        machine = machine_of("""
            flow_id: refs
            inputs: {days: 30, team: ops@example.com}
            trigger: {filter: {kind: network_issues, words: [a, b]}}
            steps:
              - id: wait-a-bit
                agent: flow
                action: wait
                parameters: {seconds: 5}
              - id: load
                agent: data
                action: list_customers
                depends_on: [wait-a-bit]
              - id: use
                agent: trigger
                action: trigger_customers
                depends_on: [load]
                parameters:
                  trigger_type: ${trigger.filter.kind}
                  keywords: ${trigger.filter.words}
                  customer_ids: ["${steps.load.output.customer_ids.0}", U9]
                  description: "It's {odd}: ${run.id} of ${run.flow_id}, $${literal} and ${inputs.days} or ${team}"
        """, tmp_path)
        states = machine["States"]
        assert states["wait-a-bit"] == {"Type": "Wait", "Comment": "flow.wait", "Seconds": 5, "Next": "load"}
        parameters = states["use"]["Parameters"]
        assert parameters["trigger_type"] == "network_issues" and parameters["keywords"] == ["a", "b"]
        assert parameters["customer_ids.$"] == "States.Array($.steps.load.output.customer_ids[0], 'U9')"
        assert parameters["description.$"] == (
            r"States.Format('It\'s \{odd\}: {} of refs, $\{literal\} and {} or {}', $$.Execution.Id, $.inputs.days, $.inputs.team)"
        )
        done = validate(validator, machine, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr

    def test_what_step_functions_cannot_say_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(FlowError, match="step 'b': parameter 'trigger' is a list of objects or lists"):
            machine_of("""
                flow_id: bad
                steps:
                  - {id: a, agent: data, action: list_customers}
                  - id: b
                    agent: governance
                    action: list_approvals
                    depends_on: [a]
                    parameters: {trigger: [["${steps.a.output.customer_ids}"], x]}
            """, tmp_path)
        with pytest.raises(FlowError, match=r"unknown or malformed placeholder 'zone'"):
            machine_of("flow_id: x\nsteps:\n  - {id: a, agent: data, action: list_customers}\n", tmp_path,
                       template="arn:aws:lambda:${zone}:1:function:x")

    def test_goal_and_plan_are_pass_states_and_paths_quote_odd_names(self) -> None:
        states = export_asl(parse_flow(REPO / "config" / "flows" / "daily_cvm_cycle.yaml")[0])["States"]
        assert states["goal"]["Type"] == "Pass" and states["goal"]["Result"]["flow_id"] == "daily_cvm_cycle"
        assert states["plan"]["Result"]["plan"]["stages"][0] == ["goal"]
        assert path("steps", "my-step", "*", "0") == "$.steps['my-step'][*][0]"


@pytest.mark.slow
def test_cvm_flows_export_writes_a_valid_machine(run_cli: Any, validator: Path, tmp_path: Path) -> None:
    target = tmp_path / "asl" / "onboarding.json"
    done = run_cli("cvm", "flows", "export", "onboarding", "--format", "asl", "--output-file", str(target),
                   "--config", str(CONFIG), "--data-dir", str(SAMPLE), "--region", "eu-west-1")
    assert done.returncode == 0, done.stderr
    assert f"ASL state machine of flow onboarding written to {target}" in done.stderr
    machine = json.loads(target.read_text(encoding="utf-8"))
    assert machine["States"]["profile"]["Resource"] == "arn:aws:lambda:eu-west-1:123456789012:function:cvm-data-get_customer_data"
    checked = subprocess.run([str(validator), "--json-path", str(target)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout
    refused = run_cli("cvm", "flows", "export", "onboarding", "--format", "asl", "--arn-template", "arn:${nope}",
                      "--config", str(CONFIG), "--data-dir", str(SAMPLE))
    assert refused.returncode == 2 and "unknown or malformed placeholder 'nope'" in refused.stderr
