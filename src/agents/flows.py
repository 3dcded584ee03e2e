"""The ``flow`` pseudo-agent: the flow runner's own actions (``goal``, ``plan``, ``wait``), recorded as steps like any other.

The flow language, its validation, plan artifact and runner are ``cvm.flows``;
the runner makes one ``FlowAgent`` per run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from cvm.agents.base import BaseAgent, Handler
from cvm.agents.messages import ErrorResponse
from cvm.flows.catalog import ActionCatalog
from cvm.flows.plan import build_plan, plan_in_words, plan_markdown
from cvm.flows.schema import (
    FLOW_ACTIONS,
    FLOW_REQUEST_ADAPTER,
    FlowDefinition,
    FlowGoal,
    FlowGoalResponse,
    FlowPlan,
    FlowPlanResponse,
    FlowWait,
    Waited,
)


class FlowAgent(BaseAgent):
    """The ``flow`` pseudo-agent: the runner's own actions, recorded as steps like any other."""

    name = "FlowAgent"
    actions: dict[str, tuple[type[BaseModel], type[BaseModel]]] = FLOW_ACTIONS

    def __init__(
        self, flow: FlowDefinition, catalog: ActionCatalog | None = None, inputs: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._flow = flow
        self._catalog = catalog
        self._inputs = dict(inputs or {})
        self._sleep = sleep

    def handlers(self) -> Mapping[str, Handler]:
        return {"goal": self._goal, "plan": self._plan, "wait": self._wait}

    def process(self, message: BaseModel | Mapping[str, Any]) -> BaseModel:
        if isinstance(message, Mapping) and message.get("type") in self.actions:
            raw = message
            try:
                message = FLOW_REQUEST_ADAPTER.validate_python(dict(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"][1:]) or "<message>"
                return ErrorResponse(error_type="invalid_message", message=f"flow: {raw.get('type')} field {where}: {first['msg']}")
        return super().process(message)

    def _goal(self, message: FlowGoal) -> FlowGoalResponse:
        f = self._flow
        return FlowGoalResponse(flow_id=f.flow_id, version=f.version, goal=f.goal_text(), description=f.description, inputs=self._inputs)

    def _plan(self, message: FlowPlan) -> FlowPlanResponse:
        plan = build_plan(self._flow, self._catalog, self._inputs)
        return FlowPlanResponse(plan=plan, steps=plan_in_words(plan), markdown=plan_markdown(plan))

    def _wait(self, message: FlowWait) -> Waited:
        self._sleep(message.seconds)
        return Waited(seconds=message.seconds)
