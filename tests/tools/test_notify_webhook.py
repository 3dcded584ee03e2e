"""Webhooks through a real local receiver (http.server on 127.0.0.1): signed bodies, bounded retries, failures named."""

from __future__ import annotations

import base64
import json

import pytest

from cvm.tools.notify import Attachment, Notification, RetryPolicy, shown_url
from cvm.tools.webhook import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookTransport,
    signature,
    verify_signature,
)
from cvm.utils.errors import ConfigError
from tests.notify_servers import closed_port

SECRET = "whsec-test-0123456789abcdef"
NOW = 1_796_000_000.0


def note(**extra: object) -> Notification:
    values: dict = dict(
        notification_id="ntf-hook", subject="Flow nightly: partial", body="2 of 5 steps failed", recipients=("ops team",),
        context={"failed_steps": ["decide", "report"]}, run_id="run-1", created_at="2026-11-23T10:00:00+00:00",
    )
    values.update(extra)
    return Notification(**values)


def transport(*urls: str, sleeps: list[float] | None = None, timeout: float = 5, retries: int = 2) -> WebhookTransport:
    recorded = sleeps if sleeps is not None else []
    config = WebhookConfig(urls=urls, secret=SECRET, timeout_seconds=timeout, retry=RetryPolicy(retries=retries, backoff_seconds=0.25))
    return WebhookTransport(config, sleep=recorded.append, unix_time=lambda: NOW)


class TestSignedDelivery:
    """The receiver gets the JSON body with a signature it can verify with the shared secret."""

    def test_received_and_verified(self, webhook_receiver):
        (delivery,) = transport(webhook_receiver.url("/cvm?token=abc")).send(note())
        assert delivery.delivered and delivery.detail == "HTTP 200" and delivery.target == shown_url(webhook_receiver.url("/cvm"))
        (hit,) = webhook_receiver.hits
        assert hit.path == "/cvm?token=abc" and hit.headers["Content-Type"] == "application/json; charset=utf-8"
        assert hit.headers[ID_HEADER] == "ntf-hook" and hit.headers[TIMESTAMP_HEADER] == str(int(NOW))
        assert verify_signature(SECRET, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER], now=NOW + 10)
        body = json.loads(hit.body)
        assert body == {
            "event": "cvm.notification", "id": "ntf-hook", "created_at": "2026-11-23T10:00:00+00:00", "run_id": "run-1",
            "decision_id": None, "subject": "Flow nightly: partial", "body": "2 of 5 steps failed", "recipients": ["ops team"],
            "context": {"failed_steps": ["decide", "report"]}, "attachments": [],
        }

    def test_signature_recipe(self):
        """The documented recipe: sha256= + hex HMAC-SHA256 over "<timestamp>." + raw body."""
        import hashlib
        import hmac

        expected = hmac.new(SECRET.encode(), b"1796000000." + b'{"a":1}', hashlib.sha256).hexdigest()
        assert signature(SECRET, "1796000000", b'{"a":1}') == f"sha256={expected}"

    def test_tampering_and_replay_are_detected(self):
        body = b'{"a":1}'
        header = signature(SECRET, "1796000000", body)
        assert verify_signature(SECRET, "1796000000", body, header, now=NOW)
        assert not verify_signature(SECRET, "1796000000", b'{"a":2}', header, now=NOW)
        assert not verify_signature(SECRET, "1796000001", body, header, now=NOW)
        assert not verify_signature("other-secret", "1796000000", body, header, now=NOW)
        assert not verify_signature(SECRET, "1796000000", body, header, now=NOW + 301)
        assert not verify_signature(SECRET, "soon", body, header, now=NOW)
        assert not verify_signature(SECRET, "1796000000", body, "sha256=\u00e9", now=NOW)  # a hostile header: False, not TypeError
        assert not verify_signature(SECRET, "\uff11796000000", body, header, now=NOW)  # full-width digit: False, not UnicodeEncodeError

    def test_attachment_inline(self, webhook_receiver):
        ics = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
        transport(webhook_receiver.url()).send(note(attachments=(Attachment("e.ics", "text/calendar", ics),)))
        (attachment,) = json.loads(webhook_receiver.hits[0].body)["attachments"]
        assert attachment["filename"] == "e.ics" and attachment["size"] == len(ics)
        assert base64.b64decode(attachment["content_base64"]) == ics

    def test_every_configured_url(self, webhook_receiver):
        deliveries = transport(webhook_receiver.url("/a"), webhook_receiver.url("/b")).send(note())
        assert [d.delivered for d in deliveries] == [True, True]
        assert [h.path for h in webhook_receiver.hits] == ["/a", "/b"]
        assert {h.headers[ID_HEADER] for h in webhook_receiver.hits} == {"ntf-hook"}


