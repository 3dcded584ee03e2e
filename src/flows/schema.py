"""The flow file's models: a declarative YAML DAG of agent actions (validated by ``cvm.flows.validate``).

A flow file::

    flow_id: churn_prevention
    description: Find the customers most at risk and decide a retention treatment for each
    version: 1
    goal: Keep high-risk customers          # optional; the plan artifact uses it (else the description)
    inputs:
      horizon_days: {default: 90, type: integer, description: Forecast horizon}
    trigger:
      schedule: cron(0 9 * * ? *)            # or standard cron "0 9 * * *"
      timezone: Europe/London                # default UTC
      filter: {min_churn_probability: 0.6}   # metadata the flow's own steps apply (${trigger.filter.NAME})
    error_handling:
      default_strategy: retry                # retry | stop | continue
      retry_count: 2
      backoff: {initial_seconds: 1, multiplier: 2, max_seconds: 30}
    steps:
      - id: signals
        agent: insight
        action: fuse_signals
      - id: retain
        agent: orchestrator
        action: process_batch
        depends_on: [signals]
        parameters:
          customer_ids: ${steps.signals.output.at_risk.*.customer_id}
          run_id: ${run.id}
        error_handling: {strategy: continue}

A step's ``agent`` is a name of the runtime's agent registry (``Runtime.agents()``)
or the built-in ``flow`` pseudo-agent (``goal``, ``plan``, ``wait``); its
``action`` is a message type that agent handles, and ``parameters`` are that
message's fields, checked against its request model before the run.

The flows document's form is accepted as written (``cvm.flows`` README section
"The flows document")::

    trigger:
      type: schedule
      schedule: "cron(0 9 * * ? *)"
      filter: ["customer.renewal_date <= now() + interval '30 days'"]   # conditions over customers
    error_handling: {default_strategy: retry, retry_count: 3, failure_notification: "${admin_email}"}
    steps:
      - {id: data, agent: data_agent, action: retrieve_customer_data, parameters: {customer_id: "${customer.id}"}}

``X_agent`` names the agent ``X`` (``data_agent`` is ``data``); ``ACTION_ALIASES``
maps the document's action names onto CVM's message types. A flow whose filter
is a list of conditions, or whose parameters read ``${customer.*}``, is a
*customer flow*: each run is for one customer (the input ``customer_id``,
declared implicitly), and the filter selects the customers a scheduled run is
started for (``cvm.flows.customers``). ``failure_notification`` names who is
told, through the execution agent, when a run ends failed or partial.

References: ``${inputs.NAME}``, ``${steps.STEP.output.PATH}`` (STEP must be
upstream of the step: a direct or transitive dependency), ``${run.id}``,
``${run.started_at}``, ``${run.flow_id}`` and ``${trigger.filter.PATH}``. A PATH
is dotted (``at_risk.0.customer_id``); ``*`` maps over a list
(``matches.*.customer_id`` is every match's id). A parameter that is exactly one
reference keeps the value's type; references inside longer text are
interpolated as text. ``$${`` is a literal ``${`` (``cvm.flows.references``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from cvm.flows.schedule import Schedule, parse_schedule

FLOW_AGENT = "flow"
"""The built-in pseudo-agent the runner implements itself (``goal``, ``plan``, ``wait``)."""
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
RUN_FIELDS = ("id", "started_at", "flow_id")
MAX_RETRIES = 10
CUSTOMER_INPUT = "customer_id"
"""The input a customer flow's run is for (declared implicitly when the flow does not declare it)."""
ACTION_ALIASES: dict[tuple[str, str], str] = {
    ("data", "retrieve_customer_data"): "get_customer_data",
}
"""(agent, the flows document's action name) -> CVM's message type."""


def canonical_agent(agent: str) -> str:
    """``data_agent`` -> ``data``: the flows document names agents ``X_agent``; CVM's registry names them ``X``."""
    return agent[: -len("_agent")] if agent.endswith("_agent") and len(agent) > len("_agent") else agent


def canonical_action(agent: str, action: str) -> tuple[str, str]:
    """(agent, action) as the runtime names them, whichever spelling the flow used."""
    agent = canonical_agent(agent)
    return agent, ACTION_ALIASES.get((agent, action), action)


