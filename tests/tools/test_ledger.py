"""The SQLite ledger: capacity, idempotency, contact caps, decisions and the audit log.

Every test uses a real SQLite file in the test's temp dir; the concurrency tests
start real OS processes (``python -c``) against one ledger file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvm.tools.ledger import AllocationOutcome, AllocationRequest, BatchCommit, SQLiteLedger, utc_text
from cvm.tools.sqlite_store import sqlite_path
from cvm.utils.errors import ConfigError, LedgerError

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
DAY = "2026-11-23"


def request(
    key: str,
    *,
    customer_id: str = "U1",
    treatment_id: str = "retention_email",
    channel: str = "email",
    purpose: str = "marketing",
    day: str = DAY,
    max_per_day: int | None = 10,
    contact_at: datetime = NOW,
    window_start: datetime = NOW - timedelta(days=7),
    contact_cap: int | None = None,
    scheduled_for: datetime | None = None,
    run_id: str = "run-1",
) -> AllocationRequest:
    """An allocation request with sensible defaults for the test at hand."""
    return AllocationRequest(
        idempotency_key=key,
        run_id=run_id,
        customer_id=customer_id,
        treatment_id=treatment_id,
        channel=channel,
        purpose=purpose,
        day=day,
        max_per_day=max_per_day,
        contact_at=contact_at,
        contact_window_start=window_start,
        contact_cap=contact_cap,
        scheduled_for=scheduled_for,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> SQLiteLedger:
    """A fresh ledger file in the temp dir."""
    led = SQLiteLedger(tmp_path / "state" / "ledger.sqlite3")
    yield led
    led.close()


# A worker run in its own OS process: waits for a "go" file so that all workers
# start together, then tries to allocate and prints the statuses as JSON.
WORKER = r"""
import json, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from cvm.tools.ledger import AllocationRequest, SQLiteLedger

db, go, worker, attempts, key_mode, max_per_day = sys.argv[1:7]
ledger = SQLiteLedger(db)
deadline = time.monotonic() + 60
while not Path(go).exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.002)
now = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
statuses = []
for i in range(int(attempts)):
    shared = key_mode == "shared"
    outcome = ledger.allocate(AllocationRequest(
        idempotency_key="run-1:SHARED" if shared else f"run-1:W{worker}-{i}",
        run_id="run-1",
        customer_id="SHARED" if shared else f"W{worker}-{i}",
        treatment_id="marketing_call_back" if not shared else f"treatment_from_worker_{worker}",
        channel="call", purpose="marketing", day="2026-11-23",
        max_per_day=None if max_per_day == "none" else int(max_per_day),
        contact_at=now, contact_window_start=now - timedelta(days=7), contact_cap=None,
    ))
    statuses.append([outcome.status, outcome.treatment_id])
ledger.close()
print(json.dumps(statuses))
"""


def run_workers(db: Path, go: Path, workers: int, attempts: int, key_mode: str, max_per_day: str) -> list[list[list[str]]]:
    """Start ``workers`` OS processes, release them together, and return each one's statuses."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), str(go), str(w), str(attempts), key_mode, max_per_day],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for w in range(workers)
    ]
    time.sleep(0.3)  # let every interpreter start and open the ledger
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


class TestConcurrentProcesses:
    """Several OS processes sharing one ledger file never over-allocate or double-allocate."""

    def test_capacity_is_never_exceeded_across_processes(self, tmp_path: Path) -> None:
        db = tmp_path / "shared.sqlite3"
        SQLiteLedger(db).close()  # create the schema once, as the runtime would
        outputs = run_workers(db, tmp_path / "go", workers=6, attempts=8, key_mode="distinct", max_per_day="7")

        statuses = Counter(status for out in outputs for status, _ in out)
        assert statuses == {"allocated": 7, "capacity_exhausted": 41}
        ledger = SQLiteLedger(db)
        assert ledger.used("marketing_call_back", DAY) == 7
        assert len(ledger.allocations(run_id="run-1")) == 7

    def test_one_idempotency_key_allocates_once_across_processes(self, tmp_path: Path) -> None:
        db = tmp_path / "shared.sqlite3"
        SQLiteLedger(db).close()
        outputs = run_workers(db, tmp_path / "go", workers=5, attempts=3, key_mode="shared", max_per_day="100")

        flat = [entry for out in outputs for entry in out]
        statuses = Counter(status for status, _ in flat)
        assert statuses == {"allocated": 1, "duplicate": 14}
        winner = next(treatment for status, treatment in flat if status == "allocated")
        # Every duplicate reports the treatment the one winning request allocated.
        assert {treatment for status, treatment in flat if status == "duplicate"} == {winner}
        ledger = SQLiteLedger(db)
        rows = ledger.allocations(customer_id="SHARED")
        assert len(rows) == 1
        assert rows[0]["treatment_id"] == winner
        assert ledger.used(winner, DAY) == 1
        other_used = sum(ledger.used(f"treatment_from_worker_{w}", DAY) for w in range(5))
        assert other_used == 1

    def test_unlimited_capacity_counts_every_use_across_processes(self, tmp_path: Path) -> None:
        db = tmp_path / "shared.sqlite3"
        SQLiteLedger(db).close()
        outputs = run_workers(db, tmp_path / "go", workers=4, attempts=5, key_mode="distinct", max_per_day="none")

        assert Counter(status for out in outputs for status, _ in out) == {"allocated": 20}
        assert SQLiteLedger(db).used("marketing_call_back", DAY) == 20


