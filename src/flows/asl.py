"""Step Functions export: a flow as an Amazon States Language state machine (``cvm flows export FLOW --format asl``).

The mapping:

* each stage of the plan (``cvm.flows.plan.stages``) in order; a stage of one
  step is that step's state, a stage of several independent steps is a
  ``Parallel`` state with one branch per step;
* a step is a ``Task`` whose ``Resource`` is the ARN template filled with the
  step's agent and action (``ArnTemplate``; ``flow.wait`` is a ``Wait`` state,
  ``flow.goal`` and ``flow.plan`` are ``Pass`` states holding the goal and the
  plan); its output is kept at ``$.steps.STEP.output``, where later steps read it;
* parameters pass through: a ``${...}`` reference becomes a JSONPath
  (``${steps.load.output.customer_ids}`` -> ``$.steps.load.output.customer_ids``,
  ``*`` -> ``[*]``), text with references ``States.Format``, a list with
  references ``States.Array``; ``${run.id}`` is ``$$.Execution.Id``,
  ``${run.started_at}`` ``$$.Execution.StartTime``; ``${trigger.filter...}`` and
  ``${run.flow_id}`` are written as their values;
* ``Retry`` from the step's retries and backoff; a step that stops the run
  ``Catch``es every error into ``NotifyFailure`` (the execution agent's
  ``send_notifications`` to ``failure_notification``) and then ``FlowFailed``
  (a ``Fail`` state), or straight into ``FlowFailed`` when the flow names no
  one; a ``continue`` step catches into the next state with the error at
  ``$.steps.STEP.error``.

The execution input is ``{"inputs": {...}, "customer": {...}, "variables": {...}}``:
``${inputs.NAME}`` reads ``$.inputs``, ``${customer.FIELD}`` ``$.customer``
(a customer flow's customer, as ``cvm.flows.customers`` builds it), and a bare
``${NAME}`` ``$.inputs.NAME`` when NAME is an input, else ``$.variables.NAME``.

What Step Functions cannot say is refused with the step named (a list of
objects holding references, a reference to a ``wait`` step's output). In Step
Functions a ``continue`` step's dependents still run (there is no skipping).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from string import Template
from typing import Any

from cvm.flows.plan import build_plan, stages
from cvm.flows.references import ESCAPED, REFERENCE, Reference, parse_reference
from cvm.flows.schema import FLOW_AGENT, FlowDefinition, FlowStep
from cvm.utils.errors import FlowError

DEFAULT_ARN_TEMPLATE = "arn:aws:lambda:${region}:${account}:function:cvm-${agent}-${action}"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
"""AWS's documentation account: replace it with yours (``--account`` or ``CVM_ASL_ACCOUNT``)."""
NOTIFY_STATE = "NotifyFailure"
FAILED_STATE = "FlowFailed"
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ArnTemplate:
    """The Task resource for each step: ``${region}``, ``${account}``, ``${agent}``, ``${action}``, ``${flow}``, ``${step}``."""

    template: str = DEFAULT_ARN_TEMPLATE
    region: str = DEFAULT_REGION
    account: str = DEFAULT_ACCOUNT

    def resource(self, flow_id: str, step_id: str, agent: str, action: str) -> str:
        try:
            return Template(self.template).substitute(
                region=self.region, account=self.account, agent=agent, action=action, flow=flow_id, step=step_id,
            )
        except (KeyError, ValueError) as exc:
            raise FlowError(
                f"ARN template {self.template!r}: unknown or malformed placeholder {exc}; "
                "use ${region}, ${account}, ${agent}, ${action}, ${flow} and ${step}"
            ) from None


def path(*segments: str) -> str:
    """``$`` plus segments: dotted when plain, bracketed otherwise (``*`` -> ``[*]``, ``3`` -> ``[3]``)."""
    out = "$"
    for s in segments:
        if s == "*":
            out += "[*]"
        elif s.lstrip("-").isdigit():
            out += f"[{s}]"
        elif _PLAIN.match(s):
            out += f".{s}"
        else:
            out += "['" + s.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return out


