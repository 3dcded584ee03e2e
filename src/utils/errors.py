"""The one exception tree of CVM, and the registry of its stable error codes.

Every error a user can cause or fix is a ``CVMError``; the CLI turns it into one
line on stderr and an exit code, and the batch runner turns per-customer errors
into error records. Anything else is a bug: the CLI logs its traceback and
exits 3.

Each class carries a stable ``code`` (the ``error_type`` of an agent's
``ErrorResponse``); ``ERROR_CODES`` maps a code back to its class, so an error
crosses agents as data and comes back as the same exception (``error_class``).
A code never changes when a class is renamed; a new class declares a new code.

    CVMError  cvm_error                                                          (exit 2)
    ├── UsageError  usage_error          bad flags, arguments or message values   (exit 2)
    │   └── InvalidCustomerIdError  invalid_customer_id   an id that breaks the id pattern
    ├── ConfigError  config_error        a config file that cannot be used        (exit 2)
    ├── DataError  data_error            a data folder or table that cannot be used (exit 2)
    │   └── UnknownCustomerError  unknown_customer   a well-formed id with no data (exit 1)
    ├── ApprovalError  approval_error    an approval request unknown or already decided (exit 2)
    ├── ModelBehaviorError  model_behavior   the LLM answered outside its contract
    ├── AgentError  agent_error          an agent got a message it cannot handle
    │   ├── UnknownMessageTypeError  unknown_message_type   a type the agent does not handle
    │   └── InvalidMessageError  invalid_message           a message its model rejects
    ├── FlowError  flow_error            an invalid flow, or a run that cannot start or resume (exit 2)
    ├── OptimizerError  optimizer_error  the batch optimiser's solver failed or broke a constraint
    └── UnavailableError  unavailable    the environment failed, not the request   (exit 4)
        ├── LedgerError  ledger_error    the state database cannot be opened, is locked or refused a write
        ├── LLMUnavailableError  llm_unavailable   the LLM endpoint failed, timed out or refused
        ├── NotificationError  notification_unavailable   the SMTP server or a webhook failed, timed out or refused
        └── MissingDependencyError  missing_dependency   a package CVM needs cannot be imported (a broken install)

Exit codes (``exit_code``): 0 done; 1 some customers failed; 2 bad usage,
config or input; 3 an internal error (a bug; the traceback is in the log);
4 the environment failed (database unreachable or locked, model endpoint
unusable): the same command may work once that is fixed; 141 stdout was closed
(``| head``) before everything was printed: the work itself was done.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_UNAVAILABLE = 4
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: the reader of stdout went away (``cvm ... | head``); the work itself was done."""

_CODES: dict[str, type[CVMError]] = {}


class CVMError(Exception):
    """Root of every error CVM raises on purpose.

    ``code`` is the class's stable error code (unique; a subclass that declares none,
    such as a narrow error inside one module, travels as its parent);
    ``exit_code`` is what the CLI exits with when this error ends a command.
    """

    code: ClassVar[str] = "cvm_error"
    exit_code: ClassVar[int] = EXIT_USAGE

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    def __init__(self, message: str, *, customer_id: str | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.customer_id = customer_id
        self.path = path

    def __str__(self) -> str:
        return self.message


def _register(cls: type[CVMError]) -> None:
    """Add a class that declares its own code to the registry (a subclass without one shares its parent's); a code taken twice is a bug."""
    if "code" not in cls.__dict__:
        return
    taken = _CODES.get(cls.code)
    if taken is not None and taken.__qualname__ != cls.__qualname__:
        raise TypeError(f"error code {cls.code!r} of {cls.__name__} is already {taken.__name__}'s")
    _CODES[cls.code] = cls


_register(CVMError)

ERROR_CODES: Mapping[str, type[CVMError]] = MappingProxyType(_CODES)
"""Stable error code -> its class: every ``CVMError`` subclass, including those defined outside this module."""


def error_class(code: str) -> type[CVMError] | None:
    """The class a stable error code names, or ``None`` for a code no class declares."""
    return ERROR_CODES.get(code)


class UsageError(CVMError):
    """The command line or message asks for something that cannot be done."""

    code = "usage_error"


class InvalidCustomerIdError(UsageError):
    """A customer id breaks ``validation.customer_id_pattern``."""

    code = "invalid_customer_id"


class ConfigError(CVMError):
    """A config file is missing, unreadable or invalid; the message names file, key and fix."""

    code = "config_error"


class DataError(CVMError):
    """A data folder or table cannot be used."""

    code = "data_error"


class UnknownCustomerError(DataError):
    """A well-formed customer id that no table knows."""

    code = "unknown_customer"
    exit_code = EXIT_SOME_FAILED


class ApprovalError(CVMError):
    """An approval request that does not exist or was already decided."""

    code = "approval_error"


class ModelBehaviorError(CVMError):
    """The LLM's answer broke its contract (bad JSON, an id outside the allowed set...)."""

    code = "model_behavior"


class AgentError(CVMError):
    """An agent received a message it does not handle or cannot validate, or answered with the wrong type."""

    code = "agent_error"


class UnknownMessageTypeError(AgentError):
    """A message whose ``type`` the agent does not handle; the message lists the types it does."""

    code = "unknown_message_type"


class InvalidMessageError(AgentError):
    """A message its request model rejects; the message names the field."""

    code = "invalid_message"


class FlowError(CVMError):
    """A flow that cannot be used: invalid YAML or step, a bad schedule, or a run that cannot start or resume.

    The message names the flow file and the step, and says how to fix it.
    """

    code = "flow_error"


class OptimizerError(CVMError):
    """The batch optimiser could not produce a valid assignment (a solver failed or broke a constraint)."""

    code = "optimizer_error"


class UnavailableError(CVMError):
    """The environment failed, not the request: a resource outside CVM is unreachable, locked or broken.

    The command may work unchanged once the resource is back (exit 4, told apart from bad usage).
    """

    code = "unavailable"
    exit_code = EXIT_UNAVAILABLE


class LedgerError(UnavailableError):
    """The state database could not be opened, is locked, or refused or lost a write."""

    code = "ledger_error"


class LLMUnavailableError(UnavailableError):
    """The LLM endpoint could not be reached, timed out or returned an HTTP error after retries."""

    code = "llm_unavailable"


class NotificationError(UnavailableError):
    """A notification could not be delivered: the SMTP server or a webhook was unreachable, refused or failed after retries.

    The message names the server or the URL (never a password, a query string or the signing secret) and the setting to check.
    """

    code = "notification_unavailable"


class MissingDependencyError(UnavailableError):
    """A package CVM depends on cannot be imported: the installation is broken, not the command."""

    code = "missing_dependency"


def reinstall_hint(package: str, needed_for: str) -> str:
    """What to tell a user whose environment lacks a core dependency (every package CVM uses is installed with it)."""
    return (
        f"{needed_for} needs {package}, which is missing from this Python environment; "
        "reinstall CVM with `make install` (or `pip install -e .`)"
    )
