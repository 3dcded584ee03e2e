"""The Execution agent as flows talk to it: notifications received by local servers, audited; calendar events; refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from icalendar import Calendar

from cvm.agents.execution import ExecutionAgent
from cvm.agents.messages import CalendarEventCreated, ErrorResponse, NotificationsSent
from cvm.flows.catalog import ActionCatalog
from cvm.tools.clock import FixedClock
from cvm.tools.ledger import AllocationRequest, ApprovalHold
from cvm.tools.notify import shown_url
from cvm.tools.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from cvm.utils.errors import LedgerError
from cvm.utils.logging import REDACTED, redact
from tests.notify_servers import closed_port, tls_server

SECRET = "whsec-agent-test-secret"
RUN = "run-20261123T100000-abc123"


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "output"


@pytest.fixture
def email_env(monkeypatch, smtp_server, output_dir):
    """The runtime's settings point e-mail at the local SMTP server (no TLS on loopback) and keep retries short."""
    for name, value in {
        "CVM_SMTP_HOST": "127.0.0.1", "CVM_SMTP_PORT": str(smtp_server.port), "CVM_SMTP_FROM": "cvm@example.com",
        "CVM_SMTP_STARTTLS": "false", "CVM_OUTPUT_DIR": str(output_dir), "CVM_NOTIFY_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    return smtp_server


@pytest.fixture
def webhook_env(monkeypatch, webhook_receiver, output_dir):
    monkeypatch.setenv("CVM_WEBHOOK_URLS", webhook_receiver.url("/cvm"))
    monkeypatch.setenv("CVM_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("CVM_OUTPUT_DIR", str(output_dir))
    monkeypatch.setenv("CVM_NOTIFY_RETRIES", "0")
    return webhook_receiver


def failure_notice(**extra: object) -> dict:
    """What a flow step (or the runner's failure notice) sends: a template and the step outputs as context."""
    message: dict = {
        "type": "send_notifications", "channel": "email", "recipients": "ops@example.com",
        "subject": "Flow ${flow_id} ended ${status}", "template": "Run ${run_id}: failed steps ${failed.0.step} (${failed.0.error})",
        "context": {"flow_id": "daily_cvm_cycle", "status": "partial", "run_id": RUN, "failed": [{"step": "forecast", "error": "boom"}]},
        "run_id": RUN,
    }
    message.update(extra)
    return message


def audit(runtime, event: str) -> list:
    return [e for e in runtime.ledger.audit_entries(run_id=RUN) if e.event == event]


def allocate(runtime, customer_id: str = "U123", run_id: str = RUN) -> str:
    """A real allocation in the ledger; returns its decision id (``<run id>:<customer id>``)."""
    at = datetime(2026, 11, 23, 10, tzinfo=UTC)
    key = f"{run_id}:{customer_id}"
    outcome = runtime.ledger.allocate(AllocationRequest(
        idempotency_key=key, run_id=run_id, customer_id=customer_id, treatment_id="service_recovery", channel="sms",
        purpose="service_updates", day="2026-11-23", max_per_day=None, contact_at=at,
        contact_window_start=at - timedelta(days=30), contact_cap=None,
    ))
    assert outcome.status == "allocated"
    return key


class TestRegistration:
    """Flows find the agent as ``execution`` with exactly two actions."""

    def test_in_the_runtime_and_the_catalog(self, make_runtime):
        runtime = make_runtime()
        agent = runtime.agents()["execution"]
        assert isinstance(agent, ExecutionAgent) and agent is runtime.execution
        assert set(agent.registry) == {"send_notifications", "create_calendar_event"}
        catalog = ActionCatalog.from_agents(runtime.agents())
        spec = catalog.spec("execution", "send_notifications")
        assert spec is not None and spec.response is NotificationsSent
        assert catalog.spec("execution", "create_calendar_event").response is CalendarEventCreated

    def test_secrets_are_redacted_once_read(self, make_runtime, monkeypatch):
        monkeypatch.setenv("CVM_SMTP_PASSWORD", "smtp-pass-5f2e")
        monkeypatch.setenv("CVM_WEBHOOK_SECRET", "hook-secret-9a1b")
        monkeypatch.setenv("CVM_WEBHOOK_URLS", "https://hooks.example.com/cvm?token=tok-77c1e0")
        make_runtime()
        assert redact("login smtp-pass-5f2e then sign with hook-secret-9a1b") == f"login {REDACTED} then sign with {REDACTED}"
        assert redact("POST https://hooks.example.com/cvm?token=tok-77c1e0") == f"POST https://hooks.example.com/cvm?{REDACTED}"


class TestEmail:
    """E-mail notifications are received by the local SMTP server, filled from the context, and audited."""

    def test_received_and_audited(self, make_runtime, email_env):
        runtime = make_runtime()
        sent = runtime.execution.process(failure_notice())
        assert isinstance(sent, NotificationsSent), sent
        assert sent.subject == "Flow daily_cvm_cycle ended partial" and sent.recipients == ("ops@example.com",)
        assert [d.delivered for d in sent.deliveries] == [True] and sent.audited
        (received,) = email_env.messages
        message = received.message
        assert message["Subject"] == "Flow daily_cvm_cycle ended partial" and received.rcpt_tos == ["ops@example.com"]
        assert message.get_body().get_content().strip() == f"Run {RUN}: failed steps forecast (boom)"
        assert message["X-CVM-Notification-Id"] == sent.notification_id
        (entry,) = audit(runtime, "notification_sent")
        assert entry.payload["notification_id"] == sent.notification_id and entry.payload["channel"] == "email"
        assert entry.payload["recipients"] == ["ops@example.com"] and entry.payload["body_sha256"] == sent.body_sha256
        assert entry.payload["deliveries"][0]["delivered"] is True

    def test_a_relay_with_a_private_ca_over_starttls(self, make_runtime, monkeypatch, tmp_path):
        """CVM_SMTP_CA_FILE reaches the transport: the relay demands STARTTLS and its certificate is the private CA's."""
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(tmp_path / "relay-ca.pem"))
        with tls_server(ca) as relay:
            for name, value in {
                "CVM_SMTP_HOST": "127.0.0.1", "CVM_SMTP_PORT": str(relay.port), "CVM_SMTP_FROM": "cvm@example.com",
                "CVM_SMTP_CA_FILE": str(tmp_path / "relay-ca.pem"), "CVM_NOTIFY_RETRIES": "0",
            }.items():
                monkeypatch.setenv(name, value)
            sent = make_runtime().execution.process(failure_notice())
            assert isinstance(sent, NotificationsSent), sent
            assert [m.rcpt_tos for m in relay.messages] == [["ops@example.com"]]

    def test_default_recipients(self, make_runtime, email_env, monkeypatch):
        monkeypatch.setenv("CVM_NOTIFY_TO", "ops@example.com, admin@example.com")
        sent = make_runtime().execution.process(failure_notice(recipients=None))
        assert isinstance(sent, NotificationsSent) and sent.recipients == ("ops@example.com", "admin@example.com")
        assert email_env.messages[0].rcpt_tos == ["ops@example.com", "admin@example.com"]

    def test_no_recipients_anywhere(self, make_runtime, email_env):
        answer = make_runtime().execution.process(failure_notice(recipients=[]))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "usage_error" and "CVM_NOTIFY_TO" in answer.message

    def test_header_injection_through_the_context_is_refused(self, make_runtime, email_env):
        context = {"flow_id": "x\r\nBcc: victim@example.com", "status": "failed", "run_id": RUN, "failed": [{"step": "a", "error": "b"}]}
        answer = make_runtime().execution.process(failure_notice(context=context))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "usage_error"
        assert "header injection is refused" in answer.message and email_env.messages == []

    def test_bad_recipient(self, make_runtime, email_env):
        answer = make_runtime().execution.process(failure_notice(recipients=["ops@example.com", "Bob <bob@example.com>"]))
        assert isinstance(answer, ErrorResponse) and "is not an e-mail address" in answer.message and email_env.messages == []

    def test_missing_placeholder(self, make_runtime, email_env):
        answer = make_runtime().execution.process(failure_notice(template="${nope}"))
        assert isinstance(answer, ErrorResponse) and "${nope} is not in the context" in answer.message

    def test_server_down_is_an_environment_error_and_audited(self, make_runtime, email_env, monkeypatch):
        monkeypatch.setenv("CVM_SMTP_PORT", str(closed_port()))
        runtime = make_runtime()
        answer = runtime.execution.process(failure_notice())
        assert isinstance(answer, ErrorResponse) and answer.error_type == "notification_unavailable"
        assert "cannot connect to the SMTP server" in answer.message and answer.error().exit_code == 4
        (entry,) = audit(runtime, "notification_failed")
        assert "cannot connect" in entry.payload["error"]

    def test_not_configured(self, make_runtime):
        answer = make_runtime().execution.process(failure_notice())
        assert isinstance(answer, ErrorResponse) and answer.error_type == "config_error"
        assert "set CVM_SMTP_HOST and CVM_SMTP_FROM" in answer.message

    def test_attachment_outside_the_output_folder(self, make_runtime, email_env, tmp_path):
        (tmp_path / ".env").write_text("CVM_SMTP_PASSWORD=x")
        answer = make_runtime().execution.process(failure_notice(attachments=str(tmp_path / ".env")))
        assert isinstance(answer, ErrorResponse) and "is outside the output folder" in answer.message and email_env.messages == []


class TestWebhook:
    """Webhook notifications are received by the local receiver, signed with the configured secret, and audited."""

    def test_received_signed_and_audited(self, make_runtime, webhook_env):
        runtime = make_runtime()
        sent = runtime.execution.process(failure_notice(channel="webhook", recipients=["ops team"]))
        assert isinstance(sent, NotificationsSent), sent
        assert [(d.target, d.delivered) for d in sent.deliveries] == [(shown_url(webhook_env.url("/cvm")), True)]
        (hit,) = webhook_env.hits
        assert verify_signature(SECRET, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])
        body = json.loads(hit.body)
        assert body["subject"] == "Flow daily_cvm_cycle ended partial" and body["recipients"] == ["ops team"]
        assert body["context"]["failed"] == [{"step": "forecast", "error": "boom"}] and body["run_id"] == RUN
        (entry,) = audit(runtime, "notification_sent")
        assert entry.payload["channel"] == "webhook" and entry.payload["deliveries"][0]["target"] == shown_url(webhook_env.url("/cvm"))

    def test_one_url_failing_fails_the_request_and_names_it(self, make_runtime, webhook_env, monkeypatch):
        monkeypatch.setenv("CVM_WEBHOOK_URLS", f"{webhook_env.url('/ok')},{webhook_env.url('/down')}?key=k")
        webhook_env.push(200, 500)
        runtime = make_runtime()
        answer = runtime.execution.process(failure_notice(channel="webhook"))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "notification_unavailable"
        assert f"{shown_url(webhook_env.url('/down'))}: {shown_url(webhook_env.url('/down'))} answered HTTP 500" in answer.message
        assert f"it was delivered to {shown_url(webhook_env.url('/ok'))}" in answer.message and "key=k" not in answer.message
        (entry,) = audit(runtime, "notification_failed")
        assert [d["delivered"] for d in entry.payload["deliveries"]] == [True, False]

    def test_not_configured_without_secret(self, make_runtime, monkeypatch, webhook_receiver):
        monkeypatch.setenv("CVM_WEBHOOK_URLS", webhook_receiver.url())
        answer = make_runtime().execution.process(failure_notice(channel="webhook"))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "config_error" and "CVM_WEBHOOK_SECRET" in answer.message
        assert webhook_receiver.hits == []


