"""Logging: secrets are redacted by value, in every field, nested structure, message and exception text.

Each test registers its own random secret: the registry is process-wide, so
values never collide between tests.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from cvm.utils.logging import REDACTED, configure_logging, redact, register_secret


def fresh_secret(suffix: str = "") -> str:
    return f"sk-test-{uuid.uuid4().hex}{suffix}"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Logging at DEBUG to stderr (captured) and to a JSON-lines file; quiet again afterwards."""
    path = tmp_path / "logs" / "cvm.log"
    configure_logging(console_level="DEBUG", file_level="DEBUG", log_file=path)
    yield path
    configure_logging(console_level="WARNING", log_file=None)


def written(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Everything logged so far: the console (stderr, stdout) and the log file."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    captured = capsys.readouterr()
    return captured.err + captured.out + path.read_text(encoding="utf-8")


def assert_hidden(secret: str, text: str) -> None:
    assert secret.strip() not in text
    assert REDACTED in text


class TestRedactValue:
    """``redact`` replaces every printed form of a registered secret and leaves everything else alone."""

    def test_nested_structures_keep_their_shape(self) -> None:
        secret = fresh_secret()
        register_secret(secret)
        value = {"headers": [("Authorization", f"Bearer {secret}")], "ok": 3, "flags": {True}, "none": None}
        assert redact(value) == {"headers": [("Authorization", f"Bearer {REDACTED}")], "ok": 3, "flags": {True}, "none": None}

    @pytest.mark.parametrize(
        ("shape", "show"),
        [
            ("trailing-newline", lambda s: repr(s)),
            ("bytes-in-exception", lambda s: repr(ValueError(f"Illegal header value {('Bearer ' + s).encode()!r}"))),
            ("json-escaped", lambda s: json.dumps({"key": s})),
            ("stripped", lambda s: s.strip()),
        ],
    )
    def test_escaped_forms_of_a_newline_key_are_redacted(self, shape: str, show: Callable[[str], str]) -> None:
        secret = fresh_secret("\n")
        register_secret(secret)
        assert secret.strip() not in redact(show(secret))

    def test_non_ascii_key_is_redacted_in_json_and_bytes_forms(self) -> None:
        secret = fresh_secret("\u00e9\u201d")
        register_secret(secret)
        for shown in (secret, json.dumps(secret), repr(secret.encode()), repr(repr(secret))):
            assert redact(shown).count(REDACTED) >= 1, shown
            assert secret[:-2] not in redact(shown)

    def test_object_showing_a_secret_becomes_its_redacted_repr(self) -> None:
        secret = fresh_secret()
        register_secret(secret)
        assert redact(ConnectionError(f"refused for key {secret}")) == f"ConnectionError('refused for key {REDACTED}')"

    def test_object_without_a_secret_is_passed_unchanged(self) -> None:
        register_secret(fresh_secret())
        error = ConnectionError("refused")
        assert redact(error) is error

    def test_very_short_values_are_not_treated_as_secrets(self) -> None:
        register_secret("ab")
        assert redact("a cab on a tab") == "a cab on a tab"


class TestConfiguredLogging:
    """The console and the log file never show a registered secret, whatever carries it."""

    def test_structlog_event_fields_and_message(self, log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        secret = fresh_secret("\n")
        register_secret(secret)
        log = structlog.get_logger("test")
        log.debug(f"calling with {secret}", api_key=secret, request={"headers": {"authorization": [f"Bearer {secret}"]}})
        log.info("retrying", attempt=(1, secret.strip()))
        assert_hidden(secret, written(log_file, capsys))

    def test_stdlib_record_with_arguments(self, log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        secret = fresh_secret("\n")
        register_secret(secret)
        logging.getLogger("some.library").debug("send_request_headers.failed exception=%r", ValueError(f"Illegal header value {secret.encode()!r}"))
        assert_hidden(secret, written(log_file, capsys))

    def test_exception_text_in_the_file_traceback(self, log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        secret = fresh_secret()
        register_secret(secret)
        try:
            raise RuntimeError(f"the endpoint refused {secret}")
        except RuntimeError:
            structlog.get_logger("test").exception("command_crashed")
        text = written(log_file, capsys)
        assert "RuntimeError" in log_file.read_text(encoding="utf-8")
        assert_hidden(secret, text)

    def test_unregistered_text_is_logged_as_is(self, log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
        register_secret(fresh_secret())
        structlog.get_logger("test").warning("llm_fallback_to_rules", reason="the LLM endpoint answered HTTP 500")
        text = written(log_file, capsys)
        assert "the LLM endpoint answered HTTP 500" in text
        assert REDACTED not in text


def test_structlog_is_configured_once_per_process(tmp_path: Path, mocker) -> None:
    """A command starts logging before it knows its settings, then re-routes: only the handlers change."""
    configure_logging(console_level="WARNING", log_file=None)  # the process's bootstrap (already configured here)
    spy = mocker.spy(structlog, "configure")
    configure_logging(console_level="DEBUG", file_level="DEBUG", log_file=tmp_path / "cvm.log")
    configure_logging(console_level="WARNING", log_file=None)
    assert spy.call_count == 0
    assert structlog.is_configured()


def test_logging_is_routed_again_after_a_capture_restored_structlog_s_defaults(tmp_path: Path) -> None:
    """capture_logs leaves structlog 'configured' with its printing defaults; the log file must still be written."""
    structlog.reset_defaults()
    with structlog.testing.capture_logs():
        pass
    path = tmp_path / "cvm.log"
    configure_logging(console_level="WARNING", file_level="INFO", log_file=path)
    try:
        structlog.get_logger("test").info("after_capture")
        for handler in logging.getLogger().handlers:
            handler.flush()
        assert "after_capture" in path.read_text(encoding="utf-8")
    finally:
        configure_logging(console_level="WARNING", log_file=None)
    assert [type(h).__name__ for h in logging.getLogger().handlers] == ["StreamHandler"]
