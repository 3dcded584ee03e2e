"""The action catalog: every agent's actions with the request and the declared response models."""

from __future__ import annotations

from cvm.agents.messages import (
    REQUEST_MODELS,
    FlowPlan,
    FlowPlanResponse,
    GetCustomerData,
    SignalFusion,
    TriggerCustomers,
    TriggerResult,
)
from cvm.flows.catalog import ActionCatalog


class TestCatalog:
    """Built from the agents' class registries and the requests' declared responses, never from annotations."""

    def test_declared_responses(self, catalog: ActionCatalog):
        spec = catalog.spec("orchestrator", "trigger_customers")  # forwarded to the trigger agent
        assert spec is not None and (spec.request, spec.response) == (TriggerCustomers, TriggerResult)
        fused = catalog.spec("insight", "fuse_signals")
        assert fused is not None and fused.response is SignalFusion
        plan = catalog.spec("flow", "plan")
        assert plan is not None and (plan.request, plan.response) == (FlowPlan, FlowPlanResponse)

    def test_every_action_is_a_request_of_the_union(self, catalog: ActionCatalog):
        for agent, actions in catalog.agents.items():
            for action, spec in actions.items():
                assert REQUEST_MODELS[action] is spec.request, (agent, action)
                assert spec.response is spec.request.response_type  # type: ignore[union-attr]

    def test_scripted_actions_are_unchecked(self, catalog: ActionCatalog):
        extended = catalog.with_scripted([("crm", "get_customer_data")])
        spec = extended.spec("crm", "get_customer_data")
        assert spec is not None and spec.scripted and (spec.request, spec.response) == (GetCustomerData, None)
