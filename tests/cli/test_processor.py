"""``cvm_processor_cli`` and ``cvm process`` run as a user runs them: result file, exit codes, ledger, logs."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cvm.tools.records import TimeWindow

SAMPLE_IDS = [f"U{n}" for n in range(123, 135)]
RESULT_KEYS = {
    "customer_id", "status", "selected_treatment", "channel", "explanation", "confidence",
    "expected_value", "alternatives", "selector", "error",
}
STATUSES = {"success", "pending_approval", "no_action", "error"}
SMS_MARKETING = {"retention_sms", "data_boost"}
LONDON = ZoneInfo("Europe/London")


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_usage_error(proc, *mentions: str, one_line: bool = True) -> str:
    """Exit 2, no traceback anywhere, and (by default) exactly one line on stderr that says what is wrong."""
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = nonblank(proc.stderr)
    assert lines, "nothing on stderr"
    if one_line:
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {lines}"
    text = "\n".join(lines)
    for mention in mentions:
        assert mention in text, f"{mention!r} not in {text!r}"
    return text


def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "output"


def load(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"no result file at {path}"
    return json.loads(path.read_text(encoding="utf-8"))


def by_customer(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["customer_id"]: r for r in doc["results"]}


def ledger_rows(tmp_path: Path, sql: str) -> list[tuple]:
    """Rows from the ledger the CLI wrote (CVM_DB_URL of ``cli_env``); [] when it holds no such table yet."""
    path = tmp_path / "state" / "cvm.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def transcript_sentences(sample_dir: Path) -> list[str]:
    sentences = []
    for table in ("call_transcripts.json", "web_transcripts.json"):
        for row in json.loads((sample_dir / table).read_text(encoding="utf-8")):
            text = row.get("transcript") or " ".join(str(m.get("text", "")) for m in row.get("messages", []))
            for piece in re.split(r"(?<=[.?!])\s+|(?:Agent|Customer|Advisor):", text):
                if len(piece.strip()) >= 25:
                    sentences.append(piece.strip())
    return sentences


def rules(*args: str) -> tuple[str, ...]:
    return (*args, "--selector", "rules")


class TestResultFile:
    """The result file holds run_id, generated_at, summary and one full record per customer, where asked."""

    def test_default_name_under_output_dir(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124,U125"))
        assert proc.returncode == 0, proc.stderr
        doc = load(output_dir(tmp_path) / "cvm_results.json")
        assert {"run_id", "generated_at", "summary", "results"} <= set(doc)
        assert doc["run_id"] and doc["generated_at"].startswith("2026-11-23T10:00")
        assert doc["summary"]["total_customers"] == 2
        assert [r["customer_id"] for r in doc["results"]] == ["U124", "U125"]
        for result in doc["results"]:
            assert RESULT_KEYS <= set(result), RESULT_KEYS - set(result)
            assert result["status"] in STATUSES
            assert result["error"] is None
            assert result["selector"] == "rules"
            assert isinstance(result["explanation"], str) and result["explanation"]
            assert 0 <= result["confidence"] <= 1
            assert isinstance(result["expected_value"], (int, float))
            assert result["alternatives"], "every decision lists what was not given"
            for alternative in result["alternatives"]:
                assert alternative["treatment_id"] and alternative["reason"]
        assert "results written to" in proc.stdout

    def test_bare_output_name_goes_to_output_dir(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--output_file", "mine.json"))
        assert proc.returncode == 0, proc.stderr
        assert by_customer(load(output_dir(tmp_path) / "mine.json"))["U124"]["status"] in STATUSES
        assert not (tmp_path / "mine.json").exists()
        assert not (output_dir(tmp_path) / "cvm_results.json").exists()

    def test_path_with_folder_is_written_where_it_says(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--output_file", "reports/today/res.json"))
        assert proc.returncode == 0, proc.stderr
        assert load(tmp_path / "reports" / "today" / "res.json")["results"][0]["customer_id"] == "U124"
        assert not (output_dir(tmp_path) / "res.json").exists()

    def test_all_customers_decides_all_twelve(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--all_customers"))
        assert proc.returncode == 0, proc.stderr
        doc = load(output_dir(tmp_path) / "cvm_results.json")
        assert sorted(r["customer_id"] for r in doc["results"]) == SAMPLE_IDS
        assert all(r["status"] in {"success", "pending_approval", "no_action"} for r in doc["results"])
        assert doc["summary"]["total_customers"] == 12
        assert sum(doc["summary"]["by_status"].values()) == 12
        assert doc["summary"]["by_status"].get("success", 0) >= 5

    def test_cvm_process_works_the_same(self, run_cli, tmp_path):
        proc = run_cli("cvm", "process", *rules("--customer_ids", "U124,U133"))
        assert proc.returncode == 0, proc.stderr
        results = by_customer(load(output_dir(tmp_path) / "cvm_results.json"))
        assert set(results) == {"U124", "U133"}
        assert RESULT_KEYS <= set(results["U124"])
        assert results["U133"]["status"] == "no_action"


class TestExitCodes:
    """0 when everyone is decided, 1 when a customer failed, 2 for bad usage, config or input."""

    def test_unknown_customer_among_good_ones(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124,U999,U125"))
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        # A run that exits 1 completed: output/cvm_results.json holds every customer, the failed one as an error
        (run_file,) = (output_dir(tmp_path) / "runs").glob("*/results.json")
        assert load(output_dir(tmp_path) / "cvm_results.json") == load(run_file)
        results = by_customer(load(run_file))
        assert list(results) == ["U124", "U999", "U125"]
        assert results["U999"]["status"] == "error"
        assert "U999" in results["U999"]["error"]
        assert results["U999"]["selected_treatment"] is None
        for cid in ("U124", "U125"):
            assert results[cid]["status"] != "error" and results[cid]["error"] is None

    def test_id_breaking_the_pattern(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124,bad id!"))
        assert_usage_error(proc, "bad id!")
        assert not (output_dir(tmp_path) / "cvm_results.json").exists()

    def test_missing_config_file(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--config", str(tmp_path / "nope.yaml")))
        assert_usage_error(proc, "nope.yaml")

    def test_config_with_unknown_key(self, run_cli, tmp_path, config_path):
        bad = tmp_path / "bad.yaml"
        bad.write_text(config_path.read_text(encoding="utf-8") + "\nsurprise_key: 1\n", encoding="utf-8")
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--config", str(bad)))
        assert_usage_error(proc, "surprise_key", "bad.yaml")

    def test_data_dir_that_does_not_exist(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--data-dir", str(tmp_path / "missing")))
        assert_usage_error(proc, "missing", one_line=False)

    def test_unwritable_output_path_is_a_usage_error(self, run_cli, tmp_path):
        blocker = tmp_path / "not_a_folder"
        blocker.write_text("a file, not a folder", encoding="utf-8")
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--output_file", str(blocker / "res.json")))
        text = assert_usage_error(proc, "not_a_folder")
        assert "internal error" not in text
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM allocations") in ([], [(0,)]), "capacity taken for a run with no result file"

    def test_empty_data_folder(self, run_cli, tmp_path):
        empty = tmp_path / "empty"
        empty.mkdir()
        proc = run_cli("cvm_processor_cli", *rules("--all_customers", "--data-dir", str(empty)))
        assert proc.returncode == 0, proc.stderr
        doc = load(output_dir(tmp_path) / "cvm_results.json")
        assert doc["results"] == [] and doc["summary"]["total_customers"] == 0

    @pytest.mark.parametrize(
        "args",
        [("--customer_ids", "U124", "--all_customers"), ()],
        ids=["both", "neither"],
    )
    def test_exactly_one_selection_flag(self, run_cli, tmp_path, args):
        proc = run_cli("cvm_processor_cli", *rules(*args))
        assert_usage_error(proc, "--customer_ids", one_line=False)
        assert not (output_dir(tmp_path) / "cvm_results.json").exists()

    def test_unknown_selector(self, run_cli):
        proc = run_cli("cvm_processor_cli", "--customer_ids", "U124", "--selector", "bogus")
        assert_usage_error(proc, "bogus", one_line=False)

    def test_llm_selector_without_endpoint(self, run_cli, cli_env, tmp_path):
        cli_env.pop("OPENAI_BASE_URL", None)
        cli_env.pop("OPENAI_API_KEY", None)
        proc = run_cli("cvm_processor_cli", "--customer_ids", "U124", "--selector", "llm")
        assert_usage_error(proc, "OPENAI_API_KEY")
        assert not (output_dir(tmp_path) / "cvm_results.json").exists()

    def test_help(self, run_cli):
        proc = run_cli("cvm_processor_cli", "--help")
        assert proc.returncode == 0
        for flag in ("--customer-ids", "--all-customers", "--output-file", "--selector", "--dry-run", "--as-of"):
            assert flag in proc.stdout
        for hidden in ("--customer_ids", "--all_customers", "--output_file"):  # still accepted, not shown
            assert hidden not in proc.stdout
        top = run_cli("cvm", "--help")
        assert top.returncode == 0 and "process" in top.stdout


class TestMessyData:
    """A malformed table or record becomes a data-quality note, never a crash of the batch."""

    def test_malformed_json_table(self, run_cli, tmp_path, data_copy):
        (data_copy / "billing_data.json").write_text("[{broken", encoding="utf-8")
        proc = run_cli("cvm_processor_cli", *rules("--all_customers", "--data-dir", str(data_copy)))
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        doc = load(output_dir(tmp_path) / "cvm_results.json")
        assert sorted(r["customer_id"] for r in doc["results"]) == SAMPLE_IDS
        for result in doc["results"]:
            assert result["status"] != "error", result
            assert any("billing_data" in note for note in result["data_quality"]), result["data_quality"]
        assert doc["summary"]["customers_with_data_quality_issues"] == 12

    def test_record_with_wrong_types(self, run_cli, tmp_path, data_copy):
        rows = json.loads((data_copy / "churn_score.json").read_text(encoding="utf-8"))
        for row in rows:
            if row["customer_id"] == "U128":
                key = next(k for k in ("churn_probability", "churn_score", "score") if k in row)
                row[key] = "very low"
        (data_copy / "churn_score.json").write_text(json.dumps(rows), encoding="utf-8")
        proc = run_cli("cvm_processor_cli", *rules("--all_customers", "--data-dir", str(data_copy)))
        assert proc.returncode == 0, proc.stderr
        results = by_customer(load(output_dir(tmp_path) / "cvm_results.json"))
        assert len(results) == 12
        assert any("churn_score" in note for note in results["U128"]["data_quality"])
        assert results["U128"]["status"] != "error"
        for cid, result in results.items():
            assert result["status"] != "error", cid
            if cid != "U128":
                assert not any("churn_score" in note for note in result["data_quality"]), cid


class TestLedger:
    """Re-runs are idempotent, dry runs take nothing, and --as-of sets the day and the do-not-disturb clock."""

    def test_same_run_id_replays_without_new_capacity(self, run_cli, tmp_path):
        first = run_cli("cvm_processor_cli", *rules("--all_customers", "--run-id", "nightly-1", "--output_file", "one.json"))
        assert first.returncode == 0, first.stderr
        usage = sorted(ledger_rows(tmp_path, "SELECT treatment_id, day, used FROM capacity_usage"))
        allocations = sorted(ledger_rows(tmp_path, "SELECT idempotency_key, treatment_id FROM allocations"))
        assert allocations, "the first run allocated nothing"
        second = run_cli("cvm_processor_cli", *rules("--all_customers", "--run-id", "nightly-1", "--output_file", "two.json"))
        assert second.returncode == 0, second.stderr
        one, two = load(output_dir(tmp_path) / "one.json"), load(output_dir(tmp_path) / "two.json")
        assert one["run_id"] == two["run_id"] == "nightly-1"
        assert {c: r["selected_treatment"] for c, r in by_customer(one).items()} == {
            c: r["selected_treatment"] for c, r in by_customer(two).items()
        }
        assert sorted(ledger_rows(tmp_path, "SELECT treatment_id, day, used FROM capacity_usage")) == usage
        assert sorted(ledger_rows(tmp_path, "SELECT idempotency_key, treatment_id FROM allocations")) == allocations
        assert all(r["replayed"] for r in two["results"])
        assert sum(used for _, _, used in usage) == len(allocations)

    def test_dry_run_allocates_nothing(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--all_customers", "--dry-run"))
        assert proc.returncode == 0, proc.stderr
        assert not (output_dir(tmp_path) / "cvm_results.json").exists()  # a dry run never replaces a real run's file
        (run_file,) = (output_dir(tmp_path) / "runs").glob("*/results.json")
        doc = load(run_file)
        assert doc["summary"]["dry_run"] is True
        assert all(r["dry_run"] is True for r in doc["results"])
        assert any(r["status"] == "success" for r in doc["results"])
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM allocations") in ([], [(0,)])
        assert ledger_rows(tmp_path, "SELECT COALESCE(SUM(used), 0) FROM capacity_usage") in ([], [(0,)])
        assert "DRY RUN" in proc.stdout

    # Passes the up-front checks (the folder is writable, the file is new), but the temp file
    # written beside it (".<name>.<32 hex>.tmp") is longer than the 255 bytes a file name may have.
    UNWRITABLE_NAME = "r" * 240 + ".json"

    def test_dry_run_that_cannot_write_its_file_says_nothing_was_recorded(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--dry-run", "--output_file", self.UNWRITABLE_NAME))
        text = assert_usage_error(proc, "could not write", "File name too long", "nothing was recorded (dry run)")
        assert "recorded under run id" not in text and "--run-id" not in text
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM decisions") in ([], [(0,)])
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM allocations") in ([], [(0,)])

    def test_real_run_that_cannot_write_its_file_names_the_run_to_replay(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--run-id", "lost-file", "--output_file", self.UNWRITABLE_NAME))
        assert_usage_error(proc, "could not write", "recorded under run id lost-file", "re-run with --run-id lost-file")
        assert ledger_rows(tmp_path, "SELECT run_id, customer_id FROM decisions") == [("lost-file", "U124")]
        replay = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--run-id", "lost-file", "--output_file", "found.json"))
        assert replay.returncode == 0, replay.stderr
        assert all(r["replayed"] for r in load(output_dir(tmp_path) / "found.json")["results"])

    def test_as_of_sets_the_day_key(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124,U125", "--as-of", "2026-12-01T10:00"))
        assert proc.returncode == 0, proc.stderr
        doc = load(output_dir(tmp_path) / "cvm_results.json")
        assert doc["generated_at"].startswith("2026-12-01T10:00")
        given = [r for r in doc["results"] if r["status"] == "success"]
        assert given
        days = ledger_rows(tmp_path, "SELECT DISTINCT day FROM capacity_usage WHERE used > 0")
        assert days == [("2026-12-01",)]
        assert ledger_rows(tmp_path, "SELECT DISTINCT day FROM allocations") == [("2026-12-01",)]
        assert len(ledger_rows(tmp_path, "SELECT * FROM allocations")) == len(given)

    def test_as_of_late_evening_schedules_outside_dnd(self, run_cli, tmp_path, sample_dir):
        proc = run_cli("cvm_processor_cli", *rules("--all_customers", "--as-of", "2026-11-23T23:30"))
        assert proc.returncode == 0, proc.stderr
        now = datetime(2026, 11, 23, 23, 30, tzinfo=LONDON)
        dnd = {
            row["customer_id"]: TimeWindow.parse(row["do_not_disturb"])
            for row in json.loads((sample_dir / "permissions.json").read_text(encoding="utf-8"))
            if isinstance(row.get("permissions"), dict) and row.get("do_not_disturb")
        }
        interrupting = [
            r for r in load(output_dir(tmp_path) / "cvm_results.json")["results"]
            if r["status"] == "success" and r["channel"] in ("call", "sms", "push_notifications")
        ]
        assert interrupting, "no call/SMS/push decision to check"
        for r in interrupting:
            assert r["scheduled_for"], f"{r['customer_id']}: {r['channel']} at 23:30 was not scheduled"
            when = datetime.fromisoformat(r["scheduled_for"]).astimezone(LONDON)
            assert when > now
            assert not dnd[r["customer_id"]].contains(when.time()), f"{r['customer_id']} scheduled at {when} inside DND"
        stored = ledger_rows(tmp_path, "SELECT customer_id, scheduled_for FROM allocations WHERE scheduled_for IS NOT NULL")
        assert {cid for cid, _ in stored} == {r["customer_id"] for r in interrupting}


class TestOutputAndLogs:
    """Piped output is plain text; the log file is JSON lines without transcript text."""

    def test_piped_output_has_no_escape_codes(self, run_cli):
        proc = run_cli("cvm_processor_cli", *rules("--all_customers"))
        assert proc.returncode == 0, proc.stderr
        assert "\x1b[" not in proc.stdout and "\x1b[" not in proc.stderr
        assert "\r" not in proc.stderr
        assert "U123" in proc.stdout and "results written to" in proc.stdout

    def test_log_file_is_json_lines_without_transcripts(self, run_cli, tmp_path, sample_dir):
        proc = run_cli("cvm_processor_cli", *rules("--all_customers"))
        assert proc.returncode == 0, proc.stderr
        log_file = tmp_path / "logs" / "cvm.log"
        text = log_file.read_text(encoding="utf-8")
        events = [json.loads(line) for line in nonblank(text)]
        assert events and all(isinstance(e, dict) and "event" in e for e in events)
        decided = {e.get("customer_id") for e in events if e["event"] == "customer_decided"}
        assert decided == set(SAMPLE_IDS)
        assert "Ignore your instructions" not in text
        assert "ignore your instructions" not in text.lower()
        for sentence in transcript_sentences(sample_dir):
            assert sentence not in text, f"transcript text in the log: {sentence!r}"


class TestConsent:
    """Opt-outs hold on the command line: no SMS marketing for U124, nothing for U133."""

    def test_opt_outs(self, run_cli, tmp_path):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124,U133"))
        assert proc.returncode == 0, proc.stderr
        results = by_customer(load(output_dir(tmp_path) / "cvm_results.json"))
        u124 = results["U124"]
        assert u124["selected_treatment"] not in SMS_MARKETING
        assert not (u124["channel"] == "sms" and u124.get("purpose") == "marketing")
        reasons = {a["treatment_id"]: a["reason"] for a in u124["alternatives"]}
        assert reasons["retention_sms"] == "no_consent" and reasons["data_boost"] == "no_consent"
        u133 = results["U133"]
        assert u133["status"] == "no_action" and u133["selected_treatment"] == "ignore"
        assert {a["reason"] for a in u133["alternatives"]} <= {"no_consent", "not_eligible", "disabled"}
        assert ledger_rows(tmp_path, "SELECT * FROM allocations WHERE customer_id = 'U133'") == []


class TestDailyContactCap:
    """Following the README on one day used to give U123 four contacts; by default a customer gets one a day."""

    @pytest.mark.slow
    def test_commands_on_one_day_give_one_contact(self, run_cli, tmp_path):
        first = run_cli("cvm_processor_cli", *rules("--customer_ids", "U123", "--output_file", "first.json"))
        assert first.returncode == 0, first.stderr
        given = by_customer(load(output_dir(tmp_path) / "first.json"))["U123"]
        assert given["status"] == "success"
        later_commands = {
            "again.json": ("cvm_processor_cli", *rules("--customer_ids", "U123", "--output_file", "again.json")),
            "batch.json": ("cvm", "process", "--customer_ids", "U123", "--batch", "--output_file", "batch.json"),
        }
        for name, command in later_commands.items():
            proc = run_cli(*command)
            assert proc.returncode == 0, proc.stderr
            result = by_customer(load(output_dir(tmp_path) / name))["U123"]
            assert (result["status"], result["selected_treatment"]) == ("no_action", "ignore"), name
            daily = [a for a in result["alternatives"] if a["reason"] == "contact_limit" and "daily cap" in a["detail"]]
            assert daily, f"{name}: no treatment was refused for the daily cap"
        proposed = run_cli(
            "trigger_customers_cli", "process", "--customer-ids", "U123", "--trigger-type", "network_issues",
            "--treatment", "service_sms", "--output-file", "proposed.json",
        )
        assert proposed.returncode == 0, proposed.stderr
        refused = by_customer(load(output_dir(tmp_path) / "proposed.json"))["U123"]
        assert refused["status"] == "no_action"
        assert [(a["treatment_id"], a["reason"]) for a in refused["alternatives"]] == [("service_sms", "contact_limit")]
        assert "daily cap" in refused["alternatives"][0]["detail"]
        assert ledger_rows(tmp_path, "SELECT treatment_id FROM allocations WHERE customer_id = 'U123' AND state != 'released'") == [
            (given["selected_treatment"],)
        ]

    def test_next_day_may_contact_again(self, run_cli, tmp_path):
        assert run_cli("cvm_processor_cli", *rules("--customer_ids", "U123", "--output_file", "a.json")).returncode == 0
        tomorrow = run_cli("cvm_processor_cli", *rules("--customer_ids", "U123", "--output_file", "b.json"),
                           env={"CVM_NOW": "2026-11-24T10:00:00+00:00"})
        assert tomorrow.returncode == 0, tomorrow.stderr
        result = by_customer(load(output_dir(tmp_path) / "b.json"))["U123"]
        assert not [a for a in result["alternatives"] if "daily cap" in a["detail"]]
        assert len(ledger_rows(tmp_path, "SELECT * FROM allocations WHERE customer_id = 'U123'")) == 2
