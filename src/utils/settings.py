"""Runtime settings from the environment and ``.env``.

Command-line flags override these; these override the built-in defaults. Every
variable is documented in ``.env.example``.

Secrets (``OPENAI_API_KEY``, a password inside ``CVM_DB_URL``) are registered
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
