"""The LLM client through the real ``openai`` package against the local stub server, and the answer cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from cvm.tools.llm import CircuitBreaker, LLMCircuitOpenError, OpenAIJSONClient
from cvm.utils.cache import LRUCache
from cvm.utils.errors import CVMError, LLMUnavailableError, ModelBehaviorError, UsageError
from tests.stub_openai import Body, Delay, Raw, Status, StubOpenAI, response_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "treatment": {"type": "string", "enum": ["retention_email", "ignore"]},
        "explanation": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["treatment", "explanation", "confidence"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "system", "content": "Pick one."}, {"role": "user", "content": "{\"customer_id\": \"U1\"}"}]
GOOD = {"treatment": "retention_email", "explanation": "At risk and reads email.", "confidence": 0.8}
FAST_RETRY = {"retry-after-ms": "10"}


def make_client(
    stub: StubOpenAI, *, timeout: float = 0.5, retries: int = 0, concurrency: int = 2, breaker: int = 3, api_key: str = "test-key",
) -> OpenAIJSONClient:
    return OpenAIJSONClient(
        model="stub-model", api_key=api_key, base_url=stub.base_url,
        timeout_seconds=timeout, max_retries=retries, max_concurrency=concurrency,
        temperature=0.0, max_tokens=123, circuit_breaker_failures=breaker,
    )


class TestJSONAnswers:
    """A well-formed answer comes back as a dict, and anything else is a ModelBehaviorError."""

    def test_good_json_is_returned_as_a_dict(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(GOOD)
        assert make_client(llm_stub).complete_json(MESSAGES, "treatment_choice", SCHEMA) == GOOD
        assert llm_stub.request_count == 1

    def test_request_carries_model_messages_and_strict_json_schema(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(GOOD)
        make_client(llm_stub).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        body = llm_stub.last_request
        assert body["model"] == "stub-model"
        assert body["messages"] == MESSAGES
        assert body["temperature"] == 0.0
        assert body["max_tokens"] == 123
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["name"] == "treatment_choice"
        assert body["response_format"]["json_schema"]["strict"] is True
        assert response_schema(body) == SCHEMA
        assert llm_stub.request_headers[-1]["authorization"] == "Bearer test-key"

    @pytest.mark.parametrize(
        ("content", "phrase"),
        [
            ('{"treatment": "retention_email", "explanation": ', "not valid JSON"),
            ("Sure! I recommend the retention email.", "not valid JSON"),
            ('["retention_email"]', "not a JSON object"),
            ("", "empty"),
        ],
        ids=["truncated-json", "prose", "json-list", "empty"],
    )
    def test_malformed_answer_raises_model_behavior_error(self, llm_stub: StubOpenAI, content: str, phrase: str) -> None:
        llm_stub.push(Raw(content))
        with pytest.raises(ModelBehaviorError, match=phrase):
            make_client(llm_stub, retries=1).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 1  # a bad answer is not an HTTP failure: no retry


class TestUnreadableAnswers:
    """An HTTP 200 that is no chat completion (a proxy's HTML page, an empty or truncated body, JSON of
    another shape) is a CVMError the selector falls back from, never a parser's exception."""

    @pytest.mark.parametrize(
        ("body", "error", "phrase"),
        [
            (Body("<!doctype html><html><body>Sign in to continue</body></html>"), LLMUnavailableError, "text/html, not a chat completion"),
            (Body("<html><body>Bad gateway</body></html>", "application/json"), LLMUnavailableError, "not readable JSON"),
            (Body("", "application/json"), LLMUnavailableError, "not readable JSON"),
            (Body("", ""), LLMUnavailableError, "not a chat completion"),
            (Body('{"id": "chatcmpl-1", "choices": [{"message": {"content": "{\\"treat', "application/json"),
             LLMUnavailableError, "not readable JSON"),
            (Body(b"\xff\xfe\x00", "application/json"), LLMUnavailableError, "not readable JSON"),
            (Body('{"hello": "world"}', "application/json"), LLMUnavailableError, "no choices"),
            (Body('["retention_email"]', "application/json"), LLMUnavailableError, "no choices"),
            (Body('{"choices": []}', "application/json"), LLMUnavailableError, "no choices"),
            (Body('{"choices": "retention_email"}', "application/json"), LLMUnavailableError, "no choices"),
            (Body('{"choices": [{"message": null}]}', "application/json"), ModelBehaviorError, "no message content"),
            (Body('{"choices": [{"message": {"content": 42}}]}', "application/json"), ModelBehaviorError, "not text"),
        ],
        ids=["html-page", "html-as-json", "empty-json", "empty-untyped", "truncated", "binary", "wrong-object",
             "json-list", "no-choices", "choices-string", "null-message", "numeric-content"],
    )
    def test_unreadable_body_is_a_cvm_error(self, llm_stub: StubOpenAI, body: Body, error: type[CVMError], phrase: str) -> None:
        llm_stub.push(body)
        with pytest.raises(error, match=phrase):
            make_client(llm_stub, retries=2).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 1

    def test_html_page_points_at_the_base_url(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Body("<html>Welcome to nginx!</html>"))
        with pytest.raises(LLMUnavailableError, match="check OPENAI_BASE_URL"):
            make_client(llm_stub).complete_json(MESSAGES, "treatment_choice", SCHEMA)