class TestCustomersAreNotNotified:
    """Operators are notified; a customer only as the hand-off of their own allocated decision, and never by e-mail."""

    def test_customer_without_decision(self, make_runtime, email_env):
        answer = make_runtime().execution.process(failure_notice(recipients=["ops@example.com", "customer.U123"]))
        assert isinstance(answer, ErrorResponse) and answer.error_type == "usage_error"
        assert "'customer.U123' is a customer" in answer.message and "decision_id" in answer.message
        assert email_env.messages == []

    def test_decision_not_allocated(self, make_runtime, webhook_env):
        answer = make_runtime().execution.process(
            failure_notice(channel="webhook", recipients=["customer.U123"], decision_id=f"{RUN}:U123")
        )
        assert isinstance(answer, ErrorResponse) and "(no such allocation)" in answer.message and webhook_env.hits == []

    def test_another_customers_decision(self, make_runtime, webhook_env):
        runtime = make_runtime()
        decision = allocate(runtime, "U124")
        answer = runtime.execution.process(failure_notice(channel="webhook", recipients=["customer.U123"], decision_id=decision))
        assert isinstance(answer, ErrorResponse) and "it is customer U124's" in answer.message

    def test_allocated_decision_goes_by_webhook(self, make_runtime, webhook_env):
        runtime = make_runtime()
        decision = allocate(runtime)
        sent = runtime.execution.process(failure_notice(channel="webhook", recipients=["customer.U123"], decision_id=decision))
        assert isinstance(sent, NotificationsSent), sent
        body = json.loads(webhook_env.hits[0].body)
        assert body["recipients"] == ["customer.U123"] and body["decision_id"] == decision
        (entry,) = audit(runtime, "notification_sent")
        assert entry.customer_id == "U123"

    def test_never_by_email(self, make_runtime, email_env):
        runtime = make_runtime()
        decision = allocate(runtime)
        answer = runtime.execution.process(failure_notice(recipients=["customer.U123"], decision_id=decision))
        assert isinstance(answer, ErrorResponse) and "customer-facing e-mail is out of scope" in answer.message
        assert email_env.messages == []

    def test_held_decision(self, make_runtime, webhook_env):
        runtime = make_runtime()
        at = datetime(2026, 11, 23, 10, tzinfo=UTC)
        runtime.ledger.allocate(AllocationRequest(
            idempotency_key=f"{RUN}:U125", run_id=RUN, customer_id="U125", treatment_id="retention_offer", channel="email",
            purpose="marketing", day="2026-11-23", max_per_day=None, contact_at=at, contact_window_start=at, contact_cap=None,
            approval=ApprovalHold("apr-1", "cost", "costly", None, None, 1, at, at + timedelta(hours=24)),
        ))
        answer = runtime.execution.process(failure_notice(channel="webhook", recipients=["customer.U125"], decision_id=f"{RUN}:U125"))
        assert isinstance(answer, ErrorResponse) and "its state is held" in answer.message


