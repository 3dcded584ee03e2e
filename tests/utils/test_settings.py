"""RuntimeSettings: CVM_* and OPENAI_* variables, .env, and output path resolution."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from cvm.utils.logging import REDACTED, redact
from cvm.utils.settings import RuntimeSettings


class TestEnvironment:
    """Every documented variable is read; defaults apply when none is set."""

    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        settings = RuntimeSettings(_env_file=None)
        assert settings.data_dir == Path("data/sample")
        assert settings.config_path == Path("config/cvm_config.yaml")
        assert settings.custom_treatments_path == Path("config/custom_treatments.json")
        assert settings.db_url == "sqlite:///state/cvm.sqlite3"
        assert settings.output_dir == Path("output")
        assert settings.log_dir == Path("logs")
        assert settings.now is None
        assert settings.selector == "auto"
        assert settings.log_level is None
        assert settings.openai_api_key is None
        assert settings.openai_base_url is None
        assert settings.model_id is None

    def test_cvm_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("CVM_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("CVM_CONFIG", "conf/prod.yaml")
        monkeypatch.setenv("CVM_CUSTOM_TREATMENTS", "conf/custom.json")
        monkeypatch.setenv("CVM_DB_URL", "sqlite:////var/lib/cvm/ledger.sqlite3")
        monkeypatch.setenv("CVM_OUTPUT_DIR", "/srv/cvm/out")
        monkeypatch.setenv("CVM_LOG_DIR", "/var/log/cvm")
        monkeypatch.setenv("CVM_NOW", "2026-11-23T10:00:00+00:00")
        monkeypatch.setenv("CVM_SELECTOR", "rules")
        monkeypatch.setenv("CVM_LOG_LEVEL", "DEBUG")
        settings = RuntimeSettings(_env_file=None)
        assert settings.data_dir == tmp_path / "data"
        assert settings.config_path == Path("conf/prod.yaml")
        assert settings.custom_treatments_path == Path("conf/custom.json")
        assert settings.db_url == "sqlite:////var/lib/cvm/ledger.sqlite3"
        assert settings.output_dir == Path("/srv/cvm/out")
        assert settings.log_dir == Path("/var/log/cvm")
        assert settings.now == datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
        assert settings.selector == "rules"
        assert settings.log_level == "DEBUG"

    def test_openai_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
        monkeypatch.setenv("MODEL_ID", "llama3.1:8b")
        settings = RuntimeSettings(_env_file=None)
        assert settings.openai_api_key is not None
        assert settings.openai_api_key.get_secret_value() == "sk-test-123"
        assert "sk-test-123" not in repr(settings)
        assert "sk-test-123" not in str(settings.openai_api_key)
        assert settings.openai_base_url == "http://127.0.0.1:8000/v1"
        assert settings.model_id == "llama3.1:8b"

    def test_log_level_alias(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOG_LEVEL", "WARNING")
        assert RuntimeSettings(_env_file=None).log_level == "WARNING"

    def test_naive_now_stays_naive(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CVM_NOW", "2026-11-23T10:00")
        assert RuntimeSettings(_env_file=None).now == datetime(2026, 11, 23, 10, 0)

    @pytest.mark.parametrize("value", ["gpt", "openai", "random", ""])
    def test_invalid_selector(self, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
        monkeypatch.setenv("CVM_SELECTOR", value)
        with pytest.raises(ValidationError) as err:
            RuntimeSettings(_env_file=None)
        assert err.value.errors()[0]["loc"] == ("CVM_SELECTOR",)

    def test_invalid_now(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CVM_NOW", "next tuesday")
        with pytest.raises(ValidationError):
            RuntimeSettings(_env_file=None)

    def test_dotenv_in_working_directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        # The autouse fixture runs each test inside tmp_path.
        (tmp_path / ".env").write_text("CVM_SELECTOR=llm\nCVM_OUTPUT_DIR=from_dotenv\nMODEL_ID=qwen2.5\n", encoding="utf-8")
        monkeypatch.setenv("CVM_OUTPUT_DIR", "from_env")
        settings = RuntimeSettings()
        assert settings.selector == "llm"
        assert settings.model_id == "qwen2.5"
        assert settings.output_dir == Path("from_env")  # the environment beats .env

    def test_settings_are_frozen(self) -> None:
        settings = RuntimeSettings(_env_file=None)
        with pytest.raises(ValidationError):
            settings.selector = "llm"


class TestSecrets:
    """A pasted key loses its surrounding whitespace; every secret read is known to the log redactor."""

    @pytest.mark.parametrize("pasted", ["{key}\n", "{key}\r\n", "  {key}  ", "\t{key}"])
    def test_key_is_stripped(self, monkeypatch: pytest.MonkeyPatch, pasted: str) -> None:
        key = f"sk-{uuid.uuid4().hex}"
        monkeypatch.setenv("OPENAI_API_KEY", pasted.format(key=key))
        settings = RuntimeSettings(_env_file=None)
        assert settings.openai_api_key is not None
        assert settings.openai_api_key.get_secret_value() == key

    @pytest.mark.parametrize("blank", ["", "   ", "\n"])
    def test_blank_key_is_no_key(self, monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", blank)
        assert RuntimeSettings(_env_file=None).openai_api_key is None

    def test_key_from_dotenv_is_stripped_and_redacted(self, tmp_path: Path) -> None:
        key = f"sk-{uuid.uuid4().hex}"
        (tmp_path / ".env").write_text(f'OPENAI_API_KEY="{key}  "\n', encoding="utf-8")
        settings = RuntimeSettings()
        assert settings.openai_api_key is not None
        assert settings.openai_api_key.get_secret_value() == key
        assert redact(f"header Bearer {key}") == f"header Bearer {REDACTED}"

    def test_key_with_newline_is_redacted_in_any_form(self, monkeypatch: pytest.MonkeyPatch) -> None:
        key = f"sk-{uuid.uuid4().hex}"
        monkeypatch.setenv("OPENAI_API_KEY", key + "\n")
        RuntimeSettings(_env_file=None)
        for shown in (key, key + "\n", repr(key + "\n"), repr(("Bearer " + key + "\n").encode())):
            assert key not in redact(shown)

    def test_database_password_is_redacted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        password = f"pw-{uuid.uuid4().hex}"
        monkeypatch.setenv("CVM_DB_URL", f"postgresql://cvm:{password}@db.internal:5432/cvm")
        settings = RuntimeSettings(_env_file=None)
        assert redact(f"ledger at {settings.db_url}") == f"ledger at postgresql://cvm:{REDACTED}@db.internal:5432/cvm"

    def test_unparsable_database_url_is_left_to_the_ledger(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CVM_DB_URL", "postgresql://cvm:pw@[::1:5432/cvm")
        assert RuntimeSettings(_env_file=None).db_url == "postgresql://cvm:pw@[::1:5432/cvm"


class TestResolveOutputPath:
    """A bare file name goes under output_dir; a path with a folder is used as given."""

    def test_bare_name_goes_under_output_dir(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CVM_OUTPUT_DIR", "/srv/out")
        assert RuntimeSettings(_env_file=None).resolve_output_path("x.json") == Path("/srv/out/x.json")

    def test_default_output_dir(self) -> None:
        assert RuntimeSettings(_env_file=None).resolve_output_path("cvm_results.json") == Path("output/cvm_results.json")

    @pytest.mark.parametrize("name,expected", [
        ("sub/x.json", Path("sub/x.json")),
        ("/tmp/abs.json", Path("/tmp/abs.json")),
        ("a/b/c.json", Path("a/b/c.json")),
    ])
    def test_paths_with_folders(self, name: str, expected: Path) -> None:
        assert RuntimeSettings(_env_file=None).resolve_output_path(name) == expected
