"""The API key against careless shapes and hostile endpoints, through the real CLI and the stub server.

A key pasted with a trailing newline, or echoed back by an endpoint in an error
message or an HTML page, must never reach the console or ``logs/cvm.log``, even
at DEBUG.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.stub_openai import Body, Status, StubOpenAI


def new_key() -> str:
    return f"sk-proj-{uuid.uuid4().hex}"


def everything_logged(proc: CompletedProcess[str], log_dir: Path) -> str:
    """stdout, stderr and every log file (rotated ones included)."""
    files = sorted(log_dir.glob("cvm.log*"))
    assert files, "the run wrote no log file"
    return proc.stdout + proc.stderr + "".join(f.read_text(encoding="utf-8") for f in files)


def run_debug(run_cli: Callable[..., CompletedProcess[str]], llm_env: dict[str, str], key: str) -> CompletedProcess[str]:
    return run_cli("cvm_processor_cli", "--all_customers", "--selector", "llm", "--log_level", "DEBUG",
                   "--output_file", "r.json", env={**llm_env, "OPENAI_API_KEY": key})


class TestKeyNeverLogged:
    def test_key_with_trailing_newline_is_stripped_used_and_never_logged(
        self, run_cli: Callable[..., CompletedProcess[str]], llm_stub: StubOpenAI, llm_env: dict[str, str], tmp_path: Path,
    ) -> None:
        key = new_key()
        proc = run_debug(run_cli, llm_env, key + "\n")
        assert proc.returncode == 0, proc.stderr
        results = json.loads((tmp_path / "output" / "r.json").read_text())["results"]
        assert {r["status"] for r in results} <= {"success", "pending_approval", "no_action"}
        assert "llm" in {r["selector"] for r in results}
        assert llm_stub.request_count > 0
        assert {h["authorization"] for h in llm_stub.request_headers} == {f"Bearer {key}"}
        logged = everything_logged(proc, tmp_path / "logs")
        assert "[debug" in logged  # DEBUG really was on
        assert key not in logged

    @pytest.mark.parametrize(
        "echo",
        [
            lambda key: Status(401, {"x-should-retry": "false"}, f"Incorrect API key provided: {key}"),
            lambda key: Body(f"<html><body>Forbidden for Bearer {key}</body></html>"),
        ],
        ids=["error-message", "html-page"],
    )
    def test_endpoint_echoing_the_key_never_gets_it_logged(
        self, run_cli: Callable[..., CompletedProcess[str]], llm_stub: StubOpenAI, llm_env: dict[str, str], tmp_path: Path,
        echo: Callable[[str], object],
    ) -> None:
        key = new_key()
        llm_stub.default = lambda body: echo(key)
        proc = run_debug(run_cli, llm_env, key + "\n")
        assert proc.returncode == 0, proc.stderr
        assert llm_stub.request_count > 0
        assert key not in everything_logged(proc, tmp_path / "logs")
