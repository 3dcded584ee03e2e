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


def large_run_result(tmp_path: Path) -> Path:
    """A large run's ``results.json``: a summary naming the Parquet file of its rows beside it."""
    source = run_artifacts.new_run_folder(tmp_path, "big") / run_artifacts.RESULTS_FILE
    pq.write_table(pa.table({"customer_id": ["U1", "U2"]}), source.with_suffix(".parquet"))
    source.write_text(json.dumps({"run_id": "big", "results_file": str(source.with_suffix(".parquet")), "results": []}), encoding="utf-8")
    return source


def test_copy_links_the_parquet_beside_the_copy(tmp_path: Path) -> None:
    target = tmp_path / "cvm_results.json"
    run_artifacts.copy_result_file(large_run_result(tmp_path), target)
    copied = json.loads(target.read_text(encoding="utf-8"))
    assert copied["results_file"] == str(tmp_path / "cvm_results.parquet")
    assert pq.read_table(copied["results_file"]).column("customer_id").to_pylist() == ["U1", "U2"]


def test_a_small_run_copied_over_a_large_one_leaves_no_stale_parquet(tmp_path: Path) -> None:
    """The copy's Parquet from the large run would read as the small run's rows."""
    target = tmp_path / "cvm_results.json"
    run_artifacts.copy_result_file(large_run_result(tmp_path), target)
    assert target.with_suffix(".parquet").is_file()
    small = run_artifacts.new_run_folder(tmp_path, "small") / run_artifacts.RESULTS_FILE
    small.write_text(json.dumps({"run_id": "small", "results": [{"customer_id": "U3"}]}), encoding="utf-8")
    run_artifacts.copy_result_file(small, target)
    assert target.read_bytes() == small.read_bytes()
    assert not target.with_suffix(".parquet").exists()


def test_the_stale_parquet_goes_however_the_path_to_it_is_written(tmp_path: Path, monkeypatch) -> None:
    """A run from the repo root (output/...) then one with an absolute CVM_OUTPUT_DIR named one file two ways."""
    monkeypatch.chdir(tmp_path)
    run_artifacts.copy_result_file(large_run_result(tmp_path), Path("cvm_results.json"))
    small = run_artifacts.new_run_folder(tmp_path, "small") / run_artifacts.RESULTS_FILE
    small.write_text(json.dumps({"run_id": "small", "results": []}), encoding="utf-8")
    run_artifacts.copy_result_file(small, tmp_path / "cvm_results.json")
    assert not (tmp_path / "cvm_results.parquet").exists()


def test_a_parquet_file_the_copy_does_not_name_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "mine.json"
    target.write_text(json.dumps({"run_id": "old", "results": []}), encoding="utf-8")
    pq.write_table(pa.table({"x": [1]}), target.with_suffix(".parquet"))
    small = run_artifacts.new_run_folder(tmp_path, "small") / run_artifacts.RESULTS_FILE
    small.write_text(json.dumps({"run_id": "small", "results": []}), encoding="utf-8")
    run_artifacts.copy_result_file(small, target)
    assert pq.read_table(target.with_suffix(".parquet")).column("x").to_pylist() == [1]


def test_listing_skips_runs_without_a_record(tmp_path: Path) -> None:
    for run_id, started in (("a", "2026-11-23T10:00:00"), ("b", "2026-11-23T11:00:00")):
        run_artifacts.write_run_record(run_artifacts.new_run_folder(tmp_path, run_id), {"run_id": run_id, "started_at": started})
    run_artifacts.new_run_folder(tmp_path, "still-running")  # no run.json yet
    (run_artifacts.new_run_folder(tmp_path, "broken") / run_artifacts.RUN_RECORD).write_text("{", encoding="utf-8")
    assert [r["run_id"] for r in run_artifacts.list_runs(tmp_path)] == ["b", "a"]
    assert [Path(r["folder"]).name for r in run_artifacts.find_runs(tmp_path, "a")] == ["a"]


def test_listing_skips_records_of_another_shape(tmp_path: Path) -> None:
    """``cvm runs list|show`` read these fields: a hand-edited record must not crash them (it is left out, like a damaged file)."""
    good = {"run_id": "good", "started_at": "2026-11-23T10:00:00", "counts": {"customers": 1, "by_status": {"success": 1}},
            "timings_seconds": {"total": 0.5}, "command": ["cvm", "process"]}
    run_artifacts.write_run_record(run_artifacts.new_run_folder(tmp_path, "good"), good)
    for name, bad in (("counts", {"counts": None}), ("timings", {"timings_seconds": ["1"]}), ("timing", {"timings_seconds": {"total": "1"}}),
                      ("command", {"command": "cvm process"}), ("status", {"counts": {"by_status": []}}), ("no-id", {"run_id": None}),
                      ("tables", {"data": {"tables": 3}})):
        run_artifacts.write_run_record(run_artifacts.new_run_folder(tmp_path, name), {**good, "run_id": name, **bad})
    assert [r["run_id"] for r in run_artifacts.list_runs(tmp_path)] == ["good"]


def test_copy_of_a_json_result_file_is_its_bytes_never_parsed(tmp_path: Path) -> None:
    import tracemalloc

    source = tmp_path / "results.json"
    rows = ",\n".join(json.dumps({"customer_id": f"U{i}", "status": "success", "explanation": "x" * 200}) for i in range(40_000))
    source.write_text('{"run_id": "r", "summary": {}, "results": [\n' + rows + "\n]}\n", encoding="utf-8")
    target = tmp_path / "out" / "cvm_results.json"
    tracemalloc.start()
    try:
        run_artifacts.copy_result_file(source, target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert target.read_bytes() == source.read_bytes()
    assert peak < 4_000_000  # a 10 MB file: a buffer's worth, not the parsed document
    assert [p.name for p in target.parent.iterdir()] == ["cvm_results.json"]  # no temp file left
