"""The error tree: stable codes in one registry, and the exit code of each branch."""

from __future__ import annotations

import pytest

from cvm.utils import errors
from cvm.utils.errors import (
    ERROR_CODES,
    EXIT_INTERNAL,
    EXIT_SOME_FAILED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CVMError,
    LedgerError,
    LLMUnavailableError,
    UnavailableError,
    error_class,
)


class TestCodes:
    """Every class of the tree has one stable code; renaming a class must not change what crosses agents."""

    def test_the_codes_are_pinned(self):
        assert {code: cls.__name__ for code, cls in ERROR_CODES.items()} == {
            "cvm_error": "CVMError",
            "usage_error": "UsageError",
            "invalid_customer_id": "InvalidCustomerIdError",
            "config_error": "ConfigError",
            "data_error": "DataError",
            "unknown_customer": "UnknownCustomerError",
            "approval_error": "ApprovalError",
            "model_behavior": "ModelBehaviorError",
            "agent_error": "AgentError",
            "unknown_message_type": "UnknownMessageTypeError",
            "invalid_message": "InvalidMessageError",
            "flow_error": "FlowError",
            "optimizer_error": "OptimizerError",
            "unavailable": "UnavailableError",
            "ledger_error": "LedgerError",
            "llm_unavailable": "LLMUnavailableError",
            "notification_unavailable": "NotificationError",
            "missing_dependency": "MissingDependencyError",
        }

    def test_every_class_in_the_module_is_registered(self):
        classes = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, CVMError)}
        assert classes == set(ERROR_CODES.values())

    def test_a_subclass_without_a_code_travels_as_its_parent(self):
        class Narrow(LedgerError):
            pass

        assert Narrow.code == "ledger_error" and error_class("ledger_error") is LedgerError

    def test_a_code_taken_twice_is_refused(self):
        with pytest.raises(TypeError, match="error code 'usage_error' of Clash is already UsageError's"):
            class Clash(CVMError):
                code = "usage_error"

    def test_unknown_code(self):
        assert error_class("KeyError") is None


class TestExitCodes:
    """2 bad usage, 1 some customers failed, 4 the environment failed; 3 (a crash) has no class."""

    def test_branches(self):
        assert (EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_UNAVAILABLE) == (1, 2, 3, 4)
        assert errors.UsageError.exit_code == errors.ConfigError.exit_code == errors.DataError.exit_code == 2
        assert errors.UnknownCustomerError.exit_code == 1
        assert UnavailableError.exit_code == LedgerError.exit_code == LLMUnavailableError.exit_code == 4
        assert all(cls.exit_code != EXIT_INTERNAL for cls in ERROR_CODES.values())
