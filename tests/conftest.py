"""Shared fixtures: the sample data, a temp ledger, a fixed clock, built runtimes, CLI runs.

No test reaches the internet: an autouse fixture points every OpenAI setting at a
closed local port, so only the stub server on 127.0.0.1 (tests/stub_openai.py) can answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
CONFIG = REPO / "config" / "cvm_config.yaml"
AS_OF = "2026-11-23T10:00:00+00:00"
CLOSED_PORT_URL = "http://127.0.0.1:9/v1"

_CVM_ENV = (
    "CVM_DATA_DIR", "CVM_CONFIG", "CVM_CUSTOM_TREATMENTS", "CVM_DB_URL", "CVM_OUTPUT_DIR", "CVM_LOG_DIR",
    "CVM_NOW", "CVM_SELECTOR", "CVM_LOG_LEVEL", "LOG_LEVEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "MODEL_ID",
    "CVM_SMTP_HOST", "CVM_SMTP_PORT", "CVM_SMTP_FROM", "CVM_SMTP_USERNAME", "CVM_SMTP_PASSWORD", "CVM_SMTP_STARTTLS",
    "CVM_SMTP_SSL", "CVM_SMTP_CA_FILE", "CVM_NOTIFY_TO", "CVM_WEBHOOK_URLS", "CVM_WEBHOOK_SECRET", "CVM_NOTIFY_TIMEOUT", "CVM_NOTIFY_RETRIES",
)


@pytest.fixture(autouse=True)
def _no_real_model_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clear CVM/OpenAI variables and run from a temp dir, so no .env or real endpoint leaks in."""
    for name in _CVM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", CLOSED_PORT_URL)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sample_dir() -> Path:
    """The shipped sample data folder (read-only: copy it before changing anything)."""
    return SAMPLE


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample data."""
    target = tmp_path / "data"
    shutil.copytree(SAMPLE, target)
    return target


@pytest.fixture
def config_path() -> Path:
    return CONFIG


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh SQLite ledger file in the test's temp dir."""
    return f"sqlite:///{tmp_path / 'state' / 'cvm.sqlite3'}"


@pytest.fixture
def make_runtime(db_url: str, tmp_path: Path) -> Callable[..., object]:
    """Build a real runtime (file data source, SQLite ledger, fixed clock) with overrides."""
    from cvm.runtime import RunOptions, build_runtime
    from cvm.utils.settings import RuntimeSettings

    def build(**overrides: object):
        settings = RuntimeSettings(_env_file=None)
        values: dict[str, object] = dict(
            data_dir=SAMPLE, config_path=CONFIG, custom_treatments_path=tmp_path / "custom_treatments.json",
            db_url=db_url, selector="rules", as_of=AS_OF,
        )
        values.update(overrides)
        return build_runtime(RunOptions(**values), settings)

    return build


def withdraw_email_marketing(data_dir: Path, customer_id: str) -> None:
    """The customer says N to marketing e-mail in the permissions table."""
    path = data_dir / "permissions.json"
    rows = json.loads(path.read_text(encoding="utf-8"))
    next(r for r in rows if r["customer_id"] == customer_id)["permissions"]["email"]["marketing"] = "N"
    path.write_text(json.dumps(rows), encoding="utf-8")


def isolated_cli_env(folder: Path, db_url: str) -> dict[str, str]:
    """Environment for running the CLIs as a subprocess, every file of theirs inside ``folder``."""
    env = {k: v for k, v in os.environ.items() if k not in _CVM_ENV}
    env.update(
        CVM_DATA_DIR=str(SAMPLE), CVM_CONFIG=str(CONFIG), CVM_DB_URL=db_url,
        CVM_OUTPUT_DIR=str(folder / "output"), CVM_LOG_DIR=str(folder / "logs"),
        CVM_CUSTOM_TREATMENTS=str(folder / "custom_treatments.json"), CVM_NOW=AS_OF,
        OPENAI_BASE_URL=CLOSED_PORT_URL, PYTHONUNBUFFERED="1",
    )
    return env


def run_console_script(script: str, *args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """An installed console script run the way a user would: no terminal, no stdin."""
    return subprocess.run(
        [str(Path(sys.executable).parent / script), *args], capture_output=True, text=True, cwd=cwd,
        env=env, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    """Environment for running the CLIs as a subprocess, isolated in the temp dir."""
    return isolated_cli_env(tmp_path, db_url)


@pytest.fixture
def run_cli(cli_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run an installed console script (``cvm_processor_cli``, ``cvm``) the way a user would."""

    def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_console_script(script, *args, env={**cli_env, **(env or {})}, cwd=tmp_path, timeout=timeout)

    return run


# --- the OpenAI-compatible stub server (tests/stub_openai.py) ----------------------


@pytest.fixture
def llm_stub():
    """A running scripted stub of an OpenAI-compatible endpoint on 127.0.0.1; stopped after the test.

    Script it with ``llm_stub.push(Answer(...), Status(429, ...), ...)`` or set ``llm_stub.default``;
    point a client at ``llm_stub.base_url``.
    """
    from tests.stub_openai import StubOpenAI

    stub = StubOpenAI().start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture
def llm_env(llm_stub) -> dict[str, str]:
    """Environment variables that point a CLI subprocess (``run_cli(..., env=llm_env)``) at ``llm_stub``."""
    return {"OPENAI_BASE_URL": llm_stub.base_url, "OPENAI_API_KEY": "test-key", "MODEL_ID": "stub-model"}


# --- local notification servers (tests/notify_servers.py) ------------------------------


@pytest.fixture
def smtp_server():
    """A running aiosmtpd SMTP server on 127.0.0.1 (no TLS, no login); ``smtp_server.messages`` holds what it accepted."""
    from tests.notify_servers import LocalSMTPServer

    server = LocalSMTPServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def webhook_receiver():
    """A running HTTP receiver on 127.0.0.1 recording POSTs (``webhook_receiver.hits``); ``push(500, ...)`` scripts answers."""
    from tests.notify_servers import WebhookReceiver

    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


class RecordingProgress:
    """A ``Progress`` that remembers each stage as ``[name, total, done]``."""

    def __init__(self) -> None:
        self.stages: list[list[object]] = []

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[object]:
        entry: list = [name, total, 0]
        self.stages.append(entry)

        class Stage:
            def advance(self, amount: int = 1) -> None:
                entry[2] += amount

            def update(self, completed: int) -> None:
                entry[2] = completed

        yield Stage()
