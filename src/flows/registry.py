"""Flows by id: those registered from Python (``Flow.register()``) and the YAML files of the flows folders.

``find_flow(flow_id, folders)`` looks in the registry first, then in each
folder's ``*.yaml``/``*.yml`` for a file whose ``flow_id`` is that id (the
first folder that has one wins). ``Execution`` is a run as the flows
document's Python API shows it: ``id``, ``status``, ``completed_steps`` and
``step_outputs``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cvm.flows.schema import FlowDefinition
from cvm.flows.store import FlowRunRecord
from cvm.flows.validate import FlowValidationError, LoadedFlow, parse_flow, read_flow, structure_problems
from cvm.utils.errors import FlowError

_REGISTRY: dict[str, LoadedFlow] = {}
_LOCK = threading.Lock()


def flow_yaml(definition: FlowDefinition) -> str:
    """The flow as YAML (what ``Flow.save`` writes, and whose digest a registered flow's runs keep)."""
    body = definition.model_dump(mode="json", exclude_defaults=True)
    body["steps"] = [s.model_dump(mode="json", exclude_defaults=True) for s in definition.steps]
    trigger = body.get("trigger")
    if isinstance(trigger, dict) and trigger.get("conditions"):
        trigger["filter"] = trigger.pop("conditions")
    return yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def register(definition: FlowDefinition) -> LoadedFlow:
    """Check the flow's structure and make it findable by id in this process (a later registration replaces it)."""
    problems = structure_problems(definition)
    where = f"<registered {definition.flow_id}>"
    if problems:
        raise FlowValidationError(where, problems)
    text = flow_yaml(definition)
    loaded = LoadedFlow(definition, Path(where), hashlib.sha256(text.encode("utf-8")).hexdigest())
    with _LOCK:
        _REGISTRY[definition.flow_id] = loaded
    return loaded


def unregister(flow_id: str) -> None:
    with _LOCK:
        _REGISTRY.pop(flow_id, None)


def registered() -> list[str]:
    with _LOCK:
        return sorted(_REGISTRY)


def find_flow(flow_id: str, folders: Sequence[Path]) -> LoadedFlow:
    """The registered flow of that id, else the first flow file with that ``flow_id`` in ``folders``."""
    with _LOCK:
        found = _REGISTRY.get(flow_id)
    if found is not None:
        return found
    seen: list[str] = []
    for folder in folders:
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []:
            try:
                definition, _, _, _ = read_flow(path)
            except FlowError:
                continue  # a broken file elsewhere in the folder does not hide the one asked for
            seen.append(definition.flow_id)
            if definition.flow_id == flow_id:
                definition, resolved, digest = parse_flow(path)
                return LoadedFlow(definition, resolved, digest)
    known = sorted(set(seen) | set(registered()))
    raise FlowError(
        f"no flow {flow_id!r}: register it (Flow(...).register()) or put its YAML in one of "
        f"{', '.join(str(f) for f in folders) or 'no folder'} (CVM_FLOWS_DIR); known flows: {', '.join(known) or 'none'}"
    )


@dataclass(frozen=True)
class Execution:
    """One flow run, as the Python API returns it (``record`` is the full stored run)."""

    id: str
    flow_id: str
    status: str
    """``running``, ``succeeded``, ``failed`` or ``partial``."""
    completed_steps: list[str]
    """Steps that succeeded, in flow order."""
    failed_steps: list[str]
    skipped_steps: list[str]
    step_outputs: dict[str, Any]
    """Step id -> its output (JSON), for the steps that succeeded."""
    error: str | None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    record: FlowRunRecord | None = None

    @property
    def execution_id(self) -> str:
        return self.id

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def of(cls, record: FlowRunRecord) -> Execution:
        steps = list(record.steps.values())
        return cls(
            id=record.run_id, flow_id=record.flow_id, status=record.status,
            completed_steps=[s.step_id for s in steps if s.status == "succeeded"],
            failed_steps=[s.step_id for s in steps if s.status == "failed"],
            skipped_steps=[s.step_id for s in steps if s.status == "skipped"],
            step_outputs={s.step_id: s.output for s in steps if s.status == "succeeded"},
            error=record.error, notifications=list(record.notifications), record=record,
        )