class TestCalendar:
    """create_calendar_event writes a parseable .ics under the output folder and can send it attached."""

    REQUEST = {
        "type": "create_calendar_event", "summary": "Review ${flow_id}", "description": "Run ${run_id} ended ${status}.",
        "context": {"flow_id": "daily_cvm_cycle", "run_id": RUN, "status": "partial"},
        "start": "2026-12-01T09:00:00", "duration_minutes": 30, "organizer": "ops@example.com",
        "attendees": "a@example.com, b@example.com", "run_id": RUN,
    }

    def test_written_and_parsed_back(self, make_runtime, monkeypatch, output_dir):
        monkeypatch.setenv("CVM_OUTPUT_DIR", str(output_dir))
        runtime = make_runtime()
        created = runtime.execution.process(self.REQUEST)
        assert isinstance(created, CalendarEventCreated), created
        path = Path(created.path)
        assert path.parent == output_dir / "calendar" and path.suffix == ".ics"
        (event,) = Calendar.from_ical(path.read_bytes()).walk("VEVENT")
        # 09:00 without an offset is in the config's timezone (Europe/London, UTC+0 in December)
        assert event.decoded("DTSTART") == datetime(2026, 12, 1, 9, tzinfo=UTC)
        assert event.decoded("DTEND") == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
        assert event.decoded("DTSTAMP") == datetime(2026, 11, 23, 10, tzinfo=UTC)  # the runtime's clock (CVM_NOW)
        assert str(event["SUMMARY"]) == "Review daily_cvm_cycle" and str(event["DESCRIPTION"]) == f"Run {RUN} ended partial."
        assert str(event["UID"]) == created.uid and str(event["ORGANIZER"]) == "mailto:ops@example.com"
        assert len(event["ATTENDEE"]) == 2
        (entry,) = audit(runtime, "calendar_event_created")
        assert entry.payload["uid"] == created.uid and entry.payload["path"] == created.path

    def test_same_run_same_event(self, make_runtime, monkeypatch, output_dir):
        """A retried or resumed step rewrites the same file with the same UID instead of adding a second event."""
        monkeypatch.setenv("CVM_OUTPUT_DIR", str(output_dir))
        agent = make_runtime().execution
        first, second = agent.process(self.REQUEST), agent.process(self.REQUEST)
        assert (first.uid, first.path) == (second.uid, second.path)
        assert len(list((output_dir / "calendar").iterdir())) == 1

    def test_sent_attached_by_email(self, make_runtime, email_env):
        request = {**self.REQUEST, "notify": {"recipients": "ops@example.com", "subject": "Review booked", "template": "See the invite."}}
        created = make_runtime().execution.process(request)
        assert isinstance(created, CalendarEventCreated) and created.notification is not None
        assert created.notification.attachments == (Path(created.path).name,)
        (part,) = list(email_env.messages[0].message.iter_attachments())
        assert part.get_content_type() == "text/calendar"
        (event,) = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")
        assert str(event["UID"]) == created.uid

    def test_attached_by_a_later_step(self, make_runtime, email_env):
        """The flow form: one step writes the event, the next attaches ``${steps.cal.output.path}``."""
        agent = make_runtime().execution
        created = agent.process(self.REQUEST)
        sent = agent.process(failure_notice(attachments=[created.path]))
        assert isinstance(sent, NotificationsSent) and sent.attachments == (Path(created.path).name,)
        assert len(list(email_env.messages[0].message.iter_attachments())) == 1

    @pytest.mark.parametrize(("change", "expected"), [
        ({"summary": "Line one\nBcc: x"}, "header injection is refused"),
        ({"file_name": "../../etc/cron.d/x"}, "is not a plain file name"),
        ({"end": "2026-12-01T08:00:00"}, "give end or duration_minutes, not both"),
        ({"duration_minutes": None, "end": "2026-12-01T08:00:00"}, "before or when it starts"),
        ({"organizer": "not-an-address"}, "is not an e-mail address"),
        ({"start": "9999-12-31T23:45:00"}, "would end after year 9999"),
    ])
    def test_refused(self, make_runtime, monkeypatch, output_dir, change, expected):
        monkeypatch.setenv("CVM_OUTPUT_DIR", str(output_dir))
        answer = make_runtime().execution.process({**self.REQUEST, **change})
        assert isinstance(answer, ErrorResponse) and expected in answer.message
        assert not (output_dir / "calendar").exists() or not any((output_dir / "calendar").iterdir())


