"""The flow file's models: error handling and retry policies, backoff."""

from __future__ import annotations

import pytest

from cvm.flows.schema import Backoff, ErrorHandling, RetryPolicy, StepErrorHandling


class TestPolicies:
    """Error handling: flow defaults, per-step overrides, backoff."""

    def test_defaults_stop_without_retries(self):
        assert RetryPolicy.of(ErrorHandling(), None) == RetryPolicy(max_attempts=1, backoff=Backoff(), on_failure="stop")

    def test_retry_defaults_to_three_retries_then_stop(self):
        policy = RetryPolicy.of(ErrorHandling(default_strategy="retry"), None)
        assert (policy.max_attempts, policy.on_failure) == (4, "stop")

    def test_step_override_inherits_what_it_leaves_out(self):
        flow = ErrorHandling(default_strategy="retry", retry_count=2, then="continue")
        assert RetryPolicy.of(flow, StepErrorHandling(strategy="stop")).on_failure == "stop"
        assert RetryPolicy.of(flow, StepErrorHandling(strategy="stop")).max_attempts == 3
        assert RetryPolicy.of(flow, StepErrorHandling(retry_count=0)).on_failure == "continue"
        assert RetryPolicy.of(flow, StepErrorHandling(retry_count=0)).max_attempts == 1

    def test_backoff(self):
        assert [Backoff(initial_seconds=1, multiplier=2, max_seconds=5).delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
        assert Backoff.model_validate("fixed").delay(3) == 1
        assert Backoff.model_validate("none").delay(3) == 0
        with pytest.raises(ValueError, match="use exponential, fixed, none"):
            Backoff.model_validate("sometimes")
