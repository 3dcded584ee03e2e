"""``cvm approvals`` and ``--auto-approve`` run as a user runs them, against a real ledger file.

With the shipped config and sample data, U128 and U134 get early_upgrade, which
needs approval (cost per contact at or above 50), so a run leaves two pending requests.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AS_OF, CLOSED_PORT_URL, CONFIG, withdraw_email_marketing

GATED = ("U128", "U134")
TODAY = AS_OF[:10]
AUTO = "auto-approve (testing)"


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *mentions: str) -> str:
    """Exit 2, no traceback, exactly one line on stderr mentioning every ``mentions``."""
    assert proc.returncode == 2, f"exit {proc.returncode}; stdout {proc.stdout!r}; stderr {proc.stderr!r}"
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = nonblank(proc.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    for mention in mentions:
        assert mention in lines[0], f"{mention!r} not in {lines[0]!r}"
    return lines[0]


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}; stderr {proc.stderr!r}"
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def ledger_rows(tmp_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of the ledger the CLIs share (``db_url`` of the fixtures)."""
    with closing(sqlite3.connect(tmp_path / "state" / "cvm.sqlite3")) as conn:
        return conn.execute(sql, params).fetchall()


def used(tmp_path: Path, treatment: str = "early_upgrade") -> int:
    rows = ledger_rows(tmp_path, "SELECT used FROM capacity_usage WHERE treatment_id = ? AND day = ?", (treatment, TODAY))
    return rows[0][0] if rows else 0


def result_file(tmp_path: Path, name: str = "cvm_results.json") -> dict[str, Any]:
    path = tmp_path / "output" / name
    assert path.is_file(), f"no result file at {path}"
    return json.loads(path.read_text(encoding="utf-8"))


def by_customer(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["customer_id"]: r for r in doc["results"]}


def list_json(run_cli, *args: str) -> list[dict[str, Any]]:
    return json.loads(ok(run_cli("cvm", "approvals", "list", "--output", "json", *args)).stdout)


@pytest.fixture
def requests(make_runtime) -> dict[str, str]:
    """Decide the gated customers in run-1 (as the CLI would); returns their pending request ids by customer."""
    runtime = make_runtime(run_id="run-1")
    results = runtime.orchestrator.decide_many(list(GATED))
    assert [r.status for r in results] == ["pending_approval", "pending_approval"]
    runtime.ledger.close()
    return {r.customer_id: r.approval_request_id for r in results}


class TestAutoApprove:
    """--auto-approve approves as 'auto-approve (testing)' and says so everywhere it prints."""

    def test_auto_approve_run(self, run_cli, tmp_path: Path) -> None:
        proc = ok(run_cli("cvm_processor_cli", "--all_customers", "--selector", "rules", "--auto-approve"))
        warning = [line for line in nonblank(proc.stderr) if line.startswith("WARNING")]
        assert len(warning) == 1 and "--auto-approve" in warning[0] and AUTO in warning[0]
        title = nonblank(proc.stdout)[0]
        assert "AUTO-APPROVE" in title, title

        doc = result_file(tmp_path)
        results = by_customer(doc)
        for cid in GATED:
            r = results[cid]
            assert (r["status"], r["selected_treatment"], r["approved_by"]) == ("success", "early_upgrade", AUTO)
            assert r["approval_request_id"]
            assert AUTO in r["explanation"] and r["explanation"].startswith("Approved by"), r["explanation"]
        assert doc["summary"]["auto_approve"].startswith("ON (testing)")
        assert doc["summary"]["auto_approved"] == 2
        assert doc["summary"]["approvals_pending"] == 0
        assert not any(r["status"] == "pending_approval" for r in doc["results"])

        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM approval_requests WHERE status = 'pending'") == [(0,)]
        approved = ledger_rows(
            tmp_path, "SELECT customer_id, payload_json FROM audit_log WHERE event = 'approval_approved' ORDER BY customer_id"
        )
        assert [cid for cid, _ in approved] == list(GATED)
        assert {json.loads(payload)["by"] for _, payload in approved} == {AUTO}
        assert used(tmp_path) == 2

    def test_without_the_flag_nothing_is_auto_approved(self, run_cli, tmp_path: Path) -> None:
        proc = ok(run_cli("cvm_processor_cli", "--customer_ids", "U128,U134", "--selector", "rules"))
        assert "WARNING" not in proc.stderr and "AUTO-APPROVE" not in proc.stdout
        doc = result_file(tmp_path)
        assert doc["summary"]["auto_approve"] == "off"
        assert doc["summary"]["approvals_pending"] == 2
        assert {r["status"] for r in doc["results"]} == {"pending_approval"}
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM approval_requests WHERE status = 'pending'") == [(2,)]


