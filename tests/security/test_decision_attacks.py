"""Attacks on the decision itself, run through the real CLIs on both decision paths.

- Hostile customer ids inside the data folder (path traversal, SQL injection) must
  become error records on the batch path exactly as on the per-customer path: never
  scored, never allocated, never written to the ledger as a decision.
- A re-run of a run id must not replay a contact the customer has since withdrawn
  consent for: the replay is reported as withdrawn and its capacity goes back, once.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import SAMPLE, withdraw_email_marketing

HOSTILE_IDS = ("../../etc/passwd", "U1'; DROP TABLE decisions;--")
PATHS = {
    "per-customer": ("cvm_processor_cli", "--selector", "rules"),
    "batch": ("cvm", "process", "--batch"),
}


def ledger(tmp_path: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(tmp_path / "state" / "cvm.sqlite3") as conn:
        return conn.execute(sql, params).fetchall()


def results(tmp_path: Path, name: str) -> dict[str, dict]:
    document = json.loads((tmp_path / "output" / name).read_text(encoding="utf-8"))
    return {r["customer_id"]: r for r in document["results"]}


def rewrite(path: Path, edit) -> None:
    rows = json.loads(path.read_text(encoding="utf-8"))
    edit(rows)
    path.write_text(json.dumps(rows), encoding="utf-8")


@pytest.fixture
def hostile_data(tmp_path: Path) -> Path:
    """The sample data plus two customers with hostile ids, full consent and a churn score worth acting on."""
    folder = tmp_path / "hostile"
    shutil.copytree(SAMPLE, folder)
    template = next(r for r in json.loads((SAMPLE / "permissions.json").read_text(encoding="utf-8")) if r["customer_id"] == "U123")
    yes = {channel: {"marketing": "Y", "service_updates": "Y", "billing": "Y"} for channel in template["permissions"]}
    rewrite(folder / "permissions.json", lambda rows: rows.extend({**template, "customer_id": cid, "permissions": yes} for cid in HOSTILE_IDS))
    rewrite(folder / "churn_score.json", lambda rows: rows.extend(
        {**rows[0], "customer_id": cid, "churn_score": 0.9} for cid in HOSTILE_IDS
    ))
    return folder


class TestHostileIdsInTheData:
    """Both paths refuse ids that break validation.customer_id_pattern with the same error record and exit code."""

    @pytest.mark.parametrize("path", PATHS)
    def test_bad_ids_are_error_records_and_the_rest_is_decided(self, run_cli, tmp_path: Path, hostile_data: Path, path: str):
        done = run_cli(*PATHS[path], "--all_customers", "--data-dir", str(hostile_data), "--output_file", "out.json")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        by_id = results(tmp_path, "out.json")
        assert len(by_id) == 12 + len(HOSTILE_IDS)
        for cid in HOSTILE_IDS:
            assert by_id[cid]["status"] == "error"
            assert "does not match validation.customer_id_pattern" in by_id[cid]["error"]
            assert by_id[cid]["selected_treatment"] is None
        assert all(r["status"] != "error" for cid, r in by_id.items() if cid not in HOSTILE_IDS)
        for table in ("allocations", "decisions", "approval_requests"):
            assert ledger(tmp_path, f"SELECT customer_id FROM {table} WHERE customer_id IN (?, ?)", *HOSTILE_IDS) == []
        assert len(ledger(tmp_path, "SELECT customer_id FROM decisions")) == 12

    def test_both_paths_write_the_same_error_records(self, run_cli, tmp_path: Path, hostile_data: Path):
        errors = {}
        for path, command in PATHS.items():
            env = {"CVM_DB_URL": f"sqlite:///{tmp_path / f'{path}.sqlite3'}"}
            done = run_cli(*command, "--all_customers", "--data-dir", str(hostile_data), "--output_file", f"{path}.json", env=env)
            assert done.returncode == 1, done.stderr
            errors[path] = {cid: (r["status"], r["error"]) for cid, r in results(tmp_path, f"{path}.json").items() if r["status"] == "error"}
        assert errors["batch"] == errors["per-customer"]
        assert set(errors["batch"]) == set(HOSTILE_IDS)


class TestReplayAfterConsentWithdrawal:
    """A replayed contact is re-checked against today's consent; a withdrawn one is released and never presented."""

    @pytest.mark.slow
    @pytest.mark.parametrize("path", PATHS)
    def test_withdrawn_consent_turns_the_replay_into_no_action(self, run_cli, tmp_path: Path, data_copy: Path, path: str):
        command = (*PATHS[path], "--customer_ids", "U124", "--run-id", "run-x", "--data-dir", str(data_copy))
        first = run_cli(*command, "--output_file", "first.json")
        assert first.returncode == 0, first.stderr
        given = results(tmp_path, "first.json")["U124"]
        assert (given["status"], given["channel"]) == ("success", "email")
        treatment = given["selected_treatment"]
        assert ledger(tmp_path, "SELECT used FROM capacity_usage WHERE treatment_id = ?", treatment) == [(1,)]

        withdraw_email_marketing(data_copy, "U124")
        for name in ("replay.json", "replay-again.json"):
            again = run_cli(*command, "--output_file", name)
            assert again.returncode == 0, again.stderr
            replay = results(tmp_path, name)["U124"]
            assert replay["replayed"] is True
            assert (replay["status"], replay["selected_treatment"], replay["channel"]) == ("no_action", "ignore", "none")
            assert replay["scheduled_for"] is None
            withdrawn = replay["alternatives"][0]
            assert (withdrawn["treatment_id"], withdrawn["reason"]) == (treatment, "consent_withdrawn")
            assert "marketing contact by email" in withdrawn["detail"]
            assert replay["explanation"].startswith("Withdrawn on replay")
            summary = json.loads((tmp_path / "output" / name).read_text(encoding="utf-8"))["summary"]
            assert summary["by_status"] == {"no_action": 1} and summary["by_treatment"] == {}
        # Released once, whatever the number of replays.
        assert ledger(tmp_path, "SELECT used FROM capacity_usage WHERE treatment_id = ?", treatment) == [(0,)]
        assert ledger(tmp_path, "SELECT state FROM allocations WHERE customer_id = 'U124'") == [("released",)]
        assert ledger(tmp_path, "SELECT status FROM decisions WHERE run_id = 'run-x'") == [("no_action",)]
        assert ledger(tmp_path, "SELECT COUNT(*) FROM audit_log WHERE event = 'decision_withdrawn'") == [(1,)]

    @pytest.mark.slow
    @pytest.mark.parametrize("path", PATHS)
    def test_a_request_waiting_from_an_earlier_run_can_no_longer_be_approved(
        self, run_cli, tmp_path: Path, data_copy: Path, path: str,
    ):
        """The customer says N while a request waits: the next run closes it, so no approver can turn it into a contact."""
        options = ("--customer_ids", "U128", "--data-dir", str(data_copy))
        assert run_cli(*PATHS[path], *options, "--run-id", "run-1", "--output_file", "first.json").returncode == 0
        waiting = results(tmp_path, "first.json")["U128"]
        assert (waiting["status"], waiting["channel"]) == ("pending_approval", "email")
        withdraw_email_marketing(data_copy, "U128")
        later = run_cli(*PATHS[path], *options, "--run-id", "run-2", "--output_file", "later.json")
        assert later.returncode == 0, later.stderr
        assert results(tmp_path, "later.json")["U128"]["approval_request_id"] != waiting["approval_request_id"]
        assert ledger(tmp_path, "SELECT status, reason LIKE 'consent_withdrawn: %' FROM approval_requests WHERE run_id = 'run-1'") == [
            ("rejected", 1),
        ]
        assert ledger(tmp_path, "SELECT state FROM allocations WHERE run_id = 'run-1'") == [("released",)]
        approve = run_cli("cvm", "approvals", "approve", waiting["approval_request_id"], "--by", "alice")
        assert approve.returncode != 0
        assert "already rejected" in approve.stderr and len(approve.stderr.strip().splitlines()) == 1
        assert ledger(tmp_path, "SELECT state FROM allocations WHERE run_id = 'run-1'") == [("released",)]

    @pytest.mark.slow
    @pytest.mark.parametrize("path", PATHS)
    def test_replay_with_consent_unchanged_is_the_stored_contact(self, run_cli, tmp_path: Path, path: str):
        command = (*PATHS[path], "--customer_ids", "U124", "--run-id", "run-y")
        assert run_cli(*command, "--output_file", "first.json").returncode == 0
        assert run_cli(*command, "--output_file", "again.json").returncode == 0
        first, again = results(tmp_path, "first.json")["U124"], results(tmp_path, "again.json")["U124"]
        assert again["replayed"] is True
        assert first["status"] == "success"
        assert (again["status"], again["selected_treatment"]) == (first["status"], first["selected_treatment"])
        assert ledger(tmp_path, "SELECT state FROM allocations WHERE customer_id = 'U124'") == [("allocated",)]
