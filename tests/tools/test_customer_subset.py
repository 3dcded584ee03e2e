"""A few customers' rows from a data folder of any size: exactly the rows the whole-table reader gives them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvm.tools.customer_subset import CustomerSubset
from cvm.tools.data_source import FileDataSource
from tests.conftest import SAMPLE, isolated_cli_env, run_console_script


def _generated(folder: Path, fmt: str) -> Path:
    out = folder / fmt
    env = isolated_cli_env(folder, f"sqlite:///{folder / 'state.sqlite3'}")
    made = run_console_script("cvm", "data", "generate", "--customers", "40", "--format", fmt, "--out", str(out), env=env, cwd=folder)
    assert made.returncode == 0, made.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_generated_folders_in_each_format(tmp_path, fmt):
    data = _generated(tmp_path, fmt)
    whole = FileDataSource(data)
    wanted = whole.customer_ids()[::7]
    subset = CustomerSubset(data, wanted)
    assert subset.customer_ids() == wanted
    for cid in wanted:
        rows = subset.rows_for(cid)
        assert rows == whole.rows_for(cid) and any(rows.values()), cid
    other = next(c for c in whole.customer_ids() if c not in wanted)
    assert not any(subset.rows_for(other).values()), "nobody else's rows are read"


def test_the_sample_with_json_jsonl_and_csv_tables():
    whole = FileDataSource(SAMPLE)
    subset = CustomerSubset(SAMPLE, ["U123", "U130", "U999"])
    for cid in ("U123", "U130", "U999"):
        assert subset.rows_for(cid) == whole.rows_for(cid), cid
    assert subset.rows_for("U123")["web_clicks"] and subset.rows_for("U123")["network_data"], "csv and jsonl tables read"


def test_parquet_ids_with_spaces_are_the_customers_rows_as_in_the_whole_table_reader(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"customer_id": [" U1", "U2", "U3 "], "name": ["a", "b", "c"]}), tmp_path / "customers.parquet")
    pq.write_table(pa.table({"customer_id": ["U1 ", " U1", "U2"], "data_gb": [1.0, 2.0, 3.0]}), tmp_path / "usage_data.parquet")
    whole = FileDataSource(tmp_path)
    subset = CustomerSubset(tmp_path, ["U1", "U3"])
    for cid in ("U1", "U3"):
        assert subset.rows_for(cid) == whole.rows_for(cid) and subset.rows_for(cid)["customers"], cid
    assert len(subset.rows_for("U1")["usage_data"]) == 2
    assert not any(subset.rows_for("U2").values())


def test_jsonl_rows_whose_id_is_nested_later_or_escaped_are_still_the_customers(tmp_path: Path) -> None:
    """The quick id match only skips a line it can read for sure: a nested ``customer_id`` first, or an escaped id."""
    lines = [
        '{"customer_id": "U2", "name": "b"}',
        '{"referrer": {"customer_id": "U2"}, "customer_id": "U1", "name": "a"}',
        '{"customer_id": "U\\u0033", "name": "c"}',
    ]
    (tmp_path / "customers.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    whole = FileDataSource(tmp_path)
    subset = CustomerSubset(tmp_path, ["U1", "U3"])
    for cid in ("U1", "U3"):
        assert subset.rows_for(cid) == whole.rows_for(cid) and subset.rows_for(cid)["customers"], cid
    assert not any(subset.rows_for("U2").values())
