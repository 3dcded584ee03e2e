"""The LLM behind a small interface: JSON-schema Chat Completions through the real ``openai`` client.

Works with any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama,
llama.cpp server) via ``OPENAI_BASE_URL``. Timeouts and retries are the
client's own (``timeout``, ``max_retries``: exponential backoff on 429/5xx and
connection errors); a semaphore bounds the requests in flight. ``openai`` is
imported only when a client is built, so the rules path starts fast.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from cvm.utils.errors import LLMUnavailableError, ModelBehaviorError

log = structlog.get_logger(__name__)


class LLMClient(Protocol):
    """Asks a model for one JSON object that matches ``schema``."""

    model: str

    def complete_json(self, messages: Sequence[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> dict[str, Any]: ...


class RateLimiter:
    """At most ``per_second`` starts per second across threads: each caller waits for its own time slot."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            self._sleep(start - now)


class OpenAIJSONClient:
    """``LLMClient`` over ``openai.OpenAI().chat.completions`` with structured output."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str | None,
        timeout_seconds: float,
        max_retries: int,
        max_concurrency: int,
        temperature: float = 0.0,
        max_tokens: int = 400,
        requests_per_second: float | None = None,
    ):
        import openai

        self.model = model
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed-for-local-endpoints",
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._rate = RateLimiter(requests_per_second) if requests_per_second else None

    def complete_json(self, messages: Sequence[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The model's answer parsed as JSON; ``LLMUnavailableError`` or ``ModelBehaviorError`` otherwise."""
        with self._slots:
            if self._rate is not None:
                self._rate.wait()
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=list(messages),
                    temperature=self._temperature,
                    max_tokens=self._max_tokens,
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": schema_name, "strict": True, "schema": schema},
                    },
                )
            except self._openai.APITimeoutError:
                raise LLMUnavailableError("the LLM did not answer within the timeout") from None
            except self._openai.APIStatusError as exc:
                raise LLMUnavailableError(f"the LLM endpoint answered HTTP {exc.status_code}") from None
            except self._openai.APIError as exc:
                raise LLMUnavailableError(f"the LLM endpoint failed ({type(exc).__name__})") from None
        try:
            content = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            raise ModelBehaviorError("the LLM response has no message content") from None
        if not content:
            raise ModelBehaviorError("the LLM returned an empty message")
        try:
            answer = json.loads(content)
        except json.JSONDecodeError:
            raise ModelBehaviorError("the LLM answer is not valid JSON") from None
        if not isinstance(answer, dict):
            raise ModelBehaviorError("the LLM answer is not a JSON object")
        return answer
