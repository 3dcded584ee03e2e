"""The runner's customer side: how a customer flow reads its customer and applies its trigger's filter.

A mixin of ``FlowRunner`` (``cvm.flows.runner``): the customer is read through
the data agent's ``get_customer_data`` with the runner's own call path, so a
``FlowTestCase`` script of that action is the customer too; the namespace and
the filter's conditions are ``cvm.flows.customers``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import structlog
from pydantic import BaseModel

from cvm.agents.base import BaseAgent
from cvm.agents.messages import ErrorResponse
from cvm.flows.customers import customer_namespace, matches
from cvm.flows.schema import FlowDefinition, FlowStep
from cvm.flows.store import canonical_json
from cvm.utils.conditions import Condition
from cvm.utils.errors import CVMError, FlowError

log = structlog.get_logger("cvm.flows.runner")

CUSTOMER_STEP = FlowStep(id="customer", agent="data", action="get_customer_data", description="the run's customer")
"""How a customer flow reads its customer (scripted like any step's action in ``FlowTestCase``)."""


class CustomerRuns:
    """Reading a customer flow's customer, and which customers its filter selects (mixed into ``FlowRunner``)."""

    definition: FlowDefinition
    _agents: dict[str, BaseAgent]
    _intercept: Callable[[FlowStep, dict[str, Any]], Any] | None
    _filter: list[Condition]

    def read_customer(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """The customer as ``${customer.*}`` reads it, from the data agent (or the test's script for it)."""
        message = {"type": CUSTOMER_STEP.action, "customer_id": customer_id}
        try:
            answer = self._intercept(CUSTOMER_STEP, message) if self._intercept is not None else None
            if answer is None:
                agent = self._agents.get(CUSTOMER_STEP.agent)
                if agent is None:
                    raise FlowError("this runtime has no data agent")
                answer = agent.process(message)
        except CVMError as exc:
            raise FlowError(f"flow {self.definition.flow_id}: cannot read customer {customer_id!r} ({exc})") from None
        if isinstance(answer, ErrorResponse):
            raise FlowError(f"flow {self.definition.flow_id}: cannot read customer {customer_id!r} ({answer.message})")
        if isinstance(answer, BaseModel):
            answer = answer.model_dump(mode="json")
        return json.loads(canonical_json(customer_namespace(answer, customer_id, now)))

    def customer_matches(self, customer: Mapping[str, Any], now: datetime) -> tuple[bool, tuple[str, ...]]:
        """Whether the customer meets the trigger's filter at ``now`` (True when there is none), with the reasons."""
        outcome = matches(self._filter, customer, now)
        return outcome.matched, outcome.because

    def matching_customers(self, now: datetime) -> list[str]:
        """Every customer of the data agent that meets the trigger's filter at ``now`` (each read once; the whole base)."""
        agent = self._agents.get(CUSTOMER_STEP.agent)
        if agent is None:
            raise FlowError("this runtime has no data agent")
        listed = agent.process({"type": "list_customers"})
        if isinstance(listed, ErrorResponse):
            raise FlowError(f"flow {self.definition.flow_id}: cannot list the customers ({listed.message})")
        ids: list[str] = list(getattr(listed, "customer_ids", ()))
        return [cid for cid in ids if self._selected(cid, now)]

    def _selected(self, customer_id: str, now: datetime) -> bool:
        """Whether the filter selects the customer; one that cannot be read is kept, so its own run fails and says
        why (one unreadable customer must not stop the runs of every other customer, nor be left out silently)."""
        try:
            customer = self.read_customer(customer_id, now)
        except FlowError as exc:
            log.warning("flow_customer_unreadable", customer_id=customer_id, error=str(exc))
            return True
        return self.customer_matches(customer, now)[0]

    def customer_options(self, customer_id: str, now: datetime) -> dict[str, Any]:
        """What a customer run keeps in its options: the customer, and whether it met the filter (a named customer runs either way)."""
        customer = self.read_customer(customer_id, now)
        matched, because = self.customer_matches(customer, now)
        if self._filter and not matched:
            log.info("flow_customer_outside_filter", customer_id=customer_id, filter=list(self.definition.trigger.conditions))  # type: ignore[union-attr]
        return {"customer": customer, "customer_filter": {"matched": matched, "because": list(because)}}
