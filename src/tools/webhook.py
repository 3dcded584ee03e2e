"""Webhook notifications: a JSON POST signed with HMAC-SHA256 to every URL of ``CVM_WEBHOOK_URLS`` (httpx).

The receiver checks two headers (documented in the README, "Notifications"):

- ``X-CVM-Timestamp``: Unix seconds when the request was signed;
- ``X-CVM-Signature``: ``sha256=`` + the hex HMAC-SHA256, keyed with
  ``CVM_WEBHOOK_SECRET``, of ``<timestamp>.`` followed by the raw body bytes.

Signing the timestamp with the body lets a receiver refuse a replayed request
(a timestamp older than a few minutes) without trusting an unsigned header.
``X-CVM-Notification-Id`` is the same on every attempt and every URL of one
notification, so a receiver can drop a retry it already handled.

The targets come from the settings only: a request (a flow file) cannot send
to another URL. Redirects are not followed (the signed body would go
elsewhere). A connection failure, a timeout, a 429 or a 5xx is tried again
within the retry policy; any other non-2xx answer is final. Each URL is shown
without its user, password, query or fragment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from cvm.tools.notify import ChannelName, Delivery, Notification, RetryPolicy, shown_url
from cvm.utils.errors import ConfigError, UsageError

SIGNATURE_HEADER = "X-CVM-Signature"
TIMESTAMP_HEADER = "X-CVM-Timestamp"
ID_HEADER = "X-CVM-Notification-Id"
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
DEFAULT_TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-CVM-Signature`` value: ``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, header: str, *, now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """A receiver's check: the signature matches (constant-time) and the timestamp is within the tolerance.

    Whatever a sender put in the headers is an answer, never an exception (non-ASCII text included).
    """
    if not (timestamp.isascii() and header.isascii()):
        return False
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


@dataclass(frozen=True)
class WebhookConfig:
    urls: tuple[str, ...]
    secret: str = field(repr=False)
    timeout_seconds: float = 10.0
    retry: RetryPolicy = RetryPolicy()

    def check(self) -> None:
        if not self.urls:
            raise ConfigError("no webhook is configured; set CVM_WEBHOOK_URLS to one or more http(s) URLs, comma-separated")
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"CVM_WEBHOOK_URLS: {shown_url(url)!r} is not an http(s) URL; fix the entry")
        if not self.secret:
            raise ConfigError("CVM_WEBHOOK_SECRET is not set; webhooks are always signed, so set a long random secret")


def payload(notification: Notification, channel_recipients: tuple[str, ...]) -> bytes:
    """The JSON body (UTF-8, keys sorted): what a receiver reads; attachments inline as base64."""
    document = {
        "event": "cvm.notification",
        "id": notification.notification_id,
        "created_at": notification.created_at,
        "run_id": notification.run_id,
        "decision_id": notification.decision_id,
        "subject": notification.subject,
        "body": notification.body,
        "recipients": list(channel_recipients),
        "context": notification.context,
        "attachments": [
            {
                "filename": a.filename, "content_type": a.content_type, "size": len(a.data), "sha256": a.sha256,
                "content_base64": base64.b64encode(a.data).decode("ascii"),
            }
            for a in notification.attachments
        ],
    }
    body = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    if len(body) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"the webhook payload is {len(body):,} bytes; the limit is {MAX_PAYLOAD_BYTES:,} (a smaller context or fewer attachments)")
    return body


class WebhookTransport:
    """POSTs ``Notification``s to the configured URLs; ``client`` and ``sleep`` are injected for tests and reuse."""

    channel: ChannelName = "webhook"

    def __init__(
        self, config: WebhookConfig, *, client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep,
        unix_time: Callable[[], float] = time.time,
    ):
        config.check()
        self.config = config
        self._client = client
        self._sleep = sleep
        self._unix_time = unix_time

    def send(self, notification: Notification, skip: frozenset[str] = frozenset()) -> tuple[Delivery, ...]:
        urls = [url for url in self.config.urls if shown_url(url) not in skip]
        if not urls:
            return ()
        body = payload(notification, notification.recipients)
        if self._client is not None:
            return tuple(self._post(self._client, url, body, notification.notification_id) for url in urls)
        with httpx.Client(timeout=self.config.timeout_seconds, follow_redirects=False) as client:
            return tuple(self._post(client, url, body, notification.notification_id) for url in urls)

    def _post(self, client: httpx.Client, url: str, body: bytes, notification_id: str) -> Delivery:
        """One URL, with its retries; never raises (a failure is a ``Delivery`` that was not delivered)."""
        shown = shown_url(url)
        policy = self.config.retry
        detail = ""
        for attempt in range(1, policy.attempts + 1):
            timestamp = str(int(self._unix_time()))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: signature(self.config.secret, timestamp, body),
                ID_HEADER: notification_id,
                "User-Agent": "cvm-execution-agent",
            }
            retry = True
            try:
                response = client.post(url, content=body, headers=headers, timeout=self.config.timeout_seconds)
            except httpx.TimeoutException:
                detail = f"no answer from {shown} within {self.config.timeout_seconds:g}s"
            except httpx.TransportError as exc:
                detail = f"cannot reach {shown} ({type(exc).__name__}: {_first_line(exc)})"
            else:
                code = response.status_code
                if 200 <= code < 300:
                    return Delivery(shown, True, f"HTTP {code}", attempt)
                detail = f"{shown} answered HTTP {code} {response.reason_phrase}".rstrip()
                if 300 <= code < 400:
                    detail += " (redirects are not followed: put the final URL in CVM_WEBHOOK_URLS)"
                retry = code == 429 or code >= 500
            if not retry:
                break
            if attempt < policy.attempts:
                self._sleep(policy.delay(attempt))
        return Delivery(shown, False, detail, attempt)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no detail"