class TestFailures:
    """A non-2xx answer is a failed delivery naming the URL (no query); only 429/5xx and network failures are retried."""

    def test_server_error_then_success(self, webhook_receiver):
        webhook_receiver.push(503)
        sleeps: list[float] = []
        (delivery,) = transport(webhook_receiver.url(), sleeps=sleeps).send(note())
        assert delivery.delivered and delivery.attempts == 2 and sleeps == [0.25] and len(webhook_receiver.hits) == 2

    def test_server_errors_until_the_retries_run_out(self, webhook_receiver):
        webhook_receiver.push(500, 500, 500, 500)
        sleeps: list[float] = []
        (delivery,) = transport(webhook_receiver.url("/x?token=s3cret"), sleeps=sleeps).send(note())
        assert not delivery.delivered and delivery.attempts == 3 and sleeps == [0.25, 0.5]
        assert delivery.detail == f"{shown_url(webhook_receiver.url('/x'))} answered HTTP 500 Internal Server Error"
        assert "s3cret" not in delivery.detail

    def test_client_error_is_not_retried(self, webhook_receiver):
        webhook_receiver.push(401)
        (delivery,) = transport(webhook_receiver.url()).send(note())
        assert not delivery.delivered and delivery.attempts == 1 and "HTTP 401" in delivery.detail

    def test_redirect_is_not_followed(self, webhook_receiver):
        webhook_receiver.push(302)
        (delivery,) = transport(webhook_receiver.url()).send(note())
        assert not delivery.delivered and "redirects are not followed" in delivery.detail and len(webhook_receiver.hits) == 1

    def test_connection_refused(self):
        port = closed_port()
        sleeps: list[float] = []
        (delivery,) = transport(f"http://127.0.0.1:{port}/hook", sleeps=sleeps).send(note())
        assert not delivery.delivered and delivery.attempts == 3 and len(sleeps) == 2
        assert delivery.detail.startswith(f"cannot reach {shown_url(f'http://127.0.0.1:{port}/hook')} (ConnectError")

    def test_timeout(self, webhook_receiver):
        webhook_receiver.hold_requests()
        (delivery,) = transport(webhook_receiver.url(), timeout=0.2, retries=0).send(note())
        assert not delivery.delivered and delivery.detail == f"no answer from {shown_url(webhook_receiver.url())} within 0.2s"


class TestConfig:
    def test_secret_required(self):
        with pytest.raises(ConfigError, match="CVM_WEBHOOK_SECRET is not set"):
            WebhookTransport(WebhookConfig(urls=("https://hooks.example.com/x",), secret=""))

    def test_urls_required_and_http_only(self):
        with pytest.raises(ConfigError, match="set CVM_WEBHOOK_URLS"):
            WebhookTransport(WebhookConfig(urls=(), secret=SECRET))
        with pytest.raises(ConfigError, match="'file:///…[0-9a-f]{8}' is not an http"):
            WebhookTransport(WebhookConfig(urls=("file:///etc/passwd",), secret=SECRET))

    def test_secret_not_in_repr(self):
        assert SECRET not in repr(WebhookConfig(urls=("https://x.example.com",), secret=SECRET))