class TestCircuitBreaker:
    """After N consecutive failed calls the client stops calling the endpoint for the rest of the run."""

    @pytest.mark.parametrize(
        "failure",
        [Status(500, FAST_RETRY, "boom"), Delay(3.0, GOOD), Body("<html>login</html>"), Raw("Sure, a retention email.")],
        ids=["http-500", "timeout", "html", "prose"],
    )
    def test_third_consecutive_failure_opens_the_circuit(self, llm_stub: StubOpenAI, failure: object) -> None:
        llm_stub.default = lambda body: failure
        client = make_client(llm_stub, timeout=0.2)
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(CVMError) as caught:
                    client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
                assert not isinstance(caught.value, LLMCircuitOpenError)
            for _ in range(5):
                with pytest.raises(LLMCircuitOpenError, match="circuit open after 3 consecutive failed calls"):
                    client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 3
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["llm_circuit_open"]

    def test_open_circuit_is_an_unavailable_endpoint(self) -> None:
        """Callers that fall back on LLMUnavailableError (selector, trigger matcher, parser) fall back here too."""
        assert issubclass(LLMCircuitOpenError, LLMUnavailableError)

    def test_a_success_resets_the_count(self, llm_stub: StubOpenAI) -> None:
        boom = Status(500, message="boom")
        llm_stub.push(boom, boom, GOOD, boom, boom, GOOD)
        client = make_client(llm_stub)
        outcomes = []
        for _ in range(6):
            try:
                outcomes.append(client.complete_json(MESSAGES, "treatment_choice", SCHEMA))
            except LLMUnavailableError as exc:
                outcomes.append(type(exc))
        assert outcomes == [LLMUnavailableError, LLMUnavailableError, GOOD, LLMUnavailableError, LLMUnavailableError, GOOD]
        assert llm_stub.request_count == 6

    def test_threshold_is_configurable(self, llm_stub: StubOpenAI) -> None:
        llm_stub.default = lambda body: Status(500, message="boom")
        client = make_client(llm_stub, breaker=1)
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
        with pytest.raises(LLMCircuitOpenError, match="after 1 consecutive"):
            client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 1

    @staticmethod
    def _call_in_background(client: OpenAIJSONClient, stub: StubOpenAI) -> tuple[threading.Thread, list[object]]:
        """Start one call on a thread and return once the stub is holding it."""
        outcome: list[object] = []

        def call() -> None:
            try:
                outcome.append(client.complete_json(MESSAGES, "treatment_choice", SCHEMA))
            except CVMError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 10
        while stub.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stub.in_flight == 1
        return thread, outcome

    def test_after_a_failure_the_next_call_waits_for_the_one_in_flight(self, llm_stub: StubOpenAI) -> None:
        """A slow call still out and a fast failure: the next call does not pile on; their two failures open it."""
        llm_stub.push(Delay(0.5, Status(500, message="slow boom")), Status(500, message="fast boom"))
        client = make_client(llm_stub, timeout=5.0, breaker=2)
        slow, slow_outcome = self._call_in_background(client, llm_stub)
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
        with pytest.raises(LLMCircuitOpenError):
            client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
        slow.join(timeout=10)
        assert [type(o) for o in slow_outcome] == [LLMUnavailableError]
        assert llm_stub.request_count == 2

    def test_a_success_in_flight_ends_the_wait(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Delay(0.5, GOOD), Status(500, message="fast boom"), GOOD)
        client = make_client(llm_stub, timeout=5.0, breaker=2)
        slow, slow_outcome = self._call_in_background(client, llm_stub)
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert client.complete_json(MESSAGES, "treatment_choice", SCHEMA) == GOOD
        slow.join(timeout=10)
        assert slow_outcome == [GOOD]
        assert llm_stub.request_count == 3

    def test_threshold_below_one_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 1"):
            CircuitBreaker(0)

    def test_parallel_failures_open_it_once_and_stop_the_calls(self, llm_stub: StubOpenAI) -> None:
        """Eight threads against a slow endpoint: calls waiting for a slot never start once it is open."""
        llm_stub.default = lambda body: Delay(3.0, GOOD)
        client = make_client(llm_stub, timeout=0.2, concurrency=2)
        with structlog.testing.capture_logs() as logs:
            results = TestConcurrency._hammer(client, threads=8)
        assert len(results) == 8
        assert all(isinstance(r, LLMUnavailableError) for r in results)
        # threshold 3, plus at most one other call already in flight in the second slot
        assert llm_stub.request_count <= 3 + 2 - 1
        assert sum(isinstance(r, LLMCircuitOpenError) for r in results) == 8 - llm_stub.request_count
        assert [e["event"] for e in logs].count("llm_circuit_open") == 1