class TestRetryDeliversOnce:
    """A retried step (the same notification again in the same run) reaches only the targets that did not get it."""

    def test_email_goes_only_to_the_refused_recipient(self, make_runtime, email_env):
        runtime = make_runtime()
        email_env.refuse.add("admin@example.com")
        first = runtime.execution.process(failure_notice(recipients=["ops@example.com", "admin@example.com"]))
        assert isinstance(first, ErrorResponse) and "admin@example.com" in first.message
        email_env.refuse.clear()
        retry = runtime.execution.process(failure_notice(recipients=["ops@example.com", "admin@example.com"]))
        assert isinstance(retry, NotificationsSent), retry
        assert [m.rcpt_tos for m in email_env.messages] == [["ops@example.com"], ["admin@example.com"]]
        assert [(d.target, d.delivered, d.attempts) for d in retry.deliveries] == [
            ("ops@example.com", True, 0), ("admin@example.com", True, 1),
        ]
        assert email_env.messages[1].message["X-CVM-Notification-Id"] == retry.notification_id
        assert email_env.messages[0].message["X-CVM-Notification-Id"] == retry.notification_id
        # Sent to everyone: once more in the same run sends nothing; another run is another notification.
        again = runtime.execution.process(failure_notice(recipients=["ops@example.com", "admin@example.com"]))
        assert isinstance(again, NotificationsSent) and len(email_env.messages) == 2
        other = runtime.execution.process(failure_notice(recipients=["ops@example.com", "admin@example.com"], run_id="run-other"))
        assert isinstance(other, NotificationsSent) and len(email_env.messages) == 3

    def test_other_content_in_the_same_run_is_sent(self, make_runtime, email_env):
        runtime = make_runtime()
        assert isinstance(runtime.execution.process(failure_notice()), NotificationsSent)
        changed = failure_notice(subject="Flow ${flow_id} ended ${status} (again)")
        assert isinstance(runtime.execution.process(changed), NotificationsSent)
        assert len(email_env.messages) == 2

    def test_webhook_goes_only_to_the_url_that_failed(self, make_runtime, monkeypatch, webhook_env):
        monkeypatch.setenv("CVM_WEBHOOK_URLS", f"{webhook_env.url('/a')},{webhook_env.url('/b')}")
        runtime = make_runtime()
        webhook_env.push(200, 503)  # /a is delivered, /b answers 503 (no retries inside the transport)
        first = runtime.execution.process(failure_notice(channel="webhook"))
        assert isinstance(first, ErrorResponse) and "503" in first.message
        retry = runtime.execution.process(failure_notice(channel="webhook"))
        assert isinstance(retry, NotificationsSent), retry
        assert [h.path for h in webhook_env.hits] == ["/a", "/b", "/b"]
        assert len({h.headers["X-CVM-Notification-Id"] for h in webhook_env.hits}) == 1

    def test_an_unreadable_history_sends_to_everyone(self, smtp_server, tmp_path):
        agent = agent_with_a_refusing_ledger(smtp_server, tmp_path)
        assert isinstance(agent.process(failure_notice()), NotificationsSent)
        assert isinstance(agent.process(failure_notice()), NotificationsSent)
        assert len(smtp_server.messages) == 2