class TestConcurrentThreads:
    """Threads sharing one SQLiteLedger object each get a connection and respect capacity."""

    def test_threads_never_exceed_capacity(self, ledger: SQLiteLedger) -> None:
        results: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def work(worker: int) -> None:
            barrier.wait()
            for i in range(5):
                status = ledger.allocate(request(f"t{worker}-{i}", customer_id=f"T{worker}-{i}", max_per_day=9)).status
                with lock:
                    results.append(status)
            ledger.close()

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert Counter(results) == {"allocated": 9, "capacity_exhausted": 31}
        assert ledger.used("retention_email", DAY) == 9


class TestCapacity:
    """One process: capacity per treatment per day, idempotency, unlimited treatments."""

    def test_allocates_up_to_max_then_exhausted(self, ledger: SQLiteLedger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", customer_id=f"C{i}", max_per_day=3)).status for i in range(5)]
        assert statuses == ["allocated", "allocated", "allocated", "capacity_exhausted", "capacity_exhausted"]
        assert ledger.used("retention_email", DAY) == 3
        assert [row["idempotency_key"] for row in ledger.allocations()] == ["k0", "k1", "k2"]

    def test_exhausted_outcome_is_not_allocated(self, ledger: SQLiteLedger) -> None:
        outcome = ledger.allocate(request("k0", max_per_day=0))
        assert outcome == AllocationOutcome("capacity_exhausted", "retention_email")
        assert outcome.allocated is False
        assert ledger.used("retention_email", DAY) == 0
        assert ledger.allocation_for("k0") is None

    def test_same_key_is_duplicate_with_the_first_treatment(self, ledger: SQLiteLedger) -> None:
        first = ledger.allocate(request("run-1:U1", treatment_id="retention_email"))
        again = ledger.allocate(request("run-1:U1", treatment_id="retention_sms", channel="sms"))
        assert first.status == "allocated"
        assert again.status == "duplicate"
        assert again.treatment_id == "retention_email"
        assert again.allocated is True
        assert ledger.used("retention_email", DAY) == 1
        assert ledger.used("retention_sms", DAY) == 0
        assert len(ledger.allocations()) == 1

    def test_unlimited_capacity_counts_use(self, ledger: SQLiteLedger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", customer_id=f"C{i}", max_per_day=None)).status for i in range(6)]
        assert statuses == ["allocated"] * 6
        assert ledger.used("retention_email", DAY) == 6

    def test_days_have_separate_capacity(self, ledger: SQLiteLedger) -> None:
        day1 = [ledger.allocate(request(f"d1-{i}", customer_id=f"C{i}", max_per_day=2)).status for i in range(3)]
        day2 = [
            ledger.allocate(request(f"d2-{i}", customer_id=f"C{i}", day="2026-11-24", max_per_day=2)).status
            for i in range(3)
        ]
        assert day1 == ["allocated", "allocated", "capacity_exhausted"]
        assert day2 == ["allocated", "allocated", "capacity_exhausted"]
        assert ledger.used("retention_email", DAY) == 2
        assert ledger.used("retention_email", "2026-11-24") == 2
        assert ledger.used("retention_email", "2026-11-25") == 0

    def test_treatments_have_separate_capacity(self, ledger: SQLiteLedger) -> None:
        assert ledger.allocate(request("a", customer_id="A", treatment_id="retention_email", max_per_day=1)).status == "allocated"
        assert ledger.allocate(request("b", customer_id="B", treatment_id="retention_sms", max_per_day=1)).status == "allocated"
        assert ledger.allocate(request("c", customer_id="C", treatment_id="retention_email", max_per_day=1)).status == "capacity_exhausted"

    def test_allocation_row_stores_utc_times(self, ledger: SQLiteLedger) -> None:
        london = ZoneInfo("Europe/London")
        contact = datetime(2026, 7, 1, 10, 0, tzinfo=london)  # BST: 09:00 UTC
        outcome = ledger.allocate(request("k", contact_at=contact, scheduled_for=contact))
        assert outcome.scheduled_for == "2026-07-01T09:00:00+00:00"
        row = ledger.allocation_for("k")
        assert row is not None
        assert row["contact_at"] == "2026-07-01T09:00:00+00:00"
        assert row["scheduled_for"] == "2026-07-01T09:00:00+00:00"
        assert (row["customer_id"], row["treatment_id"], row["channel"], row["purpose"], row["day"]) == (
            "U1", "retention_email", "email", "marketing", DAY,
        )

    def test_allocations_filter_by_customer_and_run(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(request("r1:A", customer_id="A", run_id="r1"))
        ledger.allocate(request("r1:B", customer_id="B", run_id="r1"))
        ledger.allocate(request("r2:A", customer_id="A", run_id="r2"))
        assert sorted(r["idempotency_key"] for r in ledger.allocations(customer_id="A")) == ["r1:A", "r2:A"]
        assert sorted(r["idempotency_key"] for r in ledger.allocations(run_id="r1")) == ["r1:A", "r1:B"]
        assert [r["idempotency_key"] for r in ledger.allocations(customer_id="A", run_id="r2")] == ["r2:A"]
        assert len(ledger.allocations(limit=2)) == 2

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        demands=st.lists(
            st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["2026-11-23", "2026-11-24"])), max_size=25
        ),
        caps=st.fixed_dictionaries({"a": st.integers(0, 4), "b": st.none() | st.integers(0, 4)}),
    )
    def test_used_is_min_of_demand_and_capacity(self, demands: list[tuple[str, str]], caps: dict) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            led = SQLiteLedger(Path(tmp) / "l.sqlite3")
            statuses = Counter()
            for i, (treatment, day) in enumerate(demands):
                out = led.allocate(request(f"k{i}", customer_id=f"C{i}", treatment_id=treatment, day=day, max_per_day=caps[treatment]))
                statuses[(treatment, day, out.status)] += 1
            for treatment in ("a", "b"):
                for day in ("2026-11-23", "2026-11-24"):
                    demand = sum(1 for t, d in demands if (t, d) == (treatment, day))
                    expected = demand if caps[treatment] is None else min(demand, caps[treatment])
                    assert led.used(treatment, day) == expected
                    assert statuses[(treatment, day, "allocated")] == expected
            led.close()


