"""The plan artifact: a flow's goal, schedule, inputs, steps in order (dependencies, parameters, outputs), parallel stages.

``build_plan`` makes it as JSON (``cvm flows plan --output json``), ``plan_markdown``
renders it, ``plan_in_words`` lists the steps one line each; ``stages`` and
``topological_order`` are the orders the runner executes in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from inspect import isclass
from typing import Any

from cvm.flows.catalog import ActionCatalog
from cvm.flows.schema import FlowDefinition


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
        "customer_filter": list(trigger.conditions) if trigger else [],
        "failure_notification": list(flow.error_handling.failure_notification),
        "inputs": {
            name: {"description": spec.description, "default": spec.default, "type": spec.value_type(), "required": spec.required,
                   **({"value": inputs[name]} if inputs and name in inputs else {})}
            for name, spec in flow.all_inputs().items()
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
    if plan.get("customer_filter"):
        out += ["**For each customer where:** " + " and ".join(f"`{c}`" for c in plan["customer_filter"]), ""]
    if plan.get("failure_notification"):
        out += ["**On failure, notify:** " + ", ".join(f"`{r}`" for r in plan["failure_notification"]), ""]
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
