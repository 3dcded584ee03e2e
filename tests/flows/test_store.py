"""The flow-run store: runs and steps in the ledger's SQLite file, written as they move, resumable."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cvm.flows.store import FlowStore, NewRun, NewStep, canonical_json, digest
from cvm.tools.ledger import SQLiteLedger
from cvm.utils.errors import FlowError

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def new_run(run_id: str = "run-1", flow_id: str = "demo") -> NewRun:
    return NewRun(
        run_id=run_id, flow_id=flow_id, flow_version="1", flow_file="/flows/demo.yaml", flow_digest="abc",
        inputs={"horizon_days": 30}, options={"data_dir": "/data"}, run_clock=T0.isoformat(), owner="host:1",
    )


STEPS = [NewStep("load", "data", "list_customers", ()), NewStep("fuse", "insight", "fuse_signals", ("load",))]


@pytest.fixture
def store(db_url: str) -> FlowStore:
    return FlowStore.from_url(db_url)


class TestRuns:
    """A run and its steps are recorded at once, every step pending."""

    def test_create(self, store: FlowStore):
        run = store.create_run(new_run(), STEPS)
        assert run.status == "running" and run.inputs == {"horizon_days": 30} and run.options == {"data_dir": "/data"}
        assert [s.step_id for s in run.steps.values()] == ["load", "fuse"]
        assert {s.status for s in run.steps.values()} == {"pending"}
        assert run.step("fuse").depends_on == ("load",)

    def test_run_id_is_used_once(self, store: FlowStore):
        store.create_run(new_run(), STEPS)
        with pytest.raises(FlowError, match="run run-1 already exists .*cvm flows resume run-1"):
            store.create_run(new_run(), STEPS)

    def test_unknown_run(self, store: FlowStore):
        assert store.run("nope") is None
        with pytest.raises(FlowError, match="no flow run 'nope'; see 'cvm flows runs'"):
            store.require_run("nope")

    def test_list_newest_first_and_filter(self, store: FlowStore):
        store.create_run(new_run("a", "one"), STEPS)
        store.create_run(new_run("b", "two"), STEPS)
        store.finish_run("a", "succeeded")
        assert [r.run_id for r in store.runs()] == ["b", "a"]
        assert [r.run_id for r in store.runs(flow_id="one")] == ["a"]
        assert [r.run_id for r in store.runs(status="succeeded")] == ["a"]
        assert [r.run_id for r in store.runs(limit=1)] == ["b"]

    def test_shares_the_ledger_file(self, store: FlowStore, db_url: str):
        ledger = SQLiteLedger.from_url(db_url)
        ledger.audit("hello", {}, T0)
        store.create_run(new_run(), STEPS)
        path = Path(db_url.removeprefix("sqlite:///"))
        tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"flow_runs", "flow_steps", "allocations", "audit_log"} <= tables
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


class TestSteps:
    """A step's row moves pending -> running -> succeeded/failed/skipped, with attempts, timing, output and digest."""

    def test_success_stores_output_and_its_digest(self, store: FlowStore):
        store.create_run(new_run(), STEPS)
        store.step_started("run-1", "load", 1, T0)
        assert store.require_run("run-1").step("load").status == "running"
        output = {"customer_ids": ["U1", "U2"], "type": "customer_list"}
        sha = store.step_finished("run-1", "load", status="succeeded", attempts=1, started_at=T0,
                                  finished_at=T0 + timedelta(seconds=1.5), output=output)
        step = store.require_run("run-1").step("load")
        assert step.status == "succeeded" and step.output == output and step.duration_seconds == 1.5
        assert sha == step.output_digest == hashlib.sha256(canonical_json(output).encode()).hexdigest() == digest(output)
        assert step.started_at == T0.isoformat() and step.error is None

    def test_failed_attempts_then_failure(self, store: FlowStore):
        store.create_run(new_run(), STEPS)
        store.step_started("run-1", "load", 1, T0)
        store.attempt_failed("run-1", "load", 1, "boom")
        assert store.require_run("run-1").step("load").error == "boom"
        store.step_started("run-1", "load", 2, T0 + timedelta(seconds=5))
        assert store.require_run("run-1").step("load").started_at == T0.isoformat()  # the first attempt's start stays
        store.step_finished("run-1", "load", status="failed", attempts=2, started_at=T0,
                            finished_at=T0 + timedelta(seconds=6), error="boom again")
        step = store.require_run("run-1").step("load")
        assert (step.status, step.attempts, step.error, step.output, step.output_digest) == ("failed", 2, "boom again", None, None)

    def test_skipped_with_reason_only_when_pending(self, store: FlowStore):
        store.create_run(new_run(), STEPS)
        store.step_started("run-1", "load", 1, T0)
        store.steps_skipped("run-1", {"load": "x", "fuse": "step 'load' failed"})
        run = store.require_run("run-1")
        assert run.step("load").status == "running"
        assert (run.step("fuse").status, run.step("fuse").error) == ("skipped", "step 'load' failed")

    def test_concurrent_writers(self, store: FlowStore):
        steps = [NewStep(f"s{i}", "data", "list_customers", ()) for i in range(16)]
        store.create_run(new_run(), steps)

        def work(i: int) -> None:
            store.step_started("run-1", f"s{i}", 1, T0)
            store.step_finished("run-1", f"s{i}", status="succeeded", attempts=1, started_at=T0, finished_at=T0, output={"i": i})

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run = store.require_run("run-1")
        assert [run.output(f"s{i}") for i in range(16)] == [{"i": i} for i in range(16)]


class TestResume:
    """Claiming a stopped run keeps what succeeded and resets the rest; it survives a new store on the same file."""

    def _half_done(self, store: FlowStore) -> None:
        store.create_run(new_run(), STEPS)
        store.step_started("run-1", "load", 1, T0)
        store.step_finished("run-1", "load", status="succeeded", attempts=1, started_at=T0, finished_at=T0, output={"a": 1})
        store.step_started("run-1", "fuse", 2, T0)

    def test_claim_keeps_succeeded_steps(self, store: FlowStore, db_url: str):
        self._half_done(store)
        reopened = FlowStore.from_url(db_url)  # as after a crash: a new process, the same file
        claimed = reopened.claim_for_resume("run-1", "host:1", "host:2")
        assert (claimed.status, claimed.owner, claimed.resumes) == ("running", "host:2", 1)
        assert (claimed.step("load").status, claimed.step("load").output, claimed.step("load").attempts) == ("succeeded", {"a": 1}, 1)
        assert (claimed.step("fuse").status, claimed.step("fuse").attempts, claimed.step("fuse").started_at) == ("pending", 0, None)

    def test_claim_is_a_compare_and_set_on_the_owner(self, store: FlowStore):
        self._half_done(store)
        store.claim_for_resume("run-1", "host:1", "host:2")
        with pytest.raises(FlowError, match="taken over by host:2"):
            store.claim_for_resume("run-1", "host:1", "host:3")

    def test_succeeded_run_cannot_be_claimed(self, store: FlowStore):
        store.create_run(new_run(), STEPS)
        store.finish_run("run-1", "succeeded")
        with pytest.raises(FlowError, match="already succeeded; nothing to resume"):
            store.claim_for_resume("run-1", "host:1", "host:2")