class TestAPIKey:
    """The key is checked when the client is built: one usage error, never a failure per request."""

    @pytest.mark.parametrize("key", ["sk-caf\u00e9-12345", "sk-\u201dquoted\u201d", "sk-with space", "sk-\x00nul"],
                             ids=["accent", "smart-quote", "inner-space", "control"])
    def test_unsendable_key_is_a_usage_error_that_hides_the_key(self, llm_stub: StubOpenAI, key: str) -> None:
        with pytest.raises(UsageError, match="OPENAI_API_KEY") as caught:
            make_client(llm_stub, api_key=key)
        message = str(caught.value)
        assert "plain ASCII" in message
        assert key not in message
        assert key.split("-", 1)[1][:5] not in message
        assert llm_stub.request_count == 0

    def test_surrounding_whitespace_is_stripped(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(GOOD)
        assert make_client(llm_stub, api_key="  sk-pasted-key\r\n").complete_json(MESSAGES, "treatment_choice", SCHEMA) == GOOD
        assert llm_stub.request_headers[-1]["authorization"] == "Bearer sk-pasted-key"

    def test_cli_refuses_a_non_ascii_key_before_any_customer(
        self, run_cli: Callable[..., object], llm_stub: StubOpenAI, llm_env: dict[str, str], tmp_path: Path,
    ) -> None:
        key = "sk-proj-\u201cAbCdEf123456\u201d"
        proc = run_cli("cvm_processor_cli", "--all_customers", "--selector", "llm", "--output_file", "r.json",
                       env={**llm_env, "OPENAI_API_KEY": key})
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: OPENAI_API_KEY")
        assert "U+201C" in lines[0]
        assert "AbCdEf123456" not in proc.stderr + proc.stdout
        assert llm_stub.request_count == 0
        assert not (tmp_path / "output" / "r.json").exists()


class TestRetries:
    """Rate limits and server errors are retried by the client, a bounded number of times."""

    def test_429_then_success_succeeds_on_the_retry(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Status(429, FAST_RETRY, "slow down"), GOOD)
        assert make_client(llm_stub, retries=1).complete_json(MESSAGES, "treatment_choice", SCHEMA) == GOOD
        assert llm_stub.request_count == 2

    @pytest.mark.parametrize("retries", [0, 1, 2])
    def test_500_every_time_gives_up_after_max_retries_plus_one(self, llm_stub: StubOpenAI, retries: int) -> None:
        llm_stub.default = lambda body: Status(500, FAST_RETRY, "boom")
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            make_client(llm_stub, retries=retries).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == retries + 1

    def test_client_error_is_not_retried(self, llm_stub: StubOpenAI) -> None:
        llm_stub.default = lambda body: Status(400, message="bad schema")
        with pytest.raises(LLMUnavailableError, match="HTTP 400"):
            make_client(llm_stub, retries=2).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 1


class TestUnavailable:
    """A slow or unreachable endpoint becomes LLMUnavailableError within the timeout budget."""

    def test_answer_slower_than_timeout_is_unavailable(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Delay(3.0, GOOD))
        started = time.monotonic()
        with pytest.raises(LLMUnavailableError, match="timeout"):
            make_client(llm_stub, timeout=0.3).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert time.monotonic() - started < 2.0
        assert llm_stub.request_count == 1

    def test_slow_answer_is_retried_then_unavailable(self, llm_stub: StubOpenAI) -> None:
        llm_stub.default = lambda body: Delay(3.0, GOOD)
        with pytest.raises(LLMUnavailableError, match="timeout"):
            make_client(llm_stub, timeout=0.2, retries=1).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 2

    def test_closed_port_is_unavailable(self) -> None:
        client = OpenAIJSONClient(
            model="m", api_key=None, base_url="http://127.0.0.1:9/v1",
            timeout_seconds=0.5, max_retries=0, max_concurrency=1,
        )
        with pytest.raises(LLMUnavailableError, match="failed"):
            client.complete_json(MESSAGES, "treatment_choice", SCHEMA)


class TestConcurrency:
    """The client never has more than max_concurrency requests in flight."""

    @staticmethod
    def _hammer(client: OpenAIJSONClient, threads: int) -> list[object]:
        results: list[object] = []
        lock = threading.Lock()

        def ask() -> None:
            try:
                answer: object = client.complete_json(MESSAGES, "treatment_choice", SCHEMA)
            except Exception as exc:  # recorded and asserted below
                answer = exc
            with lock:
                results.append(answer)

        workers = [threading.Thread(target=ask) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=10)
        return results

    def test_max_concurrency_two_bounds_requests_in_flight(self) -> None:
        with StubOpenAI(default=lambda body: GOOD, latency=0.2) as stub:
            results = self._hammer(make_client(stub, timeout=5.0, concurrency=2), threads=8)
            assert results == [GOOD] * 8
            assert stub.request_count == 8
            assert stub.max_in_flight == 2

    def test_stub_sees_parallel_requests_when_the_bound_allows(self) -> None:
        with StubOpenAI(default=lambda body: GOOD, latency=0.2) as stub:
            results = self._hammer(make_client(stub, timeout=5.0, concurrency=8), threads=8)
            assert results == [GOOD] * 8
            assert stub.max_in_flight > 2


class TestLRUCache:
    """LRUCache is a bounded LRU that counts hits and never caches failures."""

    def test_second_lookup_is_a_hit_without_computing(self) -> None:
        cache = LRUCache(4)
        calls: list[str] = []
        assert cache.get_or_compute("k", lambda: calls.append("k") or "v1") == "v1"
        assert cache.get_or_compute("k", lambda: calls.append("again") or "v2") == "v1"
        assert calls == ["k"]
        assert cache.hits == 1

    def test_least_recently_used_entry_is_evicted(self) -> None:
        cache = LRUCache(2)
        cache.get_or_compute("a", lambda: "A")
        cache.get_or_compute("b", lambda: "B")
        cache.get_or_compute("a", lambda: "A2")  # hit: "a" becomes most recent
        cache.get_or_compute("c", lambda: "C")  # evicts "b", the least recently used
        assert cache.get_or_compute("a", lambda: "A3") == "A"
        assert cache.get_or_compute("b", lambda: "B2") == "B2"  # recomputed: it had been evicted
        assert cache.hits == 2

    def test_size_zero_never_caches(self) -> None:
        cache = LRUCache(0)
        assert cache.get_or_compute("k", lambda: 1) == 1
        assert cache.get_or_compute("k", lambda: 2) == 2
        assert cache.hits == 0

    def test_failure_is_not_cached(self) -> None:
        cache = LRUCache(4)

        def fail() -> str:
            raise LLMUnavailableError("down")

        with pytest.raises(LLMUnavailableError):
            cache.get_or_compute("k", fail)
        assert cache.get_or_compute("k", lambda: "ok") == "ok"
        assert cache.hits == 0


class TestStubServer:
    """The stub's default responder answers the request's schema, and an unscripted strict stub fails loudly."""

    def test_default_answer_follows_the_schema(self, llm_stub: StubOpenAI) -> None:
        answer = make_client(llm_stub).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert answer == {"treatment": "retention_email", "explanation": "stub answer", "confidence": 0.5}

    def test_unscripted_request_without_default_is_a_500_without_retry(self, llm_stub: StubOpenAI) -> None:
        llm_stub.default = None
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            make_client(llm_stub, retries=2).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert llm_stub.request_count == 1
        assert llm_stub.unscripted == 1

    def test_default_responder_that_delays_answers_the_schema_after_the_delay(self, llm_stub: StubOpenAI) -> None:
        """``default = lambda body: Delay(s)`` is a slow endpoint: it answers once, not by asking itself forever."""
        llm_stub.default = lambda body: Delay(0.2)
        answer = make_client(llm_stub, timeout=5.0).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert answer == {"treatment": "retention_email", "explanation": "stub answer", "confidence": 0.5}

    def test_body_reply_is_sent_verbatim(self, llm_stub: StubOpenAI) -> None:
        from urllib.request import Request, urlopen

        llm_stub.push(Body("<h1>Gateway \u00e9</h1>", "text/html; charset=utf-8", status=203))
        with urlopen(Request(llm_stub.base_url + "/chat/completions", data=b"{}", method="POST"), timeout=5) as response:
            sent = (response.status, response.headers["content-type"], response.read())
        assert sent == (203, "text/html; charset=utf-8", "<h1>Gateway \u00e9</h1>".encode())

    def test_broken_responder_is_reported(self, llm_stub: StubOpenAI) -> None:
        llm_stub.default = lambda body: body["no such key"]
        with pytest.raises(LLMUnavailableError, match="HTTP 500"):
            make_client(llm_stub, retries=2).complete_json(MESSAGES, "treatment_choice", SCHEMA)
        assert [type(e) for e in llm_stub.errors] == [KeyError]


class TestRateLimiter:
    """The shared rate limit spaces request starts evenly, across threads."""

    def test_starts_are_spaced(self) -> None:
        from cvm.tools.llm import RateLimiter

        now = [100.0]
        slept: list[float] = []

        def sleep(seconds: float) -> None:
            slept.append(round(seconds, 6))

        limiter = RateLimiter(4, clock=lambda: now[0], sleep=sleep)
        for _ in range(3):
            limiter.wait()
        assert slept == [0.25, 0.5]

    def test_threads_share_one_limit(self) -> None:
        import threading
        import time as clock

        from cvm.tools.llm import RateLimiter

        limiter = RateLimiter(20)
        starts: list[float] = []
        lock = threading.Lock()

        def one() -> None:
            limiter.wait()
            with lock:
                starts.append(clock.monotonic())

        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        starts.sort()
        assert starts[-1] - starts[0] >= 9 * 0.05 * 0.9
