"""Flows: declarative YAML DAGs of agent actions, validated before anything runs.

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
message's fields, checked against its request model here, before the run.

References: ``${inputs.NAME}``, ``${steps.STEP.output.PATH}`` (STEP must be
upstream of the step: a direct or transitive dependency), ``${run.id}``,
``${run.started_at}``, ``${run.flow_id}`` and ``${trigger.filter.PATH}``. A PATH
is dotted (``at_risk.0.customer_id``); ``*`` maps over a list
(``matches.*.customer_id`` is every match's id). A parameter that is exactly one
reference keeps the value's type; references inside longer text are
interpolated as text. ``$${`` is a literal ``${``.

Every problem is reported with the step, what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, TypeAdapter, ValidationError, field_validator, model_validator

from cvm.agents.base import BaseAgent, Handler
from cvm.agents.messages import AgentRequest, ErrorResponse
from cvm.tools.schedule import Schedule, parse_schedule
from cvm.utils.errors import FlowError

FLOW_AGENT = "flow"
"""The built-in pseudo-agent the runner implements itself (``goal``, ``plan``, ``wait``)."""
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
RUN_FIELDS = ("id", "started_at", "flow_id")
MAX_RETRIES = 10


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
_INPUT_ADAPTERS: dict[str, TypeAdapter[Any]] = {
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
    """When a flow runs (``schedule``) and which customers it is meant for (``filter``, applied by its steps)."""

    schedule: str | None = None
    """Standard 5-field cron (``0 9 * * *``) or the AWS form ``cron(0 9 * * ? *)``."""
    timezone: str | None = None
    """The zone the schedule is read in (default UTC, as EventBridge does)."""
    filter: dict[str, Any] = {}
    """Metadata for the flow's own steps (read with ``${trigger.filter.NAME}``)."""

    @field_validator("filter", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(f"trigger.filter must be a mapping of names to values (e.g. {{trigger_type: network_issues}}), not {type(value).__name__}")
        return value

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

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else value

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

    def step(self, step_id: str) -> FlowStep:
        return next(s for s in self.steps if s.id == step_id)

    def goal_text(self) -> str:
        return self.goal or self.description or f"run flow {self.flow_id}"

    def policy(self, step: FlowStep) -> RetryPolicy:
        return RetryPolicy.of(self.error_handling, step.error_handling)


# --- the built-in ``flow`` pseudo-agent -----------------------------------------------


class FlowGoal(_Model):
    """Record the flow's goal in the run."""

    type: Literal["goal"] = "goal"


class FlowPlan(_Model):
    """Record the plan artifact (goal, steps in order, dependencies, outputs, stages) in the run."""

    type: Literal["plan"] = "plan"


class FlowWait(_Model):
    """Pause before the next steps (let a feed land, spread load)."""

    type: Literal["wait"] = "wait"
    seconds: float = Field(ge=0, le=3600)


class FlowGoalResponse(_Model):
    type: Literal["flow_goal"] = "flow_goal"
    flow_id: str
    version: str
    goal: str
    description: str
    inputs: dict[str, Any]


class FlowPlanResponse(_Model):
    type: Literal["flow_plan"] = "flow_plan"
    plan: dict[str, Any]
    """The plan artifact as JSON (what ``cvm flows plan --output json`` prints)."""
    steps: list[str]
    """Each step in order, in words."""
    markdown: str


class Waited(_Model):
    type: Literal["waited"] = "waited"
    seconds: float


FLOW_REQUEST_ADAPTER: TypeAdapter[Any] = TypeAdapter(Annotated[FlowGoal | FlowPlan | FlowWait, Discriminator("type")])


class FlowAgent(BaseAgent):
    """The ``flow`` pseudo-agent: the runner's own actions, recorded as steps like any other."""

    name = "FlowAgent"
    actions: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
        "goal": (FlowGoal, FlowGoalResponse), "plan": (FlowPlan, FlowPlanResponse), "wait": (FlowWait, Waited),
    }

    def __init__(
        self, flow: FlowDefinition, catalog: ActionCatalog | None = None, inputs: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._flow = flow
        self._catalog = catalog
        self._inputs = dict(inputs or {})
        self._sleep = sleep

    def handlers(self) -> Mapping[str, Handler]:
        return {"goal": self._goal, "plan": self._plan, "wait": self._wait}

    def process(self, message: BaseModel | Mapping[str, Any]) -> BaseModel:
        if isinstance(message, Mapping) and message.get("type") in self.actions:
            raw = message
            try:
                message = FLOW_REQUEST_ADAPTER.validate_python(dict(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"][1:]) or "<message>"
                return ErrorResponse(error_type="invalid_message", message=f"flow: {raw.get('type')} field {where}: {first['msg']}")
        return super().process(message)

    def _goal(self, message: FlowGoal) -> FlowGoalResponse:
        f = self._flow
        return FlowGoalResponse(flow_id=f.flow_id, version=f.version, goal=f.goal_text(), description=f.description, inputs=self._inputs)

    def _plan(self, message: FlowPlan) -> FlowPlanResponse:
        plan = build_plan(self._flow, self._catalog, self._inputs)
        return FlowPlanResponse(plan=plan, steps=plan_in_words(plan), markdown=plan_markdown(plan))

    def _wait(self, message: FlowWait) -> Waited:
        self._sleep(message.seconds)
        return Waited(seconds=message.seconds)


# --- what agents can do: the catalog validation reads ------------------------------------


def request_models() -> dict[str, type[BaseModel]]:
    """Message type -> request model, read from the one union in ``cvm.agents.messages``."""
    union = get_args(AgentRequest)[0]
    found = {}
    for model in get_args(union):
        found[model.model_fields["type"].default] = model
    return found


def _response_model(agent: BaseAgent, action: str, depth: int = 0) -> type[BaseModel] | None:
    """The response model a handler is annotated to return (following delegation to another agent's ``process``)."""
    handler = agent.handlers().get(action)
    if handler is None or depth > 3:
        return None
    owner = getattr(handler, "__self__", None)
    if isinstance(owner, BaseAgent) and getattr(handler, "__name__", "") == "process" and owner is not agent:
        return _response_model(owner, action, depth + 1)
    try:
        returned = typing.get_type_hints(handler).get("return")
    except Exception:  # an annotation that cannot be resolved: unknown output, checked at run time
        return None
    if isclass(returned) and issubclass(returned, BaseModel) and returned is not BaseModel:
        return returned
    return None


@dataclass(frozen=True)
class ActionSpec:
    """One action of one agent: its request and response models when known (``None``: not checked)."""

    agent: str
    action: str
    request: type[BaseModel] | None
    response: type[BaseModel] | None
    scripted: bool = False


@dataclass
class ActionCatalog:
    """Agent name -> action -> spec; built from the runtime's registry, never from a fixed list."""

    agents: dict[str, dict[str, ActionSpec]] = field(default_factory=dict)

    @classmethod
    def from_agents(cls, agents: Mapping[str, BaseAgent]) -> ActionCatalog:
        models = request_models()
        catalog = cls()
        for name, agent in agents.items():
            if name == FLOW_AGENT:
                continue
            catalog.agents[name] = {
                action: ActionSpec(name, action, models.get(action), _response_model(agent, action))
                for action in agent.handlers()
            }
        catalog.agents[FLOW_AGENT] = {
            action: ActionSpec(FLOW_AGENT, action, request, response) for action, (request, response) in FlowAgent.actions.items()
        }
        return catalog

    def with_scripted(self, pairs: Sequence[tuple[str, str]]) -> ActionCatalog:
        """The catalog plus scripted actions of agents this runtime does not have (``FlowTestCase``)."""
        agents = {name: dict(actions) for name, actions in self.agents.items()}
        for agent, action in pairs:
            if action not in agents.setdefault(agent, {}):
                agents[agent][action] = ActionSpec(agent, action, request_models().get(action), None, scripted=True)
        return ActionCatalog(agents)

    def spec(self, agent: str, action: str) -> ActionSpec | None:
        return self.agents.get(agent, {}).get(action)


# --- references ------------------------------------------------------------------------

_REF = re.compile(r"\$\{([^{}]*)\}")
_ESCAPED = "$${"


@dataclass(frozen=True)
class Reference:
    """One ``${...}``: its root (``inputs``, ``steps``, ``run``, ``trigger``), name and path."""

    text: str
    root: str
    name: str
    path: tuple[str, ...]

    @property
    def step(self) -> str | None:
        return self.name if self.root == "steps" else None


def _segments(text: str) -> list[str]:
    return [s for s in text.replace("[", ".").replace("]", "").split(".") if s != ""] if text else []


def parse_reference(text: str) -> Reference:
    """``steps.load.output.customer_ids`` -> Reference; ``ValueError`` says how to write it."""
    expr = text.strip()
    parts = _segments(expr)
    if not parts:
        raise ValueError("empty reference ${}; write ${inputs.NAME}, ${steps.STEP.output.FIELD} or ${run.id}")
    root = parts[0]
    if root == "inputs":
        if len(parts) < 2:
            raise ValueError("${inputs} needs a name: ${inputs.NAME}")
        return Reference(expr, root, parts[1], tuple(parts[2:]))
    if root == "steps":
        if len(parts) < 3 or parts[2] != "output":
            step = parts[1] if len(parts) > 1 else "STEP"
            raise ValueError(f"${{{expr}}} must read a step's output: ${{steps.{step}.output}} or ${{steps.{step}.output.FIELD}}")
        return Reference(expr, root, parts[1], tuple(parts[3:]))
    if root == "run":
        if len(parts) != 2 or parts[1] not in RUN_FIELDS:
            raise ValueError(f"${{{expr}}}: a run reference is one of {', '.join('${run.' + f + '}' for f in RUN_FIELDS)}")
        return Reference(expr, root, parts[1], ())
    if root == "trigger":
        if len(parts) < 2 or parts[1] != "filter":
            raise ValueError(f"${{{expr}}}: the trigger reference is ${{trigger.filter.NAME}}")
        return Reference(expr, root, "filter", tuple(parts[2:]))
    raise ValueError(f"${{{expr}}}: unknown reference root {root!r}; use inputs, steps, run or trigger")


def references_in(value: Any) -> list[tuple[tuple[str | int, ...], str, bool]]:
    """Every ``${...}`` in a parameter value: (path inside the parameters, the text inside, whole-value?)."""
    found: list[tuple[tuple[str | int, ...], str, bool]] = []

    def walk(v: Any, at: tuple[str | int, ...]) -> None:
        if isinstance(v, str):
            plain = v.replace(_ESCAPED, "")
            whole = _REF.fullmatch(v.strip()) is not None and _ESCAPED not in v
            for m in _REF.finditer(plain):
                found.append((at, m.group(1), whole))
        elif isinstance(v, Mapping):
            for k, item in v.items():
                walk(item, (*at, str(k)))
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                walk(item, (*at, i))

    walk(value, ())
    return found


class UnresolvedReference(FlowError):
    """A reference that cannot be resolved at run time (a missing field in a step's output...)."""


@dataclass(frozen=True)
class RunContext:
    """What references read at run time."""

    run_id: str
    started_at: str
    flow_id: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    """Step id -> its output (only for steps that succeeded)."""
    trigger_filter: Mapping[str, Any] = field(default_factory=dict)

    def lookup(self, ref: Reference) -> Any:
        if ref.root == "inputs":
            if ref.name not in self.inputs:
                raise UnresolvedReference(f"${{{ref.text}}}: no input {ref.name!r}")
            return _walk(self.inputs[ref.name], ref.path, ref)
        if ref.root == "steps":
            if ref.name not in self.outputs:
                raise UnresolvedReference(f"${{{ref.text}}}: step {ref.name!r} has no output (it did not succeed)")
            return _walk(self.outputs[ref.name], ref.path, ref)
        if ref.root == "run":
            return {"id": self.run_id, "started_at": self.started_at, "flow_id": self.flow_id}[ref.name]
        return _walk(dict(self.trigger_filter), ref.path, ref)

    def resolve(self, value: Any) -> Any:
        """Parameters with every reference replaced (whole references keep the value's type)."""
        if isinstance(value, str):
            plain = value.strip()
            whole = _REF.fullmatch(plain)
            if whole and _ESCAPED not in value:
                return self.lookup(parse_reference(whole.group(1)))
            pieces, last = [], 0
            for m in _REF.finditer(value):
                if m.start() > 0 and value[m.start() - 1] == "$":  # $${...} is literal
                    pieces.append(value[last : m.start() - 1] + m.group(0))
                else:
                    pieces.append(value[last : m.start()] + _as_text(self.lookup(parse_reference(m.group(1)))))
                last = m.end()
            return "".join(pieces) + value[last:]
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.resolve(v) for v in value]
        return value


def _as_text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else str(value)


def _walk(value: Any, path: Sequence[str], ref: Reference) -> Any:
    for i, segment in enumerate(path):
        if segment == "*":
            if not isinstance(value, (list, tuple)):
                raise UnresolvedReference(f"${{{ref.text}}}: '*' needs a list, found {type(value).__name__}")
            return [_walk(item, path[i + 1 :], ref) for item in value]
        if isinstance(value, Mapping):
            if segment not in value:
                keys = ", ".join(map(str, value)) or "nothing"
                raise UnresolvedReference(f"${{{ref.text}}}: no {segment!r} there (it has: {keys})")
            value = value[segment]
        elif isinstance(value, (list, tuple)):
            if not segment.lstrip("-").isdigit() or not -len(value) <= int(segment) < len(value):
                raise UnresolvedReference(f"${{{ref.text}}}: {segment!r} is not an index of a list of {len(value)}")
            value = value[int(segment)]
        else:
            raise UnresolvedReference(f"${{{ref.text}}}: {segment!r} goes inside a {type(value).__name__} value")
    return value


def check_path(model: Any, path: Sequence[str]) -> str | None:
    """Whether ``path`` can exist in a value of type ``model``: None when it can (or cannot be told), else why not."""
    tp: Any = model
    for i, segment in enumerate(path):
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if any(check_path(m, path[i:]) is None for m in members):
                return None
            return check_path(members[0], path[i:]) if members else None
        if tp is Any or tp is None:
            return None
        if isclass(tp) and issubclass(tp, BaseModel):
            if segment not in tp.model_fields:
                return f"{tp.__name__} has no field {segment!r} (it has: {', '.join(tp.model_fields)})"
            tp = tp.model_fields[segment].annotation
            continue
        if origin in (list, tuple) or tp in (list, tuple):
            items = [a for a in get_args(tp) if a is not Ellipsis]
            if segment != "*" and not segment.lstrip("-").isdigit():
                return f"{'.'.join(path[:i]) or 'the output'} is a list: use an index (0) or * before {segment!r}"
            tp = items[0] if items else Any
            continue
        if origin in (dict, Mapping) or tp is dict or origin is typing.Mapping:
            args = get_args(tp)
            tp = args[1] if len(args) == 2 else Any
            continue
        name = getattr(tp, "__name__", str(tp))
        return f"{'.'.join(path[:i]) or 'the output'} is a {name}; it has no {segment!r}"
    return None


# --- validation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow: where, what, and how to fix it."""

    step: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"step '{self.step}': " if self.step else ""
        return f"{where}{self.message}; {self.fix}"


class FlowValidationError(FlowError):
    """A flow file with problems; ``problems`` lists every one, the message names the first."""

    def __init__(self, path: str, problems: Sequence[Problem]):
        self.problems = list(problems)
        more = len(self.problems) - 1
        suffix = f" (and {more} more problem(s): 'cvm flows validate {path}' lists them)" if more else ""
        super().__init__(f"{path}: {self.problems[0]}{suffix}", path=path)

    def lines(self) -> list[str]:
        return [f"{self.path}: {p}" for p in self.problems]


def _pydantic_problems(exc: ValidationError, raw: Mapping[str, Any]) -> list[Problem]:
    problems = []
    listed = raw.get("steps")
    steps: list[Any] = listed if isinstance(listed, list) else []
    for err in exc.errors():
        loc = list(err["loc"])
        step = None
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            item = steps[loc[1]] if loc[1] < len(steps) else None
            step = str(item.get("id")) if isinstance(item, Mapping) and item.get("id") else f"#{loc[1] + 1}"
            loc = loc[2:]
        key = ".".join(str(p) for p in loc) or "the flow"
        kind = err["type"]
        if kind == "too_short" and loc == ["steps"] and steps:
            continue  # pydantic also says this when some of the steps are invalid
        if kind == "missing":
            fix = f"add '{loc[-1]}:'" if loc else "add it"
            message = f"{key} is missing"
        elif kind == "extra_forbidden":
            fix = "remove it or check its spelling" + _allowed_keys(loc, step is not None)
            message = f"unknown key {key!r}"
        elif kind == "string_pattern_mismatch":
            message = f"{key} {err.get('input')!r} is not a valid name"
            fix = "use 1-64 letters, digits, '_' or '-', starting with a letter"
        elif kind == "too_short" and loc == ["steps"]:
            message, fix = "the flow has no steps", "add at least one step under steps:"
        else:
            message = f"{key}: {err['msg'].removeprefix('Value error, ')}"
            fix = "correct the value (see the Flows section of the README)"
        problems.append(Problem(step, message, fix))
    return problems


def _allowed_keys(loc: Sequence[Any], in_step: bool) -> str:
    model: Any = FlowStep if in_step else FlowDefinition
    for part in loc[:-1]:
        annotation = model.model_fields.get(part).annotation if isinstance(part, str) and part in model.model_fields else None
        candidates = [a for a in (get_args(annotation) or (annotation,)) if isclass(a) and issubclass(a, BaseModel)]
        if not candidates:
            return ""
        model = candidates[0]
    return f"; allowed: {', '.join(model.model_fields)}"


def upstream(flow: FlowDefinition) -> dict[str, set[str]]:
    """Step id -> every step it depends on, directly or transitively (cycle-safe)."""
    deps = {s.id: set(s.depends_on) for s in flow.steps}
    found: dict[str, set[str]] = {}
    for start in deps:
        seen: set[str] = set()
        todo = list(deps[start])
        while todo:
            d = todo.pop()
            if d in seen or d not in deps:
                continue
            seen.add(d)
            todo.extend(deps[d])
        found[start] = seen
    return found


def find_cycle(flow: FlowDefinition) -> list[str] | None:
    """One dependency cycle as a path (``a -> b -> a``), or None."""
    deps = {s.id: [d for d in s.depends_on] for s in flow.steps}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for d in deps.get(node, []):
            if d not in deps:
                continue
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state:
                cycle = visit(d)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for s in flow.steps:
        if s.id not in state:
            cycle = visit(s.id)
            if cycle:
                return cycle
    return None


def structure_problems(flow: FlowDefinition) -> list[Problem]:
    """Problems that need no agents: ids, dependencies, cycles, reference scope, schedule."""
    problems: list[Problem] = []
    ids = [s.id for s in flow.steps]
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            problems.append(Problem(sid, "the step id is used twice", "give every step its own id"))
        seen.add(sid)
    for s in flow.steps:
        for d in s.depends_on:
            if d == s.id:
                problems.append(Problem(s.id, "it depends on itself", f"remove '{d}' from its depends_on"))
            elif d not in seen:
                problems.append(Problem(s.id, f"depends_on names a missing step {d!r}", _choose(d, ids, "steps")))
    cycle = find_cycle(flow)
    if cycle:
        problems.append(Problem(cycle[0], f"dependency cycle {' -> '.join(cycle)}", "remove one of these depends_on entries so the steps form a DAG"))
    ups = upstream(flow)
    for s in flow.steps:
        for _at, text, _whole in references_in(s.parameters):
            try:
                ref = parse_reference(text)
            except ValueError as exc:
                problems.append(Problem(s.id, f"bad reference ${{{text}}}", str(exc)))
                continue
            if ref.root == "inputs" and ref.name not in flow.inputs:
                problems.append(Problem(
                    s.id, f"${{{text}}} names an undeclared input {ref.name!r}",
                    f"declare it under inputs: (known: {', '.join(flow.inputs) or 'none'})",
                ))
            elif ref.root == "steps":
                if ref.name not in seen:
                    problems.append(Problem(s.id, f"${{{text}}} names a missing step {ref.name!r}", _choose(ref.name, ids, "steps")))
                elif ref.name == s.id:
                    problems.append(Problem(s.id, f"${{{text}}} reads the step's own output", "read an earlier step's output"))
                elif ref.name not in ups[s.id]:
                    problems.append(Problem(
                        s.id, f"${{{text}}} reads step '{ref.name}', which is not upstream of it",
                        f"add '{ref.name}' to its depends_on (directly or through a step that depends on it)",
                    ))
            elif ref.root == "trigger":
                filt = flow.trigger.filter if flow.trigger else {}
                if ref.path and ref.path[0] not in filt:
                    problems.append(Problem(
                        s.id, f"${{{text}}}: trigger.filter has no {ref.path[0]!r}",
                        f"add it under trigger.filter (it has: {', '.join(filt) or 'nothing'})",
                    ))
    for name, spec in flow.inputs.items():
        if spec.default is not None and spec.type is not None and not spec.required:
            try:
                _INPUT_ADAPTERS[spec.type].validate_python(spec.default)
            except ValidationError:
                problems.append(Problem(None, f"input {name!r}: default {spec.default!r} is not a {spec.type}", f"give a {spec.type} default or change its type"))
    if flow.trigger and flow.trigger.schedule is not None:
        try:
            flow.trigger.parsed_schedule()
        except FlowError as exc:
            problems.append(Problem(None, f"trigger.{exc}", "correct trigger.schedule"))
    return problems


def _choose(name: str, known: Sequence[str], what: str) -> str:
    close = [k for k in known if k.startswith(name) or name.startswith(k)][:1] or difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}known {what}: {', '.join(known) or 'none'}"


SENTINEL = "__cvm_flow_reference__"


def _probe(value: Any, at: tuple[Any, ...], dynamic: list[tuple[Any, ...]]) -> Any:
    """The parameters with every referencing string replaced by a placeholder, noting where."""
    if isinstance(value, str):
        if _REF.search(value.replace(_ESCAPED, "")):
            dynamic.append(at)
            return SENTINEL
        return value
    if isinstance(value, Mapping):
        return {k: _probe(v, (*at, k), dynamic) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_probe(v, (*at, i), dynamic) for i, v in enumerate(value)]
    return value


def catalog_problems(flow: FlowDefinition, catalog: ActionCatalog) -> list[Problem]:
    """Problems only the agents can tell: unknown agent or action, parameters, reference paths into outputs."""
    problems: list[Problem] = []
    known_agents = sorted(catalog.agents)
    for s in flow.steps:
        if s.agent not in catalog.agents:
            problems.append(Problem(
                s.id, f"unknown agent {s.agent!r}",
                ("this CVM registers no such agent in Runtime.agents(); " if s.agent == "report" else "")
                + _choose(s.agent, known_agents, "agents"),
            ))
            continue
        spec = catalog.spec(s.agent, s.action)
        if spec is None:
            problems.append(Problem(
                s.id, f"agent '{s.agent}' has no action {s.action!r}", _choose(s.action, sorted(catalog.agents[s.agent]), f"actions of {s.agent}"),
            ))
            continue
        if spec.request is not None:
            problems += _parameter_problems(s, spec.request)
    for s in flow.steps:
        for _at, text, _whole in references_in(s.parameters):
            try:
                ref = parse_reference(text)
            except ValueError:
                continue
            if ref.root != "steps" or not ref.path or not any(x.id == ref.name for x in flow.steps):
                continue
            source = flow.step(ref.name)
            source_spec = catalog.spec(source.agent, source.action)
            if source_spec is None or source_spec.response is None:
                continue
            why = check_path(source_spec.response, ref.path)
            if why:
                problems.append(Problem(
                    s.id, f"${{{text}}} does not exist in the output of {source.agent}.{source.action}: {why}",
                    f"use one of its fields: {', '.join(f for f in source_spec.response.model_fields if f != 'type')}",
                ))
    return problems


def _parameter_problems(step: FlowStep, model: type[BaseModel]) -> list[Problem]:
    fields = [f for f in model.model_fields if f != "type"]
    problems = []
    target = f"{step.agent}.{step.action}"
    for name in step.parameters:
        if name == "type":
            problems.append(Problem(step.id, "parameters must not set 'type'", f"the message type is the action ({step.action}); remove it"))
        elif name not in model.model_fields:
            problems.append(Problem(
                step.id, f"unknown parameter {name!r} for {target}",
                f"{target} takes: {', '.join(fields) or 'no parameters'}",
            ))
    dynamic: list[tuple[Any, ...]] = []
    probe = _probe({k: v for k, v in step.parameters.items() if k in model.model_fields and k != "type"}, (), dynamic)
    try:
        model.model_validate({**probe, "type": step.action})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if any(loc[: len(d)] == d for d in dynamic):
                continue
            if err["type"] == "extra_forbidden" and len(loc) == 1:
                continue  # reported above as an unknown parameter
            key = ".".join(str(p) for p in loc)
            if err["type"] == "missing":
                problems.append(Problem(step.id, f"{target} needs parameter {key!r}", f"add it under parameters: (it takes: {', '.join(fields)})"))
            else:
                problems.append(Problem(step.id, f"parameter {key} of {target}: {err['msg']} (got {err.get('input')!r})", "give a value of the right type"))
    return problems


# --- loading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedFlow:
    """A validated flow with the file it came from and the digest of its text (resume refuses a changed file)."""

    definition: FlowDefinition
    path: Path
    digest: str

    @property
    def flow_id(self) -> str:
        return self.definition.flow_id


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_flow(path: str | Path) -> tuple[FlowDefinition, Path, str, list[Problem]]:
    """The flow, its resolved path, its digest, and its structure problems (raises only when the file or its shape is unusable)."""
    p = Path(path)
    shown = str(path)
    try:
        raw_bytes = p.read_bytes()
    except FileNotFoundError:
        raise FlowError(f"{shown}: no such flow file; give the path of a flow YAML (the standard ones are in config/flows/)", path=shown) from None
    except OSError as exc:
        raise FlowError(f"{shown}: cannot read the flow file ({exc.strerror or exc})", path=shown) from None
    try:
        raw = yaml.safe_load(raw_bytes.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FlowError(f"{shown}: not valid YAML{where} ({problem}); fix the file's syntax", path=shown) from None
    if not isinstance(raw, Mapping):
        raise FlowError(f"{shown}: a flow file is a mapping with flow_id, steps, ...; got {type(raw).__name__}", path=shown)
    try:
        definition = FlowDefinition.model_validate(raw)
    except ValidationError as exc:
        raise FlowValidationError(shown, _pydantic_problems(exc, raw)) from None
    return definition, p.resolve(), hashlib.sha256(raw_bytes).hexdigest(), structure_problems(definition)


def parse_flow(path: str | Path) -> tuple[FlowDefinition, Path, str]:
    """Read and check the file's shape (YAML, keys, types) and its structure (dependencies, cycles, references, schedule)."""
    definition, resolved, sha, problems = read_flow(path)
    if problems:
        raise FlowValidationError(str(path), problems)
    return definition, resolved, sha


def load_flow(path: str | Path, catalog: ActionCatalog | None = None) -> LoadedFlow:
    """Load and validate a flow; with a catalog also its agents, actions, parameters and output paths.

    Every problem is collected (``FlowValidationError.problems``); the message names the first.
    """
    definition, resolved, sha, problems = read_flow(path)
    if catalog is not None:
        problems += catalog_problems(definition, catalog)
    if problems:
        raise FlowValidationError(str(path), problems)
    return LoadedFlow(definition, resolved, sha)


def resolve_inputs(flow: FlowDefinition, given: Mapping[str, Any], *, from_text: bool = False) -> dict[str, Any]:
    """The run's inputs: declared defaults overridden by ``given`` (``--param`` text is parsed as JSON when it can be)."""
    unknown = [k for k in given if k not in flow.inputs]
    if unknown:
        raise FlowError(
            f"flow {flow.flow_id} has no input {unknown[0]!r}; its inputs are: {', '.join(flow.inputs) or 'none'}"
        )
    values: dict[str, Any] = {}
    for name, spec in flow.inputs.items():
        kind = spec.value_type()
        if name in given:
            value = given[name]
            if from_text and isinstance(value, str) and kind != "string":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
        elif spec.required:
            raise FlowError(f"flow {flow.flow_id} needs input {name!r} ({spec.description or kind}); give --param {name}=VALUE")
        else:
            value = spec.default
        if value is not None or name in given:
            try:
                value = _INPUT_ADAPTERS[kind].validate_python(value)
            except ValidationError:
                raise FlowError(f"input {name!r} must be a {kind}, not {value!r}; give --param {name}=VALUE with a {kind}") from None
        values[name] = value
    return values


# --- the plan artifact -----------------------------------------------------------------


def stages(flow: FlowDefinition) -> list[list[str]]:
    """Steps grouped by the earliest stage they can run in (each stage's steps can run in parallel)."""
    level: dict[str, int] = {}
    deps = {s.id: s.depends_on for s in flow.steps}

    def depth(sid: str) -> int:
        if sid not in level:
            level[sid] = 1 + max((depth(d) for d in deps[sid]), default=-1)
        return level[sid]

    for s in flow.steps:
        depth(s.id)
    grouped: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for s in flow.steps:
        grouped[level[s.id]].append(s.id)
    return grouped


def topological_order(flow: FlowDefinition) -> list[str]:
    return [sid for stage in stages(flow) for sid in stage]


def _type_text(annotation: Any) -> str:
    text = str(annotation) if not isclass(annotation) else annotation.__name__
    return re.sub(r"\b(?:[A-Za-z_][\w]*\.)+([A-Za-z_]\w*)", r"\1", text.replace("typing.", ""))


def build_plan(flow: FlowDefinition, catalog: ActionCatalog | None = None, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The plan artifact: goal, schedule, inputs, steps in order (dependencies, parameters, outputs), parallel stages."""
    order = stages(flow)
    stage_of = {sid: i + 1 for i, stage in enumerate(order) for sid in stage}
    steps = []
    for sid in topological_order(flow):
        s = flow.step(sid)
        spec = catalog.spec(s.agent, s.action) if catalog else None
        outputs = []
        if spec is not None and spec.response is not None:
            outputs = [
                {"field": name, "type": _type_text(f.annotation), "description": f.description or ""}
                for name, f in spec.response.model_fields.items() if name != "type"
            ]
        policy = flow.policy(s)
        steps.append({
            "id": s.id, "stage": stage_of[sid], "agent": s.agent, "action": s.action, "description": s.description,
            "depends_on": list(s.depends_on), "parameters": s.parameters,
            "outputs": outputs, "output_model": spec.response.__name__ if spec and spec.response else None,
            "error_handling": {
                "max_attempts": policy.max_attempts, "on_failure": policy.on_failure,
                "backoff": policy.backoff.model_dump(),
            },
        })
    trigger = flow.trigger
    return {
        "flow_id": flow.flow_id, "version": flow.version, "description": flow.description, "goal": flow.goal_text(),
        "schedule": {"expression": trigger.schedule, "timezone": trigger.timezone or "UTC"} if trigger and trigger.schedule else None,
        "filter": dict(trigger.filter) if trigger else {},
        "inputs": {
            name: {"description": spec.description, "default": spec.default, "type": spec.value_type(), "required": spec.required,
                   **({"value": inputs[name]} if inputs and name in inputs else {})}
            for name, spec in flow.inputs.items()
        },
        "stages": order,
        "steps": steps,
    }


def plan_in_words(plan: Mapping[str, Any]) -> list[str]:
    """``1. load: data.list_customers`` ... (what a report shows as the plan)."""
    lines = []
    for i, s in enumerate(plan["steps"], 1):
        after = f" (after {', '.join(s['depends_on'])})" if s["depends_on"] else ""
        what = f": {s['description']}" if s["description"] else ""
        lines.append(f"{i}. {s['id']} - {s['agent']}.{s['action']}{after}{what}")
    return lines


def plan_markdown(plan: Mapping[str, Any]) -> str:
    """The plan artifact as Markdown."""
    out = [f"# Plan: {plan['flow_id']} (version {plan['version']})", "", f"**Goal:** {plan['goal']}", ""]
    if plan["description"] and plan["description"] != plan["goal"]:
        out += [plan["description"], ""]
    if plan.get("schedule"):
        out += [f"**Schedule:** `{plan['schedule']['expression']}` ({plan['schedule']['timezone']})", ""]
    if plan.get("filter"):
        out += [f"**Trigger filter:** `{json.dumps(plan['filter'], ensure_ascii=False)}`", ""]
    if plan["inputs"]:
        out += ["## Inputs", "", "| input | type | default | description |", "|---|---|---|---|"]
        for name, spec in plan["inputs"].items():
            value = spec.get("value", spec["default"])
            out.append(f"| {name} | {spec['type']} | `{json.dumps(value, ensure_ascii=False, default=str)}` | {spec['description']} |")
        out.append("")
    out += ["## Stages (steps in a stage can run in parallel)", ""]
    for i, stage in enumerate(plan["stages"], 1):
        out.append(f"{i}. {', '.join(stage)}")
    out += ["", "## Steps", ""]
    for i, s in enumerate(plan["steps"], 1):
        out.append(f"### {i}. `{s['id']}`: {s['agent']}.{s['action']}")
        out.append("")
        if s["description"]:
            out += [s["description"], ""]
        out.append(f"- depends on: {', '.join(s['depends_on']) or 'nothing (starts at once)'}")
        if s["parameters"]:
            out.append(f"- parameters: `{json.dumps(s['parameters'], ensure_ascii=False, default=str)}`")
        if s["outputs"]:
            out.append(f"- outputs ({s['output_model']}): " + ", ".join(f"`{o['field']}`" for o in s["outputs"]))
        eh = s["error_handling"]
        out.append(f"- on failure: {eh['max_attempts']} attempt(s), then {eh['on_failure']}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
