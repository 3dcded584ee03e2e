"""What every notification channel shares: the message, its checks, its template, its attachments, its retries.

Notifications go to operators and admins (internal people and systems), never
to customers. The transports are ``cvm.tools.smtp`` (e-mail) and
``cvm.tools.webhook`` (signed HTTP POST); the execution agent
(``cvm.agents.execution``) composes a ``Notification`` with the helpers here
and hands it to one of them.

- Templates: ``${name}`` or ``${a.b.0.c}`` is replaced by that value of the
  context (a dotted path through mappings and lists), ``$${`` is a literal
  ``${``, and nothing else is special. One pass, no attribute access, no
  expressions, no ``str.format``: a value that itself holds ``${...}`` stays
  text, and no template can reach Python objects.
- Header injection: a subject or an address holding a line break or another
  control character is refused (``UsageError``), after the template is filled,
  since a context value can carry one.
- Attachments: only regular files under the output folder (``CVM_OUTPUT_DIR``),
  the files CVM writes; ``../``, symlinks out of it and absolute paths
  elsewhere are refused, so a flow file cannot mail ``.env`` away.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from cvm.utils.errors import UsageError

ChannelName = Literal["email", "webhook"]

MAX_SUBJECT_CHARS = 500
MAX_BODY_CHARS = 200_000
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
"""All attachments of one notification together."""
MAX_ADDRESS_CHARS = 254

_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([^{}]*)\}")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_CUSTOMER = re.compile(r"^customer[.:]", re.IGNORECASE)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a transient failure (no connection, a timeout, a 4xx SMTP or 429/5xx HTTP answer) is tried again."""

    retries: int = 2
    backoff_seconds: float = 0.5
    factor: float = 2.0
    max_delay_seconds: float = 10.0

    @property
    def attempts(self) -> int:
        return 1 + self.retries

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based), capped so a retry never waits long."""
        return min(self.max_delay_seconds, self.backoff_seconds * self.factor ** (attempt - 1))


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Notification:
    """One notification, composed and checked, ready for a transport."""

    notification_id: str
    subject: str
    body: str
    recipients: tuple[str, ...]
    """E-mail: the addresses it is sent to. Webhook: who it is for, carried in the payload."""
    attachments: tuple[Attachment, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    """The values the template was filled from (sent in a webhook's payload for machines to read)."""
    run_id: str | None = None
    decision_id: str | None = None
    created_at: str = ""
    """ISO instant (the CVM clock) the notification was composed at."""

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """What one target (an address, a webhook URL shown without secrets) answered."""

    target: str
    delivered: bool
    detail: str
    attempts: int = 1


class NotificationTransport(Protocol):
    """Delivers a notification; raises ``NotificationError`` when nothing could be delivered, else one ``Delivery`` per target."""

    channel: ChannelName

    def send(self, notification: Notification, skip: frozenset[str] = frozenset()) -> tuple[Delivery, ...]:
        """One ``Delivery`` per target not in ``skip`` (targets an earlier attempt already delivered to)."""
        ...


# --- templates -----------------------------------------------------------------------


def render_template(template: str, context: Mapping[str, Any], *, what: str = "template") -> str:
    """Fill every ``${path}`` from ``context``; ``$${`` is a literal ``${``. A missing path is a ``UsageError`` naming it."""

    size = len(template)

    def replace(match: re.Match[str]) -> str:
        nonlocal size
        if match.group(1) is None:
            return "${"
        text = _as_text(_lookup(context, match.group(1).strip(), what))
        size += len(text) - len(match.group(0))
        if size > MAX_BODY_CHARS:  # counted as it grows: many copies of a large value never sit in memory at once
            raise UsageError(f"{what} is over {MAX_BODY_CHARS:,} characters once filled; the limit is {MAX_BODY_CHARS:,}")
        return text

    if len(template) > MAX_BODY_CHARS:
        raise UsageError(f"{what} is {len(template):,} characters; the limit is {MAX_BODY_CHARS:,}")
    return _PLACEHOLDER.sub(replace, template)


def _lookup(context: Mapping[str, Any], path: str, what: str) -> Any:
    """The value at a dotted path (mapping keys and list indexes only: no attributes, nothing callable)."""
    segments = path.split(".") if path else []
    if not segments or not all(_PATH_SEGMENT.match(s) for s in segments):
        raise UsageError(f"{what}: ${{{path}}} is not a placeholder; write ${{name}} or ${{name.field}} (letters, digits, _ and -)")
    value: Any = context
    for depth, segment in enumerate(segments):
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, Sequence) and not isinstance(value, str) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            known = sorted(str(k) for k in value) if isinstance(value, Mapping) else []
            where = ".".join(segments[:depth]) or "the context"
            has = f"; {where} has: {', '.join(known[:20]) or 'nothing'}" if isinstance(value, Mapping) else ""
            raise UsageError(f"{what}: ${{{path}}} is not in the context{has}; pass it in context or fix the name")
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


