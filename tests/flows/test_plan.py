"""The plan artifact: JSON and Markdown."""

from __future__ import annotations

from cvm.flows.plan import build_plan, plan_markdown
from cvm.flows.validate import load_flow
from tests.flows.conftest import GOOD


class TestPlan:
    """The plan artifact: goal, steps in order with dependencies, parameters and outputs, stages."""

    def test_plan_json_and_markdown(self, write, catalog):
        loaded = load_flow(write(GOOD), catalog)
        plan = build_plan(loaded.definition, catalog)
        assert plan["goal"] == "A demo"
        assert plan["stages"] == [["load"], ["fuse", "forecast"], ["decide"]]
        decide = plan["steps"][-1]
        assert decide["depends_on"] == ["fuse", "forecast"] and decide["output_model"] == "BatchResult"
        assert [o["field"] for o in decide["outputs"]] == ["run_id", "results"]
        assert plan["steps"][0]["outputs"][0]["field"] == "customer_ids"
        text = plan_markdown(plan)
        assert text.startswith("# Plan: demo (version 1)\n\n**Goal:** A demo\n")
        assert "2. fuse, forecast" in text and "### 4. `decide`: orchestrator.process_batch" in text
