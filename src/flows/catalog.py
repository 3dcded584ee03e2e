"""What agents can do: the action catalog that validation checks flow steps against.

Agent name -> action -> its request and response models, read from the
runtime's agent registry (``Runtime.agents()``): each agent class's
``registry`` (built from its ``@handles`` methods) and each request model's
declared response (``Request[SomeResponse]``), plus the built-in ``flow``
pseudo-agent's actions. Nothing here reads a handler's annotations or sends an
agent a message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from cvm.agents.base import BaseAgent, message_type
from cvm.agents.messages import REQUEST_MODELS, FlowGoal, FlowPlan, FlowWait, Request
from cvm.flows.schema import FLOW_AGENT

FLOW_REQUESTS: tuple[type[Request[Any]], ...] = (FlowGoal, FlowPlan, FlowWait)
"""The ``flow`` pseudo-agent's actions (``FlowAgent`` in ``cvm.agents.flows`` handles them; the runner makes one per run)."""


@dataclass(frozen=True)
class ActionSpec:
    """One action of one agent: its request and response models when known (``None``: not checked)."""

    agent: str
    action: str
    request: type[BaseModel] | None
    response: type[BaseModel] | None
    scripted: bool = False


@dataclass
class ActionCatalog:
    """Agent name -> action -> spec; built from the runtime's registry, never from a fixed list."""

    agents: dict[str, dict[str, ActionSpec]] = field(default_factory=dict)

    @classmethod
    def from_agents(cls, agents: Mapping[str, BaseAgent]) -> ActionCatalog:
        catalog = cls()
        for name, agent in agents.items():
            if name == FLOW_AGENT:
                continue
            catalog.agents[name] = {
                action: ActionSpec(name, action, entry.request, entry.response) for action, entry in agent.registry.items()
            }
        catalog.agents[FLOW_AGENT] = {
            message_type(request): ActionSpec(FLOW_AGENT, message_type(request), request, request.response_type)
            for request in FLOW_REQUESTS
        }
        return catalog

    def with_scripted(self, pairs: Sequence[tuple[str, str]]) -> ActionCatalog:
        """The catalog plus scripted actions of agents this runtime does not have (``FlowTestCase``)."""
        agents = {name: dict(actions) for name, actions in self.agents.items()}
        for agent, action in pairs:
            if action not in agents.setdefault(agent, {}):
                agents[agent][action] = ActionSpec(agent, action, REQUEST_MODELS.get(action), None, scripted=True)
        return ActionCatalog(agents)

    def spec(self, agent: str, action: str) -> ActionSpec | None:
        return self.agents.get(agent, {}).get(action)
