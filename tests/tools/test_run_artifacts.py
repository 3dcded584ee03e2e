"""``cvm.tools.run_artifacts``: run folders, cheap table digests, result-file copies, the run listing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cvm.tools import run_artifacts


def test_folder_names_are_safe_and_never_reused(tmp_path: Path) -> None:
    first = run_artifacts.new_run_folder(tmp_path, "run-20261123T100000-1a2b3c")
    again = run_artifacts.new_run_folder(tmp_path, "run-20261123T100000-1a2b3c")
    assert (first.name, again.name) == ("run-20261123T100000-1a2b3c", "run-20261123T100000-1a2b3c.2")
    hostile = run_artifacts.new_run_folder(tmp_path, "../../etc/passwd")
    assert hostile.parent == tmp_path / "runs" and hostile.name.startswith("run-")
    assert run_artifacts.folder_name("a..b") != "a..b"


def test_table_digests_follow_a_rewrite_without_reading_the_bytes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    table = data / "customers.jsonl"
    table.write_text('{"customer_id": "U1"}\n', encoding="utf-8")
    (data / ".hidden").write_text("x", encoding="utf-8")
    before = run_artifacts.table_digests(data)
    assert list(before["tables"]) == ["customers.jsonl"] and before["tables"]["customers.jsonl"]["bytes"] == 22
    assert run_artifacts.table_digests(data)["digest"] == before["digest"]  # stable
    table.write_text('{"customer_id": "U2"}\n', encoding="utf-8")  # same size, new content
    st = table.stat()
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert run_artifacts.table_digests(data)["digest"] != before["digest"]


def test_copy_links_the_parquet_beside_the_copy(tmp_path: Path) -> None:
    folder = run_artifacts.new_run_folder(tmp_path, "big")
    source = folder / run_artifacts.RESULTS_FILE
    pq.write_table(pa.table({"customer_id": ["U1", "U2"]}), source.with_suffix(".parquet"))
    source.write_text(json.dumps({"run_id": "big", "results_file": str(source.with_suffix(".parquet")), "results": []}), encoding="utf-8")
    target = tmp_path / "cvm_results.json"
    run_artifacts.copy_result_file(source, target)
    copied = json.loads(target.read_text(encoding="utf-8"))
    assert copied["results_file"] == str(tmp_path / "cvm_results.parquet")
    assert pq.read_table(copied["results_file"]).column("customer_id").to_pylist() == ["U1", "U2"]


def test_listing_skips_runs_without_a_record(tmp_path: Path) -> None:
    for run_id, started in (("a", "2026-11-23T10:00:00"), ("b", "2026-11-23T11:00:00")):
        run_artifacts.write_run_record(run_artifacts.new_run_folder(tmp_path, run_id), {"run_id": run_id, "started_at": started})
    run_artifacts.new_run_folder(tmp_path, "still-running")  # no run.json yet
    (run_artifacts.new_run_folder(tmp_path, "broken") / run_artifacts.RUN_RECORD).write_text("{", encoding="utf-8")
    assert [r["run_id"] for r in run_artifacts.list_runs(tmp_path)] == ["b", "a"]
    assert [Path(r["folder"]).name for r in run_artifacts.find_runs(tmp_path, "a")] == ["a"]
