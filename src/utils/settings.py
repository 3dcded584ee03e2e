"""Runtime settings from the environment and ``.env``.

Command-line flags override these; these override the built-in defaults. Every
variable is documented in ``.env.example``.

Secrets (``OPENAI_API_KEY``, a password inside ``CVM_DB_URL``, ``CVM_SMTP_PASSWORD``,
``CVM_WEBHOOK_SECRET``) are registered
with the log redactor as they are read, so no later log line can show them.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cvm.utils.errors import UsageError
from cvm.utils.logging import register_secret

SelectorName = Literal["auto", "rules", "llm"]


class RuntimeSettings(BaseSettings):
    """Where things are and which selector runs, read once per command."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("data/sample"), validation_alias="CVM_DATA_DIR")
    config_path: Path = Field(default=Path("config/cvm_config.yaml"), validation_alias="CVM_CONFIG")
    custom_treatments_path: Path = Field(
        default=Path("config/custom_treatments.json"), validation_alias="CVM_CUSTOM_TREATMENTS"
    )
    db_url: str = Field(default="sqlite:///state/cvm.sqlite3", validation_alias="CVM_DB_URL")
    output_dir: Path = Field(default=Path("output"), validation_alias="CVM_OUTPUT_DIR")
    log_dir: Path = Field(default=Path("logs"), validation_alias="CVM_LOG_DIR")
    now: datetime | None = Field(default=None, validation_alias="CVM_NOW")
    selector: SelectorName = Field(default="auto", validation_alias="CVM_SELECTOR")
    log_level: str | None = Field(default=None, validation_alias=AliasChoices("CVM_LOG_LEVEL", "LOG_LEVEL"))
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model_id: str | None = Field(default=None, validation_alias="MODEL_ID")

    # --- notifications (the execution agent): operators and admins, never customers ---
    smtp_host: str | None = Field(default=None, validation_alias="CVM_SMTP_HOST")
    """No host: e-mail notifications are refused with a message naming this variable."""
    smtp_port: int = Field(default=587, ge=1, le=65535, validation_alias="CVM_SMTP_PORT")
    smtp_from: str | None = Field(default=None, validation_alias="CVM_SMTP_FROM")
    smtp_username: str | None = Field(default=None, validation_alias="CVM_SMTP_USERNAME")
    smtp_password: SecretStr | None = Field(default=None, validation_alias="CVM_SMTP_PASSWORD")
    smtp_starttls: bool = Field(default=True, validation_alias="CVM_SMTP_STARTTLS")
    """Upgrade the connection with STARTTLS before logging in (turn off only for a trusted local relay)."""
    smtp_ssl: bool = Field(default=False, validation_alias="CVM_SMTP_SSL")
    """Implicit TLS from the first byte (port 465) instead of STARTTLS."""
    smtp_ca_file: Path | None = Field(default=None, validation_alias="CVM_SMTP_CA_FILE")
    """PEM certificates of a private CA trusted besides the system's (a company relay); the server's name is still checked."""
    notify_to: str | None = Field(default=None, validation_alias="CVM_NOTIFY_TO")
    """Comma-separated addresses an e-mail notification goes to when its request names none (flow failure notices)."""
    webhook_urls: str | None = Field(default=None, validation_alias="CVM_WEBHOOK_URLS")
    """Comma-separated http(s) URLs every webhook notification is POSTed to; a request cannot name others."""
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="CVM_WEBHOOK_SECRET")
    """The HMAC-SHA256 key of the ``X-CVM-Signature`` header; required for webhooks."""
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=120, validation_alias="CVM_NOTIFY_TIMEOUT")
    notify_retries: int = Field(default=2, ge=0, le=5, validation_alias="CVM_NOTIFY_RETRIES")
    """Retries after a failed connection, a timeout, an SMTP 4xx or an HTTP 429/5xx (0: one attempt)."""

    @field_validator("smtp_password", "webhook_secret", mode="before")
    @classmethod
    def _register_notification_secret(cls, value: Any) -> Any:
        """Registered before anything can log them; blank means none. Never raises (an error would show the value)."""
        if not isinstance(value, str):
            return value
        register_secret(value)
        return value if value.strip() else None

    @field_validator("openai_api_key", mode="before")
    @classmethod
    def _strip_api_key(cls, value: Any) -> Any:
        """A key pasted with a trailing newline or spaces is the same key; blank means none.

        Registered (as given and stripped) before anything else can log it. Never
        raises: a validation error would carry the key into the error message.
        """
        if not isinstance(value, str):
            return value
        register_secret(value)
        return value.strip() or None

    @field_validator("db_url")
    @classmethod
    def _register_db_password(cls, value: str) -> str:
        """A password inside the database URL is a secret like any other."""
        try:
            register_secret(urlsplit(value).password)
        except ValueError:  # an unparsable URL is the ledger's to reject, with its own message
            pass
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _register_webhook_credentials(cls, value: str | None) -> str | None:
        """A webhook URL's password or query string (``?token=...``) is a secret: never logged (an HTTP client logs URLs)."""
        for url in (value or "").split(","):
            try:
                parts = urlsplit(url.strip())
                register_secret(parts.password)
                register_secret(parts.query)
            except ValueError:  # an unparsable URL is refused on first use, with its own message
                pass
        return value

    def resolve_output_path(self, name: str) -> Path:
        """A bare file name goes under ``output_dir``; a path with a folder stays as given."""
        if "/" in name or (os.sep != "/" and os.sep in name):
            return Path(name)
        return self.output_dir / name

    def writable_output_path(self, name: str) -> Path:
        """``resolve_output_path``, checked before any work is done: its folder exists or can be made, and is writable."""
        path = self.resolve_output_path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder for output file {path} ({exc.strerror or exc}); choose another path") from None
        if path.is_dir():
            raise UsageError(f"output file {path} is a folder; give a file name")
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise UsageError(f"output file {path} is not writable; choose another path")
        return path
