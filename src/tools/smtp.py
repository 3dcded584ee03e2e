"""E-mail notifications through an SMTP server (stdlib ``smtplib``), configured by ``CVM_SMTP_*``.

One message per notification, every recipient in ``To:``. The connection is
upgraded with STARTTLS (default) or opened with implicit TLS (``CVM_SMTP_SSL``);
a password is only ever sent over TLS or to a relay on this machine (loopback).
A failed connection, a timeout or a 4xx answer is tried again within the retry
policy; a refused login, a refused sender or a missing STARTTLS is not (it
needs a settings fix). Every failure is a ``NotificationError`` (exit 4) whose
message names the server and the setting to check, never the password.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from ssl import SSLContext  # the name "ssl" is also a field of SMTPConfig

from cvm.tools.notify import ChannelName, Delivery, Notification, RetryPolicy, check_address
from cvm.utils.errors import ConfigError, NotificationError, UsageError


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    ssl: bool = False
    ca_file: Path | None = None
    """Certificates (PEM) trusted besides the system's: a relay whose certificate a private CA signed."""
    timeout_seconds: float = 10.0
    retry: RetryPolicy = RetryPolicy()

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def check(self) -> None:
        """Settings that cannot work together are a ``ConfigError`` before any connection is made."""
        if not self.sender:
            raise ConfigError("CVM_SMTP_FROM is not set; set it to the address notifications are sent from")
        try:
            check_address(self.sender)
        except UsageError:
            raise ConfigError(f"CVM_SMTP_FROM={self.sender!r} is not an e-mail address; set it to name@domain") from None
        if self.starttls and self.ssl:
            raise ConfigError("CVM_SMTP_STARTTLS and CVM_SMTP_SSL are both on; use one (SSL for port 465, STARTTLS for 587)")
        if self.username and not (self.starttls or self.ssl or _loopback(self.host)):
            raise ConfigError(
                f"CVM_SMTP_USERNAME is set but the connection to {self.server} is not encrypted; the password would travel"
                " in clear. Turn on CVM_SMTP_STARTTLS or CVM_SMTP_SSL (only a relay on this machine may go without)"
            )
        if self.username and not self.password:
            raise ConfigError("CVM_SMTP_USERNAME is set without CVM_SMTP_PASSWORD; set both or neither")

    def tls_context(self) -> SSLContext:
        """The system's trusted CAs, plus ``ca_file``'s; a file that is no PEM certificates is a ``ConfigError``."""
        tls = ssl.create_default_context()
        if self.ca_file is None:
            return tls
        try:
            tls.load_verify_locations(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"CVM_SMTP_CA_FILE={str(self.ca_file)!r} cannot be read as PEM certificates ({getattr(exc, 'strerror', None) or exc});"
                " point it at the CA certificate file of your mail relay"
            ) from None
        return tls


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Transient(Exception):
    """A failure worth another attempt (its text is the reason)."""


