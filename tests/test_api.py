"""The README's programmatic example, run exactly as written, and the dict-style reads it relies on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using CVM from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "the README lost its Python example"
    return match.group(1)


def test_the_readme_example_runs_as_written(cli_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_python_example(), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=cli_env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "matched: ['U123', 'U130']"
    assert lines[1] == "U123 success service_call_back"
    assert lines[2].startswith("Service Call-Back was proposed by the analyst")
    roaming = [line.split() for line in lines[3:]]
    assert [row[0] for row in roaming] == ["U126"]
    assert roaming[0][1] in ("success", "pending_approval", "no_action")
    assert done.stderr == ""  # quiet like the CLI: no log lines on the console at the default level


def test_the_environment_builds_the_orchestrator(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]) -> None:
    for name in ("CVM_DATA_DIR", "CVM_CONFIG", "CVM_DB_URL", "CVM_NOW", "CVM_CUSTOM_TREATMENTS"):
        monkeypatch.setenv(name, cli_env[name])
    from cvm import OrchestratorAgent, get_all_customer_ids

    ids = get_all_customer_ids()
    assert ids[0] == "U123" and len(ids) == 12
    orchestrator = OrchestratorAgent(dry_run=True)
    result = orchestrator.process({"type": "process_customer", "customer_id": "U124"})
    assert result["status"] == result.status
    assert result.get("no_such_field", "fallback") == "fallback"
    assert "selected_treatment" in result and "no_such_field" not in result
    with pytest.raises(KeyError):
        result["no_such_field"]


def test_a_bad_plain_dict_message_is_an_error_response(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]) -> None:
    for name in ("CVM_DATA_DIR", "CVM_CONFIG", "CVM_DB_URL", "CVM_NOW", "CVM_CUSTOM_TREATMENTS"):
        monkeypatch.setenv(name, cli_env[name])
    from cvm import OrchestratorAgent

    response = OrchestratorAgent(dry_run=True).process({"type": "process_customer_with_treatment", "customer_id": "U123"})
    assert response["error_type"] == "invalid_message"
    assert "treatment_key" in response["message"] or "treatment_id" in response["message"]


def test_the_python_orchestrator_takes_the_batch_path_at_the_threshold(
    monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str], tmp_path: Path
) -> None:
    import sqlite3

    import yaml

    for name in ("CVM_DATA_DIR", "CVM_DB_URL", "CVM_NOW", "CVM_CUSTOM_TREATMENTS"):
        monkeypatch.setenv(name, cli_env[name])
    config = yaml.safe_load((REPO / "config" / "cvm_config.yaml").read_text(encoding="utf-8"))
    config["batch"] = {**config.get("batch", {}), "auto_threshold": 3}
    low = tmp_path / "low.yaml"
    low.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("CVM_CONFIG", str(low))
    from cvm import OrchestratorAgent

    result = OrchestratorAgent().process({"type": "process_batch", "customer_ids": ["U123", "U124", "U125"]})
    assert [r["customer_id"] for r in result["results"]] == ["U123", "U124", "U125"]
    db = cli_env["CVM_DB_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_log WHERE event = 'batch_committed'").fetchone()[0] == 1
