"""The ``flow`` pseudo-agent: records the flow's goal and plan in the run, waits, rejects bad messages."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cvm.agents.flows import FlowAgent
from cvm.flows.catalog import ActionCatalog
from cvm.flows.validate import load_flow
from tests.flows.conftest import GOOD


def test_flow_pseudo_agent_records_goal_and_plan(tmp_path: Path, make_runtime: Callable[..., Any]) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(GOOD), encoding="utf-8")
    catalog = ActionCatalog.from_agents(make_runtime().agents())
    loaded = load_flow(path, catalog)
    agent = FlowAgent(loaded.definition, catalog, {"horizon_days": 30})
    goal = agent.process({"type": "goal"})
    assert goal.goal == "A demo" and goal.inputs == {"horizon_days": 30}
    plan = agent.process({"type": "plan"})
    assert plan.steps[3] == "4. decide - orchestrator.process_batch (after fuse, forecast)"
    assert plan.plan["inputs"]["horizon_days"]["value"] == 30
    assert agent.process({"type": "wait", "seconds": -1}).type == "error"
