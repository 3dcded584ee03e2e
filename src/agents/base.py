"""The agent base: validate a message, look its type up in one table, run the handler.

An agent never raises out of ``process``: an unknown type, an invalid message
or a ``CVMError`` in a handler comes back as a typed ``ErrorResponse``. Other
exceptions are bugs and propagate (the batch runner records them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from cvm.agents.messages import REQUEST_ADAPTER, ErrorResponse
from cvm.utils import errors
from cvm.utils.errors import AgentError, CVMError

log = structlog.get_logger(__name__)

Handler = Callable[[Any], BaseModel]
R = TypeVar("R", bound=BaseModel)


class BaseAgent:
    """An agent owns one responsibility; subclasses fill ``handlers``."""

    name: ClassVar[str] = "agent"

    def handlers(self) -> Mapping[str, Handler]:
        """Message type -> handler; the one dispatch table of the agent."""
        raise NotImplementedError

    def process(self, message: BaseModel | Mapping[str, Any]) -> BaseModel:
        """Handle one message (a typed request or a plain dict) and return a typed response."""
        table = self.handlers()
        if isinstance(message, Mapping):
            raw = message
            kind = raw.get("type")
            if not isinstance(kind, str) or kind not in table:
                return self._unknown_type(kind, table)
            try:
                message = REQUEST_ADAPTER.validate_python(dict(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"][1:]) or "<message>"
                customer_id = raw.get("customer_id")
                return ErrorResponse(
                    error_type="invalid_message",
                    message=f"{self.name}: {kind} message field {field}: {first['msg']}",
                    customer_id=customer_id if isinstance(customer_id, str) else None,
                )
        kind = getattr(message, "type", None)
        handler = table.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return self._unknown_type(kind, table)
        try:
            return handler(message)
        except CVMError as exc:
            log.info("agent_error", agent=self.name, message_type=kind, error=str(exc), customer_id=exc.customer_id)
            return ErrorResponse(error_type=type(exc).__name__, message=str(exc), customer_id=exc.customer_id)

    def _unknown_type(self, kind: Any, table: Mapping[str, Handler]) -> ErrorResponse:
        return ErrorResponse(
            error_type="unknown_message_type",
            message=f"{self.name} does not handle message type {kind!r}; it handles: {', '.join(sorted(table))}",
        )


def expect(response: BaseModel, kind: type[R]) -> R:
    """The response as ``kind``, or the agent's error raised as a ``CVMError``."""
    if isinstance(response, kind):
        return response
    if isinstance(response, ErrorResponse):
        error_class = getattr(errors, response.error_type, None)
        if not (isinstance(error_class, type) and issubclass(error_class, CVMError)):
            error_class = AgentError
        raise error_class(response.message, customer_id=response.customer_id)
    raise AgentError(f"expected a {kind.__name__} response, got {type(response).__name__}")
