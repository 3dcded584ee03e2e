"""``FlowTestCase``: test your own flow with some or all agent actions replaced by scripted answers.

The real runner runs underneath (validation, references, parallel stages,
retries, stop/continue, the flow-run store), on a real runtime over your data
folder and a throw-away ledger in a temp folder; only the actions you script
answer from your script instead of the agent::

    from cvm.flows.testing import FlowTestCase

    case = (
        FlowTestCase("config/flows/churn_prevention.yaml", data_dir="data/sample")
        .script("insight", "fuse_signals", {
            "customers": 2, "customer_ids": ["U1", "U2"], "signal_counts": {}, "customers_by_signal": {},
            "at_risk": [{"customer_id": "U2", "churn_probability": 0.9, "signals": [], "reasons": []}],
        })
        .script("orchestrator", "process_batch", lambda message: {"run_id": message["run_id"], "results": []})
    )
    run = case.run(inputs={"horizon_days": 30})
    assert run.status == "succeeded"
    assert case.calls("orchestrator", "process_batch")[0]["customer_ids"] == ["U2"]
    assert run.output("retain") == {"run_id": run.run_id, "results": []}

A script answer is a dict (the step's output), a pydantic response model, an
``ErrorResponse`` (a failed attempt), an exception instance (raised: a failed
attempt) or a callable taking the resolved message (a dict with ``type``) and
returning any of those. Several answers are used one per call, the last one
repeating: ``.script("data", "list_customers", RuntimeError("down"),
RuntimeError("down"), {"customer_ids": ["U1"]})`` fails twice, then succeeds.
``script_step(step_id, ...)`` scripts one step whatever its action. An agent the
runtime does not have can be scripted too (a flow written before its agent).
Agent and action names are read as flows read them (``data_agent`` is ``data``,
``retrieve_customer_data`` is ``get_customer_data``).

The flows document's form works too: a case made without a flow runs flows by
id (registered with ``Flow.register()``, or found in ``CVM_FLOWS_DIR`` or
``config/flows``)::

    test = FlowTestCase()
    test.mock_agent_response(agent="decision_agent", action="assess_renewal_risk", response={...})
    result = test.execute_flow(flow_id="renewal_management", input_parameters={"customer_id": "U123"})
    assert "assess_renewal_risk" in result.completed_steps
    assert result.step_outputs["assess_renewal_risk"]["risk_level"] == "high"

A customer flow reads its customer through ``data.get_customer_data``: script
that action and the script's answer is the customer too.

Why this module reaches above ``cvm.flows``: a case runs the flow on a real
runtime, so ``_runner`` builds one with ``cvm.runtime.build_runtime`` (the
composition root, imported when a case runs) and hands its agents (``cvm.agents``,
through the runner) the messages of the steps that are not scripted.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cvm.flows.api import flow_folders
from cvm.flows.catalog import ActionCatalog
from cvm.flows.registry import Execution, find_flow
from cvm.flows.runner import FlowRunner, StepEvent
from cvm.flows.schema import FlowStep, canonical_action
from cvm.flows.store import FlowRunRecord, FlowStore
from cvm.flows.validate import LoadedFlow, load_flow, parse_flow
from cvm.utils.errors import FlowError
from cvm.utils.progress import NO_PROGRESS, Progress

Answer = Any
"""A dict, a pydantic model, an ``ErrorResponse``, an exception instance, or a callable(message) -> one of those."""


class _Script:
    """Answers used one per call; the last repeats."""

    def __init__(self, answers: tuple[Answer, ...]):
        if not answers:
            raise ValueError("script needs at least one answer")
        self._answers = answers
        self._next = 0
        self._lock = threading.Lock()

    def answer(self, message: dict[str, Any]) -> Any:
        with self._lock:
            answer = self._answers[min(self._next, len(self._answers) - 1)]
            self._next += 1
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer) and not isinstance(answer, (BaseModel, Mapping)):
            answer = answer(dict(message))
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FlowTestCase:
    """Run a flow with scripted agent actions, on the real runner, a real runtime and a temp ledger."""

    def __init__(
        self,
        flow: str | Path | None = None,
        *,
        data_dir: str | Path | None = None,
        config: str | Path | None = None,
        custom_treatments: str | Path | None = None,
        db_url: str | None = None,
        as_of: str | None = None,
        selector: str = "rules",
        max_parallel: int = 4,
        auto_approve: bool = False,
        dry_run: bool = False,
        sleep: Callable[[float], None] | None = None,
        flows_dir: str | Path | None = None,
        variables: Mapping[str, Any] | None = None,
        progress: Progress = NO_PROGRESS,
    ):
        """Defaults come from the environment like the CLI (``CVM_DATA_DIR``, ``CVM_CONFIG``...), except the ledger,
        which is a fresh SQLite file in a temp folder unless ``db_url`` is given. ``sleep`` replaces every wait
        (retry backoff and ``flow.wait`` steps), e.g. ``waits.append`` records the delays without waiting.
        ``flow`` may be left out: ``execute_flow(flow_id=...)`` then finds the flow by id (also in ``flows_dir``).
        ``variables``: the bare ``${NAME}`` values (default none, so a test never reads the environment's)."""
        from cvm.utils.settings import RuntimeSettings

        # ``_env_file`` is pydantic-settings' documented init argument, but mypy builds the model's __init__
        # from its fields alone and does not see it (pydantic/pydantic-settings#131).
        settings = RuntimeSettings(_env_file=None)  # type: ignore[call-arg]
        self.flow_path = Path(flow).resolve() if flow is not None else None
        self._settings = settings
        self._variables = dict(variables or {})
        self._progress = progress
        self._tmp = None
        if db_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cvm-flowtest-")
            db_url = f"sqlite:///{Path(self._tmp.name) / 'cvm.sqlite3'}"
        self.db_url = db_url
        self._options = dict(
            data_dir=Path(data_dir) if data_dir is not None else settings.data_dir,
            config_path=Path(config) if config is not None else settings.config_path,
            custom_treatments_path=Path(custom_treatments) if custom_treatments is not None else (
                Path(self._tmp.name) / "custom_treatments.json" if self._tmp else settings.custom_treatments_path
            ),
            db_url=db_url, selector=selector, as_of=as_of if as_of is not None else settings.now,
            dry_run=dry_run, auto_approve=auto_approve,
        )
        self.folders = flow_folders(Path(config) if config is not None else settings.config_path, [flows_dir] if flows_dir else [])
        self.max_parallel = max_parallel
        self._sleep = sleep
        self._scripts: dict[tuple[str, str], _Script] = {}
        self._step_scripts: dict[str, _Script] = {}
        self._calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self._calls_lock = threading.Lock()
        self.events: list[StepEvent] = []
        """Every step event of every run, in the order the runner reported them."""
        self.store = FlowStore.from_url(db_url)
        self.runtime: Any = None
        """The runtime of the last run (its ledger, clock and agents), for assertions."""

    # -- scripting ------------------------------------------------------------------

    def script(self, agent: str, action: str, *answers: Answer) -> FlowTestCase:
        """Every step sending ``action`` to ``agent`` gets these answers instead of the agent's."""
        self._scripts[canonical_action(agent, action)] = _Script(answers)
        return self

    def mock_agent_response(self, agent: str, action: str, response: Answer) -> FlowTestCase:
        """The flows document's name for ``script``: every call of ``agent.action`` answers ``response``."""
        return self.script(agent, action, response)

    def script_step(self, step_id: str, *answers: Answer) -> FlowTestCase:
        """This step gets these answers (wins over ``script``)."""
        self._step_scripts[step_id] = _Script(answers)
        return self

    def calls(self, agent: str | None = None, action: str | None = None, *, step: str | None = None) -> list[dict[str, Any]]:
        """The resolved messages sent to scripted actions, in call order (filtered by agent, action or step)."""
        if agent is not None:
            agent, action = canonical_action(agent, action) if action is not None else (canonical_action(agent, "")[0], None)
        with self._calls_lock:
            return [
                message for (s, ag, ac, message) in self._calls
                if (agent is None or ag == agent) and (action is None or ac == action) and (step is None or s == step)
            ]

    def _intercept(self, step: FlowStep, message: dict[str, Any]) -> Any:
        script = self._step_scripts.get(step.id) or self._scripts.get((step.agent, step.action))
        if script is None:
            return None
        with self._calls_lock:
            self._calls.append((step.id, step.agent, step.action, dict(message)))
        return script.answer(message)

    # -- running ----------------------------------------------------------------------

    def _runner(self, run_id: str, by_id: LoadedFlow | None = None) -> FlowRunner:
        from cvm.runtime import RunOptions, build_runtime

        self.runtime = build_runtime(RunOptions(run_id=run_id, **self._options), self._settings)  # type: ignore[arg-type]
        agents = self.runtime.agents()
        if by_id is None and self.flow_path is None:
            raise FlowError("this FlowTestCase has no flow file: give one, or use execute_flow(flow_id=...)")
        definition = by_id.definition if by_id is not None else parse_flow(self.flow_path)[0]  # type: ignore[arg-type]
        scripted = list(self._scripts) + [(s.agent, s.action) for s in definition.steps if s.id in self._step_scripts]
        catalog = ActionCatalog.from_agents(agents).with_scripted(scripted)
        loaded = by_id if by_id is not None else load_flow(self.flow_path, catalog)  # type: ignore[arg-type]
        extra: dict[str, Any] = {"sleep": self._sleep} if self._sleep is not None else {}
        return FlowRunner(
            loaded, agents, self.store, catalog=catalog, max_parallel=self.max_parallel, on_step=self.events.append,
            ledger=self.runtime.ledger, intercept=self._intercept, variables=self._variables, progress=self._progress, **extra,
        )

    def run(self, inputs: Mapping[str, Any] | None = None, *, run_id: str | None = None) -> FlowRunRecord:
        """Run the flow once; returns the run record (``status``, ``steps``, ``output(step_id)``)."""
        run_id = run_id or f"flowtest-{uuid.uuid4().hex[:10]}"
        runner = self._runner(run_id)
        return runner.start(run_id, inputs or {}, run_clock=self.runtime.clock.now(), options={"test": True})

    def execute_flow(
        self, flow_id: str | None = None, input_parameters: Mapping[str, Any] | None = None, *, run_id: str | None = None,
    ) -> Execution:
        """Run a flow by id (or this case's file when ``flow_id`` is left out); the result has ``completed_steps`` and ``step_outputs``."""
        run_id = run_id or f"flowtest-{uuid.uuid4().hex[:10]}"
        by_id = None
        if flow_id is not None:
            mine = parse_flow(self.flow_path)[0] if self.flow_path is not None else None
            by_id = None if mine is not None and mine.flow_id == flow_id else find_flow(flow_id, self.folders)
        runner = self._runner(run_id, by_id)
        return Execution.of(runner.start(run_id, input_parameters or {}, run_clock=self.runtime.clock.now(), options={"test": True}))

    def resume(self, run_id: str) -> FlowRunRecord:
        """Resume a run of this case's store (after a failure, or one you interrupted)."""
        record = self.store.require_run(run_id)
        mine = parse_flow(self.flow_path)[0] if self.flow_path is not None else None
        by_id = None if mine is not None and mine.flow_id == record.flow_id else find_flow(record.flow_id, self.folders)
        return self._runner(run_id, by_id).resume(run_id)

    def close(self) -> None:
        """Close the store and delete the temp ledger (if this case made one)."""
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FlowTestCase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