class SMTPTransport:
    """Sends ``Notification``s by e-mail; ``sleep`` is injected so tests need not wait."""

    channel: ChannelName = "email"

    def __init__(self, config: SMTPConfig, *, sleep: Callable[[float], None] = time.sleep):
        config.check()
        self.config = config
        self._tls = config.tls_context()  # built once: every send and retry reuses it
        self._sleep = sleep

    def send(self, notification: Notification, skip: frozenset[str] = frozenset()) -> tuple[Delivery, ...]:
        recipients = [r for r in notification.recipients if r not in skip]
        if not recipients:
            return ()
        message = self.message(notification)
        policy = self.config.retry
        reason = ""
        for attempt in range(1, policy.attempts + 1):
            try:
                refused = self._send_once(message, recipients)
            except _Transient as exc:
                reason = str(exc)
                if attempt < policy.attempts:
                    self._sleep(policy.delay(attempt))
                continue
            return tuple(
                Delivery(r, False, f"refused by {self.config.server}: {_reply(*refused[r])}", attempt) if r in refused
                else Delivery(r, True, f"accepted by {self.config.server} as {message['Message-ID']}", attempt)
                for r in recipients
            )
        raise NotificationError(
            f"e-mail not sent: {reason} (after {policy.attempts} attempt{'s' if policy.attempts > 1 else ''});"
            " check CVM_SMTP_HOST and CVM_SMTP_PORT and that the server is running"
        )

    def message(self, notification: Notification) -> EmailMessage:
        """The e-mail: headers already checked for line breaks, the body as UTF-8 text, attachments as MIME parts."""
        message = EmailMessage()
        message["Subject"] = notification.subject
        message["From"] = self.config.sender
        message["To"] = ", ".join(notification.recipients)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(idstring=notification.notification_id, domain=self.config.sender.rsplit("@", 1)[-1])
        message["X-CVM-Notification-Id"] = notification.notification_id
        if notification.run_id:
            message["X-CVM-Run-Id"] = notification.run_id
        message.set_content(notification.body or "")
        for item in notification.attachments:
            maintype, _, subtype = item.content_type.partition("/")
            message.add_attachment(item.data, maintype=maintype, subtype=subtype or "octet-stream", filename=item.filename)
        return message

    def _send_once(self, message: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
        """One connection: (STARTTLS,) login, send; returns the refused recipients. Raises ``_Transient`` or ``NotificationError``."""
        c = self.config
        server = c.server
        tls = self._tls
        try:
            smtp: smtplib.SMTP = (
                smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_seconds, context=tls) if c.ssl
                else smtplib.SMTP(c.host, c.port, timeout=c.timeout_seconds)
            )
            try:
                smtp.ehlo()
                if c.starttls:
                    smtp.starttls(context=tls)
                    smtp.ehlo()
                if c.username:
                    smtp.login(c.username, c.password or "")
                return smtp.send_message(message, from_addr=c.sender, to_addrs=recipients)
            finally:
                _quit(smtp)
        except smtplib.SMTPAuthenticationError as exc:
            raise NotificationError(
                f"the SMTP server {server} refused the login of {c.username!r} ({_reply(exc.smtp_code, exc.smtp_error)});"
                " check CVM_SMTP_USERNAME and CVM_SMTP_PASSWORD"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            hint = (
                "use its TLS port with CVM_SMTP_SSL, or set CVM_SMTP_STARTTLS=false only for a trusted relay on a private network"
                if "STARTTLS" in str(exc).upper() else "unset CVM_SMTP_USERNAME if the server takes mail without a login"
            )
            raise NotificationError(f"the SMTP server {server}: {exc}; {hint}") from None
        except smtplib.SMTPSenderRefused as exc:
            raise NotificationError(
                f"the SMTP server {server} refused the sender {c.sender!r} ({_reply(exc.smtp_code, exc.smtp_error)}); check CVM_SMTP_FROM"
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            refused = "; ".join(f"{r}: {_reply(*answer)}" for r, answer in exc.recipients.items())
            raise NotificationError(f"the SMTP server {server} refused every recipient ({refused}); check the addresses") from None
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise _Transient(f"the SMTP server {server} answered {_reply(exc.smtp_code, exc.smtp_error)}") from None
            raise NotificationError(f"the SMTP server {server} answered {_reply(exc.smtp_code, exc.smtp_error)}") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise _Transient(f"the SMTP server {server} closed the connection ({exc or 'no reason given'})") from None
        except smtplib.SMTPException as exc:
            raise NotificationError(f"the SMTP server {server}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise NotificationError(
                f"the SMTP server {server} sent a certificate this machine does not trust ({exc.verify_message or exc});"
                " if a private CA signed it, set CVM_SMTP_CA_FILE to that CA's PEM file"
            ) from None
        except ssl.SSLError as exc:
            raise NotificationError(
                f"TLS with the SMTP server {server} failed ({exc.reason or exc}); check CVM_SMTP_SSL/CVM_SMTP_STARTTLS and the port"
            ) from None
        except TimeoutError:
            raise _Transient(f"the SMTP server {server} did not answer within {c.timeout_seconds:g}s") from None
        except OSError as exc:
            raise _Transient(f"cannot connect to the SMTP server {server} ({exc.strerror or exc})") from None


def _quit(smtp: smtplib.SMTP) -> None:
    """Say QUIT and close; whatever the server answers then (a 421, a timeout) changes nothing: a message it accepted
    is delivered, and must not be sent again by a retry."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _reply(code: int, text: bytes | str) -> str:
    """An SMTP reply as one short line."""
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(shown.split())[:200]}"