class _RefusingLedger:
    """A ledger whose audit log refuses every write (a full disk): the delivery happened and must not be undone."""

    def audit(self, *args: object, **kwargs: object) -> None:
        raise LedgerError("database or disk is full")

    def audit_entries(self, *args: object, **kwargs: object) -> list:
        raise LedgerError("database is locked")

    def allocation_for(self, key: str) -> None:
        return None


def agent_with_a_refusing_ledger(smtp_server, tmp_path: Path) -> ExecutionAgent:
    """An Execution agent sending through the local SMTP server, over a ledger that refuses every audit read and write."""
    from cvm.tools.notify import RetryPolicy
    from cvm.tools.smtp import SMTPConfig, SMTPTransport

    config = SMTPConfig(host="127.0.0.1", port=smtp_server.port, sender="cvm@example.com", starttls=False, retry=RetryPolicy(0))
    return ExecutionAgent(
        transports={"email": lambda: SMTPTransport(config)}, ledger=_RefusingLedger(),  # type: ignore[arg-type]
        clock=FixedClock(datetime(2026, 11, 23, 10, tzinfo=UTC)), output_dir=tmp_path, zone=UTC,
    )


class TestAuditRefused:
    def test_delivery_reported_not_audited(self, smtp_server, tmp_path):
        agent = agent_with_a_refusing_ledger(smtp_server, tmp_path)
        sent = agent.process(failure_notice())
        assert isinstance(sent, NotificationsSent) and not sent.audited and len(smtp_server.messages) == 1