class TestList:
    """cvm approvals list shows the requests of a status, as a table or JSON."""

    def test_table_lists_pending_requests(self, run_cli, requests: dict[str, str]) -> None:
        out = ok(run_cli("cvm", "approvals", "list")).stdout
        for cid, request_id in requests.items():
            assert request_id in out and cid in out
        assert "early_upgrade" in out
        assert "2 request(s)" in out

    def test_json_parses_back(self, run_cli, requests: dict[str, str]) -> None:
        rows = list_json(run_cli)
        assert {r["request_id"]: r["customer_id"] for r in rows} == {v: k for k, v in requests.items()}
        for r in rows:
            assert r["status"] == "pending" and r["treatment_id"] == "early_upgrade"
            assert "cost_per_contact_at_least" in r["rule"]
            assert r["run_id"] == "run-1" and r["decided_by"] is None
            assert "idempotency_key" not in r and "type" not in r

    @pytest.mark.slow
    def test_status_filters(self, run_cli, requests: dict[str, str]) -> None:
        ok(run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice"))
        ok(run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob", "--reason", "no"))
        assert [r["request_id"] for r in list_json(run_cli, "--status", "approved")] == [requests["U128"]]
        assert [r["request_id"] for r in list_json(run_cli, "--status", "rejected")] == [requests["U134"]]
        assert list_json(run_cli, "--status", "expired") == []
        assert list_json(run_cli) == []

    @pytest.mark.slow
    def test_expired_status_after_the_deadline(self, run_cli, requests: dict[str, str]) -> None:
        later = "2026-11-24T10:00:00+00:00"
        rows = list_json(run_cli, "--status", "expired", "--as-of", later)
        assert sorted(r["request_id"] for r in rows) == sorted(requests.values())
        assert {r["decided_by"] for r in rows} == {"system (expiry)"}
        assert list_json(run_cli, "--as-of", later) == []

    @pytest.mark.slow
    def test_unknown_status_is_a_usage_error(self, run_cli, requests: dict[str, str]) -> None:
        assert_one_line_error(run_cli("cvm", "approvals", "list", "--status", "maybe"), "--status")

    @pytest.mark.slow
    def test_list_needs_only_config_and_ledger(self, requests: dict[str, str], tmp_path: Path) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CVM_", "OPENAI_", "MODEL_ID"))}
        env.update(
            CVM_CONFIG=str(CONFIG), CVM_DB_URL=f"sqlite:///{tmp_path / 'state' / 'cvm.sqlite3'}", CVM_NOW=AS_OF,
            OPENAI_BASE_URL=CLOSED_PORT_URL,
        )
        assert not (elsewhere / "data").exists()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "cvm"), "approvals", "list", "--output", "json"],
            capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120, stdin=subprocess.DEVNULL,
        )
        ok(proc)
        assert sorted(r["request_id"] for r in json.loads(proc.stdout)) == sorted(requests.values())


class TestShow:
    """cvm approvals show prints one request in full."""

    @pytest.mark.slow
    def test_show_json(self, run_cli, requests: dict[str, str]) -> None:
        shown = json.loads(ok(run_cli("cvm", "approvals", "show", requests["U128"], "--output", "json")).stdout)
        assert shown["request_id"] == requests["U128"]
        assert (shown["customer_id"], shown["treatment_id"], shown["status"]) == ("U128", "early_upgrade", "pending")
        assert shown["requested_at"] == AS_OF and shown["expires_at"] == "2026-11-24T10:00:00+00:00"
        assert "expected value" in shown["explanation"]

    @pytest.mark.slow
    def test_show_table(self, run_cli, requests: dict[str, str]) -> None:
        out = ok(run_cli("cvm", "approvals", "show", requests["U134"])).stdout
        assert requests["U134"] in out and "U134" in out and "pending" in out

    @pytest.mark.slow
    def test_unknown_id_is_one_line(self, run_cli, requests: dict[str, str]) -> None:
        assert_one_line_error(run_cli("cvm", "approvals", "show", "apr-20261123-deadbeef"), "apr-20261123-deadbeef")


