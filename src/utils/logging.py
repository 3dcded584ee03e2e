"""Logging, configured once per command: structlog events, readable on the console,
JSON lines in a rotated file (``logs/cvm.log``).

Code logs with ``structlog.get_logger(__name__)`` and snake_case event names
with fields. Transcript text and secrets are never logged.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

import structlog
import structlog.tracebacks

_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


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


def configure_logging(
    *,
    console_level: str = "WARNING",
    file_level: str = "INFO",
    log_file: Path | None = None,
    max_bytes: int = 10_485_760,
    backup_count: int = 5,
) -> None:
    """Route structlog and stdlib logging to stderr and, when given, a rotated JSON-lines file."""
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
    for noisy in ("httpx", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
