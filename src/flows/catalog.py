"""What agents can do: the action catalog that validation checks flow steps against.

Agent name -> action -> its request and response models, read from the runtime's
agent registry (``Runtime.agents()``) and the one request union in
``cvm.agents.messages``, plus the built-in ``flow`` pseudo-agent's actions.

Why this module imports ``cvm.agents``: the catalog is built by inspecting the
live agents (their ``handlers()`` and the return annotations of those handlers,
following delegation to another agent's ``process``) and the request models of
``cvm.agents.messages``; nothing here sends an agent a message.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isclass
from typing import get_args

from pydantic import BaseModel

from cvm.agents.base import BaseAgent
from cvm.agents.messages import AgentRequest
from cvm.flows.schema import FLOW_ACTIONS, FLOW_AGENT


def request_models() -> dict[str, type[BaseModel]]:
    """Message type -> request model, read from the one union in ``cvm.agents.messages``."""
    union = get_args(AgentRequest)[0]
    found = {}
    for model in get_args(union):
        found[model.model_fields["type"].default] = model
    return found


def _response_model(agent: BaseAgent, action: str, depth: int = 0) -> type[BaseModel] | None:
    """The response model a handler is annotated to return (following delegation to another agent's ``process``)."""
    handler = agent.handlers().get(action)
    if handler is None or depth > 3:
        return None
    owner = getattr(handler, "__self__", None)
    if isinstance(owner, BaseAgent) and getattr(handler, "__name__", "") == "process" and owner is not agent:
        return _response_model(owner, action, depth + 1)
    try:
        returned = typing.get_type_hints(handler).get("return")
    except Exception:  # an annotation that cannot be resolved: unknown output, checked at run time
        return None
    if isclass(returned) and issubclass(returned, BaseModel) and returned is not BaseModel:
        return returned
    return None


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
        models = request_models()
        catalog = cls()
        for name, agent in agents.items():
            if name == FLOW_AGENT:
                continue
            catalog.agents[name] = {
                action: ActionSpec(name, action, models.get(action), _response_model(agent, action))
                for action in agent.handlers()
            }
        catalog.agents[FLOW_AGENT] = {
            action: ActionSpec(FLOW_AGENT, action, request, response) for action, (request, response) in FLOW_ACTIONS.items()
        }
        return catalog

    def with_scripted(self, pairs: Sequence[tuple[str, str]]) -> ActionCatalog:
        """The catalog plus scripted actions of agents this runtime does not have (``FlowTestCase``)."""
        agents = {name: dict(actions) for name, actions in self.agents.items()}
        for agent, action in pairs:
            if action not in agents.setdefault(agent, {}):
                agents[agent][action] = ActionSpec(agent, action, request_models().get(action), None, scripted=True)
        return ActionCatalog(agents)

    def spec(self, agent: str, action: str) -> ActionSpec | None:
        return self.agents.get(agent, {}).get(action)