def _one_or_many(value: Any) -> Any:
    """One string is a list of one; None is empty."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the flow file's models -------------------------------------------------------


class Backoff(_Model):
    """Wait before retry n: ``initial_seconds * multiplier**(n-1)``, at most ``max_seconds``.

    The shorthands ``exponential`` (1 s, x2, 60 s), ``fixed`` (1 s each time) and ``none`` are accepted.
    """

    initial_seconds: float = Field(default=1.0, ge=0, le=3600)
    multiplier: float = Field(default=2.0, ge=1, le=10)
    max_seconds: float = Field(default=60.0, ge=0, le=86_400)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        shorthands = {
            "exponential": {}, "fixed": {"multiplier": 1.0}, "constant": {"multiplier": 1.0},
            "none": {"initial_seconds": 0.0, "multiplier": 1.0, "max_seconds": 0.0},
        }
        if isinstance(value, str):
            if value.lower() not in shorthands:
                raise ValueError(f"backoff {value!r}: use exponential, fixed, none or {{initial_seconds, multiplier, max_seconds}}")
            return shorthands[value.lower()]
        return value

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return min(self.max_seconds, self.initial_seconds * self.multiplier ** max(0, retry - 1))


Strategy = Literal["retry", "stop", "continue"]


class ErrorHandling(_Model):
    """The flow's default for what a failing step does.

    ``stop``: the run fails, steps not started are skipped. ``continue``: the
    step's dependents are skipped, independent branches go on (the run ends
    ``partial``). ``retry``: try again ``retry_count`` times (default 3) with
    ``backoff``, then do ``then`` (default ``stop``). ``retry_count`` retries
    under every strategy (``stop`` with ``retry_count: 2`` tries three times).
    """

    default_strategy: Strategy = "stop"
    retry_count: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    backoff: Backoff = Backoff()
    then: Literal["stop", "continue"] = "stop"
    """After the retries of ``retry``: stop the run or continue."""
    failure_notification: tuple[str, ...] = ()
    """Who is told when a run ends failed or partial: addresses or ``${...}`` references (``${admin_email}``)."""

    _listed = field_validator("failure_notification", mode="before")(_one_or_many)


class StepErrorHandling(_Model):
    """A step's override; each field left out takes the flow's value."""

    strategy: Strategy | None = None
    retry_count: int | None = Field(default=None, ge=0, le=MAX_RETRIES)
    backoff: Backoff | None = None
    then: Literal["stop", "continue"] | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """What the runner does for one step: how many attempts, how long between, and what a final failure means."""

    max_attempts: int = 1
    backoff: Backoff = Backoff()
    on_failure: Literal["stop", "continue"] = "stop"

    @classmethod
    def of(cls, flow: ErrorHandling, step: StepErrorHandling | None) -> RetryPolicy:
        step = step or StepErrorHandling()
        strategy = step.strategy or flow.default_strategy
        retries = step.retry_count if step.retry_count is not None else flow.retry_count
        if retries is None:
            retries = 3 if strategy == "retry" else 0
        then = step.then or flow.then
        on_failure = then if strategy == "retry" else strategy
        return cls(max_attempts=1 + retries, backoff=step.backoff or flow.backoff, on_failure=on_failure)


InputType = Literal["string", "integer", "number", "boolean", "list", "object", "any"]
_INPUT_KEYS = {"description", "default", "required", "type"}
INPUT_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "string": TypeAdapter(str), "integer": TypeAdapter(int), "number": TypeAdapter(float),
    "boolean": TypeAdapter(bool), "list": TypeAdapter(list), "object": TypeAdapter(dict), "any": TypeAdapter(Any),
}


class FlowInput(_Model):
    """A value the flow takes (``--param NAME=VALUE``), with its default."""

    description: str = ""
    default: Any = None
    required: bool = False
    """When true, a run must give it (the default is ignored)."""
    type: InputType | None = None
    """Checked and converted when given; when left out, the default's type is used."""

    def value_type(self) -> InputType:
        if self.type is not None:
            return self.type
        for python_type, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "list"), (dict, "object")):
            if isinstance(self.default, python_type):
                return name  # type: ignore[return-value]
        return "any"


