"""Run artifacts (output/runs/<run id>/), ``cvm runs``, ``cvm state reset`` and ``flows runs --status`` (issue 12 items 3, 6, 8)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cvm.flows.store import FlowStore, NewRun, NewStep


def run_folders(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "output" / "runs").iterdir())


@pytest.mark.slow
def test_a_run_writes_its_folder_and_a_dry_run_never_replaces_the_latest_file(run_cli, tmp_path: Path) -> None:
    real = run_cli("cvm", "process", "--customer-ids", "U123,U124", "--selector", "rules", "--run-id", "real-1")
    assert real.returncode == 0, real.stderr
    folder = tmp_path / "output" / "runs" / "real-1"
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    latest = tmp_path / "output" / "cvm_results.json"
    assert json.loads(latest.read_text(encoding="utf-8")) == results  # the compatibility copy
    assert {"cvm_version", "command", "config", "data", "as_of", "selector", "timings_seconds", "counts", "exit_code"} <= set(record)
    assert record["command"][:2] == ["cvm", "process"] and record["exit_code"] == 0 and record["dry_run"] is False
    assert record["as_of"].startswith("2026-11-23T10:00") and record["selector"] == "rules"
    assert record["counts"] == {"customers": 2, "by_status": results["summary"]["by_status"]}
    assert {"setup", "select", "decide", "write", "total"} <= set(record["timings_seconds"])
    assert len(record["config"]["digest"]) == 64
    assert "customers.json" in record["data"]["tables"] and record["data"]["method"] == "sha256(name, size, mtime)"
    before = latest.read_bytes()

    dry = run_cli("cvm", "process", "--all-customers", "--selector", "rules", "--dry-run")
    assert dry.returncode == 0
    assert latest.read_bytes() == before  # a dry run never replaces it
    failed = run_cli("cvm", "process", "--customer-ids", "U123,U999", "--selector", "rules")
    assert failed.returncode == 1  # completed with a failed customer: the file holds every customer, as DESIGN section 8 says
    assert [r["customer_id"] for r in json.loads(latest.read_text(encoding="utf-8"))["results"]] == ["U123", "U999"]
    records = [json.loads((f / "run.json").read_text(encoding="utf-8")) for f in run_folders(tmp_path)]
    assert sorted((r["dry_run"], r["exit_code"]) for r in records) == [(False, 0), (False, 1), (True, 0)]

    replay = run_cli("cvm", "process", "--customer-ids", "U123,U124", "--selector", "rules", "--run-id", "real-1")
    assert replay.returncode == 0, replay.stderr
    assert (tmp_path / "output" / "runs" / "real-1.2" / "run.json").is_file()  # the first record is kept
    assert json.loads((folder / "run.json").read_text(encoding="utf-8")) == record


def test_run_record_as_of_is_the_clock_with_its_offset(run_cli, cli_env: dict[str, str], tmp_path: Path) -> None:
    from datetime import datetime

    from tests.conftest import run_console_script

    assert run_cli("cvm", "process", "--customer-ids", "U123", "--dry-run", "--run-id", "fixed").returncode == 0
    system_env = {k: v for k, v in cli_env.items() if k != "CVM_NOW"}
    done = run_console_script("cvm", "process", "--customer-ids", "U123", "--dry-run", "--run-id", "system", env=system_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    fixed, system = (json.loads((tmp_path / "output" / "runs" / name / "run.json").read_text(encoding="utf-8")) for name in ("fixed", "system"))
    assert datetime.fromisoformat(fixed["as_of"]) == datetime.fromisoformat("2026-11-23T10:00:00+00:00")  # Europe/London in winter
    assert datetime.fromisoformat(fixed["as_of"]).utcoffset() is not None
    assert datetime.fromisoformat(system["as_of"]) == datetime.fromisoformat(system["started_at"])  # not the finish time


def test_dry_run_with_an_output_file_writes_it(run_cli, tmp_path: Path) -> None:
    done = run_cli("cvm", "process", "--customer-ids", "U123", "--selector", "rules", "--dry-run", "--output-file", "mine.json")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "output" / "mine.json").read_text(encoding="utf-8"))["summary"]["dry_run"] is True
    assert not (tmp_path / "output" / "cvm_results.json").exists()


@pytest.mark.slow
def test_runs_list_and_show(run_cli, tmp_path: Path) -> None:
    assert "no runs recorded" in run_cli("cvm", "runs", "list").stdout
    for args in (("--run-id", "first"), ("--dry-run", "--run-id", "second")):
        assert run_cli("cvm", "process", "--all-customers", "--selector", "rules", *args).returncode == 0
    listed = json.loads(run_cli("cvm", "runs", "list", "--output", "json").stdout)
    assert [r["run_id"] for r in listed] == ["second", "first"]  # newest first
    shown = run_cli("cvm", "runs", "show", "first")
    assert shown.returncode == 0, shown.stderr
    assert "run first: exit 0, per_customer path" in shown.stdout
    assert "ledger now: 12 decision(s) recorded" in shown.stdout
    as_json = json.loads(run_cli("cvm", "runs", "show", "first", "--output", "json").stdout)
    assert as_json["run"]["run_id"] == "first" and as_json["ledger"]["decisions"] == 12
    assert json.loads(run_cli("cvm", "runs", "show", "second", "--output", "json").stdout)["ledger"] is None  # dry: nothing recorded
    missing = run_cli("cvm", "runs", "show", "nope")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no run 'nope'")


def test_state_reset_clears_ledger_outputs_and_logs_never_venv(run_cli, tmp_path: Path) -> None:
    assert run_cli("cvm", "process", "--customer-ids", "U123", "--selector", "rules").returncode == 0
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n", encoding="utf-8")
    state = tmp_path / "state" / "cvm.sqlite3"
    assert state.is_file() and (tmp_path / "output").is_dir() and (tmp_path / "logs").is_dir()
    (tmp_path / "output" / ".gitkeep").write_text("", encoding="utf-8")  # a checkout's placeholder stays

    refused = run_cli("cvm", "state", "reset")  # no terminal to ask, no --yes: nothing removed
    assert refused.returncode == 2 and "add --yes to confirm (nothing removed)" in refused.stderr
    assert state.is_file()

    done = run_cli("cvm", "state", "reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert not state.exists()
    assert [p.name for p in (tmp_path / "output").iterdir()] == [".gitkeep"] and list((tmp_path / "logs").iterdir()) == []
    assert (venv / "bin" / "python").is_file()
    assert run_cli("cvm", "state", "reset", "--yes").stdout.startswith("nothing to reset")


def test_state_reset_refuses_a_project_folder(run_cli, tmp_path: Path) -> None:
    project = tmp_path / "checkout"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\n", encoding="utf-8")
    refused = run_cli("cvm", "state", "reset", "--yes", env={"CVM_OUTPUT_DIR": str(project)})
    assert refused.returncode == 2 and "holds pyproject.toml: refusing to empty a project folder" in refused.stderr
    assert (project / "pyproject.toml").is_file()
    here = run_cli("cvm", "state", "reset", "--yes", env={"CVM_LOG_DIR": "."})
    assert here.returncode == 2 and "refusing to empty the root, home or working folder" in here.stderr


def test_state_reset_waits_for_no_one_holding_the_ledger(run_cli, tmp_path: Path) -> None:
    assert run_cli("cvm", "process", "--customer-ids", "U123", "--selector", "rules").returncode == 0
    holder = sqlite3.connect(tmp_path / "state" / "cvm.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        busy = run_cli("cvm", "state", "reset", "--yes")
        assert busy.returncode == 4 and "in use" in busy.stderr
    finally:
        holder.close()
    assert (tmp_path / "state" / "cvm.sqlite3").is_file()


def test_state_reset_refuses_a_ledger_another_process_has_open_between_writes(run_cli, tmp_path: Path) -> None:
    assert run_cli("cvm", "process", "--customer-ids", "U123", "--selector", "rules").returncode == 0
    database = tmp_path / "state" / "cvm.sqlite3"
    holder = sqlite3.connect(database, isolation_level=None)  # a scheduler or a run between two customers: open, idle
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        assert holder.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1
        busy = run_cli("cvm", "state", "reset", "--yes")
        assert busy.returncode == 4 and "stop the other cvm command first" in busy.stderr, busy.stderr
        assert database.is_file() and holder.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1
    finally:
        holder.close()
    done = run_cli("cvm", "state", "reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert not database.exists()


def test_state_reset_refuses_a_database_url_naming_another_kind_of_file(run_cli, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a ledger\n", encoding="utf-8")
    refused = run_cli("cvm", "state", "reset", "--yes", env={"CVM_DB_URL": f"sqlite:///{notes}"})
    assert refused.returncode == 2 and "is not an SQLite database: refusing to remove it" in refused.stderr, refused.stderr
    assert notes.read_text(encoding="utf-8") == "not a ledger\n"


def _flow_runs(db_url: str, statuses: dict[str, str]) -> None:
    store = FlowStore.from_url(db_url)
    for run_id, status in statuses.items():
        new = NewRun(run_id=run_id, flow_id="daily", flow_version="1", flow_file="daily.yaml", flow_digest="d", inputs={},
                     options={}, run_clock="2026-11-23T10:00:00+00:00", owner="test")
        store.create_run(new, [NewStep("decide", "orchestrator", "process_batch", ())])
        store.finish_run(run_id, status, None if status == "succeeded" else "step 'decide' failed")  # type: ignore[arg-type]


def test_flows_runs_status_filter(run_cli, db_url: str) -> None:
    _flow_runs(db_url, {"ok-1": "succeeded", "half-1": "partial"})
    none = run_cli("cvm", "flows", "runs", "--status", "failed")
    assert none.returncode == 0
    assert none.stdout.strip() == "no failed runs (there are 2: 1 partial, 1 succeeded; drop the filter to list them)"
    _flow_runs(db_url, {"bad-1": "failed"})
    failed = json.loads(run_cli("cvm", "flows", "runs", "--status", "failed", "--output", "json").stdout)
    assert [r["run_id"] for r in failed] == ["bad-1"]
    table = run_cli("cvm", "flows", "runs", "--status", "partial").stdout
    assert "half-1" in table and "ok-1" not in table and "bad-1" not in table


def test_at_scale_the_rows_stay_in_parquet_and_the_console_stays_bounded(run_cli, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    import yaml

    from tests.conftest import CONFIG

    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {"json_results_max": 0}  # the Parquet writer from the first row
    config = tmp_path / "parquet.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = run_cli("cvm", "process", "--all-customers", "--batch", "--config", str(config), "--show", "2", "--run-id", "big")
    assert done.returncode == 0, done.stderr
    assert "... 10 more of 12 row(s) not shown" in done.stdout
    record = json.loads((tmp_path / "output" / "runs" / "big" / "run.json").read_text(encoding="utf-8"))
    assert record["path"] == "batch" and record["results_parquet"].endswith("runs/big/results.parquet")
    latest = json.loads((tmp_path / "output" / "cvm_results.json").read_text(encoding="utf-8"))
    assert latest["results_file"] == str(tmp_path / "output" / "cvm_results.parquet")
    assert pq.read_table(latest["results_file"]).num_rows == 12
    as_csv = run_cli("cvm", "process", "--all-customers", "--batch", "--config", str(config), "--dry-run", "--output", "csv")
    assert len(as_csv.stdout.splitlines()) == 13 and as_csv.stdout.startswith("customer_id,status")


def test_a_copy_that_cannot_be_written_is_the_exit_code_in_run_json(run_cli, tmp_path: Path) -> None:
    import yaml

    from tests.conftest import CONFIG

    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {"json_results_max": 0}
    config = tmp_path / "parquet.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    (tmp_path / "output" / "cvm_results.parquet").mkdir(parents=True)  # where the copy's Parquet file must go
    done = run_cli("cvm", "process", "--all-customers", "--batch", "--config", str(config), "--run-id", "copy")
    assert done.returncode == 2 and "could not write" in done.stderr
    record = json.loads((tmp_path / "output" / "runs" / "copy" / "run.json").read_text(encoding="utf-8"))
    assert record["exit_code"] == 2 and record["copy_error"]


def test_at_scale_the_bounded_table_shows_approvals_waiting_first(run_cli, tmp_path: Path) -> None:
    import yaml

    from tests.conftest import CONFIG

    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {"json_results_max": 0}  # rows in Parquet: the table reads its head from there
    config = tmp_path / "parquet.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    args = ("cvm", "process", "--all-customers", "--batch", "--config", str(config), "--dry-run")
    rows = [line.split(",")[:2] for line in run_cli(*args, "--output", "csv").stdout.splitlines()[1:]]
    waiting = [cid for cid, status in rows if status == "pending_approval"]
    assert waiting and rows[0][0] not in waiting  # the sample's approvals are not its first rows
    table = run_cli(*args, "--show", str(len(waiting)))
    assert table.returncode == 0, table.stderr
    shown = [line.split("│")[1].strip() for line in table.stdout.splitlines() if line.startswith("│")]
    assert shown == waiting  # as on the per-customer path: what needs a person comes first


def test_state_reset_refuses_a_folder_holding_the_data_or_the_config(run_cli, tmp_path: Path) -> None:
    site = tmp_path / "srv"
    (site / "data").mkdir(parents=True)
    (site / "data" / "customers.json").write_text("[]", encoding="utf-8")
    (site / "cvm_config.yaml").write_text("settings: {}\n", encoding="utf-8")
    (site / "cvm_results.json").write_text("{}", encoding="utf-8")
    for env in ({"CVM_OUTPUT_DIR": str(site), "CVM_DATA_DIR": str(site / "data")},
                {"CVM_LOG_DIR": str(site), "CVM_CONFIG": str(site / "cvm_config.yaml")},
                {"CVM_OUTPUT_DIR": str(site / "data"), "CVM_DATA_DIR": str(site / "data")}):
        refused = run_cli("cvm", "state", "reset", "--yes", env=env)
        assert refused.returncode == 2 and "refusing to empty it" in refused.stderr, (env, refused.stderr)
    assert sorted(p.name for p in site.iterdir()) == ["cvm_config.yaml", "cvm_results.json", "data"]
    assert (site / "data" / "customers.json").is_file()


def test_runs_show_counts_the_ledger_in_sql_not_by_reading_every_decision(db_url: str, tmp_path: Path) -> None:
    import tracemalloc

    from cvm.cli.runs import _ledger_view
    from cvm.tools.ledger import SQLiteLedger
    from cvm.tools.sqlite_store import sqlite_path
    from cvm.utils.settings import RuntimeSettings

    SQLiteLedger.from_url(db_url).close()  # the ledger's tables
    padding = json.dumps({"explanation": "x" * 20_000})  # a stored result record of a realistic-to-large size
    with sqlite3.connect(sqlite_path(db_url)) as conn:
        conn.executemany(
            "INSERT INTO decisions VALUES ('big', ?, ?, NULL, ?, 'd', '2026-11-23T10:00:00+00:00')",
            ((f"C{i:05d}", "success" if i % 4 else "no_action", padding) for i in range(2_000)),
        )
    from tests.conftest import CONFIG

    settings = RuntimeSettings.model_validate({"CVM_DB_URL": db_url, "CVM_OUTPUT_DIR": str(tmp_path / "output"), "CVM_CONFIG": str(CONFIG)})
    tracemalloc.start()
    try:
        view = _ledger_view(settings, "big")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert view == {"decisions": 2_000, "by_status": {"no_action": 500, "success": 1_500}, "by_status_now": {"no_action": 500, "success": 1_500}}
    assert peak < 8_000_000  # the 40 MB of stored records stay in SQLite
    assert _ledger_view(settings, "other") is None


@pytest.mark.slow
def test_runs_show_counts_approvals_decided_since_the_run_like_the_report(run_cli) -> None:
    assert run_cli("cvm", "process", "--all-customers", "--selector", "rules", "--run-id", "held").returncode == 0
    pending = json.loads(run_cli("cvm", "approvals", "list", "--output", "json").stdout)
    assert len(pending) == 2
    assert run_cli("cvm", "approvals", "approve", pending[0]["request_id"], "--by", "Ann Lee").returncode == 0
    assert run_cli("cvm", "approvals", "reject", pending[1]["request_id"], "--by", "Ann Lee", "--reason", "no").returncode == 0
    ledger = json.loads(run_cli("cvm", "runs", "show", "held", "--output", "json").stdout)["ledger"]
    report = json.loads(run_cli("cvm", "report", "--run-id", "held", "--output", "json").stdout)
    assert ledger["by_status"] == report["by_status"] and ledger["by_status"]["pending_approval"] == 2
    assert ledger["by_status_now"] == report["by_status_now"] and "pending_approval" not in ledger["by_status_now"]
    assert "after approvals decided since:" in run_cli("cvm", "runs", "show", "held").stdout


def test_a_run_that_fails_part_way_still_gets_its_folder_and_run_json(run_cli, tmp_path: Path) -> None:
    import shutil

    from tests.conftest import SAMPLE

    data = tmp_path / "broken"
    shutil.copytree(SAMPLE, data)
    with (data / "network_data.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"customer_id": "U900", broken\n')  # the batch path refuses the table once the run is under way
    failed = run_cli("cvm", "process", "--all-customers", "--batch", "--data-dir", str(data), "--run-id", "broke")
    assert failed.returncode == 2 and "network_data.jsonl" in failed.stderr, failed.stderr
    record = json.loads((tmp_path / "output" / "runs" / "broke" / "run.json").read_text(encoding="utf-8"))
    assert record["exit_code"] == 2 and "network_data.jsonl" in record["error"] and "decide" in record["timings_seconds"]
    listed = json.loads(run_cli("cvm", "runs", "list", "--output", "json").stdout)
    assert [(r["run_id"], r["exit_code"]) for r in listed] == [("broke", 2)]
    assert "run broke: exit 2" in run_cli("cvm", "runs", "show", "broke").stdout
    assert not (tmp_path / "output" / "cvm_results.json").exists()
