"""References in step parameters: ``${inputs.NAME}``, ``${steps.STEP.output.PATH}``, ``${run.id}``, ``${trigger.filter.PATH}``,
``${customer.PATH}`` and bare ``${NAME}``.

``${customer.PATH}`` reads the run's customer (a customer flow: one run per
customer, see ``cvm.flows.customers``). A bare ``${NAME}`` is a variable: the
run's input NAME when there is one, else a value the runner was given (the
composition root passes the ``CVM_<NAME>`` environment variables, so
``${admin_email}`` is ``CVM_ADMIN_EMAIL``).

``parse_reference`` reads one, ``references_in`` finds them in a parameter
value, ``RunContext.resolve`` replaces them at run time (a parameter that is
exactly one reference keeps the value's type; inside longer text it is
interpolated as text; ``$${`` is a literal ``${``), ``check_path`` tells before
the run whether a path can exist in a step's response model, and ``probe``
stands a placeholder in for each referencing string so the parameters can be
checked against the request model.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from cvm.flows.schema import RUN_FIELDS
from cvm.utils.errors import FlowError

REFERENCE = re.compile(r"\$\{([^{}]*)\}")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ESCAPED = "$${"


@dataclass(frozen=True)
class Reference:
    """One ``${...}``: its root (``inputs``, ``steps``, ``run``, ``trigger``, ``customer``, ``var``), name and path."""

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
    if root == "customer":
        if len(parts) < 2:
            raise ValueError("${customer} needs a field: ${customer.id}, ${customer.renewal_date} ...")
        return Reference(expr, root, parts[1], tuple(parts[2:]))
    if len(parts) == 1 and VARIABLE.fullmatch(root):
        return Reference(expr, "var", root, ())
    raise ValueError(f"${{{expr}}}: unknown reference root {root!r}; use inputs, steps, run, trigger, customer or a bare ${{NAME}}")


def references_in(value: Any) -> list[tuple[tuple[str | int, ...], str, bool]]:
    """Every ``${...}`` in a parameter value: (path inside the parameters, the text inside, whole-value?)."""
    found: list[tuple[tuple[str | int, ...], str, bool]] = []

    def walk(v: Any, at: tuple[str | int, ...]) -> None:
        if isinstance(v, str):
            plain = v.replace(ESCAPED, "")
            whole = REFERENCE.fullmatch(v.strip()) is not None and ESCAPED not in v
            for m in REFERENCE.finditer(plain):
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
    customer: Mapping[str, Any] | None = None
    """The run's customer (a customer flow), read by ``${customer.PATH}``."""
    variables: Mapping[str, Any] = field(default_factory=dict)
    """Values of bare ``${NAME}`` references that are not inputs (``CVM_<NAME>`` in the environment)."""

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
        if ref.root == "customer":
            if self.customer is None:
                raise UnresolvedReference(f"${{{ref.text}}}: this run has no customer; give the input customer_id")
            return _walk(dict(self.customer), (ref.name, *ref.path), ref)
        if ref.root == "var":
            if ref.name in self.inputs:
                return self.inputs[ref.name]
            if ref.name in self.variables:
                return self.variables[ref.name]
            raise UnresolvedReference(
                f"${{{ref.text}}}: no input or variable {ref.name!r}; set CVM_{ref.name.upper()} in the environment or give it as an input"
            )
        return _walk(dict(self.trigger_filter), ref.path, ref)

    def resolve(self, value: Any) -> Any:
        """Parameters with every reference replaced (whole references keep the value's type)."""
        if isinstance(value, str):
            plain = value.strip()
            whole = REFERENCE.fullmatch(plain)
            if whole and ESCAPED not in value:
                return self.lookup(parse_reference(whole.group(1)))
            pieces, last = [], 0
            for m in REFERENCE.finditer(value):
                if m.start() > 0 and value[m.start() - 1] == "$":  # $${...} is literal
                    pieces.append(value[last : m.start() - 1] + m.group(0))
                else:
                    pieces.append(value[last : m.start()] + _as_text(self.lookup(parse_reference(m.group(1))), m.group(0)))
                last = m.end()
            return "".join(pieces) + value[last:]
        if isinstance(value, Mapping):
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.resolve(v) for v in value]
        return value


MAX_INTERPOLATED_CHARS = 1_000_000
"""At most this much text from one reference inside a longer string (an e-mail body, a subject, a path)."""


def _as_text(value: Any, reference: str) -> str:
    """A referenced value as text inside a string; a whole step output of a large run would be megabytes."""
    text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list, tuple)) else "" if value is None else str(value)
    if len(text) > MAX_INTERPOLATED_CHARS:
        raise UnresolvedReference(
            f"{reference} is {len(text):,} characters as text; inside a string a reference may give at most"
            f" {MAX_INTERPOLATED_CHARS:,}: reference a smaller part of it (a count or a summary field), or"
            " pass it as the whole parameter value to keep it as data"
        )
    return text


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


SENTINEL = "__cvm_flow_reference__"


def probe(value: Any, at: tuple[Any, ...], dynamic: list[tuple[Any, ...]]) -> Any:
    """The parameters with every referencing string replaced by a placeholder, noting where."""
    if isinstance(value, str):
        if REFERENCE.search(value.replace(ESCAPED, "")):
            dynamic.append(at)
            return SENTINEL
        return value
    if isinstance(value, Mapping):
        return {k: probe(v, (*at, k), dynamic) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [probe(v, (*at, i), dynamic) for i, v in enumerate(value)]
    return value
