"""generate: reproducible files, every table in every format, readable by CVM, streamed; folder and arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cvm.synth import dataset, generate
from cvm.synth.dataset import id_width
from cvm.synth.world import World
from cvm.synth.writers import EXTENSIONS, MANIFEST
from cvm.tools.data_source import FileDataSource
from cvm.tools.records import TABLES, normalise_customer
from cvm.utils.config import load_config
from cvm.utils.errors import UsageError
from tests.conftest import CONFIG
from tests.synth.conftest import FORMATS, SMALL, SMALL_CHUNK, files, normalised, read_rows


class TestReproducible:
    """The seed decides the data: same seed, same bytes; another seed, other data; the format changes nothing."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_same_seed_gives_byte_identical_files(self, small: dict[str, Path], tmp_path: Path, fmt: str) -> None:
        again = generate(tmp_path / "again", SMALL, fmt=fmt, seed=7, chunk_size=SMALL_CHUNK).out_dir
        assert files(again) == files(small[fmt])

    @pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
    def test_another_seed_gives_other_data(self, small: dict[str, Path], tmp_path: Path, fmt: str) -> None:
        other = files(generate(tmp_path / "other", SMALL, fmt=fmt, seed=8, chunk_size=SMALL_CHUNK).out_dir)
        mine = files(small[fmt])
        assert other.keys() == mine.keys()
        assert all(other[name] != mine[name] for name in other)

    def test_every_format_holds_the_same_customers(self, small: dict[str, Path]) -> None:
        jsonl = normalised(small["jsonl"])
        assert len(jsonl) == SMALL
        assert normalised(small["json"]) == jsonl
        assert normalised(small["parquet"]) == jsonl

    def test_ids_count_up_from_one(self, small: dict[str, Path]) -> None:
        ids = [row["customer_id"] for row in read_rows(small["jsonl"], "customers")]
        assert ids == [f"C{n:07d}" for n in range(1, SMALL + 1)]
        assert (id_width(9_999_999), id_width(10_000_000), id_width(50_000_000)) == (7, 8, 8)

    def test_ids_pass_the_configured_id_pattern(self, small: dict[str, Path]) -> None:
        import re

        pattern = re.compile(load_config(CONFIG).validation.customer_id_pattern)
        assert all(pattern.fullmatch(row["customer_id"]) for row in read_rows(small["jsonl"], "customers"))


