"""The flow runner: parallel stages, retries with backoff, stop/continue, persistence, resume; the standard flows end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from cvm.agents.messages import ErrorResponse
from cvm.flows.catalog import ActionCatalog
from cvm.flows.runner import FlowRunner
from cvm.flows.store import FlowStore
from cvm.flows.testing import FlowTestCase
from cvm.flows.validate import load_flow
from cvm.tools.ledger import SQLiteLedger
from cvm.utils.errors import FlowError
from tests.conftest import AS_OF, CONFIG, SAMPLE

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "config" / "flows"


@pytest.fixture
def flow_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def case(db_url: str, tmp_path: Path) -> Callable[..., FlowTestCase]:
    made: list[FlowTestCase] = []

    def make(path: Path, **kwargs: object) -> FlowTestCase:
        options: dict[str, object] = dict(
            data_dir=SAMPLE, config=CONFIG, custom_treatments=tmp_path / "custom.json", db_url=db_url, as_of=AS_OF,
        )
        options.update(kwargs)
        made.append(FlowTestCase(path, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for c in made:
        c.close()


def timed(log: dict[str, tuple[float, float]], name: str, answer: dict, seconds: float = 0.3) -> Callable[[dict], dict]:
    def call(message: dict) -> dict:
        start = time.monotonic()
        time.sleep(seconds)
        log[name] = (start, time.monotonic())
        return answer

    return call


FAN_OUT = """
    flow_id: fan_out
    steps:
      - {id: load, agent: data, action: list_customers}
      - {id: fuse, agent: insight, action: fuse_signals, depends_on: [load], parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
      - {id: forecast, agent: insight, action: forecast_churn, depends_on: [load], parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
      - {id: pending, agent: governance, action: list_approvals, depends_on: [load], parameters: {status: pending}}
      - {id: join, agent: governance, action: list_approvals, depends_on: [fuse, forecast, pending]}
"""


class TestParallel:
    """Independent steps really run at the same time, bounded by max_parallel."""

    def test_independent_steps_overlap(self, flow_file, case):
        log: dict[str, tuple[float, float]] = {}
        c = (
            case(flow_file(FAN_OUT))
            .script("data", "list_customers", {"customer_ids": ["U123", "U124"]})
            .script("insight", "fuse_signals", timed(log, "fuse", {"at_risk": []}))
            .script("insight", "forecast_churn", timed(log, "forecast", {"rising": []}))
            .script_step("pending", timed(log, "pending", {"requests": []}))
        )
        run = c.run()
        assert run.status == "succeeded"
        starts = [log[n][0] for n in ("fuse", "forecast", "pending")]
        ends = [log[n][1] for n in ("fuse", "forecast", "pending")]
        assert max(starts) < min(ends), f"the three middle steps did not overlap: {log}"
        assert c.calls("insight", "fuse_signals") == [{"type": "fuse_signals", "customer_ids": ["U123", "U124"]}]
        join = run.step("join")
        assert join.started_at is not None and join.started_at >= max(run.step(s).finished_at for s in ("fuse", "forecast", "pending"))

    def test_max_parallel_one_runs_them_one_by_one(self, flow_file, case):
        log: dict[str, tuple[float, float]] = {}
        c = (
            case(flow_file(FAN_OUT), max_parallel=1)
            .script("data", "list_customers", {"customer_ids": []})
            .script("insight", "fuse_signals", timed(log, "fuse", {}, 0.05))
            .script("insight", "forecast_churn", timed(log, "forecast", {}, 0.05))
            .script_step("pending", timed(log, "pending", {}, 0.05))
        )
        assert c.run().status == "succeeded"
        spans = sorted(log.values())
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


RETRY = """
    flow_id: retry
    error_handling:
      default_strategy: retry
      retry_count: 3
      backoff: {initial_seconds: 0.5, multiplier: 3, max_seconds: 1}
    steps:
      - {id: load, agent: data, action: list_customers}
      - {id: fuse, agent: insight, action: fuse_signals, depends_on: [load], parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
"""


class TestRetries:
    """A failing step is retried with backoff; failures a retry cannot fix are not retried."""

    def test_fails_twice_then_succeeds(self, flow_file, case, db_url):
        waits: list[float] = []
        c = case(flow_file(RETRY), sleep=waits.append).script(
            "data", "list_customers",
            RuntimeError("database is locked"),
            ErrorResponse(error_type="data_error", message="file share not mounted"),
            {"customer_ids": ["U123"]},
        )
        run = c.run()
        assert run.status == "succeeded"
        load = run.step("load")
        assert (load.status, load.attempts, load.error) == ("succeeded", 3, None)
        assert waits == [0.5, 1.0]  # 0.5 * 3 = 1.5, capped at max_seconds
        assert len(c.calls("data", "list_customers")) == 3
        assert run.output("fuse")["customer_ids"] == ["U123"]  # the real insight agent, on the retried step's output

    @pytest.mark.slow
    def test_retries_run_out(self, flow_file, case):
        waits: list[float] = []
        c = case(flow_file(RETRY), sleep=waits.append).script("data", "list_customers", RuntimeError("down"))
        run = c.run()
        assert run.status == "failed"
        assert (run.step("load").attempts, run.step("load").error) == (4, "internal error (RuntimeError: down)")
        assert waits == [0.5, 1.0, 1.0]
        assert run.step("fuse").status == "skipped"
        assert run.error == "step 'load' failed: internal error (RuntimeError: down)"

    def test_real_backoff_is_waited(self, flow_file, case):
        path = flow_file(RETRY.replace("initial_seconds: 0.5, multiplier: 3, max_seconds: 1", "initial_seconds: 0.2, multiplier: 1, max_seconds: 1"))
        c = case(path).script("data", "list_customers", RuntimeError("x"), {"customer_ids": []})
        start = time.monotonic()
        assert c.run().status == "succeeded"
        assert time.monotonic() - start >= 0.2

    def test_invalid_message_is_not_retried(self, flow_file, case):
        path = flow_file("""
            flow_id: bad_ids
            error_handling: {default_strategy: retry, retry_count: 3, backoff: none}
            steps:
              - {id: load, agent: data, action: list_customers}
              - {id: fuse, agent: insight, action: fuse_signals, depends_on: [load], parameters: {customer_ids: "${steps.load.output.customer_ids}"}}
        """)
        run = case(path).script("data", "list_customers", {"customer_ids": 42}).run()
        fuse = run.step("fuse")
        assert (fuse.status, fuse.attempts) == ("failed", 1)
        assert fuse.error.startswith("invalid_message: InsightAgent: fuse_signals message field customer_ids")

    def test_unresolvable_reference_fails_the_step_once(self, flow_file, case):
        run = case(flow_file(RETRY), sleep=lambda s: None).script("data", "list_customers", {"ids": []}).run()
        fuse = run.step("fuse")
        assert (fuse.status, fuse.attempts) == ("failed", 1)
        assert fuse.error == "unresolved reference ${steps.load.output.customer_ids}: no 'customer_ids' there (it has: ids)"


BRANCHES = """
    flow_id: branches
    error_handling: {default_strategy: STRATEGY}
    steps:
      - {id: a, agent: data, action: list_customers}
      - {id: b, agent: insight, action: fuse_signals, depends_on: [a]}
      - {id: c, agent: insight, action: forecast_churn, depends_on: [b]}
      - {id: x, agent: governance, action: list_approvals}
      - {id: y, agent: governance, action: list_approvals, depends_on: [x]}
"""


class TestStopAndContinue:
    """stop fails the run and skips what did not start; continue skips only the failed step's dependents."""

    def test_stop(self, flow_file, case):
        c = (
            case(flow_file(BRANCHES.replace("STRATEGY", "stop")), max_parallel=1)
            .script("data", "list_customers", {"customer_ids": []})
            .script("insight", "fuse_signals", ErrorResponse(error_type="data_error", message="no journeys"))
        )
        run = c.run()
        assert run.status == "failed"
        status = {sid: s.status for sid, s in run.steps.items()}
        assert status["b"] == "failed"
        assert status["c"] == "skipped" and run.step("c").error == "not started: the run stopped after step 'b' failed"
        assert (status["x"], status["y"]) == ("succeeded", "skipped")  # one at a time: x ran before b, y was not started
        assert run.error == "step 'b' failed: data_error: no journeys"

    def test_continue(self, flow_file, case):
        c = (
            case(flow_file(BRANCHES.replace("STRATEGY", "continue")))
            .script("data", "list_customers", {"customer_ids": []})
            .script("insight", "fuse_signals", ErrorResponse(error_type="data_error", message="no journeys"))
        )
        run = c.run()
        assert run.status == "partial"
        assert {sid: s.status for sid, s in run.steps.items()} == {
            "a": "succeeded", "x": "succeeded", "b": "failed", "y": "succeeded", "c": "skipped",
        }
        assert run.step("c").error == "skipped: step 'b' failed"
        assert [e.step_id for e in c.events if e.status == "skipped"] == ["c"]

    def test_step_override(self, flow_file, case):
        path = flow_file(BRANCHES.replace("STRATEGY", "stop").replace(
            "{id: b, agent: insight, action: fuse_signals, depends_on: [a]}",
            "{id: b, agent: insight, action: fuse_signals, depends_on: [a], error_handling: {strategy: continue}}",
        ))
        c = case(path).script("insight", "fuse_signals", RuntimeError("x"))
        run = c.run()
        assert run.status == "partial" and run.step("y").status == "succeeded"


class TestResume:
    """Resume keeps succeeded steps (their stored outputs), re-runs the rest, refuses what it must."""

    def test_resume_after_failure_reruns_only_what_did_not_succeed(self, flow_file, case):
        calls = {"n": 0}

        def flaky(message: dict) -> dict:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("upstream outage")
            return {"at_risk": [], "ok": True}

        c = case(flow_file(BRANCHES.replace("STRATEGY", "stop")), max_parallel=1).script("insight", "fuse_signals", flaky)
        first = c.run()
        assert first.status == "failed"
        kept = first.step("a")
        again = c.resume(first.run_id)
        assert again.status == "succeeded" and again.resumes == 1
        assert (again.step("a").started_at, again.step("a").attempts, again.step("a").output_digest) == (
            kept.started_at, kept.attempts, kept.output_digest,
        )
        assert again.output("b") == {"at_risk": [], "ok": True}
        assert calls["n"] == 2

    def test_refuses_a_succeeded_run(self, flow_file, case):
        c = case(flow_file(FAN_OUT))
        run = c.run()
        with pytest.raises(FlowError, match=f"run {run.run_id} already succeeded; nothing to resume"):
            c.resume(run.run_id)

    def test_refuses_a_changed_flow_file(self, flow_file, case):
        path = flow_file(BRANCHES.replace("STRATEGY", "stop"))
        c = case(path).script("insight", "fuse_signals", RuntimeError("x"))
        run = c.run()
        path.write_text(path.read_text() + "\n# edited\n")
        with pytest.raises(FlowError, match="changed since run .* started .*restore the file, or start a new run"):
            c.resume(run.run_id)

    def test_refuses_a_run_whose_process_is_alive(self, flow_file, case, db_url):
        c = case(flow_file(FAN_OUT))
        run = c.run()
        store = FlowStore.from_url(db_url)
        with store._transaction() as conn:  # as if another live process (our parent) were still running it
            conn.execute("UPDATE flow_runs SET status = 'running', owner = ? WHERE run_id = ?",
                         (f"{socket.gethostname()}:{os.getppid()}", run.run_id))
        with pytest.raises(FlowError, match=f"still running in process .*:{os.getppid()}"):
            c.resume(run.run_id)

    def test_run_marked_running_on_another_host_needs_force(self, flow_file, case, db_url):
        path = flow_file(BRANCHES.replace("STRATEGY", "stop"))
        c = case(path).script("insight", "fuse_signals", RuntimeError("x"))
        run = c.run()
        store = FlowStore.from_url(db_url)
        with store._transaction() as conn:
            conn.execute("UPDATE flow_runs SET status = 'running', owner = 'elsewhere:42' WHERE run_id = ?", (run.run_id,))
        with pytest.raises(FlowError, match="marked running by elsewhere:42 on another host; if that process is gone, resume with --force"):
            c.resume(run.run_id)
        c.script("insight", "fuse_signals", {"at_risk": []})
        assert c._runner(run.run_id).resume(run.run_id, force=True).status == "succeeded"

    def test_crash_inside_a_processing_step_does_not_allocate_twice(self, flow_file, case, db_url):
        """A step killed after it allocated but before its row said so is re-run: the ledger replays, takes nothing."""
        path = flow_file("""
            flow_id: decide
            steps:
              - {id: load, agent: data, action: list_customers}
              - {id: decide, agent: orchestrator, action: process_batch, depends_on: [load],
                 parameters: {customer_ids: "${steps.load.output.customer_ids}", run_id: "${run.id}"}}
        """)
        c = case(path)
        run = c.run()
        ledger = SQLiteLedger.from_url(db_url)
        before = ledger.allocations(run_id=run.run_id)
        assert before and run.status == "succeeded"
        store = FlowStore.from_url(db_url)
        gone = subprocess.Popen(["true"])
        gone.wait()
        with store._transaction() as conn:  # what a SIGKILL in the middle of 'decide' leaves behind
            conn.execute("UPDATE flow_runs SET status = 'running', finished_at = NULL, owner = ? WHERE run_id = ?",
                         (f"{socket.gethostname()}:{gone.pid}", run.run_id))
            conn.execute("UPDATE flow_steps SET status = 'running', output_json = NULL, output_digest = NULL"
                         " WHERE run_id = ? AND step_id = 'decide'", (run.run_id,))
        again = c.resume(run.run_id)
        assert again.status == "succeeded"
        assert again.step("load").started_at == run.step("load").started_at
        assert ledger.allocations(run_id=run.run_id) == before
        assert all(r["replayed"] for r in again.output("decide")["results"])


class TestFlowTestCase:
    """Scripting agents the runtime does not have, and the ledger audit of runs."""

    def test_script_an_agent_that_does_not_exist_yet(self, flow_file, case):
        path = flow_file("""
            flow_id: future
            steps:
              - {id: load, agent: data, action: list_customers}
              - {id: score, agent: propensity, action: score, depends_on: [load], parameters: {ids: "${steps.load.output.customer_ids}"}}
        """)
        run = case(path).script("propensity", "score", lambda m: {"scores": {cid: 0.5 for cid in m["ids"]}}).run()
        assert run.output("score")["scores"]["U123"] == 0.5

    def test_unscripted_unknown_agent_is_a_validation_error(self, flow_file, case):
        path = flow_file("flow_id: x\nsteps:\n  - {id: a, agent: propensity, action: score}\n")
        with pytest.raises(FlowError, match="step 'a': unknown agent 'propensity'"):
            case(path).run()

    def test_runs_are_audited_in_the_ledger(self, flow_file, case, db_url):
        run = case(flow_file(FAN_OUT)).run()
        events = [e["event"] for e in SQLiteLedger.from_url(db_url).audit_entries(run_id=run.run_id)]
        assert events == ["flow_run_started", "flow_run_finished"]

    def test_a_run_id_is_used_once(self, flow_file, case):
        """Two runs never share an id (allocations are keyed by run and customer)."""
        c = case(flow_file(FAN_OUT))
        first = c.run()
        with pytest.raises(FlowError, match=f"run {first.run_id} already exists"):
            c.run(run_id=first.run_id)

    def test_runner_refuses_invalid_parallelism(self, flow_file, make_runtime, db_url):
        rt = make_runtime()
        loaded = load_flow(flow_file(FAN_OUT), ActionCatalog.from_agents(rt.agents()))
        with pytest.raises(FlowError, match="--max-parallel must be 1-64"):
            FlowRunner(loaded, rt.agents(), FlowStore.from_url(db_url), max_parallel=0)


class TestStandardFlows:
    """Each shipped flow runs end to end on the sample data with a temp ledger."""

    def test_daily_cvm_cycle(self, case, db_url, tmp_path):
        c = case(FLOWS / "daily_cvm_cycle.yaml")
        run = c.run(inputs={"horizon_days": 60})
        assert run.status == "succeeded", run.error
        assert [s.step_id for s in run.steps.values()] == ["goal", "plan", "load", "signals", "forecast", "decide", "approvals", "report"]
        load = run.output("load")["customer_ids"]
        assert load == [f"U{n}" for n in range(123, 135)]
        assert run.output("forecast")["horizon_days"] == 60
        decided = run.output("decide")
        assert decided["run_id"] == run.run_id and [r["customer_id"] for r in decided["results"]] == load
        assert run.output("plan")["plan"]["stages"] == [["goal"], ["plan"], ["load"], ["signals", "forecast", "decide"], ["approvals"], ["report"]]
        report = run.output("report")
        assert report["run_id"] == run.run_id and report["customers"] == 12
        assert Path(report["markdown_path"]).is_file()
        pending = {r["customer_id"] for r in run.output("approvals")["requests"]}
        assert pending == {r["customer_id"] for r in decided["results"] if r["status"] == "pending_approval"}
        assert len(SQLiteLedger.from_url(db_url).allocations(run_id=run.run_id)) == sum(
            1 for r in decided["results"] if r["status"] in ("success", "pending_approval")
        )

    def test_churn_prevention(self, case):
        run = case(FLOWS / "churn_prevention.yaml").run()
        assert run.status == "succeeded", run.error
        at_risk = [a["customer_id"] for a in run.output("signals")["at_risk"]]
        assert at_risk and all(a["churn_probability"] >= 0.6 for a in run.output("signals")["at_risk"])
        assert [r["customer_id"] for r in run.output("retain")["results"]] == at_risk
        assert [t["customer_id"] for t in run.output("trajectory")["customers"]] == at_risk

    def test_network_issue_outreach(self, case):
        run = case(FLOWS / "network_issue_outreach.yaml").run()
        assert run.status == "succeeded", run.error
        matches = [m["customer_id"] for m in run.output("find")["matches"]]
        assert "U123" in matches
        results = {r["customer_id"]: r for r in run.output("outreach")["batch"]["results"]}
        assert set(results) == set(matches)
        assert results["U123"]["selected_treatment"] == "service_sms" and results["U123"]["status"] == "success"
        assert all(r["selected_treatment"] in ("service_sms", "ignore") for r in results.values())

    def test_renewal_management(self, case):
        run = case(FLOWS / "renewal_management.yaml").run()
        assert run.status == "succeeded", run.error
        matches = [m["customer_id"] for m in run.output("candidates")["matches"]]
        assert "U134" in matches or "U128" in matches
        results = run.output("propose")["batch"]["results"]
        assert {r["customer_id"] for r in results} == set(matches)
        pending = [r for r in results if r["status"] == "pending_approval"]
        assert pending and all(r["selected_treatment"] == "early_upgrade" and r["approval_request_id"] for r in pending)
        assert all(r["selected_treatment"] in ("early_upgrade", "ignore") for r in results)
        listed = {a["request_id"] for a in run.output("approvals")["requests"]}
        assert {r["approval_request_id"] for r in pending} <= listed


def test_started_at_reference_is_the_run_clock(flow_file, case):
    path = flow_file("""
        flow_id: clock
        steps:
          - {id: a, agent: governance, action: get_approval, parameters: {request_id: "apr-${run.started_at}"}}
    """)
    c = case(path).script("governance", "get_approval", lambda m: {"seen": m["request_id"]})
    run = c.run()
    assert run.output("a") == {"seen": f"apr-{datetime.fromisoformat(AS_OF).isoformat()}"}