class _Exporter:
    def __init__(self, flow: FlowDefinition, arn: ArnTemplate):
        self.flow = flow
        self.arn = arn
        self.inputs = flow.all_inputs()
        self.notify = bool(flow.error_handling.failure_notification)
        self.failure_target = NOTIFY_STATE if self.notify else FAILED_STATE
        self.no_output = {s.id for s in flow.steps if s.agent == FLOW_AGENT and s.action == "wait"}

    # -- references --------------------------------------------------------------------

    def reference(self, ref: Reference, step: str) -> tuple[str, Any]:
        """("path", JSONPath) or ("value", a value known now) for one reference."""
        if ref.root == "inputs":
            return "path", path("inputs", ref.name, *ref.path)
        if ref.root == "customer":
            return "path", path("customer", ref.name, *ref.path)
        if ref.root == "var":
            return "path", path("inputs" if ref.name in self.inputs else "variables", ref.name)
        if ref.root == "steps":
            if ref.name in self.no_output:
                raise FlowError(f"step '{step}': ${{{ref.text}}} reads a wait step, which has no output in Step Functions")
            return "path", path("steps", ref.name, "output", *ref.path)
        if ref.root == "run":
            return {"id": ("path", "$$.Execution.Id"), "started_at": ("path", "$$.Execution.StartTime"),
                    "flow_id": ("value", self.flow.flow_id)}[ref.name]
        value: Any = dict(self.flow.trigger.filter) if self.flow.trigger else {}
        for segment in ref.path:
            value = value[int(segment)] if isinstance(value, list) else value[segment]
        return "value", value

    def text(self, text: str, step: str) -> tuple[str, Any]:
        """A string parameter: ("value", text) with no reference, ("path", JSONPath) for exactly one, else ("path", States.Format(...))."""
        plain = text.replace(ESCAPED, "")
        if not REFERENCE.search(plain):
            return "value", text.replace(ESCAPED, "${")
        whole = REFERENCE.fullmatch(text.strip())
        if whole and ESCAPED not in text:
            return self.reference(parse_reference(whole.group(1)), step)
        template, args, last = "", [], 0
        for m in REFERENCE.finditer(text):
            if m.start() > 0 and text[m.start() - 1] == "$":  # $${...} is a literal ${...}
                template += _format_escape(text[last : m.start() - 1] + m.group(0))
            else:
                kind, found = self.reference(parse_reference(m.group(1)), step)
                template += _format_escape(text[last : m.start()])
                if kind == "path":
                    template += "{}"
                    args.append(found)
                else:
                    template += _format_escape(found if isinstance(found, str) else json.dumps(found))
            last = m.end()
        template += _format_escape(text[last:])
        if not args:
            return "value", template.replace("\\{", "{").replace("\\}", "}").replace("\\'", "'").replace("\\\\", "\\")
        return "path", f"States.Format('{template}', {', '.join(args)})"

    def parameters(self, value: Mapping[str, Any], step: str) -> dict[str, Any]:
        """Step parameters as ASL ``Parameters`` (a ``.$`` key for every value read at run time)."""
        out: dict[str, Any] = {}
        for key, item in value.items():
            kind, converted = self.value(item, step, key)
            out[f"{key}.$" if kind == "path" else key] = converted
        return out

    def value(self, item: Any, step: str, key: str) -> tuple[str, Any]:
        if isinstance(item, str):
            return self.text(item, step)
        if isinstance(item, Mapping):
            return "value", self.parameters(item, step)
        if isinstance(item, (list, tuple)):
            converted = [self.value(x, step, key) for x in item]
            if all(kind == "value" for kind, _ in converted):
                return "value", [v for _, v in converted]
            if any(isinstance(x, (Mapping, list, tuple)) for x in item):
                raise FlowError(
                    f"step '{step}': parameter {key!r} is a list of objects or lists holding references, which Step "
                    "Functions cannot build; pass the whole list as one reference instead"
                )
            args = [v if kind == "path" else _intrinsic_literal(v) for kind, v in converted]
            return "path", f"States.Array({', '.join(args)})"
        return "value", item

    # -- states ------------------------------------------------------------------------

    def step_state(self, step: FlowStep, next_state: str | None, in_branch: bool) -> dict[str, dict[str, Any]]:
        """The step's state (and, in a branch, the Pass a ``continue`` step's failure goes to)."""
        tail: dict[str, Any] = {"Next": next_state} if next_state else {"End": True}
        if step.agent == FLOW_AGENT and step.action == "wait":
            kind, seconds = self.value(step.parameters.get("seconds", 0), step.id, "seconds")
            wait = {"SecondsPath": seconds} if kind == "path" else {"Seconds": max(0, int(round(float(seconds))))}
            return {step.id: {"Type": "Wait", "Comment": step.description or "flow.wait", **wait, **tail}}
        if step.agent == FLOW_AGENT:
            plan = build_plan(self.flow)
            result = {"goal": plan["goal"], "flow_id": self.flow.flow_id, "version": self.flow.version}
            if step.action == "plan":
                result = {"plan": plan}
            return {step.id: {"Type": "Pass", "Comment": f"flow.{step.action}", "Result": result,
                              "ResultPath": path("steps", step.id, "output"), **tail}}
        state: dict[str, Any] = {
            "Type": "Task", "Comment": step.description or f"{step.agent}.{step.action}",
            "Resource": self.arn.resource(self.flow.flow_id, step.id, step.agent, step.action),
        }
        if step.parameters:
            state["Parameters"] = self.parameters(step.parameters, step.id)
        state["ResultPath"] = path("steps", step.id, "output")
        policy = self.flow.policy(step)
        if policy.max_attempts > 1:
            b = policy.backoff
            retry: dict[str, Any] = {
                "ErrorEquals": ["States.ALL"], "IntervalSeconds": max(1, int(round(b.initial_seconds))),
                "MaxAttempts": policy.max_attempts - 1, "BackoffRate": float(b.multiplier),
            }
            if b.max_seconds >= 1:
                retry["MaxDelaySeconds"] = int(b.max_seconds)
            state["Retry"] = [retry]
        extra: dict[str, dict[str, Any]] = {}
        if policy.on_failure == "continue":
            target = next_state
            if target is None:
                target = f"{step.id} failed"
                extra[target] = {"Type": "Pass", "Comment": f"step {step.id} failed; the flow goes on", "End": True}
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": path("steps", step.id, "error"), "Next": target}]
        elif not in_branch:
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": self.failure_target}]
        return {step.id: {**state, **tail}, **extra}

    def machine(self) -> dict[str, Any]:
        order = stages(self.flow)
        taken = {s.id for s in self.flow.steps} | {NOTIFY_STATE, FAILED_STATE}
        names: list[str] = []
        for i, stage in enumerate(order, 1):
            if len(stage) == 1:
                names.append(stage[0])
                continue
            name = f"Stage {i}"
            while name in taken:
                name += "_"
            taken.add(name)
            names.append(name)
        states: dict[str, Any] = {}
        done: list[str] = []
        for i, (stage, name) in enumerate(zip(order, names, strict=True)):
            following = names[i + 1] if i + 1 < len(names) else None
            if len(stage) == 1:
                states.update(self.step_state(self.flow.step(stage[0]), following, in_branch=False))
            else:
                states[name] = self.parallel(stage, done, following)
            done += [sid for sid in stage if sid not in self.no_output]
        states.update(self.failure_states())
        description = " ".join(self.flow.description.split())
        return {
            "Comment": f"CVM flow {self.flow.flow_id} version {self.flow.version}: {description}"[:1000],
            "StartAt": names[0],
            "States": states,
        }

    def parallel(self, stage: list[str], done: list[str], following: str | None) -> dict[str, Any]:
        """Independent steps as branches; the branches' outputs merged back into ``$.steps``."""
        branches = []
        for sid in stage:
            branch_states = self.step_state(self.flow.step(sid), None, in_branch=True)
            branches.append({"StartAt": sid, "States": branch_states})
        keep = {f"{sid}.$": "$[0]" + path("steps", sid)[1:] for sid in done}  # every branch carries the steps before it
        merged = {f"{sid}.$": f"$[{i}]" + path("steps", sid)[1:] for i, sid in enumerate(stage) if sid not in self.no_output}
        state: dict[str, Any] = {
            "Type": "Parallel", "Comment": f"independent steps: {', '.join(stage)}", "Branches": branches,
            "ResultSelector": {**keep, **merged}, "ResultPath": "$.steps",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": self.failure_target}],
        }
        return {**state, **({"Next": following} if following else {"End": True})}

    def failure_states(self) -> dict[str, Any]:
        failed = {FAILED_STATE: {"Type": "Fail", "Error": "FlowFailed", "Cause": f"a step of flow {self.flow.flow_id} failed"}}
        if not self.notify:
            return failed
        recipients = [self.value(text, NOTIFY_STATE, "recipients") for text in self.flow.error_handling.failure_notification]
        parameters: dict[str, Any] = {
            "channel": "email",
            "subject.$": f"States.Format('CVM flow {_format_escape(self.flow.flow_id)}: execution {{}} failed', $$.Execution.Name)",
            "template.$": "States.Format('Step Functions execution {} failed. Error: {}. Cause: {}', "
                          "$$.Execution.Id, $.error.Error, $.error.Cause)",
            "run_id.$": "$$.Execution.Name",
        }
        if all(kind == "value" for kind, _ in recipients):
            parameters["recipients"] = [v for _, v in recipients]
        else:
            parameters["recipients.$"] = f"States.Array({', '.join(v if k == 'path' else _intrinsic_literal(v) for k, v in recipients)})"
        notify = {
            "Type": "Task", "Comment": "tell error_handling.failure_notification that the flow failed",
            "Resource": self.arn.resource(self.flow.flow_id, NOTIFY_STATE, "execution", "send_notifications"),
            "Parameters": parameters, "ResultPath": "$.notification",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.notification_error", "Next": FAILED_STATE}],
            "Next": FAILED_STATE,
        }
        return {NOTIFY_STATE: notify, **failed}


def _format_escape(text: str) -> str:
    """Text inside an intrinsic function's quoted string: ``\\``, ``'``, ``{`` and ``}`` escaped."""
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("{", "\\{").replace("}", "\\}")


def _intrinsic_literal(value: Any) -> str:
    if isinstance(value, str):
        return f"'{_format_escape(value)}'"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    raise FlowError(f"{value!r} cannot be an argument of States.Array")


def export_asl(flow: FlowDefinition, arn: ArnTemplate | None = None) -> dict[str, Any]:
    """The flow as an ASL state machine definition (a JSON-ready dict)."""
    return _Exporter(flow, arn or ArnTemplate()).machine()


def export_asl_text(flow: FlowDefinition, arn: ArnTemplate | None = None) -> str:
    return json.dumps(export_asl(flow, arn), indent=2, ensure_ascii=False) + "\n"