class TestContactCap:
    """At most ``contact_cap`` contacts per customer and purpose inside the window."""

    def test_second_contact_in_window_is_limited_and_takes_no_capacity(self, ledger: SQLiteLedger) -> None:
        first = ledger.allocate(request("k1", treatment_id="retention_email", contact_cap=1))
        second = ledger.allocate(
            request("k2", treatment_id="retention_sms", channel="sms", contact_cap=1, contact_at=NOW + timedelta(hours=1))
        )
        assert first.status == "allocated"
        assert second == AllocationOutcome("contact_limit", "retention_sms")
        assert second.allocated is False
        assert ledger.used("retention_sms", DAY) == 0
        assert ledger.allocation_for("k2") is None

    def test_contact_older_than_window_does_not_count(self, ledger: SQLiteLedger) -> None:
        old = NOW - timedelta(days=10)
        ledger.allocate(request("old", contact_at=old, day="2026-11-13", contact_cap=1, window_start=old - timedelta(days=7)))
        fresh = ledger.allocate(request("new", contact_cap=1, window_start=NOW - timedelta(days=7)))
        assert fresh.status == "allocated"
        assert ledger.contacts_since("U1", "marketing", NOW - timedelta(days=7)) == 1
        assert ledger.contacts_since("U1", "marketing", NOW - timedelta(days=11)) == 2

    def test_future_scheduled_contact_counts(self, ledger: SQLiteLedger) -> None:
        later = NOW + timedelta(hours=11)
        ledger.allocate(request("scheduled", contact_at=later, scheduled_for=later, contact_cap=1))
        assert ledger.contacts_since("U1", "marketing", NOW) == 1
        second = ledger.allocate(request("again", contact_cap=1))
        assert second.status == "contact_limit"

    def test_other_purpose_and_other_customer_are_not_limited(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(request("m", contact_cap=1))
        service = ledger.allocate(request("s", treatment_id="service_sms", channel="sms", purpose="service_updates", contact_cap=1))
        other = ledger.allocate(request("o", customer_id="U2", contact_cap=1))
        assert (service.status, other.status) == ("allocated", "allocated")

    def test_no_cap_means_no_limit(self, ledger: SQLiteLedger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", contact_cap=None)).status for i in range(3)]
        assert statuses == ["allocated"] * 3
        assert ledger.contacts_since("U1", "marketing", NOW - timedelta(days=1)) == 3

    def test_cap_of_two_allows_two(self, ledger: SQLiteLedger) -> None:
        statuses = [ledger.allocate(request(f"k{i}", treatment_id=f"t{i}", contact_cap=2)).status for i in range(3)]
        assert statuses == ["allocated", "allocated", "contact_limit"]


class TestDecisionsAndAudit:
    """Decisions are stored once per run and customer; the audit log is append-only."""

    def test_record_decision_once(self, ledger: SQLiteLedger) -> None:
        first = {"customer_id": "U1", "status": "success", "selected_treatment": "retention_email", "at": NOW}
        second = {"customer_id": "U1", "status": "no_action", "selected_treatment": "ignore"}
        assert ledger.record_decision("run-1", "U1", first, "digest-1", NOW) is True
        assert ledger.record_decision("run-1", "U1", second, "digest-2", NOW) is False
        assert ledger.decision("run-1", "U1") == {
            "at": "2026-11-23 10:00:00+00:00",
            "customer_id": "U1",
            "selected_treatment": "retention_email",
            "status": "success",
        }
        assert ledger.decision("run-2", "U1") is None
        entries = ledger.audit_entries(run_id="run-1")
        assert [(e["event"], e["customer_id"], e["treatment_id"], e["input_digest"]) for e in entries] == [
            ("decision", "U1", "retention_email", "digest-1")
        ]

    def test_same_customer_in_another_run_is_stored(self, ledger: SQLiteLedger) -> None:
        assert ledger.record_decision("run-1", "U1", {"status": "success"}, "d", NOW) is True
        assert ledger.record_decision("run-2", "U1", {"status": "no_action"}, "d", NOW) is True
        assert ledger.decision("run-2", "U1") == {"status": "no_action"}

    def test_audit_entries_filter_and_order(self, ledger: SQLiteLedger) -> None:
        ledger.audit("approval_requested", {"n": 1}, NOW, customer_id="A", run_id="r1")
        ledger.audit("approval_granted", {"n": 2}, NOW, customer_id="B", run_id="r1")
        ledger.audit("approval_denied", {"n": 3}, NOW, customer_id="A", run_id="r2")
        assert [e["payload"] for e in ledger.audit_entries(customer_id="A")] == [{"n": 1}, {"n": 3}]
        assert [e["event"] for e in ledger.audit_entries(run_id="r1")] == ["approval_requested", "approval_granted"]
        assert len(ledger.audit_entries()) == 3
        assert ledger.audit_entries()[0]["at"] == "2026-11-23T10:00:00+00:00"

    @pytest.mark.parametrize("statement", ["UPDATE audit_log SET event = 'forged'", "DELETE FROM audit_log"])
    def test_audit_log_is_append_only(self, ledger: SQLiteLedger, statement: str) -> None:
        ledger.audit("decision", {"x": 1}, NOW, customer_id="U1")
        conn = sqlite3.connect(ledger.path)
        try:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
            conn.rollback()
            assert conn.execute("SELECT event FROM audit_log").fetchall() == [("decision",)]
        finally:
            conn.close()


class TestResetUsage:
    """reset_usage clears one day's counters and leaves an audit entry."""

    def test_reset_one_treatment(self, ledger: SQLiteLedger) -> None:
        for i in range(3):
            ledger.allocate(request(f"k{i}", customer_id=f"C{i}", max_per_day=3))
        ledger.allocate(request("sms", customer_id="S", treatment_id="retention_sms", max_per_day=3))
        assert ledger.allocate(request("k3", customer_id="C3", max_per_day=3)).status == "capacity_exhausted"

        cleared = ledger.reset_usage(DAY, "retention_email", NOW)

        assert cleared == 1
        assert ledger.used("retention_email", DAY) == 0
        assert ledger.used("retention_sms", DAY) == 1
        assert ledger.allocate(request("k4", customer_id="C4", max_per_day=3)).status == "allocated"
        assert len(ledger.allocations()) == 5  # allocations stay recorded
        resets = [e for e in ledger.audit_entries() if e["event"] == "capacity_reset"]
        assert [e["payload"] for e in resets] == [{"day": DAY, "treatment_id": "retention_email", "rows": 1}]

    def test_reset_whole_day_keeps_other_days(self, ledger: SQLiteLedger) -> None:
        ledger.allocate(request("a", treatment_id="a"))
        ledger.allocate(request("b", treatment_id="b"))
        ledger.allocate(request("c", treatment_id="a", day="2026-11-24"))
        assert ledger.reset_usage(DAY, None, NOW) == 2
        assert (ledger.used("a", DAY), ledger.used("b", DAY), ledger.used("a", "2026-11-24")) == (0, 0, 1)
        assert ledger.audit_entries()[-1]["payload"] == {"day": DAY, "treatment_id": None, "rows": 2}

    def test_reset_of_unused_day_is_audited_with_zero_rows(self, ledger: SQLiteLedger) -> None:
        assert ledger.reset_usage("2030-01-01", None, NOW) == 0
        assert [e["event"] for e in ledger.audit_entries()] == ["capacity_reset"]


class TestDatabaseUrl:
    """sqlite_path/from_url accept SQLite file URLs and reject anything else with a clear message."""

    def test_relative_path(self) -> None:
        assert sqlite_path("sqlite:///state/cvm.sqlite3") == Path("state/cvm.sqlite3")

    def test_absolute_path(self) -> None:
        assert sqlite_path("sqlite:////var/lib/cvm/cvm.sqlite3") == Path("/var/lib/cvm/cvm.sqlite3")

    def test_from_url_relative_creates_file_under_cwd(self, tmp_path: Path) -> None:
        led = SQLiteLedger.from_url("sqlite:///state/here.sqlite3")  # the autouse fixture chdir'd to tmp_path
        led.allocate(request("k"))
        led.close()
        assert (tmp_path / "state" / "here.sqlite3").is_file()

    def test_from_url_absolute(self, tmp_path: Path, db_url: str) -> None:
        led = SQLiteLedger.from_url(db_url)
        assert led.path == tmp_path / "state" / "cvm.sqlite3"
        assert led.path.is_file()
        led.close()

    @pytest.mark.parametrize("url", ["postgresql://cvm:secret@db.internal:5432/cvm", "postgres://db/cvm"])
    def test_postgres_url_is_config_error(self, url: str) -> None:
        with pytest.raises(ConfigError) as err:
            SQLiteLedger.from_url(url)
        message = str(err.value)
        assert message.startswith("CVM_DB_URL: unsupported database 'postgres")
        assert "sqlite:///path/to/file.sqlite3" in message

    def test_memory_url_is_config_error(self) -> None:
        with pytest.raises(ConfigError, match="in-memory SQLite ledger cannot be shared"):
            sqlite_path("sqlite:///:memory:")

    def test_unopenable_path_is_ledger_error(self, tmp_path: Path) -> None:
        folder = tmp_path / "a_folder"
        folder.mkdir()
        with pytest.raises(LedgerError, match="cannot open the ledger"):
            SQLiteLedger(folder)

    def test_wal_mode(self, ledger: SQLiteLedger) -> None:
        conn = sqlite3.connect(ledger.path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()


class TestDailyContactCap:
    """The per-customer daily cap is checked in the same transaction that takes the capacity."""

    @staticmethod
    def capped(key: str, contact_at: datetime = NOW, **kwargs: object) -> AllocationRequest:
        start = contact_at.replace(hour=0, minute=0)
        return replace(request(key, contact_at=contact_at, **kwargs), daily_cap=1, contact_day=(start, start + timedelta(days=1)))

    def test_second_contact_on_the_day_is_refused_whatever_the_purpose(self, ledger: SQLiteLedger) -> None:
        assert ledger.allocate(self.capped("a", treatment_id="service_call_back", purpose="service_updates")).status == "allocated"
        second = ledger.allocate(self.capped("b", run_id="run-2", treatment_id="service_sms", purpose="service_updates"))
        assert (second.status, second.contacts, second.allocated) == ("daily_contact_limit", 1, False)
        assert ledger.used("service_sms", DAY) == 0
        assert ledger.contacts_between("U1", NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1)) == 1

    def test_a_contact_scheduled_for_tomorrow_counts_on_tomorrow(self, ledger: SQLiteLedger) -> None:
        tomorrow = NOW + timedelta(days=1)
        assert ledger.allocate(self.capped("a", contact_at=tomorrow)).status == "allocated"
        assert ledger.allocate(self.capped("b", run_id="run-2", treatment_id="service_sms")).status == "allocated"
        assert ledger.allocate(self.capped("c", run_id="run-3", contact_at=tomorrow, treatment_id="data_boost")).status == "daily_contact_limit"

    def test_an_exempt_request_is_given_and_counts(self, ledger: SQLiteLedger) -> None:
        assert ledger.allocate(self.capped("a")).status == "allocated"
        exempt = request("b", run_id="run-2", treatment_id="service_call_back", purpose="service_updates")
        assert ledger.allocate(exempt).status == "allocated"
        assert ledger.contacts_between("U1", NOW.replace(hour=0), NOW.replace(hour=0) + timedelta(days=1)) == 2

    def test_batch_commit_over_the_cap_writes_nothing(self, ledger: SQLiteLedger) -> None:
        assert ledger.allocate(request("a")).status == "allocated"
        before = ledger.allocations()
        day = (utc_text(NOW.replace(hour=0)), utc_text(NOW.replace(hour=0) + timedelta(days=1)))
        row = ("batch:U1", "batch", "U1", "service_sms", "sms", "service_updates", DAY, utc_text(NOW), None, utc_text(NOW), "allocated")
        commit = BatchCommit(run_id="batch", day=DAY, at=NOW, capacity={"service_sms": (1, 10)}, allocations=[row], approvals=[],
                             decisions=[], summary={}, daily_cap=1, daily_windows=(("U1", *day),))
        with pytest.raises(LedgerError, match="daily contact cap"):
            ledger.commit_batch(commit)
        assert ledger.allocations() == before
        assert ledger.used("service_sms", DAY) == 0


class TestWithdrawDecision:
    """A replay's withdrawal releases the decision's capacity once, even when replays race."""

    def test_concurrent_withdrawals_release_once(self, ledger: SQLiteLedger) -> None:
        for customer in ("U1", "U2"):
            assert ledger.allocate(request(f"run-1:{customer}", customer_id=customer)).status == "allocated"
            ledger.record_decision("run-1", customer, {"status": "success", "selected_treatment": "retention_email"}, "d", NOW)
        withdrawn = {"status": "no_action", "selected_treatment": "ignore", "customer_id": "U1"}
        outcomes: list[bool] = []
        barrier = threading.Barrier(6)

        def work() -> None:
            barrier.wait()
            outcomes.append(ledger.withdraw_decision("run-1", "U1", withdrawn, "consent_withdrawn", NOW))
            ledger.close()

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == [False] * 5 + [True]
        assert ledger.used("retention_email", DAY) == 1  # U2's unit stays taken
        assert {r["customer_id"]: r["state"] for r in ledger.allocations()} == {"U1": "released", "U2": "allocated"}
        assert ledger.decision("run-1", "U1") == withdrawn
        assert [e["event"] for e in ledger.audit_entries(customer_id="U1")].count("decision_withdrawn") == 1

    def test_a_no_action_decision_is_not_withdrawn(self, ledger: SQLiteLedger) -> None:
        ledger.record_decision("run-1", "U1", {"status": "no_action", "selected_treatment": "ignore"}, "d", NOW)
        assert ledger.withdraw_decision("run-1", "U1", {"status": "no_action"}, "consent_withdrawn", NOW) is False


class TestPendingByCustomer:
    def test_expired_requests_are_not_pending(self, ledger: SQLiteLedger) -> None:
        from cvm.tools.ledger import ApprovalHold

        hold = ApprovalHold(request_id="apr-1", rule="r", explanation="e", confidence=0.5, expected_value=1.0, priority=1,
                            requested_at=NOW, expires_at=NOW + timedelta(hours=24))
        assert ledger.allocate(replace(request("k"), approval=hold)).status == "held"
        assert set(ledger.pending_by_customer(NOW + timedelta(hours=23))) == {"U1"}
        assert ledger.pending_by_customer(NOW + timedelta(hours=24)) == {}
