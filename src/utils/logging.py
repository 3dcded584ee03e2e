"""Logging, configured once per command: structlog events, readable on the console,
JSON lines in a rotated file (``logs/cvm.log``).

Code logs with ``structlog.get_logger(__name__)`` and snake_case event names
with fields. Transcript text and secrets are never logged.

Secrets are redacted by value, not by field name: whoever reads a secret (the
settings, the LLM client) registers it with ``register_secret``, and the last
step before rendering replaces it anywhere in any event, message, nested
structure or exception text, in every escaped form it can take there (a key
with a trailing newline shows up as ``sk-...\\n`` inside a repr, as bytes
inside an HTTP library's error, as ``\\u00e9`` in JSON).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog
import structlog.tracebacks

_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4
"""Shorter values are not redacted: replacing every ``a`` in every line would leave nothing readable."""
_MAX_DEPTH = 16

_secret_forms: tuple[str, ...] = ()
"""Every printed form of every registered secret, longest first; replaced whole, never mutated."""
_secrets_lock = threading.Lock()


def _escapes(text: str) -> tuple[str, ...]:
    """How ``text`` reads inside a Python repr, a JSON string (ASCII or not) and a bytes repr."""
    return (
        repr(text)[1:-1],
        json.dumps(text)[1:-1],
        json.dumps(text, ensure_ascii=False)[1:-1],
        repr(text.encode("utf-8", "backslashreplace"))[2:-1],
    )


def _printed_forms(secret: str) -> set[str]:
    """The secret as given and stripped, each escaped once and twice (an exception inside an exception's repr)."""
    forms = {secret, secret.strip()}
    for _ in range(2):
        forms |= {escaped for form in forms for escaped in _escapes(form)}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def register_secret(secret: str | None) -> None:
    """Never log ``secret`` (in any of its printed forms) from now on, in this process."""
    global _secret_forms
    if not secret:
        return
    with _secrets_lock:
        forms = set(_secret_forms) | _printed_forms(secret)
        _secret_forms = tuple(sorted(forms, key=len, reverse=True))


def _redact_text(text: str, forms: tuple[str, ...]) -> str:
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def _redact(value: Any, forms: tuple[str, ...], depth: int) -> Any:
    if isinstance(value, str):
        return _redact_text(value, forms)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {_redact(k, forms, depth + 1): _redact(v, forms, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [_redact(item, forms, depth + 1) for item in value]
        if isinstance(value, (tuple, set, frozenset)):
            items = [_redact(item, forms, depth + 1) for item in value]
            return tuple(items) if isinstance(value, tuple) else type(value)(items)
    # Any other object (an exception, bytes, a model) is rendered by its repr or str: check both.
    shown = f"{value!r} {value}"
    return _redact_text(repr(value), forms) if _redact_text(shown, forms) != shown else value


def redact(value: Any) -> Any:
    """``value`` with every registered secret replaced by ``[REDACTED]``, inside mappings and sequences too.

    An object whose repr or str shows a secret becomes its redacted repr; others pass unchanged.
    """
    forms = _secret_forms
    return _redact(value, forms, 0) if forms else value


def redact_secrets(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: the last step before rendering, so nothing added earlier escapes it."""
    return redact(event_dict)


def _without_traceback(record: logging.LogRecord) -> bool:
    """Tracebacks belong in the log file; the console gets one-line errors from the CLI."""
    event = record.msg if isinstance(record.msg, dict) else {}
    return not (record.exc_info or event.get("exc_info"))


def level_number(name: str) -> int:
    """The logging level for a name such as ``info``; ``ValueError`` for an unknown name."""
    number = logging.getLevelName(name.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {name!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return number


def _structlog_routed_to_stdlib() -> bool:
    """Whether structlog already hands its events to stdlib logging the way ``configure_logging`` sets it up.

    Not ``structlog.is_configured()``: a configuration restored by ``structlog.testing.capture_logs`` counts as
    configured while printing to stdout.
    """
    config = structlog.get_config()
    processors = config["processors"]
    return (
        isinstance(config["logger_factory"], structlog.stdlib.LoggerFactory)
        and bool(processors) and processors[-1] is structlog.stdlib.ProcessorFormatter.wrap_for_formatter
    )


def configure_logging(
    *,
    console_level: str = "WARNING",
    file_level: str = "INFO",
    log_file: Path | None = None,
    max_bytes: int = 10_485_760,
    backup_count: int = 5,
) -> None:
    """Route structlog and stdlib logging to stderr and, when given, a rotated JSON-lines file.

    structlog itself is configured once per process (its processor chain never changes); a second call only
    re-routes the stdlib handlers, because a command learns its log level and file after it has started.
    """
    if not _structlog_routed_to_stdlib():
        structlog.configure(
            processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level_number(console_level))
    console.addFilter(_without_traceback)
    console.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_secrets,
                structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
            ],
            foreign_pre_chain=_SHARED,
        )
    )
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
        file_handler.setLevel(level_number(file_level))
        file_handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    # Never locals: they could hold transcript text or secrets.
                    structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
                    redact_secrets,
                    structlog.processors.JSONRenderer(),
                ],
                foreign_pre_chain=_SHARED,
            )
        )
        handlers.append(file_handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(min(h.level for h in handlers))
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
