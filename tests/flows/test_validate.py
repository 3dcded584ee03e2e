"""Flow files: loading, and validation before running (every error names the step and the fix); inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvm.flows.catalog import ActionCatalog
from cvm.flows.plan import stages, topological_order
from cvm.flows.validate import FlowValidationError, load_flow, parse_flow, resolve_inputs
from cvm.utils.errors import FlowError
from tests.flows.conftest import GOOD

REPO = Path(__file__).resolve().parents[2]
STANDARD_FLOWS = sorted((REPO / "config" / "flows").glob("*.yaml"))


def problems_of(path: Path, catalog: ActionCatalog | None) -> list[str]:
    with pytest.raises(FlowValidationError) as caught:
        load_flow(path, catalog)
    return [str(p) for p in caught.value.problems]


class TestValidFlows:
    """The standard flows and a hand-written one validate against the real agent registry."""

    @pytest.mark.parametrize("path", STANDARD_FLOWS, ids=lambda p: p.stem)
    def test_standard_flow_validates(self, path: Path, catalog: ActionCatalog):
        loaded = load_flow(path, catalog)
        assert loaded.flow_id == path.stem
        assert loaded.definition.trigger is not None and loaded.definition.trigger.parsed_schedule() is not None

    def test_the_five_standard_flows_are_shipped(self):
        assert [p.stem for p in STANDARD_FLOWS] == [
            "churn_prevention", "daily_cvm_cycle", "network_issue_outreach", "onboarding", "renewal_management",
        ]

    def test_good_flow(self, write, catalog: ActionCatalog):
        loaded = load_flow(write(GOOD), catalog)
        assert loaded.definition.version == "1" and len(loaded.digest) == 64
        assert stages(loaded.definition) == [["load"], ["fuse", "forecast"], ["decide"]]
        assert topological_order(loaded.definition) == ["load", "fuse", "forecast", "decide"]

    def test_registry_is_data(self, write, make_runtime):
        """A catalog without an agent rejects steps that use it; nothing is hard-coded."""
        agents = {k: v for k, v in make_runtime().agents().items() if k != "insight"}
        with pytest.raises(FlowValidationError, match="step 'fuse': unknown agent 'insight'"):
            load_flow(write(GOOD), ActionCatalog.from_agents(agents))


class TestValidationErrors:
    """Each mistake is reported with the step it is in and how to fix it."""

    def test_cycle(self, write, catalog):
        path = write("""
            flow_id: loop
            steps:
              - {id: a, agent: data, action: list_customers, depends_on: [c]}
              - {id: b, agent: data, action: list_customers, depends_on: [a]}
              - {id: c, agent: data, action: list_customers, depends_on: [b]}
        """)
        assert problems_of(path, catalog) == [
            "step 'a': dependency cycle a -> c -> b -> a; remove one of these depends_on entries so the steps form a DAG"
        ]

    def test_yaml_aliases_expanding_to_a_huge_document_are_refused(self, write):
        text = "flow_id: bomb\nsteps:\n  - id: a\n    agent: data\n    action: list_customers\n    parameters:\n"
        text += '      p0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\n'
        text += "".join(f"      p{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 6))  # 9**6 values
        with pytest.raises(FlowError, match="over 100,000 values once YAML aliases are expanded"):
            parse_flow(write(text))

    @pytest.mark.slow
    def test_deep_nesting_is_a_flow_error_not_a_crash(self, write):
        path = write("flow_id: deep\nsteps:\n  - {id: a, agent: data, action: list_customers, parameters: {p: "
                     + "[" * 3000 + "]" * 3000 + "}}\n")
        with pytest.raises(FlowError, match="nested too deeply"):
            parse_flow(path)
        with pytest.raises(FlowError, match="nested more than 64 levels"):
            parse_flow(write("flow_id: deep\nsteps: " + "[" * 80 + "]" * 80 + "\n", "less_deep.yaml"))

    def test_self_dependency(self, write, catalog):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: data, action: list_customers, depends_on: a}\n")
        assert "step 'a': it depends on itself; remove 'a' from its depends_on" in problems_of(path, catalog)

    def test_unknown_agent(self, write, catalog):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: insights, action: fuse_signals}\n")
        [problem] = problems_of(path, catalog)
        assert problem.startswith("step 'a': unknown agent 'insights'; did you mean 'insight'? known agents: allocation, data, decision,")

    def test_unknown_action(self, write, catalog):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: insight, action: fuse}\n")
        [problem] = problems_of(path, catalog)
        assert problem.startswith("step 'a': agent 'insight' has no action 'fuse'; did you mean 'fuse_signals'? known actions of insight: ")
        assert "forecast_churn" in problem and problem.endswith("fuse_signals")

    def test_unknown_parameter(self, write, catalog):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: insight, action: fuse_signals, parameters: {customer: U1}}\n")
        assert problems_of(path, catalog) == [
            "step 'a': unknown parameter 'customer' for insight.fuse_signals; insight.fuse_signals takes: customer_ids"
        ]

    def test_wrong_parameter_type_and_missing_parameter(self, write, catalog):
        path = write("""
            flow_id: x
            steps:
              - {id: a, agent: insight, action: forecast_churn, parameters: {horizon_days: soon}}
              - {id: b, agent: governance, action: get_approval}
        """)
        found = problems_of(path, catalog)
        assert found[0].startswith("step 'a': parameter horizon_days of insight.forecast_churn: Input should be a valid integer")
        assert found[0].endswith("(got 'soon'); give a value of the right type")
        assert found[1] == "step 'b': governance.get_approval needs parameter 'request_id'; add it under parameters: (it takes: request_id)"

    def test_nested_parameters_are_checked_around_references(self, write, catalog):
        path = write("""
            flow_id: x
            steps:
              - {id: a, agent: data, action: list_customers}
              - id: b
                agent: orchestrator
                action: trigger_and_process
                depends_on: [a]
                parameters: {trigger: {customer_ids: "${steps.a.output.customer_ids}"}, treatment_key: service_sms}
        """)
        assert problems_of(path, catalog) == [
            "step 'b': orchestrator.trigger_and_process needs parameter 'trigger.trigger_type'; "
            "add it under parameters: (it takes: trigger, treatment_key, run_id)"
        ]

    def test_missing_dependency(self, write, catalog):
        path = write("flow_id: x\nsteps:\n  - {id: load, agent: data, action: list_customers}\n"
                     "  - {id: b, agent: data, action: list_customers, depends_on: [lod]}\n")
        assert problems_of(path, catalog) == ["step 'b': depends_on names a missing step 'lod'; did you mean 'load'? known steps: load, b"]

    @pytest.mark.parametrize(
        ("reference", "expected"),
        [
            ("${steps.load.customer_ids}", "step 'b': bad reference ${steps.load.customer_ids}; "
             "${steps.load.customer_ids} must read a step's output: ${steps.load.output} or ${steps.load.output.FIELD}"),
            ("${run.day}", "step 'b': bad reference ${run.day}; ${run.day}: a run reference is one of ${run.id}, ${run.started_at}, ${run.flow_id}"),
            ("${secrets.key}", "step 'b': bad reference ${secrets.key}; ${secrets.key}: unknown reference root 'secrets'; use inputs, steps, run, trigger, customer or a bare ${NAME}"),
            ("${inputs.days}", "step 'b': ${inputs.days} names an undeclared input 'days'; declare it under inputs: (known: none)"),
            ("${steps.lod.output.customer_ids}", "step 'b': ${steps.lod.output.customer_ids} names a missing step 'lod'; did you mean 'load'? known steps: load, b"),
            ("${trigger.filter.segment}", "step 'b': ${trigger.filter.segment}: trigger.filter has no 'segment'; add it under trigger.filter (it has: nothing)"),
        ],
    )
    def test_bad_reference(self, write, catalog, reference: str, expected: str):
        path = write(f"""
            flow_id: x
            steps:
              - {{id: load, agent: data, action: list_customers}}
              - {{id: b, agent: insight, action: fuse_signals, depends_on: [load], parameters: {{customer_ids: "{reference}"}}}}
        """)
        assert problems_of(path, catalog) == [expected]

    def test_reference_to_a_field_the_output_does_not_have(self, write, catalog):
        path = write("""
            flow_id: x
            steps:
              - {id: load, agent: data, action: list_customers}
              - {id: b, agent: insight, action: fuse_signals, depends_on: [load], parameters: {customer_ids: "${steps.load.output.ids}"}}
              - {id: c, agent: orchestrator, action: process_batch, depends_on: [b], parameters: {customer_ids: "${steps.b.output.at_risk.customer_id}"}}
        """)
        found = problems_of(path, catalog)
        assert found[0] == (
            "step 'b': ${steps.load.output.ids} does not exist in the output of data.list_customers: "
            "CustomerListResponse has no field 'ids' (it has: type, customer_ids); use one of its fields: customer_ids"
        )
        assert "at_risk is a list: use an index (0) or * before 'customer_id'" in found[1]

    def test_reference_to_a_step_that_is_not_upstream(self, write, catalog):
        path = write("""
            flow_id: x
            steps:
              - {id: load, agent: data, action: list_customers}
              - {id: fuse, agent: insight, action: fuse_signals}
              - {id: decide, agent: orchestrator, action: process_batch, depends_on: [fuse],
                 parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
        """)
        assert problems_of(path, catalog) == [
            "step 'decide': ${steps.load.output.customer_ids} reads step 'load', which is not upstream of it; "
            "add 'load' to its depends_on (directly or through a step that depends on it)"
        ]

    def test_transitive_upstream_is_enough(self, write, catalog):
        path = write("""
            flow_id: x
            steps:
              - {id: load, agent: data, action: list_customers}
              - {id: fuse, agent: insight, action: fuse_signals, depends_on: [load]}
              - {id: decide, agent: orchestrator, action: process_batch, depends_on: [fuse],
                 parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
        """)
        load_flow(path, catalog)

    @pytest.mark.parametrize(
        ("schedule", "words"),
        [
            ("0 9 * *", "trigger.schedule '0 9 * *' has 4 field(s); standard cron has 5"),
            ("61 9 * * *", "trigger.schedule '61 9 * * *' is not a valid cron"),
            ("cron(0 9 * * *)", "trigger.schedule 'cron(0 9 * * *)': the AWS form has 6 fields (minutes hours day-of-month month day-of-week year), got 5"),
            ("cron(0 9 * * MON *)", "trigger.schedule 'cron(0 9 * * MON *)': in the AWS form exactly one of day-of-month and day-of-week must be '?'"),
        ],
    )
    def test_bad_cron(self, write, schedule: str, words: str):
        path = write(f'flow_id: x\ntrigger: {{schedule: "{schedule}"}}\nsteps:\n  - {{id: a, agent: data, action: list_customers}}\n')
        [problem] = problems_of(path, None)
        assert problem.startswith(words)
        assert problem.endswith("; correct trigger.schedule")

    def test_shape_errors_name_the_step_and_the_allowed_keys(self, write):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: data, action: list_customers, param: {}}\n  - {id: b, agent: data}\n")
        assert problems_of(path, None) == [
            "step 'a': unknown key 'param'; remove it or check its spelling; allowed: id, agent, action, description, depends_on, parameters, error_handling",
            "step 'b': action is missing; add 'action:'",
        ]

    def test_filter_must_be_a_mapping_or_customer_conditions(self, write):
        path = write("flow_id: x\ntrigger: {filter: 3}\nsteps:\n  - {id: a, agent: data, action: list_customers}\n")
        [problem] = problems_of(path, None)
        assert problem.startswith("trigger.filter: trigger.filter must be a mapping of names to values")
        path = write("flow_id: x\ntrigger: {filter: [a, 'customer.x >']}\nsteps:\n  - {id: a, agent: data, action: list_customers}\n")
        assert problems_of(path, None) == [
            "trigger.filter 'a' reads a; a filter reads customer fields: customer.NAME (e.g. customer.id, customer.customer_id, "
            "customer.name, customer.segment)",
            "trigger.filter 'customer.x >': syntax error (invalid syntax) at column 1; write a condition over customer fields, "
            "e.g. customer.renewal_date <= now() + interval '30 days'",
        ]

    def test_duplicate_ids_and_bad_names(self, write):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: data, action: list_customers}\n  - {id: a, agent: data, action: list_customers}\n")
        assert problems_of(path, None) == ["step 'a': the step id is used twice; give every step its own id"]
        path = write("flow_id: 'my flow'\nsteps:\n  - {id: a, agent: data, action: list_customers}\n")
        assert problems_of(path, None) == ["flow_id 'my flow' is not a valid name; use 1-64 letters, digits, '_' or '-', starting with a letter"]

    def test_no_steps(self, write):
        assert problems_of(write("flow_id: x\nsteps: []\n"), None) == ["the flow has no steps; add at least one step under steps:"]

    def test_file_problems(self, write, tmp_path: Path):
        with pytest.raises(FlowError, match=r"not valid YAML at line 3, column 1"):
            parse_flow(write("flow_id: x\nsteps: [\n"))
        with pytest.raises(FlowError, match="a flow file is a mapping"):
            parse_flow(write("- a\n- b\n"))
        with pytest.raises(FlowError, match="no such flow file"):
            parse_flow(tmp_path / "missing.yaml")

    def test_all_problems_are_collected_and_the_message_names_the_first(self, write, catalog):
        path = write("flow_id: x\nsteps:\n  - {id: a, agent: nope, action: x}\n  - {id: b, agent: data, action: nope}\n")
        with pytest.raises(FlowValidationError) as caught:
            load_flow(path, catalog)
        assert len(caught.value.problems) == 2
        assert str(caught.value).startswith(f"{path}: step 'a': unknown agent 'nope'")
        assert str(caught.value).endswith(f"(and 1 more problem(s): 'cvm flows validate {path}' lists them)")


class TestInputs:
    """Defaults, overrides (typed, parsed from --param text), required inputs, unknown names."""

    def _flow(self, write):
        return parse_flow(write("""
            flow_id: x
            inputs:
              days: 90
              name: {type: string, default: none}
              ids: {type: list, default: []}
              who: {required: true, description: the approver}
            steps:
              - {id: a, agent: data, action: list_customers}
        """))[0]

    def test_resolution(self, write):
        flow = self._flow(write)
        assert resolve_inputs(flow, {"who": "ana"}) == {"days": 90, "name": "none", "ids": [], "who": "ana"}
        assert resolve_inputs(flow, {"who": "ana", "days": "30", "name": "123", "ids": '["U1"]'}, from_text=True) == {
            "days": 30, "name": "123", "ids": ["U1"], "who": "ana",
        }

    def test_errors(self, write):
        flow = self._flow(write)
        with pytest.raises(FlowError, match="needs input 'who' \\(the approver\\); give --param who=VALUE"):
            resolve_inputs(flow, {})
        with pytest.raises(FlowError, match="input 'days' must be a integer"):
            resolve_inputs(flow, {"who": "a", "days": "soon"}, from_text=True)
        with pytest.raises(FlowError, match="has no input 'dayz'; its inputs are: days, name, ids, who"):
            resolve_inputs(flow, {"dayz": 1})
