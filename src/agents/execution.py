"""The Execution agent: tells people what a run did (e-mail, signed webhook) and writes calendar events (.ics).

``send_notifications`` fills the subject and body templates from the request's
context (``${name}`` placeholders, never ``str.format`` or eval), checks every
recipient and header, reads the attachments from the output folder and hands
the message to the channel's transport (``cvm.tools.smtp``,
``cvm.tools.webhook``). ``create_calendar_event`` writes an iCalendar event
(``cvm.tools.calendar``) and, with ``notify``, sends it attached. Flows call
both (``execution_agent.send_notifications`` and
``execution_agent.create_calendar_event`` in the flows document), and the
flow runner sends its failure notice through ``send_notifications`` when a run
ends failed or partial.

Who is notified: operators and admins. Customer-facing sends are out of scope
(CVM holds no customer addresses, and a contact is the channel system's job
once a decision is allocated). A ``customer.<ID>`` recipient is refused unless
``decision_id`` names that customer's allocated decision in the ledger, and
even then only a webhook to the operator's delivery system carries it; e-mail
to a customer is always refused.

Audit: the agent holds the ledger, so every notification is recorded where
every decision is: ``notification_sent`` (all targets delivered) or
``notification_failed`` (with what each target answered), keyed by the run,
and ``calendar_event_created``. The body is recorded by its SHA-256, not its
text. A ledger that refuses the audit write does not undo a delivery that
happened: the answer says ``audited: false`` and the log says why.

Retries: the audit log is also what makes a retried step safe. The same
notification sent again in the same run (a flow step's retry after a partial
failure) goes only to the targets that did not get it, under the first
attempt's notification id (which a webhook receiver can de-duplicate on).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import structlog

from cvm.agents.base import BaseAgent, handles
from cvm.agents.messages import (
    CalendarEventCreated,
    CreateCalendarEvent,
    NotificationDeliveryInfo,
    NotificationsSent,
    SendNotifications,
)
from cvm.tools.calendar import CalendarEvent, write_event
from cvm.tools.clock import Clock
from cvm.tools.ledger import Ledger
from cvm.tools.notify import (
    ChannelName,
    Delivery,
    Notification,
    NotificationTransport,
    check_address,
    check_header,
    check_recipient_label,
    check_subject,
    customer_of,
    is_customer_reference,
    load_attachments,
    render_template,
)
from cvm.utils.errors import ConfigError, CVMError, NotificationError, UsageError

log = structlog.get_logger(__name__)

DEFAULT_EVENT_MINUTES = 60
_SAME_NOTIFICATION = ("channel", "subject", "body_sha256", "recipients", "attachments", "decision_id")
"""The audited fields that make two sends in one run the same notification (a retry)."""
UNCONFIGURED: Mapping[ChannelName, str] = {
    "email": "e-mail notifications are not configured; set CVM_SMTP_HOST and CVM_SMTP_FROM (see README, Notifications)",
    "webhook": "webhook notifications are not configured; set CVM_WEBHOOK_URLS and CVM_WEBHOOK_SECRET (see README, Notifications)",
}


def new_notification_id() -> str:
    return f"ntf-{uuid.uuid4().hex[:16]}"


class ExecutionAgent(BaseAgent):
    """Sends notifications through the transports it is given and writes .ics files under the output folder."""

    name = "ExecutionAgent"

    def __init__(
        self, *, transports: Mapping[ChannelName, Callable[[], NotificationTransport]], ledger: Ledger | None, clock: Clock,
        output_dir: Path, zone: tzinfo, default_recipients: tuple[str, ...] = (),
    ):
        """``transports``: a factory per configured channel, called on first use (a flow that never mails needs no SMTP)."""
        self._factories = dict(transports)
        self._transports: dict[ChannelName, NotificationTransport] = {}
        self._ledger = ledger
        self._clock = clock
        self._output_dir = Path(output_dir)
        self._zone = zone
        self._default_recipients = default_recipients

    # --- send_notifications ------------------------------------------------------------

    @handles(SendNotifications)
    def _send(self, message: SendNotifications) -> NotificationsSent:
        return self._deliver(message)

    def _deliver(self, message: SendNotifications) -> NotificationsSent:
        """Compose, send, audit; a target that was not delivered makes it a ``NotificationError`` (after the audit).

        A retry (the same notification again in the same run) goes only to the targets no
        earlier attempt delivered to, under the earlier notification id, so nobody gets it twice.
        """
        notification = self._compose(message)
        transport = self._transport(message.channel)
        earlier_id, done_before = self._delivered_before(message.channel, notification)
        if earlier_id is not None:
            notification = replace(notification, notification_id=earlier_id)
        try:
            deliveries = tuple(Delivery(t, True, "delivered by an earlier attempt of this run", 0) for t in done_before)
            deliveries += transport.send(notification, skip=frozenset(done_before))
        except CVMError as exc:
            self._audit_notification("notification_failed", message.channel, notification, (), error=str(exc))
            raise
        failed = [d for d in deliveries if not d.delivered]
        event = "notification_failed" if failed else "notification_sent"
        audited = self._audit_notification(event, message.channel, notification, deliveries)
        log.info(event, channel=message.channel, notification_id=notification.notification_id, targets=len(deliveries))
        if failed:
            delivered = [d.target for d in deliveries if d.delivered]
            raise NotificationError(
                f"{message.channel} notification {notification.notification_id} not delivered: "
                + "; ".join(f"{d.target}: {d.detail} (after {d.attempts} attempt(s))" for d in failed)
                + (f"; it was delivered to {', '.join(delivered)}" if delivered else "")
            )
        return NotificationsSent(
            notification_id=notification.notification_id, channel=message.channel, recipients=notification.recipients,
            subject=notification.subject, body_sha256=notification.body_sha256,
            deliveries=tuple(NotificationDeliveryInfo(**vars(d)) for d in deliveries),
            attachments=tuple(a.filename for a in notification.attachments), audited=audited,
        )

    def _delivered_before(self, channel: ChannelName, notification: Notification) -> tuple[str | None, tuple[str, ...]]:
        """(the id, the targets delivered) of this notification sent earlier in the same run, from the audit log.

        The same notification is the same channel, subject, body, recipients and attachments.
        Without a run id or a ledger there is nothing to go by: (None, ()).
        """
        if notification.run_id is None or self._ledger is None:
            return None, ()
        key = self._audit_payload(channel, notification, ())
        earlier_id: str | None = None
        delivered: dict[str, None] = {}  # ordered, without repeats
        for event in ("notification_failed", "notification_sent"):
            try:
                entries = self._ledger.audit_entries(run_id=notification.run_id, event=event)
            except CVMError as exc:  # cannot tell: send to everyone rather than to no one
                log.warning("notification_history_unreadable", error=str(exc))
                return None, ()
            for entry in entries:
                if any(entry.payload.get(k) != key[k] for k in _SAME_NOTIFICATION):
                    continue
                earlier_id = earlier_id or entry.payload.get("notification_id")
                delivered.update((d["target"], None) for d in entry.payload.get("deliveries", ()) if d.get("delivered"))
        return earlier_id, tuple(delivered)

    def _compose(self, message: SendNotifications) -> Notification:
        """The notification as it will be sent: templates filled, headers, recipients and attachments checked."""
        subject = check_subject(render_template(message.subject, message.context, what="subject"))
        body = render_template(message.template, message.context, what="template")
        return Notification(
            notification_id=new_notification_id(), subject=subject, body=body, recipients=self._recipients(message),
            attachments=load_attachments(message.attachments, self._output_dir), context=message.context,
            run_id=message.run_id, decision_id=message.decision_id, created_at=self._clock.now().astimezone(UTC).isoformat(),
        )

    def _recipients(self, message: SendNotifications) -> tuple[str, ...]:
        """Operators' addresses (e-mail) or labels (webhook), without repeats; customers only as the consent rule allows."""
        given = message.recipients or (self._default_recipients if message.channel == "email" else ())
        if not given and message.channel == "email":
            raise UsageError("no recipients: pass recipients (operators' e-mail addresses) or set CVM_NOTIFY_TO")
        customers = [r for r in given if is_customer_reference(r)]
        for recipient in customers:
            self._check_customer_contact(recipient, message.decision_id)
        if message.channel == "webhook":
            return tuple(dict.fromkeys(check_recipient_label(r) for r in given))
        if customers:
            raise UsageError(
                f"recipient {customers[0]!r}: CVM holds no customer e-mail addresses and customer-facing e-mail is out of"
                " scope; hand the allocated contact to your delivery system with channel: webhook"
            )
        return tuple(dict.fromkeys(check_address(r) for r in given))

    def _check_customer_contact(self, recipient: str, decision_id: str | None) -> None:
        """A customer is contacted only under their own allocated decision (``<run id>:<customer id>``, state allocated)."""
        check_header("recipient", recipient)
        customer_id = customer_of(recipient)
        if decision_id is None:
            raise UsageError(
                f"recipient {recipient!r} is a customer: notifications go to operators and admins, and customer-facing"
                " sends are out of scope; a customer contact needs decision_id, the customer's allocated decision (<run id>:<customer id>)"
            )
        if self._ledger is None:
            raise UsageError(f"recipient {recipient!r}: no ledger to check decision {decision_id!r} against; customer contacts are refused")
        row = self._ledger.allocation_for(decision_id)
        if row is None or row.customer_id != customer_id or row.state != "allocated":
            why = (
                "no such allocation" if row is None
                else f"it is customer {row.customer_id}'s" if row.customer_id != customer_id
                else f"its state is {row.state}"
            )
            raise UsageError(
                f"recipient {recipient!r}: decision {decision_id!r} is not an allocated decision of customer {customer_id} ({why});"
                " a customer is contacted only once their decision is allocated"
            )

    def _transport(self, channel: ChannelName) -> NotificationTransport:
        transport = self._transports.get(channel)
        if transport is None:
            factory = self._factories.get(channel)
            if factory is None:
                raise ConfigError(UNCONFIGURED[channel])
            transport = self._transports[channel] = factory()
        return transport

    def _audit_notification(
        self, event: str, channel: ChannelName, notification: Notification, deliveries: tuple[Delivery, ...],
        error: str | None = None,
    ) -> bool:
        customers = [customer_of(r) for r in notification.recipients if is_customer_reference(r)]
        payload = self._audit_payload(channel, notification, deliveries)
        if error is not None:
            payload["error"] = error
        return self._audit(event, payload, run_id=notification.run_id, customer_id=customers[0] if customers else None)

    @staticmethod
    def _audit_payload(channel: ChannelName, notification: Notification, deliveries: tuple[Delivery, ...]) -> dict[str, Any]:
        return {
            "notification_id": notification.notification_id, "channel": channel, "recipients": list(notification.recipients),
            "subject": notification.subject, "body_sha256": notification.body_sha256, "decision_id": notification.decision_id,
            "attachments": [{"filename": a.filename, "sha256": a.sha256, "size": len(a.data)} for a in notification.attachments],
            "deliveries": [vars(d) for d in deliveries],
        }

    def _audit(self, event: str, payload: dict[str, Any], **keys: str | None) -> bool:
        """Append to the ledger's audit log; False (and a log line) when there is no ledger or it refused the write."""
        if self._ledger is None:
            return False
        try:
            self._ledger.audit(event, payload, self._clock.now(), **keys)
        except CVMError as exc:
            log.error("execution_audit_failed", audit_event=event, error=str(exc))
            return False
        return True

    # --- create_calendar_event ---------------------------------------------------------------

    @handles(CreateCalendarEvent)
    def _calendar(self, message: CreateCalendarEvent) -> CalendarEventCreated:
        event = self._event(message)
        path = write_event(event, self._output_dir, message.file_name)
        self._audit(
            "calendar_event_created",
            {"uid": event.uid, "summary": event.summary, "start": event.start.isoformat(), "end": event.end.isoformat(), "path": str(path)},
            run_id=message.run_id,
        )
        sent = None
        if message.notify is not None:
            notify = message.notify
            sent = self._deliver(notify.model_copy(update={
                "attachments": (*notify.attachments, str(path)), "run_id": notify.run_id or message.run_id,
            }))
        return CalendarEventCreated(
            path=str(path), uid=event.uid, summary=event.summary, start=event.start.isoformat(), end=event.end.isoformat(),
            notification=sent,
        )

    def _event(self, message: CreateCalendarEvent) -> CalendarEvent:
        """The event from the request: templates filled, one-line fields and addresses checked, times made UTC."""
        summary = check_header("summary", render_template(message.summary, message.context, what="summary")).strip()
        if not summary:
            raise UsageError("summary is empty once filled; give the event a summary")
        description = render_template(message.description, message.context, what="description")
        try:
            start = self._aware(message.start)
            end = self._aware(message.end) if message.end else start + timedelta(minutes=message.duration_minutes or DEFAULT_EVENT_MINUTES)
        except OverflowError:  # 9999-12-31T23:30 plus an hour: past the last date a calendar can hold
            raise UsageError(f"the event starting {message.start.isoformat()} would end after year 9999; give an earlier start") from None
        uid = check_header("uid", message.uid) if message.uid else self._uid(message.run_id, summary, start)
        return CalendarEvent(
            uid=uid, summary=summary, description=description, start=start, end=end, stamp=self._clock.now(),
            location=check_header("location", message.location) if message.location else None,
            organizer=check_address(message.organizer) if message.organizer else None,
            attendees=tuple(dict.fromkeys(check_address(a) for a in message.attendees)),
        )

    def _aware(self, moment: datetime) -> datetime:
        """A time without an offset is in the config's timezone; all are written in UTC."""
        return (moment if moment.tzinfo is not None else moment.replace(tzinfo=self._zone)).astimezone(UTC)

    @staticmethod
    def _uid(run_id: str | None, summary: str, start: datetime) -> str:
        """The same event of the same run gets the same UID (a retried or resumed step rewrites, not duplicates)."""
        if run_id is None:
            return f"{uuid.uuid4()}@cvm"
        return f"{uuid.uuid5(uuid.NAMESPACE_URL, f'cvm:{run_id}:{summary}:{start.isoformat()}')}@cvm"
