"""A flow runner that writes its agents' call stats (``cvm.tools.telemetry``) once each run stops.

The stats are counted in memory while the run executes (``BaseAgent.process``)
and drained into the ``TelemetryStore`` when ``start`` or ``resume`` returns or
raises (a run stopped at a step boundary, or failed, keeps what it measured).
A resumed run's stats add to the ones its first execution wrote.
"""

from __future__ import annotations

from typing import Any

import structlog

from cvm.flows.runner import FlowRunner
from cvm.flows.store import FlowRunRecord
from cvm.tools.telemetry import AGENT_CALLS, TelemetryStore

log = structlog.get_logger(__name__)


class RecordingFlowRunner(FlowRunner):
    """``FlowRunner`` plus one telemetry write per execution, under the flow run's id."""

    def __init__(self, *args: Any, telemetry: TelemetryStore, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._telemetry = telemetry

    def start(self, run_id: str, *args: Any, **kwargs: Any) -> FlowRunRecord:
        AGENT_CALLS.bind(run_id)
        try:
            return super().start(run_id, *args, **kwargs)
        finally:
            self._flush(run_id)

    def resume(self, run_id: str, *, force: bool = False) -> FlowRunRecord:
        AGENT_CALLS.bind(run_id)
        try:
            return super().resume(run_id, force=force)
        finally:
            self._flush(run_id)

    def _flush(self, run_id: str) -> None:
        """Stats must not fail a run whose steps are recorded: a write error is logged, not raised."""
        AGENT_CALLS.bind(None)
        try:
            rows = self._telemetry.flush(run_id, AGENT_CALLS.drain())
            log.info("agent_stats_recorded", run_id=run_id, rows=rows)
        except Exception:
            log.exception("agent_stats_not_recorded", run_id=run_id)