class TestDecide:
    """cvm approvals approve/reject record who and why, once."""

    @pytest.mark.slow
    def test_approve_then_approve_again(self, run_cli, requests: dict[str, str], tmp_path: Path) -> None:
        request_id = requests["U128"]
        proc = ok(run_cli("cvm", "approvals", "approve", request_id, "--by", "alice", "--reason", "ok"))
        assert request_id in proc.stdout and "alice" in proc.stdout
        row = ledger_rows(tmp_path, "SELECT status, decided_by, reason FROM approval_requests WHERE request_id = ?", (request_id,))
        assert row == [("approved", "alice", "ok")]
        assert ledger_rows(tmp_path, "SELECT state FROM allocations WHERE idempotency_key = 'run-1:U128'") == [("allocated",)]
        assert used(tmp_path) == 2

        before = ledger_rows(tmp_path, "SELECT * FROM approval_requests ORDER BY rowid")
        audit_before = ledger_rows(tmp_path, "SELECT COUNT(*) FROM audit_log")
        again = run_cli("cvm", "approvals", "approve", request_id, "--by", "carol")
        assert_one_line_error(again, request_id, "already approved", "alice")
        assert ledger_rows(tmp_path, "SELECT * FROM approval_requests ORDER BY rowid") == before
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM audit_log") == audit_before

    @pytest.mark.slow
    def test_reject_needs_a_reason(self, run_cli, requests: dict[str, str], tmp_path: Path) -> None:
        assert_one_line_error(run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob"), "--reason")
        assert_one_line_error(run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob", "--reason", " "), "--reason")
        assert [r["status"] for r in list_json(run_cli)] == ["pending", "pending"]
        assert used(tmp_path) == 2

    @pytest.mark.slow
    def test_reject_with_reason(self, run_cli, requests: dict[str, str], tmp_path: Path) -> None:
        proc = ok(run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob", "--reason", "x"))
        assert requests["U134"] in proc.stdout and "bob" in proc.stdout
        row = ledger_rows(tmp_path, "SELECT status, decided_by, reason FROM approval_requests WHERE request_id = ?", (requests["U134"],))
        assert row == [("rejected", "bob", "x")]
        assert ledger_rows(tmp_path, "SELECT state FROM allocations WHERE idempotency_key = 'run-1:U134'") == [("released",)]
        assert used(tmp_path) == 1
        audit = ledger_rows(tmp_path, "SELECT payload_json FROM audit_log WHERE event = 'approval_rejected'")
        assert [json.loads(p)["by"] for (p,) in audit] == ["bob"]
        assert_one_line_error(run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "eve", "--reason", "y"), "bob")

    @pytest.mark.slow
    def test_unknown_id_is_one_line(self, run_cli, requests: dict[str, str]) -> None:
        assert_one_line_error(run_cli("cvm", "approvals", "approve", "apr-nope", "--by", "alice"), "apr-nope")
        assert_one_line_error(run_cli("cvm", "approvals", "reject", "apr-nope", "--by", "bob", "--reason", "x"), "apr-nope")

    @pytest.mark.slow
    def test_approve_needs_by(self, run_cli, requests: dict[str, str]) -> None:
        assert_one_line_error(run_cli("cvm", "approvals", "approve", requests["U128"]), "--by")
        assert [r["status"] for r in list_json(run_cli)] == ["pending", "pending"]


class TestApproveRechecksConsent:
    """``cvm approvals approve`` re-checks consent in the data folder (--data-dir), reading only that customer's rows."""

    @pytest.mark.slow
    def test_consent_withdrawn_since_the_request(self, run_cli, requests: dict[str, str], tmp_path: Path, data_copy: Path) -> None:
        withdraw_email_marketing(data_copy, "U128")
        refused = run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice", "--data-dir", str(data_copy))
        assert_one_line_error(refused, "not approved: early_upgrade for U128: consent withdrawn", requests["U128"], "withdrawn")
        rows = ledger_rows(tmp_path, "SELECT status, decided_by FROM approval_requests WHERE request_id = ?", (requests["U128"],))
        assert rows == [("rejected", "system (consent or contact re-check)")]
        assert used(tmp_path) == 1  # U134's hold stays; U128's went back
        # U134 still consents in the same folder: approved.
        ok(run_cli("cvm", "approvals", "approve", requests["U134"], "--by", "alice", "--data-dir", str(data_copy)))

    @pytest.mark.slow
    def test_a_request_for_a_custom_treatment_is_approved(self, make_runtime, run_cli, cli_env: dict[str, str], tmp_path: Path) -> None:
        """The approval's config lacked the custom treatments: it refused, and then withdrew, a custom treatment's request."""
        custom = Path(cli_env["CVM_CUSTOM_TREATMENTS"])
        custom.write_text(json.dumps({"vip_sms": {"display_name": "VIP SMS", "channel": "sms", "purpose": "marketing",
                                                  "requires_approval": True, "value_per_accept": 50}}), encoding="utf-8")
        runtime = make_runtime(run_id="run-1", custom_treatments_path=custom)
        decided = runtime.orchestrator.decide("U128", proposed="vip_sms")
        assert (decided.status, decided.selected_treatment) == ("pending_approval", "vip_sms")
        runtime.ledger.close()
        ok(run_cli("cvm", "approvals", "approve", decided.approval_request_id, "--by", "alice"))
        rows = ledger_rows(tmp_path, "SELECT status, decided_by FROM approval_requests WHERE request_id = ?", (decided.approval_request_id,))
        assert rows == [("approved", "alice")]

    @pytest.mark.slow
    def test_a_clock_before_the_request_changes_nothing_even_without_consent(
        self, run_cli, requests: dict[str, str], tmp_path: Path, data_copy: Path,
    ) -> None:
        """The consent re-check withdrew the request before the time check could refuse the decision."""
        withdraw_email_marketing(data_copy, "U128")
        before = ledger_rows(tmp_path, "SELECT * FROM approval_requests ORDER BY rowid")
        early = run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice", "--data-dir", str(data_copy),
                        "--as-of", "2026-11-23T08:00:00+00:00")
        assert_one_line_error(early, requests["U128"], "before it")
        assert ledger_rows(tmp_path, "SELECT * FROM approval_requests ORDER BY rowid") == before

    @pytest.mark.slow
    def test_a_missing_folder_changes_nothing(self, run_cli, requests: dict[str, str], tmp_path: Path) -> None:
        before = ledger_rows(tmp_path, "SELECT * FROM approval_requests ORDER BY rowid")
        refused = run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice", "--data-dir", str(tmp_path / "nowhere"))
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "nowhere" in refused.stderr and "--data-dir" in refused.stderr
        assert ledger_rows(tmp_path, "SELECT * FROM approval_requests ORDER BY rowid") == before


class TestWhoAndWhen:
    """A decision needs a plain name, and is made between the request and its deadline."""

    @pytest.mark.slow
    @pytest.mark.parametrize("blank", ["", "   "])
    def test_blank_by_is_one_line(self, run_cli, requests: dict[str, str], blank: str) -> None:
        line = assert_one_line_error(run_cli("cvm", "approvals", "approve", requests["U128"], "--by", blank), "--by is blank")
        assert "internal error" not in line and "validation" not in line
        assert [r["status"] for r in list_json(run_cli)] == ["pending", "pending"]

    @pytest.mark.slow
    @pytest.mark.parametrize("name", ["alice\x1b[31m", "alice\r\nbob", "alice\x07", "al\u202eice"])
    def test_control_characters_in_by_are_refused(self, run_cli, requests: dict[str, str], name: str) -> None:
        for command in (("approve",), ("reject", "--reason", "no")):
            proc = run_cli("cvm", "approvals", command[0], requests["U128"], "--by", name, *command[1:])
            assert_one_line_error(proc, "--by contains a control character", "give a plain name")
        assert [r["status"] for r in list_json(run_cli)] == ["pending", "pending"]

    @pytest.mark.slow
    def test_decision_before_the_request_existed_is_refused(self, run_cli, requests: dict[str, str], tmp_path: Path) -> None:
        proc = run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice", "--as-of", "2020-01-01")
        assert_one_line_error(proc, requests["U128"], "was opened at 2026-11-23T10:00:00+00:00", "before it", "--as-of")
        assert [r["status"] for r in list_json(run_cli)] == ["pending", "pending"]
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM audit_log WHERE event LIKE 'approval_approved'") == [(0,)]

    @pytest.mark.slow
    @pytest.mark.parametrize("decision", [("approve",), ("reject", "--reason", "too late")])
    def test_decision_after_the_deadline_says_it_expired(self, run_cli, requests: dict[str, str], tmp_path: Path, decision) -> None:
        proc = run_cli("cvm", "approvals", decision[0], requests["U128"], "--by", "alice", *decision[1:], "--as-of", "2026-11-24T10:00")
        assert_one_line_error(proc, requests["U128"], "expired at 2026-11-24T10:00:00+00:00")
        status = ledger_rows(tmp_path, "SELECT status, decided_by FROM approval_requests WHERE request_id = ?", (requests["U128"],))
        assert status == [("expired", "system (expiry)")]
        assert used(tmp_path) == 0

    @pytest.mark.slow
    def test_decision_just_before_the_deadline_is_taken(self, run_cli, requests: dict[str, str]) -> None:
        ok(run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice", "--as-of", "2026-11-24T09:59:59+00:00"))
        assert [r["request_id"] for r in list_json(run_cli, "--status", "approved")] == [requests["U128"]]


class TestHistory:
    """cvm approvals history lists decided requests with who decided."""

    @pytest.mark.slow
    def test_history_of_a_customer(self, run_cli, requests: dict[str, str]) -> None:
        ok(run_cli("cvm", "approvals", "approve", requests["U128"], "--by", "alice", "--reason", "ok"))
        rows = json.loads(ok(run_cli("cvm", "approvals", "history", "--customer", "U128", "--output", "json")).stdout)
        assert [(r["request_id"], r["status"], r["decided_by"], r["reason"]) for r in rows] == [
            (requests["U128"], "approved", "alice", "ok")
        ]
        table = ok(run_cli("cvm", "approvals", "history", "--customer", "U128")).stdout
        assert requests["U128"] in table and "approved" in table and "alice" in table
        assert requests["U134"] not in table

    def test_history_of_everyone_includes_pending(self, run_cli, requests: dict[str, str]) -> None:
        ok(run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob", "--reason", "x"))
        rows = json.loads(ok(run_cli("cvm", "approvals", "history", "--output", "json")).stdout)
        assert {r["customer_id"]: r["status"] for r in rows} == {"U128": "pending", "U134": "rejected"}


class TestReplayAfterDecision:
    """Re-running with the same --run-id shows what the approver decided since."""

    @pytest.mark.slow
    def test_same_run_id_after_approve_and_reject(self, run_cli, tmp_path: Path) -> None:
        args = ("--customer_ids", "U128,U134", "--selector", "rules", "--run-id", "run-cli")
        ok(run_cli("cvm_processor_cli", *args, "--output_file", "first.json"))
        first = by_customer(result_file(tmp_path, "first.json"))
        assert {cid: r["status"] for cid, r in first.items()} == {"U128": "pending_approval", "U134": "pending_approval"}

        ok(run_cli("cvm", "approvals", "approve", first["U128"]["approval_request_id"], "--by", "alice"))
        ok(run_cli("cvm", "approvals", "reject", first["U134"]["approval_request_id"], "--by", "bob", "--reason", "too dear"))

        proc = ok(run_cli("cvm_processor_cli", *args, "--output_file", "again.json"))
        again = by_customer(result_file(tmp_path, "again.json"))
        u128, u134 = again["U128"], again["U134"]
        assert (u128["status"], u128["selected_treatment"], u128["approved_by"]) == ("success", "early_upgrade", "alice")
        assert u128["replayed"] is True
        assert (u134["status"], u134["selected_treatment"]) == ("no_action", "ignore")
        assert u134["alternatives"][0]["reason"] == "approval_rejected"
        assert "bob" in u134["alternatives"][0]["detail"] and "too dear" in u134["alternatives"][0]["detail"]
        assert "approved by alice" in proc.stdout
        assert used(tmp_path) == 1
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM approval_requests") == [(2,)]
