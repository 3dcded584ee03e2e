"""Real local servers the notification tests send to: an SMTP server (aiosmtpd) and a webhook receiver (http.server).

Both listen on 127.0.0.1 on a free port, record what they receive, and can be
scripted to fail: the SMTP server refuses chosen recipients, answers a
temporary 451 to the first DATA, or rejects every login; the receiver answers
a queue of statuses (then 200), or holds a request until the test ends.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    return free_port()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, server: LocalSMTPServer):
        self.server = server

    async def handle_RCPT(self, smtp: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.server.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        if self.server.temporary_failures > 0:
            self.server.temporary_failures -= 1
            return "451 4.3.0 try again later"
        self.server.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"


class LocalSMTPServer:
    """aiosmtpd on 127.0.0.1; ``messages`` holds every accepted message. With ``login``, AUTH is offered without TLS."""

    def __init__(self, *, login: tuple[str, str] | None = None, tls: ssl.SSLContext | None = None, implicit_tls: bool = False):
        """``tls``: the server's certificate; STARTTLS is then required before mail or a login (``implicit_tls``: TLS from the first byte)."""
        self.messages: list[Received] = []
        self.refuse: set[str] = set()
        self.temporary_failures = 0
        self.logins: list[str] = []
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if login is not None:
            kwargs = dict(authenticator=self._authenticator(login), auth_require_tls=tls is not None)
        if tls is not None and implicit_tls:
            kwargs.update(ssl_context=tls)
        elif tls is not None:
            kwargs.update(tls_context=tls, require_starttls=True)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticator(self, expected: tuple[str, str]) -> Any:
        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            if not isinstance(data, LoginPassword):
                return AuthResult(success=False, handled=False)
            user, password = data.login.decode(), data.password.decode()
            self.logins.append(user)
            return AuthResult(success=(user, password) == expected, handled=False)

        return authenticate

    def start(self) -> LocalSMTPServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def tls_server(ca: trustme.CA, name: str = "127.0.0.1", **options: Any) -> Iterator[LocalSMTPServer]:
    """A local SMTP server with a certificate for ``name`` signed by ``ca`` (STARTTLS required, unless ``implicit_tls``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    server = LocalSMTPServer(tls=context, **options).start()
    try:
        yield server
    finally:
        server.stop()



@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _State:
    hits: list[Hit] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    hold: threading.Event | None = None


class WebhookReceiver:
    """A ThreadingHTTPServer on 127.0.0.1 recording POSTs; ``push(status, ...)`` scripts the next answers."""

    def __init__(self) -> None:
        state = self.state = _State()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                state.hits.append(Hit(self.path, dict(self.headers.items()), body))
                if state.hold is not None:
                    state.hold.wait(30)
                status = state.statuses.popleft() if state.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def hits(self) -> list[Hit]:
        return self.state.hits

    def push(self, *statuses: int) -> None:
        self.state.statuses.extend(statuses)

    def hold_requests(self) -> None:
        """Hold every request unanswered until ``stop`` (to make the client time out)."""
        self.state.hold = threading.Event()

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.state.hold is not None:
            self.state.hold.set()
        self._server.shutdown()
        self._server.server_close()
