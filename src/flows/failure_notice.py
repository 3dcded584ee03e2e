"""The runner's failure notice: when a run ends failed or partial, tell ``error_handling.failure_notification``.

A mixin of ``FlowRunner`` (``cvm.flows.runner``). The recipients are resolved
like parameters (``${admin_email}`` is ``CVM_ADMIN_EMAIL``); the execution
agent's ``send_notifications`` sends it (through the runner's call path, so a
``FlowTestCase`` can script it). What became of it (``sent``, ``failed``,
``not_sent``) is stored with the run (``flow_notifications``) and audited; it
never changes the run's own status or error.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import structlog

from cvm.agents.base import BaseAgent
from cvm.flows.references import RunContext, UnresolvedReference
from cvm.flows.schema import FlowDefinition, FlowStep
from cvm.flows.store import FlowRunRecord, FlowStore
from cvm.utils.errors import CVMError

log = structlog.get_logger("cvm.flows.runner")

NOTIFY_STEP = FlowStep(id="failure_notification", agent="execution", action="send_notifications")
"""How a failed or partial run tells ``error_handling.failure_notification``."""
NOTIFY_SUBJECT = "CVM flow ${flow_id}: run ${run_id} ${status}"
NOTIFY_BODY = (
    "Flow ${flow_id} (version ${version}), run ${run_id}, ended ${status}.\n\n${error}\n\n"
    "Steps: ${counts}\nDetails: cvm flows show ${run_id}\nAfter fixing the cause: cvm flows resume ${run_id}\n"
)
"""The notification's text; the execution agent fills the placeholders from the context (values are not re-read)."""



class FailureNotices:
    """Sends and records the failure notice of a run (mixed into ``FlowRunner``)."""

    definition: FlowDefinition
    store: FlowStore
    _agents: dict[str, BaseAgent]

    if TYPE_CHECKING:  # FlowRunner's, which this is mixed into
        def _context(self, run: FlowRunRecord) -> RunContext: ...

        def _attempt(self, step: FlowStep, agent: BaseAgent | None, context: RunContext,
                     message: dict[str, Any] | None = None) -> tuple[Any, str | None, str | None]: ...

        def audit(self, event: str, run: FlowRunRecord, payload: dict[str, Any]) -> None: ...

    def notify_failure(self, record: FlowRunRecord, context: RunContext | None = None) -> None:
        """Tell ``failure_notification`` that the run ended failed or partial; the outcome is stored, never raised."""
        context = context or self._context(record)
        recipients: list[str] = []
        try:
            for text in self.definition.error_handling.failure_notification:
                value = context.resolve(text)
                recipients += [str(v) for v in value] if isinstance(value, list) else [str(value)]
        except UnresolvedReference as exc:
            self._notification_outcome(record, recipients, "not_sent", f"no recipient: {exc}")
            return
        counts = ", ".join(f"{n} {state}" for state, n in sorted(record.counts().items()))
        message = {
            "type": NOTIFY_STEP.action, "channel": "email", "recipients": recipients, "subject": NOTIFY_SUBJECT,
            "template": NOTIFY_BODY, "run_id": record.run_id,
            "context": {"flow_id": record.flow_id, "version": record.flow_version, "run_id": record.run_id,
                        "status": record.status, "error": record.error or "", "counts": counts},
        }
        output, error, _kind = self._attempt(NOTIFY_STEP, self._agents.get(NOTIFY_STEP.agent), context, message)
        if error is not None:
            self._notification_outcome(record, recipients, "failed", error)
        else:
            sent_id = output.get("notification_id") if isinstance(output, dict) else None
            self._notification_outcome(record, recipients, "sent", f"sent to {', '.join(recipients) or 'the default recipients'}", sent_id)

    def _notification_outcome(self, record: FlowRunRecord, recipients: list[str], status: Any, detail: str, sent_id: str | None = None) -> None:
        (log.info if status == "sent" else log.warning)("flow_failure_notification", status=status, detail=detail)
        try:
            self.store.notification_recorded(
                record.run_id, run_status=record.status, recipients=recipients, status=status, detail=detail, notification_id=sent_id,
            )
        except (CVMError, sqlite3.Error):  # the run's own record stands; the log keeps what happened to the notification
            log.exception("flow_notification_not_recorded")
        self.audit("flow_failure_notification", record, {"status": status, "recipients": recipients, "detail": detail})