class TestEveryTableInEveryFormat:
    """Each table is a file CVM reads without a single data-quality issue, in both field shapes."""

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_every_table_and_the_manifest_are_written(self, small: dict[str, Path], fmt: str) -> None:
        expected = {f"{table}{EXTENSIONS[fmt]}" for table in TABLES} | {MANIFEST}
        assert {p.name for p in small[fmt].iterdir()} == expected

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_cvm_reads_every_customer_without_issues(self, small: dict[str, Path], fmt: str) -> None:
        source = FileDataSource(small[fmt])
        assert source.table_issues() == []
        ids = source.customer_ids()
        assert ids == [f"C{n:07d}" for n in range(1, SMALL + 1)]
        with_rows: Counter[str] = Counter()
        for cid in ids:
            data = normalise_customer(cid, source.rows_for(cid), source.table_issues())
            assert data.data_quality == [], (cid, data.data_quality)
            assert data.profile is not None and data.churn is not None
            assert len(data.billing) == 3 and len(data.usage) == 3
            assert 1 <= len(data.network) <= 3 and 2 <= len(data.offers) <= 4
            with_rows.update(data.tables_with_rows)
        assert set(with_rows) == set(TABLES)

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_both_field_shapes_are_present(self, small: dict[str, Path], fmt: str) -> None:
        billing = read_rows(small[fmt], "billing_data")
        usage = read_rows(small[fmt], "usage_data")
        churn = read_rows(small[fmt], "churn_score")
        assert {"billing_date", "monthly_bill", "plan"} <= set().union(*(r.keys() for r in billing if "monthly_bill" in r))
        assert {"date", "monthly_charge", "plan_name"} <= set().union(*(r.keys() for r in billing if "monthly_charge" in r))
        assert any("monthly_bill" in r for r in billing) and any("monthly_charge" in r for r in billing)
        charges = [r["additional_charges"] for r in billing]
        assert any(isinstance(c, list) and c for c in charges)
        if fmt != "parquet":  # one type per Parquet column: there shape A's number is a one-item list
            assert any(isinstance(c, float) for c in charges)
        assert any("total_data_gb" in r and "date" in r for r in usage)
        assert any("data_usage_gb" in r and "month" in r and len(r["month"]) == 7 for r in usage)
        assert any("churn_score" in r for r in churn) and any("churn_probability" in r for r in churn)
        for table in ("call_transcripts", "web_transcripts"):
            rows = read_rows(small[fmt], table)
            assert any("transcript" in r for r in rows) and any("messages" in r for r in rows), table
        calls = read_rows(small[fmt], "call_transcripts")
        assert any("date" in r for r in calls) and any("timestamp" in r for r in calls)

    def test_json_format_is_one_list_per_file(self, small: dict[str, Path]) -> None:
        for table in TABLES:
            text_ = (small["json"] / f"{table}.json").read_text(encoding="utf-8")
            assert text_.startswith("[\n") and text_.endswith("\n]\n")
            assert isinstance(json.loads(text_), list)

    def test_parquet_has_a_row_group_per_chunk(self, small: dict[str, Path]) -> None:
        import pyarrow.parquet as pq

        chunks = -(-SMALL // SMALL_CHUNK)
        for table in TABLES:
            assert pq.ParquetFile(small["parquet"] / f"{table}.parquet").metadata.num_row_groups == chunks

    def test_manifest_tells_how_the_data_was_made(self, small: dict[str, Path]) -> None:
        manifest = json.loads((small["jsonl"] / MANIFEST).read_text(encoding="utf-8"))
        assert {k: manifest[k] for k in ("seed", "customers", "format", "as_of", "chunk_size", "generator_version")} == {
            "seed": 7, "customers": SMALL, "format": "jsonl", "as_of": "2026-11-23", "chunk_size": SMALL_CHUNK,
            "generator_version": dataset.GENERATOR_VERSION,
        }
        for table in TABLES:
            entry = manifest["tables"][table]
            assert entry["file"] == f"{table}.jsonl"
            assert entry["rows"] == len(read_rows(small["jsonl"], table))

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_a_single_customer_and_empty_tables_are_fine(self, tmp_path: Path, fmt: str) -> None:
        folder = generate(tmp_path / "one", 1, fmt=fmt, seed=8).out_dir  # seed 8: no calls, chats, clicks or permissions
        source = FileDataSource(folder)
        assert source.table_issues() == []
        assert source.customer_ids() == ["C0000001"]
        data = normalise_customer("C0000001", source.rows_for("C0000001"))
        assert data.data_quality == [] and data.permissions is None and data.transcripts == [] and data.clicks == []
        rows = {t: entry["rows"] for t, entry in json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["tables"].items()}
        assert [t for t, n in rows.items() if n == 0] == ["call_transcripts", "web_transcripts", "web_clicks", "permissions"]

    def test_as_of_moves_every_date(self, tmp_path: Path) -> None:
        folder = generate(tmp_path / "later", 50, fmt="jsonl", as_of=date(2027, 3, 10)).out_dir
        source = FileDataSource(folder)
        for cid in source.customer_ids():
            data = normalise_customer(cid, source.rows_for(cid))
            assert [b.date.isoformat() for b in data.billing] == ["2027-01-01", "2027-02-01", "2027-03-01"]
            assert all(n.date <= date(2027, 3, 10) for n in data.network)
            assert data.profile.join_date < date(2027, 3, 10)
            assert all(t.at.date() < date(2027, 3, 10) for t in data.transcripts)


class TestStreaming:
    """Memory stays flat: ten times the customers needs hardly more memory."""

    # Peak RSS of the child alone: Linux's VmHWM starts afresh at exec, whereas ru_maxrss keeps
    # the peak of the (large) pytest process the child was forked from.
    SCRIPT = (
        "import re, resource, sys\n"
        "from pathlib import Path\n"
        "from cvm.synth import generate\n"
        "generate(sys.argv[1], int(sys.argv[2]), fmt=sys.argv[3], chunk_size=20000)\n"
        "status = Path('/proc/self/status')\n"
        "hwm = re.search(r'VmHWM:\\s*(\\d+) kB', status.read_text()) if status.exists() else None\n"
        "print(hwm.group(1) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    def peak_kb(self, folder: Path, customers: int, fmt: str) -> int:
        done = subprocess.run([sys.executable, "-c", self.SCRIPT, str(folder), str(customers), fmt],
                              capture_output=True, text=True, check=True, timeout=300)
        return int(done.stdout.split()[-1])

    @pytest.mark.slow
    def test_peak_memory_does_not_grow_with_customers(self, tmp_path: Path) -> None:
        small = self.peak_kb(tmp_path / "small", 40_000, "parquet")
        large = self.peak_kb(tmp_path / "large", 200_000, "parquet")
        print(f"peak RSS: 40,000 customers {small / 1024:.0f} MB, 200,000 customers {large / 1024:.0f} MB")
        assert large - small < 40 * 1024, (small, large)


class TestPipeline:
    """Generated customers go through the real decision pipeline."""

    def test_fifty_customers_are_decided_without_errors(self, small: dict[str, Path], make_runtime: Callable[..., Any]) -> None:
        runtime = make_runtime(data_dir=small["parquet"])
        results = runtime.orchestrator.decide_many([f"C{n:07d}" for n in range(1, 51)])
        assert [r.status for r in results if r.status == "error"] == []
        assert len({r.selected_treatment for r in results}) >= 3
        assert any(r.status == "success" for r in results)


class TestFolderAndArguments:
    """A non-empty folder is refused unless --force; bad arguments are usage errors; a failure leaves nothing behind."""

    def test_non_empty_folder_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "notes.txt").write_text("keep me")
        with pytest.raises(UsageError, match="not empty.*--force"):
            generate(tmp_path / "out", 10, fmt="jsonl")
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]

    def test_force_replaces_tables_in_any_format_and_keeps_other_files(self, tmp_path: Path) -> None:
        out = tmp_path / "out"
        generate(out, 10, fmt="parquet")
        (out / "notes.txt").write_text("keep me")
        (out / "web_clicks.csv").write_text("customer_id,timestamp,page\nX,2026-01-01,/\n")
        generate(out, 10, fmt="jsonl", force=True)
        assert {p.suffix for p in out.iterdir()} == {".jsonl", ".json", ".txt"}
        assert (out / "notes.txt").read_text() == "keep me"
        assert FileDataSource(out).customer_ids() == [f"C{n:07d}" for n in range(1, 11)]

    def test_a_file_is_not_a_folder(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_text("x")
        with pytest.raises(UsageError, match="is a file"):
            generate(tmp_path / "file", 10, fmt="jsonl")

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            (dict(customers=0), "--customers"), (dict(customers=50_000_001), "--customers"), (dict(chunk_size=0), "--chunk-size"),
            (dict(seed=-1), "--seed"), (dict(fmt="csv"), "--format"),
        ],
    )
    def test_bad_arguments_are_usage_errors(self, tmp_path: Path, arguments: dict[str, Any], message: str) -> None:
        values = dict(customers=10, fmt="jsonl") | arguments
        with pytest.raises(UsageError, match=message):
            generate(tmp_path / "out", values.pop("customers"), **values)
        assert not (tmp_path / "out").exists()

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_a_failure_removes_the_partial_files(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
        original = World.table
        calls = {"n": 0}

        def failing(self: Any, name: str, parquet: bool = False) -> Any:
            calls["n"] += 1
            if calls["n"] > len(TABLES) + 3:  # in the second chunk, after the first was written
                raise RuntimeError("boom")
            return original(self, name, parquet)

        monkeypatch.setattr(World, "table", failing)
        with pytest.raises(RuntimeError, match="boom"):
            generate(tmp_path / "out", 30, fmt=fmt, chunk_size=10)
        assert list((tmp_path / "out").iterdir()) == []

    def test_progress_reports_customers_done(self, tmp_path: Path) -> None:
        seen: list[int] = []
        generate(tmp_path / "out", 25, fmt="jsonl", chunk_size=10, progress=seen.append)
        assert seen == [10, 20, 25]
