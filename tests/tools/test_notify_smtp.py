"""E-mail through a real local SMTP server (aiosmtpd on 127.0.0.1): delivery, attachments, failures with actionable messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from icalendar import Calendar

from cvm.tools.notify import Attachment, Notification, RetryPolicy
from cvm.tools.smtp import SMTPConfig, SMTPTransport
from cvm.utils.errors import ConfigError, NotificationError
from tests.notify_servers import LocalSMTPServer, _Handler, closed_port, tls_server

ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:u1\r\nSUMMARY:Review\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"


def note(*recipients: str, **extra: object) -> Notification:
    values: dict = dict(
        notification_id="ntf-test", subject="Flow nightly failed", body="Run run-1 ended partial.\nSee the report.",
        recipients=recipients or ("ops@example.com",), run_id="run-1",
    )
    values.update(extra)
    return Notification(**values)


def transport(port: int, sleeps: list[float] | None = None, **overrides: object) -> SMTPTransport:
    values: dict = dict(
        host="127.0.0.1", port=port, sender="cvm@example.com", starttls=False, timeout_seconds=5,
        retry=RetryPolicy(retries=2, backoff_seconds=0.5),
    )
    values.update(overrides)
    recorded = sleeps if sleeps is not None else []
    return SMTPTransport(SMTPConfig(**values), sleep=recorded.append)


class TestDelivery:
    """The local server receives one message with the headers, body and attachment as sent."""

    def test_received(self, smtp_server):
        deliveries = transport(smtp_server.port).send(note("ops@example.com", "admin@example.com"))
        assert [(d.target, d.delivered, d.attempts) for d in deliveries] == [
            ("ops@example.com", True, 1), ("admin@example.com", True, 1),
        ]
        (received,) = smtp_server.messages
        assert received.mail_from == "cvm@example.com" and received.rcpt_tos == ["ops@example.com", "admin@example.com"]
        message = received.message
        assert message["Subject"] == "Flow nightly failed" and message["To"] == "ops@example.com, admin@example.com"
        assert message["X-CVM-Notification-Id"] == "ntf-test" and message["X-CVM-Run-Id"] == "run-1"
        assert message.get_body().get_content().splitlines() == ["Run run-1 ended partial.", "See the report."]

    def test_unicode_subject_and_body(self, smtp_server):
        transport(smtp_server.port).send(note(subject="Relatório — falhou ✓", body="Olá, operação concluída"))
        message = smtp_server.messages[0].message
        assert message["Subject"] == "Relatório — falhou ✓" and "Olá" in message.get_body().get_content()

    def test_ics_attachment(self, smtp_server):
        transport(smtp_server.port).send(note(attachments=(Attachment("review.ics", "text/calendar", ICS),)))
        (part,) = list(smtp_server.messages[0].message.iter_attachments())
        assert part.get_filename() == "review.ics" and part.get_content_type() == "text/calendar"
        event = Calendar.from_ical(part.get_payload(decode=True)).walk("VEVENT")[0]
        assert str(event["UID"]) == "u1" and str(event["SUMMARY"]) == "Review"

    def test_one_refused_recipient_is_reported_not_hidden(self, smtp_server):
        smtp_server.refuse.add("gone@example.com")
        deliveries = transport(smtp_server.port).send(note("ops@example.com", "gone@example.com"))
        assert [(d.target, d.delivered) for d in deliveries] == [("ops@example.com", True), ("gone@example.com", False)]
        assert "550" in deliveries[1].detail and smtp_server.messages[0].rcpt_tos == ["ops@example.com"]

    def test_every_recipient_refused(self, smtp_server):
        smtp_server.refuse.update({"a@example.com", "b@example.com"})
        with pytest.raises(NotificationError, match="refused every recipient .*a@example.com: 550"):
            transport(smtp_server.port).send(note("a@example.com", "b@example.com"))

    def test_temporary_failure_is_retried(self, smtp_server):
        smtp_server.temporary_failures = 1
        sleeps: list[float] = []
        (delivery,) = transport(smtp_server.port, sleeps).send(note())
        assert delivery.delivered and delivery.attempts == 2 and sleeps == [0.5]
        assert len(smtp_server.messages) == 1

    def test_a_message_accepted_is_not_sent_again_when_the_server_fumbles_quit(self):
        """The server took the message, then answered QUIT with 421: it is delivered once, not retried (three copies)."""

        class RefusingQuit(_Handler):
            async def handle_QUIT(self, server: object, session: object, envelope: object) -> str:
                return "421 4.3.2 shutting down"

        server = LocalSMTPServer()
        server._controller = Controller(RefusingQuit(server), hostname="127.0.0.1", port=server.port)
        server.start()
        try:
            (delivery,) = transport(server.port).send(note())
        finally:
            server.stop()
        assert delivery.delivered and delivery.attempts == 1
        assert len(server.messages) == 1


class TestFailures:
    """Environment failures are NotificationErrors naming the server and the setting to check; retries are bounded."""

    def test_connection_refused(self):
        port = closed_port()
        sleeps: list[float] = []
        with pytest.raises(NotificationError) as caught:
            transport(port, sleeps).send(note())
        message = str(caught.value)
        assert f"cannot connect to the SMTP server 127.0.0.1:{port}" in message and "after 3 attempts" in message
        assert "check CVM_SMTP_HOST and CVM_SMTP_PORT" in message and sleeps == [0.5, 1.0]
        assert caught.value.exit_code == 4

    def test_no_starttls_on_the_server(self, smtp_server):
        with pytest.raises(NotificationError, match="STARTTLS.*CVM_SMTP_SSL.*CVM_SMTP_STARTTLS=false"):
            transport(smtp_server.port, starttls=True).send(note())
        assert smtp_server.messages == []

    def test_login_refused_without_showing_the_password(self):
        server = LocalSMTPServer(login=("cvm", "right-password")).start()
        try:
            sleeps: list[float] = []
            with pytest.raises(NotificationError) as caught:
                transport(server.port, sleeps, username="cvm", password="wrong-password").send(note())
            message = str(caught.value)
            assert "refused the login of 'cvm' (535" in message and "CVM_SMTP_USERNAME and CVM_SMTP_PASSWORD" in message
            assert "wrong-password" not in message and sleeps == []  # a refused login is not retried
            assert set(server.logins) == {"cvm"} and server.messages == []  # smtplib tries PLAIN, then LOGIN
        finally:
            server.stop()

    def test_login_accepted(self):
        server = LocalSMTPServer(login=("cvm", "right-password")).start()
        try:
            (delivery,) = transport(server.port, username="cvm", password="right-password").send(note())
            assert delivery.delivered and len(server.messages) == 1
        finally:
            server.stop()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


class TestTLS:
    """Encrypted delivery to a relay whose certificate a private CA signed (CVM_SMTP_CA_FILE); the server demands TLS."""

    def test_starttls_with_a_login(self, ca: trustme.CA, ca_file: Path):
        with tls_server(ca, login=("cvm", "right-password")) as server:
            (delivery,) = transport(server.port, starttls=True, ca_file=ca_file, username="cvm", password="right-password").send(note())
            assert delivery.delivered and len(server.messages) == 1 and server.logins == ["cvm"]

    def test_implicit_tls(self, ca: trustme.CA, ca_file: Path):
        with tls_server(ca, implicit_tls=True) as server:
            (delivery,) = transport(server.port, ssl=True, ca_file=ca_file).send(note())
            assert delivery.delivered and len(server.messages) == 1

    @pytest.mark.parametrize("implicit", [False, True])
    def test_an_untrusted_certificate_is_refused_and_says_what_to_set(self, ca: trustme.CA, implicit: bool):
        with tls_server(ca, implicit_tls=implicit) as server, pytest.raises(NotificationError) as refused:
            transport(server.port, starttls=not implicit, ssl=implicit).send(note())
        assert "does not trust" in str(refused.value) and "CVM_SMTP_CA_FILE" in str(refused.value)
        assert server.messages == []

    def test_a_certificate_for_another_name_is_refused_even_from_the_trusted_ca(self, ca: trustme.CA, ca_file: Path):
        with tls_server(ca, name="mail.example.com") as server, pytest.raises(NotificationError, match="does not trust"):
            transport(server.port, starttls=True, ca_file=ca_file).send(note())
        assert server.messages == []

    def test_a_ca_file_that_is_no_certificate_is_a_config_error(self, tmp_path: Path):
        junk = tmp_path / "ca.pem"
        junk.write_text("not a certificate", encoding="utf-8")
        for path in (junk, tmp_path / "missing.pem"):
            with pytest.raises(ConfigError, match="CVM_SMTP_CA_FILE=.* cannot be read as PEM certificates"):
                transport(587, starttls=True, ca_file=path)


class TestConfig:
    """Settings that cannot work are refused before any connection."""

    def test_password_never_in_clear_to_a_remote_server(self):
        with pytest.raises(ConfigError, match="password would travel in clear"):
            transport(25, host="smtp.example.com", username="cvm", password="pw")

    def test_password_in_clear_to_loopback_is_allowed(self):
        assert transport(25, host="localhost", username="cvm", password="pw").config.username == "cvm"

    def test_starttls_and_ssl(self):
        with pytest.raises(ConfigError, match="use one"):
            transport(465, starttls=True, ssl=True)

    def test_sender(self):
        with pytest.raises(ConfigError, match="CVM_SMTP_FROM is not set"):
            transport(25, sender="")
        with pytest.raises(ConfigError, match="CVM_SMTP_FROM='cvm' is not an e-mail address"):
            transport(25, sender="cvm")

    def test_username_without_password(self):
        with pytest.raises(ConfigError, match="without CVM_SMTP_PASSWORD"):
            transport(25, username="cvm")

    def test_password_not_in_repr(self):
        assert "pw-123" not in repr(transport(25, username="cvm", password="pw-123").config)
