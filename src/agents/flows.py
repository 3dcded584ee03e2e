"""The ``flow`` pseudo-agent: the flow runner's own actions (``goal``, ``plan``, ``wait``), recorded as steps like any other.

Its messages live with every other in ``cvm.agents.messages``. The flow
language, its validation, plan artifact and runner are ``cvm.flows``; the
runner makes one ``FlowAgent`` per run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from cvm.agents.base import BaseAgent, handles
from cvm.agents.messages import FlowGoal, FlowGoalResponse, FlowPlan, FlowPlanResponse, FlowWait, Waited
from cvm.flows.catalog import ActionCatalog
from cvm.flows.plan import build_plan, plan_in_words, plan_markdown
from cvm.flows.schema import FlowDefinition


class FlowAgent(BaseAgent):
    """The ``flow`` pseudo-agent: the runner's own actions, recorded as steps like any other."""

    name = "FlowAgent"

    def __init__(
        self, flow: FlowDefinition, catalog: ActionCatalog | None = None, inputs: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._flow = flow
        self._catalog = catalog
        self._inputs = dict(inputs or {})
        self._sleep = sleep

    @handles(FlowGoal)
    def _goal(self, message: FlowGoal) -> FlowGoalResponse:
        f = self._flow
        return FlowGoalResponse(flow_id=f.flow_id, version=f.version, goal=f.goal_text(), description=f.description, inputs=self._inputs)

    @handles(FlowPlan)
    def _plan(self, message: FlowPlan) -> FlowPlanResponse:
        plan = build_plan(self._flow, self._catalog, self._inputs)
        return FlowPlanResponse(plan=plan, steps=plan_in_words(plan), markdown=plan_markdown(plan))

    @handles(FlowWait)
    def _wait(self, message: FlowWait) -> Waited:
        self._sleep(message.seconds)
        return Waited(seconds=message.seconds)
