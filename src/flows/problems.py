"""What is wrong with a flow, in words: ``Problem`` (where, what, how to fix it), ``FlowValidationError``
(every problem of a flow), and pydantic's errors on a flow file turned into problems (``pydantic_problems``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from inspect import isclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from cvm.flows.schema import FlowDefinition, FlowStep
from cvm.utils.errors import FlowError


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


def pydantic_problems(exc: ValidationError, raw: Mapping[str, Any]) -> list[Problem]:
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
