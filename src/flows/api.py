"""The flows document's Python API: build a flow in code, register it, execute it by id, read its status.

    from cvm.flows.api import Flow, FlowEngine, Step, Trigger

    flow = Flow(flow_id="renewal_management", description="Contract renewals", version="1.0")
    flow.add_step(Step(id="get_customer_data", agent="data_agent", action="retrieve_customer_data",
                       parameters={"customer_id": "${customer.id}"}))
    flow.add_step(Step(id="assess_risk", agent="decision_agent", action="assess_renewal_risk",
                       depends_on=["get_customer_data"], parameters={"customer_id": "${customer.id}"}))
    flow.set_trigger(Trigger.schedule(cron="cron(0 9 * * ? *)",
                                      filter=["customer.renewal_date <= now() + interval '30 days'"]))
    flow.set_error_handling(default_strategy="retry", retry_count=3, failure_notification="${admin_email}")
    flow.register()

    engine = FlowEngine()
    execution = engine.execute_flow(flow_id="renewal_management", input_parameters={"customer_id": "U123"})
    engine.get_execution_status(execution.id).status      # 'succeeded', 'failed' or 'partial'

The same models and runner as the YAML files (``cvm.flows.schema``,
``cvm.flows.runner``): a flow built here validates exactly like its YAML
(``flow.to_yaml()`` writes it). ``FlowEngine`` finds a flow by id among the
registered ones, then in ``CVM_FLOWS_DIR`` (folders separated by ``:``), then in
``config/flows`` beside the config file. Runs are stored in ``CVM_DB_URL`` like
``cvm flows run``'s, so ``cvm flows show RUN_ID`` shows them too.

Why this module reaches above ``cvm.flows``: ``FlowEngine`` runs flows on a real
runtime, built with ``cvm.runtime`` (the composition root) when it executes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvm.flows.problems import FlowValidationError, pydantic_problems
from cvm.flows.registry import Execution, find_flow, flow_yaml, register
from cvm.flows.schema import FlowDefinition
from cvm.flows.store import FlowStore
from cvm.flows.validate import LoadedFlow
from cvm.utils.progress import NO_PROGRESS, Progress

__all__ = ["Execution", "Flow", "FlowEngine", "Step", "Trigger", "flow_folders"]


class Step:
    """One step: ``Step(id=..., agent=..., action=..., parameters=..., depends_on=...)`` (``step_id=`` is accepted for ``id``)."""

    def __init__(
        self, id: str | None = None, agent: str = "", action: str = "", *, step_id: str | None = None,
        parameters: Mapping[str, Any] | None = None, depends_on: Sequence[str] | str | None = None, description: str = "",
        error_handling: Mapping[str, Any] | None = None,
    ):
        self.id = id or step_id or ""
        self.agent = agent
        self.action = action
        self.parameters = dict(parameters or {})
        self.depends_on = [depends_on] if isinstance(depends_on, str) else list(depends_on or [])
        self.description = description
        self.error_handling = dict(error_handling) if error_handling else None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "agent": self.agent, "action": self.action}
        if self.description:
            body["description"] = self.description
        if self.depends_on:
            body["depends_on"] = self.depends_on
        if self.parameters:
            body["parameters"] = self.parameters
        if self.error_handling:
            body["error_handling"] = self.error_handling
        return body


class Trigger:
    """When the flow runs: ``Trigger.schedule(cron=..., filter=[...])`` or ``Trigger.manual()``."""

    def __init__(self, body: Mapping[str, Any]):
        self.body = dict(body)

    @classmethod
    def schedule(cls, cron: str, filter: Sequence[str] | str | Mapping[str, Any] | None = None, timezone: str | None = None) -> Trigger:
        """``cron``: ``cron(0 9 * * ? *)`` (AWS) or ``0 9 * * *``; ``filter``: conditions over customers (or a metadata mapping)."""
        body: dict[str, Any] = {"type": "schedule", "schedule": cron}
        if filter is not None:
            body["filter"] = [filter] if isinstance(filter, str) else filter if isinstance(filter, Mapping) else list(filter)
        if timezone is not None:
            body["timezone"] = timezone
        return cls(body)

    @classmethod
    def manual(cls, filter: Sequence[str] | str | None = None) -> Trigger:
        body: dict[str, Any] = {"type": "manual"}
        if filter is not None:
            body["filter"] = [filter] if isinstance(filter, str) else list(filter)
        return cls(body)


class Flow:
    """A flow built in code; ``definition`` validates it like its YAML, ``register()`` makes it executable by id."""

    def __init__(self, flow_id: str, description: str = "", version: str | int = "1", *, goal: str | None = None,
                 inputs: Mapping[str, Any] | None = None):
        self.flow_id = flow_id
        self.description = description
        self.version = str(version)
        self.goal = goal
        self.inputs = dict(inputs or {})
        self.steps: list[Step] = []
        self.trigger: Trigger | None = None
        self.error_handling: dict[str, Any] = {}

    def add_step(self, step: Step) -> Flow:
        self.steps.append(step)
        return self

    def set_trigger(self, trigger: Trigger) -> Flow:
        self.trigger = trigger
        return self

    def set_error_handling(self, default_strategy: str = "stop", retry_count: int | None = None, *,
                           failure_notification: str | Sequence[str] | None = None, backoff: Any = None,
                           then: str | None = None) -> Flow:
        """``default_strategy``: retry, stop or continue; ``failure_notification``: who is told when a run fails."""
        given = {"default_strategy": default_strategy, "retry_count": retry_count, "failure_notification": failure_notification,
                 "backoff": backoff, "then": then}
        self.error_handling = {k: v for k, v in given.items() if v is not None}
        return self

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"flow_id": self.flow_id, "description": self.description, "version": self.version}
        if self.goal:
            body["goal"] = self.goal
        if self.inputs:
            body["inputs"] = self.inputs
        if self.trigger is not None:
            body["trigger"] = self.trigger.body
        if self.error_handling:
            body["error_handling"] = self.error_handling
        body["steps"] = [s.as_dict() for s in self.steps]
        return body

    @property
    def definition(self) -> FlowDefinition:
        """The validated model (``FlowValidationError`` lists every problem, like a YAML file's)."""
        from pydantic import ValidationError

        raw = self.as_dict()
        try:
            return FlowDefinition.model_validate(raw)
        except ValidationError as exc:
            raise FlowValidationError(f"<flow {self.flow_id}>", pydantic_problems(exc, raw)) from None

    def to_yaml(self) -> str:
        return flow_yaml(self.definition)

    def save(self, path: str | Path) -> Path:
        """Write the flow as YAML (``cvm flows validate/run/export`` take the file)."""
        target = Path(path)
        target.write_text(self.to_yaml(), encoding="utf-8")
        return target

    def register(self) -> LoadedFlow:
        """Make the flow executable by id in this process (``FlowEngine().execute_flow(flow_id=...)``)."""
        return register(self.definition)


def flow_folders(config_path: str | Path | None = None, extra: Sequence[str | Path] = ()) -> list[Path]:
    """Where flows are found by id: ``extra``, then ``CVM_FLOWS_DIR`` (``:``-separated), then ``flows/`` beside the config."""
    folders = [Path(p) for p in extra]
    folders += [Path(p) for p in os.environ.get("CVM_FLOWS_DIR", "").split(os.pathsep) if p.strip()]
    folders.append(Path(config_path or os.environ.get("CVM_CONFIG") or "config/cvm_config.yaml").parent / "flows")
    return folders


class FlowEngine:
    """Executes flows by id on a real runtime (data folder, config, ledger as ``cvm flows run`` uses them)."""

    def __init__(
        self, *, data_dir: str | Path | None = None, config: str | Path | None = None, db_url: str | None = None,
        as_of: str | None = None, selector: str | None = None, flows_dir: str | Path | Sequence[str | Path] | None = None,
        max_parallel: int = 4, variables: Mapping[str, Any] | None = None, progress: Progress = NO_PROGRESS,
        dry_run: bool = False, auto_approve: bool = False,
    ):
        from cvm.utils.settings import RuntimeSettings

        self._settings = RuntimeSettings()
        extra = [flows_dir] if isinstance(flows_dir, (str, Path)) else list(flows_dir or [])
        self.folders = flow_folders(config or self._settings.config_path, extra)
        self._overrides: dict[str, Any] = {
            "data_dir": data_dir, "config_path": config, "db_url": db_url, "as_of": as_of, "selector": selector,
            "dry_run": dry_run, "auto_approve": auto_approve,
        }
        self.max_parallel = max_parallel
        self._variables = variables
        self._progress = progress
        self.store = FlowStore.from_url(db_url or self._settings.db_url)

    def flow(self, flow_id: str) -> LoadedFlow:
        return find_flow(flow_id, self.folders)

    def _runner(self, loaded: LoadedFlow, run_id: str) -> Any:
        from cvm.flows.catalog import ActionCatalog
        from cvm.flows.runner import FlowRunner
        from cvm.runtime import RunOptions, build_runtime, flow_variables

        options = RunOptions.from_settings(self._settings, run_id=run_id, **self._overrides)
        runtime = build_runtime(options, self._settings)
        agents = runtime.agents()
        variables = flow_variables() if self._variables is None else dict(self._variables)
        runner = FlowRunner(
            loaded, agents, self.store, catalog=ActionCatalog.from_agents(agents), max_parallel=self.max_parallel,
            ledger=runtime.ledger, variables=variables, progress=self._progress,
        )
        return runner, runtime, options

    def execute_flow(self, flow_id: str, input_parameters: Mapping[str, Any] | None = None, *, run_id: str | None = None) -> Execution:
        """Run the flow to its end (every step persisted); returns the execution (``status``, ``completed_steps``, ``step_outputs``)."""
        loaded = self.flow(flow_id)
        run_id = run_id or f"flow-{flow_id}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        runner, runtime, options = self._runner(loaded, run_id)
        stored = {  # what 'cvm flows resume' reads back, as for a run of 'cvm flows run'
            "data_dir": str(Path(options.data_dir).resolve()), "config": str(Path(options.config_path).resolve()),
            "as_of": options.as_of.isoformat() if isinstance(options.as_of, datetime) else options.as_of,
            "selector": options.selector, "dry_run": options.dry_run, "auto_approve": options.auto_approve, "api": True,
        }
        record = runner.start(run_id, dict(input_parameters or {}), run_clock=runtime.clock.now(), options=stored)
        return Execution.of(record)

    def get_execution_status(self, execution_id: str) -> Execution:
        """The execution as stored now (``FlowError`` for an unknown id)."""
        return Execution.of(self.store.require_run(execution_id))

    def resume_execution(self, execution_id: str) -> Execution:
        """Run again the steps of a stopped execution that did not succeed (the flow must be unchanged)."""
        record = self.store.require_run(execution_id)
        runner, _, _ = self._runner(self.flow(record.flow_id), execution_id)
        return Execution.of(runner.resume(execution_id))

    def matching_customers(self, flow_id: str) -> list[str]:
        """The customers a customer flow's trigger filter selects now (every customer when it has no filter), and any
        whose data cannot be read (their runs fail and say why)."""
        runner, runtime, _ = self._runner(self.flow(flow_id), f"select-{uuid.uuid4().hex[:8]}")
        return runner.matching_customers(runtime.clock.now())

    def close(self) -> None:
        self.store.close()
