"""Loading and validating a flow file before anything runs: shape, structure, agents, parameters, references.

``read_flow``/``parse_flow`` read the YAML and check its shape and structure
(step ids, dependencies, cycles, reference scope, inputs, schedule);
``load_flow`` with an ``ActionCatalog`` also checks each step's agent, action,
parameters and the paths its references read in other steps' outputs.
``resolve_inputs`` turns a run's given inputs into typed values.

Every problem is reported with the step, what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cvm.flows.catalog import ActionCatalog
from cvm.flows.customers import CUSTOMER_FIELDS, customer_condition
from cvm.flows.problems import FlowValidationError as FlowValidationError
from cvm.flows.problems import Problem as Problem
from cvm.flows.problems import pydantic_problems
from cvm.flows.references import check_path, parse_reference, probe, references_in
from cvm.flows.schema import INPUT_ADAPTERS, FlowDefinition, FlowStep
from cvm.utils.conditions import ConditionError
from cvm.utils.errors import FlowError


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
    """One dependency cycle as a path along ``depends_on`` (``a -> b -> a``: a depends on b), or None.

    ``graphlib`` finds it; the path starts at the step of the cycle that comes first in the file.
    """
    try:
        TopologicalSorter({s.id: s.depends_on for s in flow.steps}).prepare()
    except CycleError as exc:
        # graphlib lists each step before the step that depends on it, the first repeated last: reverse, drop the repeat
        nodes: list[str] = list(reversed(exc.args[1]))[:-1]
        position = {s.id: i for i, s in enumerate(flow.steps)}
        first = min(range(len(nodes)), key=lambda i: position[nodes[i]])
        path = nodes[first:] + nodes[:first]
        return [*path, path[0]]
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
    inputs = flow.all_inputs()
    for s in flow.steps:
        for _at, text, _whole in references_in(s.parameters):
            try:
                ref = parse_reference(text)
            except ValueError as exc:
                problems.append(Problem(s.id, f"bad reference ${{{text}}}", str(exc)))
                continue
            if ref.root in ("inputs", "var") and ref.name not in inputs:
                problems.append(Problem(
                    s.id, f"${{{text}}} names an undeclared input {ref.name!r}",
                    f"declare it under inputs: (known: {', '.join(inputs) or 'none'})",
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
    for name, spec in inputs.items():
        if spec.default is not None and spec.type is not None and not spec.required:
            try:
                INPUT_ADAPTERS[spec.type].validate_python(spec.default)
            except ValidationError:
                problems.append(Problem(None, f"input {name!r}: default {spec.default!r} is not a {spec.type}", f"give a {spec.type} default or change its type"))
    if flow.trigger and flow.trigger.schedule is not None:
        try:
            flow.trigger.parsed_schedule()
        except FlowError as exc:
            problems.append(Problem(None, f"trigger.{exc}", "correct trigger.schedule"))
    return problems + filter_problems(flow) + notification_problems(flow)


def filter_problems(flow: FlowDefinition) -> list[Problem]:
    """Each customer condition parses and reads only ``customer.*`` fields."""
    problems = []
    for text in flow.trigger.conditions if flow.trigger else ():
        try:
            condition = customer_condition(text)
        except ConditionError as exc:
            problems.append(Problem(None, f"trigger.filter {text!r}: {exc}", "write a condition over customer fields, e.g. "
                                    "customer.renewal_date <= now() + interval '30 days'"))
            continue
        strays = sorted(f for f in condition.fields if not f.startswith("customer."))
        if strays:
            problems.append(Problem(None, f"trigger.filter {text!r} reads {', '.join(strays)}", "a filter reads customer fields: "
                                    f"customer.NAME (e.g. {', '.join('customer.' + f for f in CUSTOMER_FIELDS[:4])})"))
    return problems


def notification_problems(flow: FlowDefinition) -> list[Problem]:
    """``failure_notification`` may read variables, inputs, the run and the customer, never a step's output."""
    problems = []
    for text in flow.error_handling.failure_notification:
        for _at, expr, _whole in references_in(text):
            try:
                ref = parse_reference(expr)
            except ValueError as exc:
                problems.append(Problem(None, f"error_handling.failure_notification: bad reference ${{{expr}}}", str(exc)))
                continue
            if ref.root in ("steps", "trigger"):
                problems.append(Problem(None, f"error_handling.failure_notification reads ${{{expr}}}",
                                        "use an address, ${NAME} (input or CVM_NAME), ${inputs.NAME}, ${customer.FIELD} or ${run.id}"))
            elif ref.root == "inputs" and ref.name not in flow.all_inputs():
                problems.append(Problem(None, f"error_handling.failure_notification: ${{{expr}}} names an undeclared input",
                                        "declare it under inputs:"))
    return problems


def _choose(name: str, known: Sequence[str], what: str) -> str:
    close = [k for k in known if k.startswith(name) or name.startswith(k)][:1] or difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}known {what}: {', '.join(known) or 'none'}"


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
    placeholders = probe({k: v for k, v in step.parameters.items() if k in model.model_fields and k != "type"}, (), dynamic)
    try:
        model.model_validate({**placeholders, "type": step.action})
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
    except RecursionError:
        raise FlowError(f"{shown}: nested too deeply for a flow file (lists or mappings inside each other); flatten it", path=shown) from None
    _check_size(raw, shown)
    if not isinstance(raw, Mapping):
        raise FlowError(f"{shown}: a flow file is a mapping with flow_id, steps, ...; got {type(raw).__name__}", path=shown)
    try:
        definition = FlowDefinition.model_validate(raw)
    except ValidationError as exc:
        raise FlowValidationError(shown, pydantic_problems(exc, raw)) from None
    return definition, p.resolve(), hashlib.sha256(raw_bytes).hexdigest(), structure_problems(definition)


MAX_NODES = 100_000
MAX_NESTING = 64


def _check_size(raw: Any, shown: str) -> None:
    """Refuse a document too big or too deep once its YAML aliases are expanded, before anything walks it.

    A few hundred bytes of nested ``&anchor``/``*alias`` lists stand for billions of values (every later check,
    and the scheduler re-reading the folder each round, would never finish); counted without recursion, and
    stopped at the bound.
    """
    stack: list[tuple[Any, int]] = [(raw, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise FlowError(f"{shown}: over {MAX_NODES:,} values once YAML aliases are expanded; a flow file is far smaller", path=shown)
        if depth > MAX_NESTING:
            raise FlowError(f"{shown}: nested more than {MAX_NESTING} levels deep; flatten it", path=shown)
        children = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


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
    declared = flow.all_inputs()
    unknown = [k for k in given if k not in declared]
    if unknown:
        raise FlowError(
            f"flow {flow.flow_id} has no input {unknown[0]!r}; its inputs are: {', '.join(declared) or 'none'}"
        )
    values: dict[str, Any] = {}
    for name, spec in declared.items():
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
                value = INPUT_ADAPTERS[kind].validate_python(value)
            except ValidationError:
                raise FlowError(f"input {name!r} must be a {kind}, not {value!r}; give --param {name}=VALUE with a {kind}") from None
        values[name] = value
    return values
