"""The one exception tree of CVM.

Every error a user can cause or fix is a ``CVMError``; the CLI turns it into one
line on stderr and an exit code, and the batch runner turns per-customer errors
into error records. Anything else is a bug and goes to the log with its
traceback.

    CVMError
    ├── UsageError                 bad flags or arguments            (exit 2)
    │   └── InvalidCustomerIdError an id that breaks the id pattern
    ├── ConfigError                a config file that cannot be used  (exit 2)
    ├── DataError                  a data folder or table that cannot be used
    │   └── UnknownCustomerError   a well-formed id with no data      (exit 1)
    ├── LedgerError                the state database refused or broke
    ├── ApprovalError              an approval request that is unknown or already decided (exit 2)
    ├── PolicyViolation            consent/capacity/contact rules said no
    │   ├── ConsentDenied
    │   └── CapacityExhausted
    ├── ModelBehaviorError         the LLM answered outside its contract
    ├── LLMUnavailableError        the LLM endpoint failed, timed out or refused
    ├── AgentError                 an agent got a message it cannot handle
    ├── FlowError                  a flow file that is invalid, or a flow run that cannot start or resume (exit 2)
    └── OptimizerError             the batch optimiser's solver failed or broke a constraint
"""

from __future__ import annotations


class CVMError(Exception):
    """Root of every error CVM raises on purpose.

    ``exit_code`` is what the CLI exits with when this error ends a command.
    """

    exit_code = 2

    def __init__(self, message: str, *, customer_id: str | None = None, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.customer_id = customer_id
        self.path = path

    def __str__(self) -> str:
        return self.message


class UsageError(CVMError):
    """The command line or message asks for something that cannot be done."""


class InvalidCustomerIdError(UsageError):
    """A customer id breaks ``validation.customer_id_pattern``."""


class ConfigError(CVMError):
    """A config file is missing, unreadable or invalid; the message names file, key and fix."""


class DataError(CVMError):
    """A data folder or table cannot be used."""


class UnknownCustomerError(DataError):
    """A well-formed customer id that no table knows."""

    exit_code = 1


class LedgerError(CVMError):
    """The state database could not be opened or written."""


class ApprovalError(CVMError):
    """An approval request that does not exist or was already decided."""


class PolicyViolation(CVMError):
    """Consent, capacity or contact policy refused an action."""


class ConsentDenied(PolicyViolation):
    """The customer has not said Y for the treatment's channel and purpose."""


class CapacityExhausted(PolicyViolation):
    """The treatment's daily capacity is used up."""


class ModelBehaviorError(CVMError):
    """The LLM's answer broke its contract (bad JSON, an id outside the allowed set...)."""


class LLMUnavailableError(CVMError):
    """The LLM endpoint could not be reached, timed out or returned an HTTP error after retries."""


class AgentError(CVMError):
    """An agent received a message it does not handle or cannot validate."""


class FlowError(CVMError):
    """A flow that cannot be used: invalid YAML or step, a bad schedule, or a run that cannot start or resume.

    The message names the flow file and the step, and says how to fix it.
    """


class OptimizerError(CVMError):
    """The batch optimiser could not produce a valid assignment (a solver failed or broke a constraint)."""
