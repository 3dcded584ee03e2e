"""The LLM behind a small interface: JSON-schema Chat Completions through the real ``openai`` client.

Works with any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama,
llama.cpp server) via ``OPENAI_BASE_URL``. Timeouts and retries are the
client's own (``timeout``, ``max_retries``: exponential backoff on 429/5xx and
connection errors); a semaphore bounds the requests in flight. ``openai`` is
imported only when a client is built, so the rules path starts fast.

Every way a call can go wrong ends as ``LLMUnavailableError`` (the endpoint) or
``ModelBehaviorError`` (the model), never as a parser's exception: a proxy's
HTML login page, an empty or truncated body or JSON of another shape is
something to fall back from, not a crash. A circuit breaker stops calling an
endpoint that failed several times in a row, for the rest of the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import structlog

from cvm.utils.errors import LLMUnavailableError, ModelBehaviorError, UsageError
from cvm.utils.logging import register_secret

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

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


class LLMCircuitOpenError(LLMUnavailableError):
    """The circuit breaker is open: the model is not called again in this run."""


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failed calls and stays open for the rest of the run.

    Why: a dead or slow endpoint otherwise costs timeout x (retries + 1) for every
    customer. Customers are decided in parallel, so after a failure the next call
    waits until no other call is in flight, and calls go one at a time until one
    succeeds: otherwise every worker freed by an early failure would start another
    full timeout before its neighbours' failures reach the threshold. Thread-safe:
    counting, opening and its one warning happen under one condition.
    """

    def __init__(self, threshold: int):
        if threshold < 1:
            raise ValueError("the circuit breaker threshold must be at least 1")
        self._threshold = threshold
        self._consecutive_failures = 0
        self._in_flight = 0
        self._open_reason: str | None = None
        self._changed = threading.Condition()

    def admit(self) -> None:
        """Let one call start, or raise ``LLMCircuitOpenError``; after a failure, only when no other call is in flight."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._open_reason is not None or self._consecutive_failures == 0 or self._in_flight == 0
            )
            if self._open_reason is not None:
                raise LLMCircuitOpenError(self._open_reason)
            self._in_flight += 1

    def release(self) -> None:
        """An admitted call that ended without an answer from the endpoint: it stops counting as in flight."""
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def record_success(self) -> None:
        with self._changed:
            self._in_flight -= 1
            self._consecutive_failures = 0
            self._changed.notify_all()

    def record_failure(self, error: str) -> None:
        """Count one failed call; the call that reaches the threshold opens the circuit and warns, once."""
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()
            if self._open_reason is not None:
                return
            self._consecutive_failures += 1
            if self._consecutive_failures < self._threshold:
                return
            self._open_reason = (
                f"LLM circuit open after {self._threshold} consecutive failed calls (last: {error}); "
                "the model is not called again in this run"
            )
        log.warning("llm_circuit_open", consecutive_failures=self._threshold, last_error=error,
                    consequence="rules decide for the rest of this run")


def usable_api_key(api_key: str | None) -> str | None:
    """The key without surrounding whitespace; ``UsageError`` when it cannot travel in an HTTP header.

    Why at start: a key with a smart quote or an accented letter makes every request
    fail inside the HTTP library, once per customer. The message names the variable
    and the offending character, never the key.
    """
    if api_key is None:
        return None
    register_secret(api_key)
    key = api_key.strip()
    for position, char in enumerate(key, start=1):
        if not "!" <= char <= "~":
            raise UsageError(
                f"OPENAI_API_KEY has a character an HTTP header cannot carry (U+{ord(char):04X} at position {position}); "
                "copy the key again as plain ASCII text (no smart quotes, accents or spaces), or unset it"
            )
    return key or None


def _body_problem(content_type: str, parsed: object) -> str:
    """Why an HTTP 200 body is not a chat completion, for the fallback reason."""
    if isinstance(parsed, str):
        kind = content_type or "no content type"
        return f"the LLM endpoint answered {kind}, not a chat completion; check OPENAI_BASE_URL (it usually ends in /v1)"
    return "the LLM endpoint answered JSON that is not a chat completion (no choices); check OPENAI_BASE_URL"


def _completion_text(completion: object, content_type: str) -> str:
    """The first choice's message text; ``LLMUnavailableError`` for a body that is no completion at all."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise LLMUnavailableError(_body_problem(content_type, completion))
    content = getattr(getattr(choices[0], "message", None), "content", None)
    if content is None:
        raise ModelBehaviorError("the LLM response has no message content")
    if not isinstance(content, str):
        raise ModelBehaviorError("the LLM message content is not text")
    if not content:
        raise ModelBehaviorError("the LLM returned an empty message")
    return content


def _json_object(content: str) -> dict[str, Any]:
    try:
        answer = json.loads(content)
    except json.JSONDecodeError:
        raise ModelBehaviorError("the LLM answer is not valid JSON") from None
    if not isinstance(answer, dict):
        raise ModelBehaviorError("the LLM answer is not a JSON object")
    return answer


class OpenAIJSONClient:
    """``LLMClient`` over ``openai.OpenAI().chat.completions`` with structured output and a circuit breaker."""

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
        circuit_breaker_failures: int = 3,
    ):
        import openai

        self.model = model
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=usable_api_key(api_key) or "not-needed-for-local-endpoints",
            base_url=base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._rate = RateLimiter(requests_per_second) if requests_per_second else None
        self.circuit = CircuitBreaker(circuit_breaker_failures)

    def complete_json(self, messages: Sequence[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The model's answer parsed as JSON; ``LLMUnavailableError`` or ``ModelBehaviorError`` otherwise."""
        with self._slots:
            self.circuit.admit()  # after the slot: it may have opened while this call waited for one
            try:
                answer = self._ask(messages, schema_name, schema)
            except (LLMUnavailableError, ModelBehaviorError) as exc:
                self.circuit.record_failure(str(exc))
                raise
            except BaseException:
                self.circuit.release()  # a bug or an interrupt is the caller's error, not the endpoint's
                raise
            self.circuit.record_success()
        return answer

    def _ask(self, messages: Sequence[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> dict[str, Any]:
        if self._rate is not None:
            self._rate.wait()
        content_type, completion = self._post(messages, schema_name, schema)
        return _json_object(_completion_text(completion, content_type))

    def _post(self, messages: Sequence[dict[str, str]], schema_name: str, schema: dict[str, Any]) -> tuple[str, object]:
        """The response's content type and its body as the client parsed it (a completion, or text when not JSON)."""
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=self.model,
                # Our role/content dicts are exactly the SDK's message params; its TypedDicts cannot see that.
                messages=cast("list[ChatCompletionMessageParam]", list(messages)),
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
        content_type = raw.headers.get("content-type", "").split(";")[0].strip()
        try:
            return content_type, raw.parse()
        except ValueError:  # JSONDecodeError, or a body the client's models cannot hold
            raise LLMUnavailableError(
                "the LLM endpoint's answer is not readable JSON (an empty, truncated or HTML body); check OPENAI_BASE_URL"
            ) from None