class FlowTrigger(_Model):
    """When a flow runs (``schedule``) and which customers it is meant for (``filter``).

    ``filter`` is either a mapping of metadata the flow's own steps read
    (``${trigger.filter.NAME}``), or a condition (or list of conditions, all of
    which must hold) over customers, ``customer.renewal_date <= now() + interval
    '30 days'``, kept in ``conditions`` (``cvm.flows.customers`` applies them).
    """

    type: Literal["schedule", "manual"] | None = None
    """``schedule`` (needs ``schedule``) or ``manual``; left out, it is ``schedule`` when there is one."""
    schedule: str | None = None
    """Standard 5-field cron (``0 9 * * *``) or the AWS form ``cron(0 9 * * ? *)``."""
    timezone: str | None = None
    """The zone the schedule is read in (default UTC, as EventBridge does)."""
    filter: dict[str, Any] = {}
    """Metadata for the flow's own steps (read with ``${trigger.filter.NAME}``)."""
    missed: Literal["run_once", "skip", "run_all"] = "run_once"
    """What ``cvm flows scheduler`` does with scheduled times it missed (it was down): run the latest once,
    skip them (run only a time it reaches within its grace period), or run each (at most ``max_catch_up``)."""
    max_catch_up: int = Field(default=24, ge=1, le=1000)
    """Under ``missed: run_all``, at most this many missed times are run (the latest ones)."""

    conditions: tuple[str, ...] = ()
    """Conditions over customers (the document's list ``filter``), all of which must hold."""

    @model_validator(mode="before")
    @classmethod
    def _conditions(cls, value: Any) -> Any:
        """A list (or one string) under ``filter`` is customer conditions; a mapping stays metadata."""
        if isinstance(value, Mapping) and isinstance(value.get("filter"), (list, tuple, str)):
            given = value["filter"]
            value = {**value, "filter": {}, "conditions": (given,) if isinstance(given, str) else tuple(given)}
        return value

    @field_validator("filter", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(
                "trigger.filter must be a mapping of names to values (e.g. {trigger_type: network_issues}) or a list of "
                f"customer conditions, not {type(value).__name__}"
            )
        return value

    @model_validator(mode="after")
    def _typed(self) -> FlowTrigger:
        if self.type == "schedule" and self.schedule is None:
            raise ValueError("a trigger of type schedule needs schedule:, e.g. schedule: cron(0 9 * * ? *)")
        if self.type == "manual" and self.schedule is not None:
            raise ValueError("a manual trigger has no schedule; remove schedule: or write type: schedule")
        return self

    def parsed_schedule(self) -> Schedule | None:
        return parse_schedule(self.schedule, self.timezone) if self.schedule is not None else None


class FlowStep(_Model):
    """One agent action in the flow."""

    id: str = Field(pattern=NAME_PATTERN)
    agent: str
    action: str
    description: str = ""
    depends_on: tuple[str, ...] = ()
    parameters: dict[str, Any] = {}
    error_handling: StepErrorHandling | None = None

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        """The document's ``data_agent.retrieve_customer_data`` is CVM's ``data.get_customer_data``."""
        if isinstance(value, Mapping) and isinstance(value.get("agent"), str) and isinstance(value.get("action"), str):
            agent, action = canonical_action(value["agent"], value["action"])
            value = {**value, "agent": agent, "action": action}
        return value

    _listed = field_validator("depends_on", mode="before")(_one_or_many)

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, value: Any) -> Any:
        return {} if value is None else value


class FlowDefinition(_Model):
    """A whole flow file."""

    flow_id: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    version: str = "1"
    goal: str | None = None
    """What the flow is for, in words (the plan artifact's goal; default: the description)."""
    inputs: dict[str, FlowInput] = {}
    trigger: FlowTrigger | None = None
    error_handling: ErrorHandling = ErrorHandling()
    steps: tuple[FlowStep, ...] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        """``name: value`` is shorthand for ``name: {default: value}``."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            return value
        return {
            name: spec if isinstance(spec, Mapping) and spec and set(spec) <= _INPUT_KEYS else {"default": spec}
            for name, spec in value.items()
        }

    @property
    def customer_scoped(self) -> bool:
        """A customer flow: its trigger filters customers or its parameters read ``${customer.*}`` (one run per customer)."""
        if self.trigger is not None and self.trigger.conditions:
            return True
        return any("${customer." in text for s in self.steps for text in _strings(s.parameters))

    def all_inputs(self) -> dict[str, FlowInput]:
        """The declared inputs, plus ``customer_id`` (required) for a customer flow that does not declare it."""
        if self.customer_scoped and CUSTOMER_INPUT not in self.inputs:
            return {CUSTOMER_INPUT: FlowInput(description="The customer this run is for", required=True, type="string"), **self.inputs}
        return dict(self.inputs)

    def step(self, step_id: str) -> FlowStep:
        return next(s for s in self.steps if s.id == step_id)

    def goal_text(self) -> str:
        return self.goal or self.description or f"run flow {self.flow_id}"

    def policy(self, step: FlowStep) -> RetryPolicy:
        return RetryPolicy.of(self.error_handling, step.error_handling)


def _strings(value: Any) -> list[str]:
    """Every string inside a parameter value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _strings(v)]
    return []