# --- checks ----------------------------------------------------------------------------


def check_header(name: str, value: str) -> str:
    """A header value (subject, address) without line breaks or control characters: header injection is refused."""
    if _CONTROL.search(value):
        raise UsageError(f"{name} {value[:60]!r} contains a line break or control character; header injection is refused")
    return value


def check_subject(subject: str) -> str:
    check_header("subject", subject)
    if not subject.strip():
        raise UsageError("subject is empty once filled; give the notification a subject")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise UsageError(f"subject is {len(subject)} characters; the limit is {MAX_SUBJECT_CHARS}")
    return subject


def is_customer_reference(recipient: str) -> bool:
    """``customer.U124`` / ``customer:U124``: a customer, not an operator (see the agent's consent rule)."""
    return bool(_CUSTOMER.match(recipient.strip()))


def customer_of(recipient: str) -> str:
    """The customer id of a ``customer.ID`` reference."""
    return recipient.strip()[len("customer."):]


def check_address(address: str) -> str:
    """A bare e-mail address (``ops@example.com``), checked before it reaches an SMTP envelope or header."""
    check_header("recipient", address)
    address = address.strip()
    if len(address) > MAX_ADDRESS_CHARS or not _ADDRESS.match(address):
        raise UsageError(f"recipient {address[:80]!r} is not an e-mail address; write it as name@domain (no display name)")
    return address


def check_recipient_label(recipient: str) -> str:
    """Who a webhook notification is for (an address, a team name, ``customer.ID``): one line of printable text."""
    check_header("recipient", recipient)
    recipient = recipient.strip()
    if not recipient or len(recipient) > MAX_ADDRESS_CHARS:
        raise UsageError(f"recipient {recipient[:80]!r} must be 1 to {MAX_ADDRESS_CHARS} characters")
    return recipient


def split_list(text: str | None) -> tuple[str, ...]:
    """``a@x, b@y`` -> ("a@x", "b@y"): the comma-separated settings (CVM_NOTIFY_TO, CVM_WEBHOOK_URLS)."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def shown_url(url: str) -> str:
    """A URL as errors and the audit show it: scheme, host and port, and the path only as a short digest.

    No user, password, query or fragment, and no path either: Slack, Teams and Discord webhooks carry their secret
    in the path. The digest (of scheme, host, port and path) still tells two webhooks of one host apart.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    place = f"{parts.scheme}://{host}{port}"
    path = "" if parts.path in ("", "/") else f"/…{hashlib.sha256((place + parts.path).encode()).hexdigest()[:8]}"
    return f"{place}{path}"


# --- attachments -------------------------------------------------------------------------


def load_attachments(paths: Iterable[str], root: Path) -> tuple[Attachment, ...]:
    """Read the files to attach; each must be a regular file under ``root`` (the output folder)."""
    base = Path(root).resolve()
    loaded: list[Attachment] = []
    total = 0
    for given in paths:
        path = Path(given).resolve()
        if not path.is_relative_to(base):
            raise UsageError(
                f"attachment {given} is outside the output folder {root}; only files CVM wrote there (CVM_OUTPUT_DIR) can be attached"
            )
        if not path.is_file():
            raise UsageError(f"attachment {given} does not exist or is not a file; create it first (create_calendar_event)")
        try:
            if total + path.stat().st_size > MAX_ATTACHMENT_BYTES:  # a large run file is refused before it is read into memory
                raise UsageError(
                    f"attachments are over {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB together; attach fewer or smaller files"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"attachment {given} cannot be read ({exc.strerror or exc})") from None
        total += len(data)
        if total > MAX_ATTACHMENT_BYTES:
            raise UsageError(f"attachments are over {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB together; attach fewer or smaller files")
        loaded.append(Attachment(path.name, content_type(path.name), data))
    return tuple(loaded)


def content_type(filename: str) -> str:
    if filename.lower().endswith(".ics"):
        return "text/calendar"
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or "application/octet-stream"
