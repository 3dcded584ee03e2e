"""Hostile command lines, run as a user would: each is refused with exit 2 and one line, never a crash.

Devices, FIFOs and folders given as output files; clocks at the end of time;
conditions nested thousands deep; control characters in approvers' names and
reasons; non-finite numbers in results.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from tests.cli.test_processor import assert_usage_error, ledger_rows, rules
from tests.conftest import CONFIG


def config_with_trigger(folder: Path, name: str, condition: str) -> Path:
    """The shipped config plus one trigger with ``condition``."""
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    doc["triggers"][name] = {"description": "hostile", "condition": condition}
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def nothing_decided(tmp_path: Path) -> bool:
    """No decision, allocation or approval request in the ledger the CLI uses."""
    tables = ("decisions", "allocations", "approval_requests")
    return all(ledger_rows(tmp_path, f"SELECT COUNT(*) FROM {table}") in ([], [(0,)]) for table in tables)


WRITING_COMMANDS = {
    "cvm_processor_cli": ("cvm_processor_cli", "--customer_ids", "U124", "--selector", "rules", "--output_file"),
    "cvm process": ("cvm", "process", "--customer_ids", "U124", "--selector", "rules", "--output_file"),
    "cvm process --batch": ("cvm", "process", "--all_customers", "--batch", "--output_file"),
    "cvm triggers process": ("cvm", "triggers", "process", "--all-customers", "--trigger-type", "churn_risk", "--output-file"),
    "trigger_customers_cli process": ("trigger_customers_cli", "process", "--customer-ids", "U124", "--trigger-type", "churn_risk", "--output-file"),
    "cvm treatments process": ("cvm", "treatments", "process", "U124", "--selector", "rules", "--output_file"),
    "dynamic_treatment_cli batch": ("dynamic_treatment_cli", "batch", "U124,U128", "--selector", "rules", "--output_file"),
    "trigger_customers_cli trigger": ("trigger_customers_cli", "trigger", "--all-customers", "--trigger-type", "churn_risk", "--output", "json", "--output-file"),
    "cvm flows plan": ("cvm", "flows", "plan", "churn_prevention", "--output-file"),
}


class TestOutputPathThatIsNotAFile:
    """An output path that is a device, a FIFO or a folder is refused before anything is decided."""

    @pytest.mark.parametrize("command", WRITING_COMMANDS.values(), ids=WRITING_COMMANDS.keys())
    def test_fifo_is_refused_and_stays_a_fifo(self, run_cli, tmp_path, command):
        fifo = tmp_path / "results.fifo"
        os.mkfifo(fifo)
        script, *args = command
        proc = run_cli(script, *args, str(fifo))
        assert_usage_error(proc, str(fifo), "a FIFO, not a regular file")
        assert stat.S_ISFIFO(fifo.stat().st_mode)
        assert nothing_decided(tmp_path)

    def test_dev_null_is_refused_and_stays_a_device(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--output_file", "/dev/null"))
        assert_usage_error(proc, "/dev/null", "a character device, not a regular file")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
        assert nothing_decided(tmp_path)

    def test_symlink_to_dev_null_is_refused(self, run_cli, tmp_path):
        link = tmp_path / "looks_like_a_file.json"
        link.symlink_to("/dev/null")
        proc = run_cli("cvm", "process", *rules("--customer_ids", "U124", "--output_file", str(link)))
        assert_usage_error(proc, "a character device")
        assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)

    @pytest.mark.parametrize("name", ["out/", "out//", "out/.", "out/..", "/"])
    def test_path_ending_in_a_separator_is_refused(self, run_cli, tmp_path, name):
        proc = run_cli("cvm", "process", *rules("--customer_ids", "U124", "--output_file", name))
        assert_usage_error(proc, repr(name), "does not end in a file name")
        assert not (tmp_path / "out").exists(), "a file or folder named out was made"
        assert nothing_decided(tmp_path)

    def test_existing_folder_with_trailing_separator_is_refused(self, run_cli, tmp_path):
        (tmp_path / "out").mkdir()
        proc = run_cli("cvm", "process", *rules("--customer_ids", "U124", "--output_file", "out/"))
        assert_usage_error(proc, "does not end in a file name")
        assert (tmp_path / "out").is_dir() and list((tmp_path / "out").iterdir()) == []

    def test_regular_file_is_still_replaced(self, run_cli, tmp_path):
        target = tmp_path / "old.json"
        target.write_text("old", encoding="utf-8")
        proc = run_cli("cvm", "process", *rules("--customer_ids", "U124", "--output_file", str(target)))
        assert proc.returncode == 0, proc.stderr
        assert '"run_id"' in target.read_text(encoding="utf-8")


class TestClockAtTheEndOfTime:
    """A clock whose day keys and windows would overflow is a usage error, by flag or by environment."""

    def test_as_of_year_9999(self, run_cli, tmp_path):
        proc = run_cli("cvm", "process", *rules("--all_customers", "--as-of", "9999-12-31T23:59"))
        text = assert_usage_error(proc, "9999-12-31T23:59", "out of range", "2000-01-01", "9000-12-31")
        assert "internal error" not in text
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM decisions") in ([], [(0,)])

    def test_cvm_now_year_9999(self, run_cli):
        proc = run_cli("cvm", "approvals", "list", env={"CVM_NOW": "9999-12-31T23:59"})
        assert_usage_error(proc, "out of range")

    def test_as_of_year_1(self, run_cli):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--as-of", "0001-01-01"))
        assert_usage_error(proc, "out of range")


class TestHostileConditions:
    """A trigger condition nested thousands deep is a config error naming the trigger."""

    def test_twenty_thousand_nested_not(self, run_cli, tmp_path):
        config = config_with_trigger(tmp_path, "deep_one", "not " * 20_000 + "churn_probability > 0.5")
        proc = run_cli("cvm", "triggers", "list-triggers", "--config", str(config))
        text = assert_usage_error(proc, "triggers.deep_one.condition", "expression too deep", "hostile.yaml")
        assert "MemoryError" not in text and "RecursionError" not in text

    def test_twenty_thousand_nested_not_stops_processing(self, run_cli, tmp_path):
        config = config_with_trigger(tmp_path, "deep_one", "not " * 20_000 + "churn_probability > 0.5")
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--config", str(config)))
        assert_usage_error(proc, "triggers.deep_one.condition", "expression too deep")
        assert not (tmp_path / "output" / "cvm_results.json").exists()


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
NON_FINITE_TEXT = re.compile(r"(?i)\b(nan|-?inf(inity)?)\b")


def gated_requests(run_cli) -> dict[str, str]:
    """Run U128 and U134 (both need approval with the shipped config) as run r1; their request ids by customer."""
    proc = run_cli("cvm", "process", *rules("--customer_ids", "U128,U134", "--run-id", "r1"))
    assert proc.returncode == 0, proc.stderr
    listed = run_cli("cvm", "approvals", "list", "--output", "json")
    return {r["customer_id"]: r["request_id"] for r in json.loads(listed.stdout)}


def forge_old_ledger_rows(tmp_path: Path, request_id: str) -> None:
    """What a ledger written before these checks (or by another tool) may hold: control characters and non-finite numbers."""
    with closing(sqlite3.connect(tmp_path / "state" / "cvm.sqlite3")) as conn, conn:
        conn.execute(
            "UPDATE approval_requests SET reason = ?, decided_by = ?, expected_value = ? WHERE request_id = ?",
            ("old\x1b]0;pwned\x07 reason\r\nFORGED", "bob\x1b[8m", float("inf"), request_id),
        )
        (stored,) = conn.execute("SELECT result_json FROM decisions WHERE customer_id = 'U128'").fetchone()
        decision = json.loads(stored)
        decision.update(expected_value=float("inf"), confidence=float("nan"))
        conn.execute("UPDATE decisions SET result_json = ? WHERE customer_id = 'U128'", (json.dumps(decision),))


class TestHostileTextInApprovals:
    """Control characters never reach the ledger from --reason, nor a terminal or a report from any stored row."""

    @pytest.mark.slow
    def test_reason_is_stored_and_printed_without_control_characters(self, run_cli, tmp_path):
        requests = gated_requests(run_cli)
        hostile = "too costly\x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07\r\nAPPROVED by ceo\x07"
        proc = run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob", "--reason", hostile)
        assert proc.returncode == 0, proc.stderr
        assert not CONTROL.search(proc.stdout + proc.stderr)
        (reason,) = ledger_rows(tmp_path, f"SELECT reason FROM approval_requests WHERE request_id = '{requests['U134']}'")[0]
        assert reason == "too costly[2J]8;;http://evilclick]8;;  APPROVED by ceo"
        audit = ledger_rows(tmp_path, "SELECT payload_json FROM audit_log WHERE event = 'approval_rejected'")
        assert [json.loads(p)["reason"] for (p,) in audit] == [reason]

    @pytest.mark.slow
    def test_tables_and_report_strip_what_an_old_ledger_holds(self, run_cli, tmp_path):
        requests = gated_requests(run_cli)
        assert run_cli("cvm", "approvals", "reject", requests["U134"], "--by", "bob", "--reason", "no").returncode == 0
        forge_old_ledger_rows(tmp_path, requests["U134"])
        for args in (("list", "--status", "rejected"), ("history",), ("show", requests["U134"])):
            shown = run_cli("cvm", "approvals", *args)
            assert shown.returncode == 0, shown.stderr
            assert "old" in shown.stdout and not CONTROL.search(shown.stdout), args
            assert not NON_FINITE_TEXT.search(shown.stdout), args
        report = run_cli("cvm", "report", "--run-id", "r1", "--output", "json")
        assert report.returncode == 0, report.stderr
        paths = json.loads(report.stdout)
        markdown = Path(paths["markdown_path"]).read_text(encoding="utf-8")
        assert "old" in markdown and "FORGED" in markdown
        assert not CONTROL.search(markdown.replace("\n", ""))
        assert not NON_FINITE_TEXT.search(markdown) and "£inf" not in markdown
        document = Path(paths["json_path"]).read_text(encoding="utf-8")
        assert "NaN" not in document and "Infinity" not in document
        json.loads(document, parse_constant=lambda token: pytest.fail(f"{token} in the report JSON"))

    @pytest.mark.slow
    def test_report_of_one_customer_with_non_finite_values(self, run_cli, tmp_path):
        requests = gated_requests(run_cli)
        forge_old_ledger_rows(tmp_path, requests["U134"])
        report = run_cli("cvm", "report", "--run-id", "r1", "--customer", "U128", "--output", "json")
        assert report.returncode == 0, report.stderr
        paths = json.loads(report.stdout)
        markdown = Path(paths["markdown_path"]).read_text(encoding="utf-8")
        assert "Expected value: -" in markdown and "confidence: -" in markdown
        assert not NON_FINITE_TEXT.search(markdown)
        assert "NaN" not in Path(paths["json_path"]).read_text(encoding="utf-8")


class TestSecretsOnTheErrorLine:
    """The one-line error never carries a registered secret, whatever raised it."""

    def test_fail_redacts_a_registered_secret(self, capsys: pytest.CaptureFixture[str]) -> None:
        from cvm.cli.common import fail
        from cvm.utils.logging import register_secret

        register_secret("sk-test-0123456789abcdef")
        with pytest.raises(SystemExit) as exited:
            fail("internal error (HTTPError: 401 for key sk-test-0123456789abcdef)", 1)
        assert exited.value.code == 1
        err = capsys.readouterr().err
        assert "sk-test-0123456789abcdef" not in err and "[REDACTED]" in err


class TestControlCharactersInRunIds:
    """A run id (and the command line run.json records) is the user's text: echoed back, it never drives the terminal."""

    @pytest.mark.slow
    def test_process_notes_and_runs_show_strip_them(self, run_cli):
        hostile = "ab\x1b]0;owned\x07\x1b[2Jcd"
        done = run_cli("cvm", "process", "--customer-ids", "U123", "--selector", "rules", "--dry-run", "--run-id", hostile)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout
        shown = run_cli("cvm", "runs", "show", hostile)
        assert shown.returncode == 0, shown.stderr
        assert "run ab]0;owned[2Jcd  [DRY RUN]" in shown.stdout
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
