"""``cvm report`` run as a user runs it: paths and fired triggers on stdout, exit codes, one-line errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

PNG = b"\x89PNG\r\n\x1a\n"


def assert_usage_error(proc, *mentions: str) -> None:
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for mention in mentions:
        assert mention in lines[0], lines[0]


def printed_paths(stdout: str, label: str) -> list[Path]:
    return [Path(line.split(":", 1)[1].strip()) for line in stdout.splitlines() if line.strip().startswith(f"{label}:")]


@pytest.mark.slow
def test_portfolio_and_customer_reports(run_cli, tmp_path):
    processed = run_cli("cvm", "process", "--all-customers", "--run-id", "r1", "--selector", "rules")
    assert processed.returncode == 0, processed.stderr

    proc = run_cli("cvm", "report", "--run-id", "r1")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "output" / "reports" / "r1"
    [markdown] = printed_paths(proc.stdout, "markdown")
    [json_path] = printed_paths(proc.stdout, "json")
    assert (markdown, json_path) == (folder / "report.md", folder / "report.json")
    charts = printed_paths(proc.stdout, "chart")
    assert {c.name for c in charts} == {"decisions_by_treatment.png", "capacity_use.png", "risk_distribution.png"}
    assert all(c.read_bytes()[:8] == PNG for c in charts)
    assert "executive triggers fired (2):" in proc.stdout
    assert "At-risk customers: 3" in proc.stdout and "Pending approvals: 2" in proc.stdout
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    conn = sqlite3.connect(tmp_path / "state" / "cvm.sqlite3")
    recorded = dict(conn.execute("SELECT status, COUNT(*) FROM decisions WHERE run_id = 'r1' GROUP BY status"))
    conn.close()
    assert doc["totals"]["by_status"] == recorded
    performance = markdown.read_text(encoding="utf-8").split("## Agent performance", 1)[1].split("\n## ", 1)[0]
    assert "| DataAgent | get_customer_data | 12 | 0 |" in performance  # `cvm process` saved its agents' stats

    customer = run_cli("cvm", "report", "--run-id", "r1", "--customer", "U128", "--output", "json",
                       "--output-dir", str(tmp_path / "elsewhere"))
    assert customer.returncode == 0, customer.stderr
    artifact = json.loads(customer.stdout)
    assert artifact["view"] == "customer" and artifact["customer_id"] == "U128"
    assert Path(artifact["markdown_path"]) == tmp_path / "elsewhere" / "reports" / "r1" / "customer-U128.md"
    assert artifact["executive_triggers_fired"] == ["pending_approvals"]
    text = Path(artifact["markdown_path"]).read_text(encoding="utf-8")
    assert "## Customer U128" in text and "apr-" in text


@pytest.mark.slow
def test_errors_are_one_line_and_exit_2(run_cli):
    assert run_cli("cvm", "process", "--customer_ids", "U123", "--run-id", "r2", "--selector", "rules").returncode == 0
    assert_usage_error(run_cli("cvm", "report", "--run-id", "no-such-run"), "unknown run id 'no-such-run'")
    assert_usage_error(run_cli("cvm", "report", "--run-id", "r2", "--customer", "U128"), "U128 has no decision in run r2")
    assert_usage_error(run_cli("cvm", "report", "--run-id", "r2", "--customer", "../U123"), "does not match")
    assert_usage_error(run_cli("cvm", "report"), "--run-id")
    assert_usage_error(run_cli("cvm", "report", "--run-id", " "), "--run-id is empty")


@pytest.mark.slow
def test_trend_over_runs(run_cli, tmp_path):
    for run_id, ids in (("t1", "U123,U124,U125"), ("t2", "U126,U127,U128")):
        assert run_cli("cvm", "process", "--customer_ids", ids, "--run-id", run_id, "--selector", "rules").returncode == 0
    assert run_cli("cvm", "report", "--run-id", "t1").returncode == 0  # keeps t1's snapshot
    proc = run_cli("cvm", "report", "--trend")
    assert proc.returncode == 0, proc.stderr
    assert "trend of 2 run(s)" in proc.stdout and "snapshots taken now for 1 run(s)" in proc.stdout
    [markdown] = printed_paths(proc.stdout, "markdown")
    assert markdown == tmp_path / "output" / "reports" / "trend.md"
    text = markdown.read_text(encoding="utf-8")
    assert "| t1 |" in text and "| t2 |" in text and "not yet measured" in text
    as_json = json.loads(run_cli("cvm", "report", "--trend", "--output", "json").stdout)
    assert as_json["runs"] == ["t1", "t2"] and as_json["computed"] == []
    assert_usage_error(run_cli("cvm", "report", "--trend", "--run-id", "t1"), "--trend covers every run")


@pytest.mark.slow
def test_output_table_is_the_human_output_as_on_every_other_command(run_cli):
    """``--output table`` is the default everywhere; ``text`` (the report's old word) stays the same thing."""
    assert run_cli("cvm", "process", "--customer-ids", "U123,U128", "--run-id", "t1", "--selector", "rules").returncode == 0
    outputs = {kind: run_cli("cvm", "report", "--run-id", "t1", "--output", kind) for kind in ("table", "text")}
    assert all(p.returncode == 0 for p in outputs.values()), {k: p.stderr for k, p in outputs.items()}
    assert outputs["table"].stdout.startswith("report (portfolio) of run t1")
    assert outputs["table"].stdout.splitlines()[0] == outputs["text"].stdout.splitlines()[0]
