"""What only ``SQLiteLedger`` has: file URLs, the file itself, WAL mode and the schema's own guards.

The ledger's behaviour (capacity, approvals, decisions, audit, concurrency) is the
backend-neutral conformance suite in ``tests/tools/ledger_conformance``, which runs
against SQLite too; only SQLite-specific checks live here.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from cvm.tools.ledger import SQLiteLedger
from cvm.tools.sqlite_store import sqlite_path
from cvm.utils.errors import ConfigError, LedgerError
from tests.tools.ledger_conformance.helpers import DAY, TREATMENT, held_request, request


@pytest.fixture
def ledger(tmp_path: Path) -> SQLiteLedger:
    """A fresh ledger file in the temp dir."""
    led = SQLiteLedger(tmp_path / "state" / "ledger.sqlite3")
    yield led
    led.close()


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


class TestSQLiteFile:
    def test_wal_mode(self, ledger: SQLiteLedger) -> None:
        with closing(sqlite3.connect(ledger.path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    def test_the_index_refuses_a_second_pending_row(self, ledger: SQLiteLedger) -> None:
        """The one-pending rule holds in the schema itself, whoever writes to the file."""
        ledger.allocate(held_request("run-1:C1", "C1", "apr-1"))
        with closing(sqlite3.connect(ledger.path)) as conn, pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO approval_requests (request_id, idempotency_key, run_id, customer_id, treatment_id, day, rule,"
                " explanation, priority, requested_at, expires_at) VALUES ('apr-x', 'k', 'r', 'C1', ?, ?, 'r', 'e', 1, 'a', 'b')",
                (TREATMENT, DAY),
            )

    def test_a_file_from_before_allocation_states_is_migrated(self, tmp_path: Path) -> None:
        path = tmp_path / "old.sqlite3"
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(
                "CREATE TABLE allocations (idempotency_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, customer_id TEXT NOT NULL,"
                " treatment_id TEXT NOT NULL, channel TEXT NOT NULL, purpose TEXT NOT NULL, day TEXT NOT NULL,"
                " contact_at TEXT NOT NULL, scheduled_for TEXT, created_at TEXT NOT NULL)"
            )
            conn.execute("INSERT INTO allocations VALUES ('k', 'r', 'U1', 't', 'sms', 'marketing', ?, 'a', NULL, 'a')", (DAY,))
            conn.commit()
        led = SQLiteLedger(path)
        try:
            row = led.allocation_for("k")
            assert row is not None and row.state == "allocated"
        finally:
            led.close()
