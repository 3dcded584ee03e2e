"""The agent base: handlers registered once per class, typed requests and responses, typed errors across agents."""

from __future__ import annotations

from typing import Literal

import pytest

from cvm.agents.base import BaseAgent, expect, forward, handles
from cvm.agents.data import DataAgent
from cvm.agents.flows import FlowAgent
from cvm.agents.messages import (
    REQUEST_MODELS,
    RESPONSE_MODELS,
    Ack,
    ClearCache,
    CustomerListResponse,
    ErrorResponse,
    GetCustomerData,
    ListCustomers,
    Request,
    request_adapter,
    response_adapter,
)
from cvm.flows.catalog import FLOW_REQUESTS
from cvm.utils.errors import AgentError, InvalidCustomerIdError, UnknownCustomerError, UsageError


class Echo(BaseAgent):
    """A test agent: lists no customers, clears nothing, and refuses ``clear_cache`` when told to."""

    name = "Echo"

    def __init__(self, refuse: bool = False):
        self.refuse = refuse
        self.calls = 0

    @handles(ListCustomers)
    def _list(self, message: ListCustomers) -> CustomerListResponse:
        self.calls += 1
        return CustomerListResponse(customer_ids=("U1",))

    @handles(ClearCache)
    def _clear(self, message: ClearCache) -> Ack:
        if self.refuse:
            raise UnknownCustomerError("no such customer U9", customer_id="U9")
        return Ack(detail="cleared")


class Front(BaseAgent):
    """A test agent that fronts an ``Echo``: ``list_customers`` is passed on."""

    name = "Front"

    def __init__(self, echo: Echo):
        self.echo = echo

    _list = forward(ListCustomers, "echo")


class TestRegistry:
    """Handlers are collected once per class from ``@handles``, inherited and overridable."""

    def test_registered_once_per_class(self):
        assert sorted(Echo.registry) == ["clear_cache", "list_customers"]
        assert Echo.registry["list_customers"].request is ListCustomers
        assert Echo.registry["list_customers"].response is CustomerListResponse
        assert Echo().registry is Echo.registry

    def test_subclass_inherits_and_overrides(self):
        class Quiet(Echo):
            @handles(ClearCache)
            def _quiet(self, message: ClearCache) -> Ack:
                return Ack(detail="quiet")

        assert Quiet.registry["clear_cache"].method == "_quiet"
        assert Quiet.registry["list_customers"].method == "_list"
        assert Echo.registry["clear_cache"].method == "_clear"
        assert Quiet().process(ClearCache()) == Ack(detail="quiet")

    def test_two_handlers_of_one_type_are_refused(self):
        with pytest.raises(TypeError, match="both handle 'clear_cache'"):
            class Twice(BaseAgent):
                @handles(ClearCache)
                def _a(self, message: ClearCache) -> Ack:
                    return Ack(detail="a")

                @handles(ClearCache)
                def _b(self, message: ClearCache) -> Ack:
                    return Ack(detail="b")

    def test_flow_agent_handles_the_catalogs_flow_requests(self):
        assert set(FlowAgent.registry) == {r.model_fields["type"].default for r in FLOW_REQUESTS} == {"goal", "plan", "wait"}


class TestDispatch:
    """``process`` takes a typed request or a plain dict and answers with the declared response or an ``ErrorResponse``."""

    def test_typed_and_dict_messages(self):
        agent = Echo()
        assert agent.process(ListCustomers()) == CustomerListResponse(customer_ids=("U1",))
        assert agent.process({"type": "list_customers"}) == CustomerListResponse(customer_ids=("U1",))
        assert agent.calls == 2

    def test_unknown_type_lists_what_the_agent_handles(self):
        answer = Echo().process({"type": "get_customer_data", "customer_id": "U1"})
        assert answer == ErrorResponse(
            error_type="unknown_message_type",
            message="Echo does not handle message type 'get_customer_data'; it handles: clear_cache, list_customers",
        )
        assert Echo().process(GetCustomerData(customer_id="U1")).error_type == "unknown_message_type"  # type: ignore[union-attr]

    def test_invalid_dict_names_the_field(self):
        answer = DataAgent.__new__(DataAgent).process({"type": "get_customer_data", "customer_id": 7})
        assert isinstance(answer, ErrorResponse)
        assert (answer.error_type, answer.message) == (
            "invalid_message", "DataAgent: get_customer_data message field customer_id: Input should be a valid string",
        )

    def test_error_crosses_as_its_code(self):
        answer = Echo(refuse=True).process(ClearCache())
        assert answer == ErrorResponse(error_type="unknown_customer", message="no such customer U9", customer_id="U9")

    def test_wrong_response_type_is_a_bug(self):
        class Liar(BaseAgent):
            @handles(ClearCache)
            def _clear(self, message: ClearCache) -> Ack:
                return CustomerListResponse(customer_ids=())  # type: ignore[return-value]

        with pytest.raises(TypeError, match="answered 'clear_cache' with a CustomerListResponse, not the declared Ack"):
            Liar().process(ClearCache())

    def test_forward_passes_answers_and_errors_on(self):
        front = Front(Echo())
        assert front.process({"type": "list_customers"}) == CustomerListResponse(customer_ids=("U1",))
        assert Front.registry["list_customers"].response is CustomerListResponse
        assert front.process(ClearCache()).error_type == "unknown_message_type"  # type: ignore[union-attr]


class TestExpect:
    """``expect`` and ``ask`` turn an ``ErrorResponse`` back into the exception class its code names."""

    def test_code_maps_back_to_the_class(self):
        with pytest.raises(UnknownCustomerError) as caught:
            Echo(refuse=True).ask(ClearCache())
        assert (caught.value.customer_id, str(caught.value)) == ("U9", "no such customer U9")

    def test_subclass_codes(self):
        with pytest.raises(InvalidCustomerIdError):
            expect(ErrorResponse(error_type="invalid_customer_id", message="bad id"), Ack)
        with pytest.raises(UsageError):
            expect(ErrorResponse(error_type="invalid_customer_id", message="bad id"), Ack)

    def test_unregistered_code_is_refused_at_the_boundary(self):
        with pytest.raises(ValueError, match="unknown error code 'RuntimeError'"):
            ErrorResponse(error_type="RuntimeError", message="no getattr on arbitrary names")

    def test_wrong_kind_is_an_agent_error(self):
        with pytest.raises(AgentError, match="expected a Ack response, got CustomerListResponse"):
            expect(CustomerListResponse(customer_ids=()), Ack)

    def test_ask_returns_the_declared_response(self):
        assert Echo().ask(ListCustomers()) == CustomerListResponse(customer_ids=("U1",))


class TestMessages:
    """Every request declares a response model that the one response union can read back."""

    def test_every_request_declares_a_response_in_the_union(self):
        for kind, model in REQUEST_MODELS.items():
            assert issubclass(model, Request), kind
            response = model.response_type
            assert RESPONSE_MODELS.get(response.model_fields["type"].default) is response, (
                f"{kind} answers {response.__name__}, which is not in AgentResponse"
            )

    def test_request_without_a_response_is_refused(self):
        with pytest.raises(TypeError, match="must declare its response model"):
            class Bare(Request):  # type: ignore[type-arg]
                type: Literal["bare"] = "bare"

    def test_adapters_round_trip(self):
        message = request_adapter().validate_python({"type": "get_customer_data", "customer_id": "U1"})
        assert message == GetCustomerData(customer_id="U1")
        error = ErrorResponse(error_type="usage_error", message="no")
        assert response_adapter().validate_python(error.model_dump()) == error

