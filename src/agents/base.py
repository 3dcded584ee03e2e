"""The agent base: validate a message, find its handler in the class's registry, run it, check the answer.

A handler is a method marked ``@handles(SomeRequest)``; ``BaseAgent`` collects
the marks once per class (``__init_subclass__``) into ``registry`` (message
type -> request model and method), inherited and overridable by subclasses.
Each request model declares its response model (``Request[SomeResponse]``);
the dispatch checks that the handler answered with it.

An agent never raises out of ``process``: an unknown type, an invalid message
or a ``CVMError`` in a handler comes back as a typed ``ErrorResponse`` whose
``error_type`` is the error's stable code; ``expect`` and ``ask`` turn it back
into the same exception class. Other exceptions are bugs and propagate (the
batch runner records them, the CLI exits 3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar, overload

import structlog
from pydantic import BaseModel, ValidationError

from cvm.agents.messages import AgentResponse, ErrorResponse, Request
from cvm.tools.telemetry import AGENT_CALLS
from cvm.utils.errors import AgentError, CVMError, InvalidMessageError, UnknownMessageTypeError

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=BaseModel)
A = TypeVar("A", bound="BaseAgent")
Q = TypeVar("Q")

_MARK = "__cvm_handles__"


def message_type(request: type[Request[Any]]) -> str:
    """The ``type`` tag of a request model (``GetCustomerData`` -> ``get_customer_data``)."""
    tag = request.model_fields["type"].default
    assert isinstance(tag, str), f"{request.__name__}.type has no literal default"
    return tag


def handles(
    request: type[Request[R]],
) -> Callable[[Callable[[A, Q], R | ErrorResponse]], Callable[[A, Q], R | ErrorResponse]]:
    """Mark a method as the handler of ``request``; its return type is checked against the request's response model."""

    def mark(method: Callable[[A, Q], R | ErrorResponse]) -> Callable[[A, Q], R | ErrorResponse]:
        setattr(method, _MARK, request)
        return method

    return mark


def forward(request: type[Request[R]], to: str) -> Callable[[Any, Any], R | ErrorResponse]:
    """A handler of ``request`` that passes it on to the agent held in ``self.<to>`` and returns its answer.

    For an agent that fronts another (``_trigger_customers = forward(TriggerCustomers, "trigger")``).
    """

    def handler(self: Any, message: Any) -> Any:
        return getattr(self, to).process(message)

    handler.__name__ = handler.__qualname__ = f"forward_{message_type(request)}_to_{to}"
    setattr(handler, _MARK, request)
    return handler


@dataclass(frozen=True)
class Registration:
    """One message type an agent class handles: its request model and the method that serves it."""

    request: type[Request[Any]]
    method: str

    @property
    def response(self) -> type[BaseModel]:
        return self.request.response_type


class BaseAgent:
    """An agent owns one responsibility; subclasses mark their handlers with ``@handles``."""

    name: ClassVar[str] = "agent"
    registry: ClassVar[Mapping[str, Registration]] = MappingProxyType({})
    """Message type -> registration, built once per class from its ``@handles`` methods and its bases'."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = dict(cls.registry)
        own: dict[str, str] = {}
        for attribute, value in vars(cls).items():
            request = getattr(value, _MARK, None)
            if request is None:
                continue
            kind = message_type(request)
            if kind in own:
                raise TypeError(f"{cls.__name__}: {attribute} and {own[kind]} both handle {kind!r}")
            own[kind] = attribute
            table[kind] = Registration(request, attribute)
        cls.registry = MappingProxyType(table)

    @overload
    def process(self, message: Request[R]) -> R | ErrorResponse: ...
    @overload
    def process(self, message: Request[Any] | Mapping[str, Any]) -> AgentResponse: ...
    def process(self, message: Request[Any] | Mapping[str, Any]) -> BaseModel:
        """Handle one message (a typed request or a plain dict) and return a typed response.

        Timed into ``AGENT_CALLS`` (``cvm.tools.telemetry``): calls, errors (an ``ErrorResponse``
        or an exception) and latency per agent and message type, in memory; a run writes them once.
        """
        started = perf_counter()
        response: BaseModel | None = None
        try:
            response = self._dispatch(message)
            return response
        finally:
            kind = message.get("type") if isinstance(message, Mapping) else getattr(message, "type", None)
            AGENT_CALLS.record(
                self.name, kind if isinstance(kind, str) else "<unknown>", perf_counter() - started,
                response is None or isinstance(response, ErrorResponse),
            )

    def _dispatch(self, message: Request[Any] | Mapping[str, Any]) -> BaseModel:
        """Validate the message, find its handler, run it and check the answer's type."""
        if isinstance(message, Mapping):
            raw = message
            kind = raw.get("type")
            entry = self.registry.get(kind) if isinstance(kind, str) else None
            if entry is None:
                return self._unknown_type(kind)
            try:
                message = entry.request.model_validate(dict(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "<message>"
                customer_id = raw.get("customer_id")
                return ErrorResponse(
                    error_type=InvalidMessageError.code,
                    message=f"{self.name}: {kind} message field {field}: {first['msg']}",
                    customer_id=customer_id if isinstance(customer_id, str) else None,
                )
        kind = getattr(message, "type", None)
        entry = self.registry.get(kind) if isinstance(kind, str) else None
        if entry is None or not isinstance(message, entry.request):
            return self._unknown_type(kind)
        try:
            response = getattr(self, entry.method)(message)
        except CVMError as exc:
            log.info("agent_error", agent=self.name, message_type=kind, error=str(exc), customer_id=exc.customer_id)
            return ErrorResponse.of(exc)
        if not isinstance(response, (entry.response, ErrorResponse)):
            raise TypeError(
                f"{type(self).__name__}.{entry.method} answered {kind!r} with a {type(response).__name__},"
                f" not the declared {entry.response.__name__}"
            )
        return response

    def ask(self, request: Request[R]) -> R:
        """Send ``request`` through ``process`` and return its declared response, or raise the agent's error."""
        return expect(self.process(request), request.response_type)  # type: ignore[return-value]

    def _unknown_type(self, kind: Any) -> ErrorResponse:
        return ErrorResponse(
            error_type=UnknownMessageTypeError.code,
            message=f"{self.name} does not handle message type {kind!r}; it handles: {', '.join(sorted(self.registry))}",
        )


def expect(response: BaseModel, kind: type[R]) -> R:
    """The response as ``kind``, or the agent's error raised as the ``CVMError`` its code names."""
    if isinstance(response, kind):
        return response
    if isinstance(response, ErrorResponse):
        raise response.error()
    raise AgentError(f"expected a {kind.__name__} response, got {type(response).__name__}")
