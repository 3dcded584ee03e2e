"""``cvm flows``, run as a user would: exit codes, one-line errors, and a run killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cvm.flows.store import FlowStore
from cvm.tools.ledger import SQLiteLedger

REPO = Path(__file__).resolve().parents[2]
DAILY = str(REPO / "config" / "flows" / "daily_cvm_cycle.yaml")

SMALL = """
    flow_id: small
    description: Load and fuse
    inputs:
      horizon_days: {default: 90, type: integer}
    steps:
      - {id: load, agent: data, action: list_customers}
      - {id: forecast, agent: insight, action: forecast_churn, depends_on: [load],
         parameters: {customer_ids: "${steps.load.output.customer_ids}", horizon_days: "${inputs.horizon_days}"}}
"""

FAILING = """
    flow_id: failing
    steps:
      - {id: load, agent: data, action: list_customers}
      - {id: lookup, agent: data, action: get_customer_data, parameters: {customer_id: U999}}
      - {id: after, agent: governance, action: list_approvals, depends_on: [lookup]}
"""

INVALID = """
    flow_id: invalid
    steps:
      - {id: load, agent: data, action: list_customer}
      - {id: fuse, agent: insight, action: fuse_signals, parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
"""


def write(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


class TestValidateAndPlan:
    """validate and plan read the flow against the real agent registry."""

    @pytest.mark.slow
    def test_validate_standard_flow(self, run_cli):
        done = run_cli("cvm", "flows", "validate", DAILY)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            "valid: flow daily_cvm_cycle version 1: 8 step(s) in 6 stage(s); schedule cron(0 6 * * ? *), next 2026-11-24T06:00:00+00:00"
        )

    @pytest.mark.slow
    def test_validate_lists_every_problem(self, run_cli, tmp_path):
        path = write(tmp_path, INVALID, "invalid.yaml")
        done = run_cli("cvm", "flows", "validate", path)
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            f"error: {path}: step 'fuse': ${{steps.load.output.customer_ids}} reads step 'load', which is not upstream of it; "
            "add 'load' to its depends_on (directly or through a step that depends on it)",
            f"error: {path}: step 'load': agent 'data' has no action 'list_customer'; did you mean 'list_customers'? "
            "known actions of data: check_customer_ids, clear_cache, get_customer_data, list_customers",
        ]

    @pytest.mark.slow
    def test_plan_json(self, run_cli):
        done = run_cli("cvm", "flows", "plan", DAILY, "--output", "json")
        assert done.returncode == 0, done.stderr
        plan = json.loads(done.stdout)
        assert plan["goal"].startswith("Give every customer today's next best treatment")
        assert [s["id"] for s in plan["steps"]] == ["goal", "plan", "load", "signals", "forecast", "decide", "approvals", "report"]
        assert plan["steps"][5]["outputs"][1]["field"] == "results" and plan["steps"][5]["depends_on"] == ["load"]

    def test_next_times_of_an_aws_schedule(self, run_cli):
        done = run_cli("cvm", "flows", "next", str(REPO / "config" / "flows" / "network_issue_outreach.yaml"),
                       "--count", "3", "--as-of", "2026-11-27T17:30:00")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[1:] == ["2026-11-27T18:15:00+00:00", "2026-11-30T08:15:00+00:00", "2026-11-30T09:15:00+00:00"]


class TestRun:
    """run prints each step as it finishes and exits 0 / 1 / 2; runs and show read the record back."""

    @pytest.mark.slow
    def test_run_then_runs_and_show(self, run_cli, tmp_path):
        path = write(tmp_path, SMALL, "small.yaml")
        done = run_cli("cvm", "flows", "run", path, "--param", "horizon_days=30", "--run-id", "small-1")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "run small-1: flow small version 1, 2 step(s); if it stops: cvm flows resume small-1"
        assert lines[1].split()[:3] == ["ok", "load", "data.list_customers"]
        assert lines[2].split()[:3] == ["ok", "forecast", "insight.forecast_churn"]
        assert lines[3].startswith("run small-1 succeeded: 2 succeeded in ")
        shown = run_cli("cvm", "flows", "show", "small-1", "--output", "json")
        record = json.loads(shown.stdout)
        assert record["status"] == "succeeded" and record["inputs"] == {"horizon_days": 30}
        forecast = record["steps"][1]
        assert forecast["output"]["horizon_days"] == 30 and len(forecast["output_digest"]) == 64 and forecast["attempts"] == 1

    @pytest.mark.slow
    def test_failed_run_exits_1_with_the_error(self, run_cli, tmp_path, db_url):
        path = write(tmp_path, FAILING, "failing.yaml")
        done = run_cli("cvm", "flows", "run", path, "--run-id", "fail-1")
        assert done.returncode == 1, done.stderr
        assert "FAILED   lookup" in done.stdout
        assert "skipped  after" in done.stdout and "not started: the run stopped after step 'lookup' failed" in done.stdout
        assert "fix the cause, then: cvm flows resume fail-1" in done.stdout
        record = FlowStore.from_url(db_url).require_run("fail-1")
        assert record.status == "failed"
        assert record.error.startswith("step 'lookup' failed: unknown_customer: unknown customer U999")
        listed = run_cli("cvm", "flows", "runs", "--output", "json")
        assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [("fail-1", "failed")]

    @pytest.mark.slow
    def test_invalid_flow_is_one_line_and_exit_2(self, run_cli, tmp_path):
        path = write(tmp_path, INVALID, "invalid.yaml")
        done = run_cli("cvm", "flows", "run", path)
        assert done.returncode == 2
        line = one_line(done.stderr)
        assert line.startswith(f"error: {path}: step 'fuse': ${{steps.load.output.customer_ids}} reads step 'load'")
        assert line.endswith(f"(and 1 more problem(s): 'cvm flows validate {path}' lists them)")

    @pytest.mark.slow
    def test_bad_param_and_bad_resume_are_usage_errors(self, run_cli, tmp_path):
        path = write(tmp_path, SMALL, "small.yaml")
        done = run_cli("cvm", "flows", "run", path, "--param", "days=3")
        assert done.returncode == 2
        assert one_line(done.stderr) == "error: flow small has no input 'days'; its inputs are: horizon_days"
        done = run_cli("cvm", "flows", "resume", "no-such-run")
        assert done.returncode == 2
        assert one_line(done.stderr) == "error: no flow run 'no-such-run'; see 'cvm flows runs'"


KILLABLE = """
    flow_id: killable
    description: Decide for three customers, pause, decide for three more (one of them again)
    inputs:
      pause: {default: 3, type: number}
    steps:
      - {id: load, agent: data, action: list_customers}
      - {id: first, agent: orchestrator, action: process_batch, depends_on: [load],
         parameters: {customer_ids: [U123, U125, U129], run_id: "${run.id}"}}
      - {id: pause, agent: flow, action: wait, depends_on: [first], parameters: {seconds: "${inputs.pause}"}}
      - {id: rest, agent: orchestrator, action: process_batch, depends_on: [pause],
         parameters: {customer_ids: [U123, U126, U132], run_id: "${run.id}"}}
"""


def run_until_paused(
    path: str, run_id: str, cli_env: dict[str, str], tmp_path: Path, db_url: str, *params: str,
) -> tuple[subprocess.Popen[str], FlowStore]:
    """``cvm flows run`` as a user starts it, returned once its ``pause`` step is running (killed if it never gets there)."""
    cvm = str(Path(sys.executable).parent / "cvm")
    proc = subprocess.Popen(
        [cvm, "flows", "run", path, "--run-id", run_id, *params], cwd=tmp_path, env=cli_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    store = FlowStore.from_url(db_url)
    deadline = time.monotonic() + 60
    while True:
        run = store.run(run_id)
        if run is not None and run.step("pause").status == "running":
            return proc, store
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached its pause step: {proc.communicate()}")
        time.sleep(0.02)


@pytest.mark.slow
def test_ctrl_c_during_a_pause_stops_at_once_and_leaves_the_run_resumable(cli_env, tmp_path, db_url):
    """Ctrl-C sat out the rest of a wait step (up to an hour) before the command ended."""
    path = write(tmp_path, KILLABLE, "killable.yaml")
    proc, store = run_until_paused(path, "ctrl-c", cli_env, tmp_path, db_url, "--param", "pause=300")
    interrupted_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Ctrl-C did not end the run within 60 s of a 300 s pause")
    assert proc.returncode == 130 and time.monotonic() - interrupted_at < 60
    stopped = store.require_run("ctrl-c")
    assert stopped.status == "running"  # as after a kill: `cvm flows resume ctrl-c` takes it from here
    assert {sid: s.status for sid, s in stopped.steps.items()} == {
        "load": "succeeded", "first": "succeeded", "pause": "running", "rest": "pending",
    }
    assert stopped.step("pause").attempts == 1 and stopped.step("pause").error is None


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_reruns_no_completed_step(run_cli, cli_env, tmp_path, db_url):
    """kill -9 while the third step runs; resume finishes the run without re-running or re-allocating anything."""
    path = write(tmp_path, KILLABLE, "killable.yaml")
    proc, store = run_until_paused(path, "kill-1", cli_env, tmp_path, db_url)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    killed = store.require_run("kill-1")
    assert killed.status == "running"
    assert {sid: s.status for sid, s in killed.steps.items()} == {
        "load": "succeeded", "first": "succeeded", "pause": "running", "rest": "pending",
    }
    ledger = SQLiteLedger.from_url(db_url)
    allocated_before = {a["customer_id"]: a for a in ledger.allocations(run_id="kill-1")}
    assert set(allocated_before) <= {"U123", "U125", "U129"} and allocated_before

    done = run_cli("cvm", "flows", "resume", "kill-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "resuming run kill-1 (flow killable); kept: load, first"
    printed = [line.split()[1] for line in done.stdout.splitlines()[1:] if line.startswith("  ok")]
    assert printed == ["pause", "rest"]

    resumed = store.require_run("kill-1")
    assert resumed.status == "succeeded" and resumed.resumes == 1
    for sid in ("load", "first"):
        before, after = killed.step(sid), resumed.step(sid)
        assert (after.started_at, after.finished_at, after.attempts, after.output_digest) == (
            before.started_at, before.finished_at, before.attempts, before.output_digest,
        )
    assert resumed.step("pause").attempts == 1 and resumed.step("pause").started_at > killed.step("pause").started_at

    allocations = ledger.allocations(run_id="kill-1")
    by_customer = {a["customer_id"]: a for a in allocations}
    assert len(by_customer) == len(allocations)  # one allocation per customer and run, whatever ran twice
    for cid, row in allocated_before.items():
        assert by_customer[cid] == row  # the allocations made before the kill are untouched
    rest = {r["customer_id"]: r for r in resumed.output("rest")["results"]}
    assert rest["U123"]["replayed"] is True  # decided in 'first', so replayed, not allocated again