FLOW = """
flow_id: notify_demo
description: Book a review and tell the operators, by e-mail with the invitation attached and by webhook
version: 1
steps:
  - id: load
    agent: data
    action: list_customers
  - id: invite
    agent: execution
    action: create_calendar_event
    depends_on: [load]
    parameters:
      summary: "Review of ${run.id}"
      start: "2026-12-01T09:00:00"
      duration_minutes: 30
      run_id: "${run.id}"
  - id: mail
    agent: execution
    action: send_notifications
    depends_on: [invite]
    parameters:
      recipients: ops@example.com
      subject: "CVM $${flow}: $${customers.0} and others"
      template: "Run ${run.id} read ${steps.load.output.customer_ids.0}; the review is attached."
      context: {flow: notify_demo, customers: "${steps.load.output.customer_ids}"}
      attachments: ["${steps.invite.output.path}"]
      run_id: "${run.id}"
  - id: hook
    agent: execution
    action: send_notifications
    depends_on: [invite]
    parameters:
      channel: webhook
      recipients: [ops team]
      subject: "Review booked: ${steps.invite.output.uid}"
      run_id: "${run.id}"
"""


class TestInAFlow:
    """``cvm flows run`` (a real subprocess) reaches the agent as ``execution``: both local servers receive."""

    @pytest.mark.slow
    def test_flow_run_sends_and_attaches(self, run_cli, tmp_path, smtp_server, webhook_receiver):
        flow = tmp_path / "notify_demo.yaml"
        flow.write_text(FLOW, encoding="utf-8")
        env = {
            "CVM_SMTP_HOST": "127.0.0.1", "CVM_SMTP_PORT": str(smtp_server.port), "CVM_SMTP_FROM": "cvm@example.com",
            "CVM_SMTP_STARTTLS": "false", "CVM_WEBHOOK_URLS": webhook_receiver.url("/cvm"), "CVM_WEBHOOK_SECRET": SECRET,
        }
        done = run_cli("cvm", "flows", "run", str(flow), "--run-id", "flow-notify-1", "--output", "json", env=env)
        assert done.returncode == 0, done.stderr
        (received,) = smtp_server.messages
        message = received.message
        assert message["Subject"] == "CVM notify_demo: U123 and others"
        assert message.get_body().get_content().strip() == "Run flow-notify-1 read U123; the review is attached."
        (part,) = list(message.iter_attachments())
        (event,) = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")
        assert str(event["SUMMARY"]) == "Review of flow-notify-1"
        (hit,) = webhook_receiver.hits
        assert verify_signature(SECRET, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])
        assert json.loads(hit.body)["subject"] == f"Review booked: {event['UID']}"
