"""``cvm process --batch`` run as a user would: result files, exit codes, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import math
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import CONFIG


@pytest.mark.slow
def test_batch_json_contract(run_cli, tmp_path: Path) -> None:
    """A small run writes the JSON result contract, with the optimiser's figures in the summary."""
    done = run_cli("cvm", "process", "--all_customers", "--batch", "--output_file", "batch.json")
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "output" / "batch.json").read_text(encoding="utf-8"))
    assert {"run_id", "generated_at", "summary", "results"} <= document.keys()
    assert len(document["results"]) == 12
    assert document["summary"]["batch"]["optimiser"]["gap"] <= 1e-9
    for result in document["results"]:
        assert {"customer_id", "status", "selected_treatment", "channel", "explanation", "confidence",
                "expected_value", "alternatives", "selector", "error"} <= result.keys()


@pytest.mark.slow
def test_large_runs_write_parquet(run_cli, tmp_path: Path) -> None:
    """Above batch.json_results_max the rows go to Parquet beside a JSON summary that points at them."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {"json_results_max": 0}
    config = tmp_path / "parquet.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = run_cli("cvm", "process", "--all_customers", "--batch", "--config", str(config), "--output_file", "big.json")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "output" / "big.json").read_text(encoding="utf-8"))
    table = pq.read_table(summary["results_file"])
    assert table.num_rows == 12 == summary["summary"]["total_customers"]
    assert {"customer_id", "status", "selected_treatment", "expected_value", "confidence"} <= set(table.column_names)
    statuses = table.column("status").to_pylist()
    assert summary["summary"]["by_status"] == {s: statuses.count(s) for s in set(statuses)}


@pytest.mark.slow
def test_csv_has_the_same_columns_and_values_whether_rows_are_in_parquet_or_json(run_cli, tmp_path: Path) -> None:
    """A script reading decisions by header must not break when a run's rows move to Parquet at scale."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {"json_results_max": 0}
    parquet_config = tmp_path / "parquet.yaml"
    parquet_config.write_text(yaml.safe_dump(data), encoding="utf-8")
    as_json = run_cli("cvm", "process", "--all-customers", "--batch", "--output", "csv", "--dry-run")
    in_parquet = run_cli("cvm", "process", "--all-customers", "--batch", "--output", "csv", "--dry-run", "--config", str(parquet_config))
    assert as_json.returncode == 0 and in_parquet.returncode == 0, (as_json.stderr, in_parquet.stderr)
    assert "results.parquet" in in_parquet.stderr  # the rows really came from Parquet
    small, large = (list(csv.DictReader(io.StringIO(p.stdout))) for p in (as_json, in_parquet))
    assert list(large[0]) == list(small[0])
    assert [(r["customer_id"], r["channel"], r["requires_approval"]) for r in large] == [
        (r["customer_id"], r["channel"], r["requires_approval"]) for r in small
    ]
    assert {r["channel"] for r in large} >= {"none", "email"}


def test_unknown_customer_exits_1(run_cli, tmp_path: Path) -> None:
    done = run_cli("cvm", "process", "--customer_ids", "U124,U999", "--batch", "--output_file", "ids.json")
    assert done.returncode == 1
    results = json.loads((tmp_path / "output" / "ids.json").read_text(encoding="utf-8"))["results"]
    assert {r["customer_id"]: r["status"] for r in results}["U999"] == "error"


@pytest.mark.slow
def test_bad_combinations_are_one_line_errors(run_cli, llm_env) -> None:
    for args in (["--batch", "--selector", "llm"], ["--budget", "10"]):
        done = run_cli("cvm", "process", "--all_customers", *args, env=llm_env)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


EXPIRED_LATER = "2026-11-26T10:00:00+00:00"
"""Three days after the conftest clock: a 24-hour approval request from day 0 has expired."""


@pytest.mark.slow
@pytest.mark.parametrize("command", [("cvm_processor_cli", "--selector", "rules"), ("cvm", "process", "--batch")],
                         ids=["per-customer", "batch"])
def test_expired_approval_is_not_waited_for(run_cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    """U128's request (expiry_hours 24) has expired three days later: no path reports the customer as waiting for it."""
    assert yaml.safe_load(CONFIG.read_text(encoding="utf-8"))["governance"]["approval_policy"]["expiry_hours"] == 24
    first = run_cli("cvm_processor_cli", "--selector", "rules", "--customer_ids", "U128", "--output_file", "day0.json")
    assert first.returncode == 0, first.stderr
    day0 = json.loads((tmp_path / "output" / "day0.json").read_text(encoding="utf-8"))["results"][0]
    assert day0["status"] == "pending_approval"
    old_request = day0["approval_request_id"]
    later = run_cli(*command, "--customer_ids", "U128", "--output_file", "day3.json", env={"CVM_NOW": EXPIRED_LATER})
    assert later.returncode == 0, later.stderr
    day3 = json.loads((tmp_path / "output" / "day3.json").read_text(encoding="utf-8"))["results"][0]
    assert day3["approval_request_id"] != old_request
    assert "Waiting for approval" not in day3["explanation"]
    assert all(a["reason"] != "pending_approval_limit" for a in day3["alternatives"])
    with sqlite3.connect(tmp_path / "state" / "cvm.sqlite3") as conn:
        status = conn.execute("SELECT status, decided_by FROM approval_requests WHERE request_id = ?", (old_request,)).fetchone()
    assert status == ("expired", "system (expiry)")


@pytest.mark.slow
@pytest.mark.parametrize("command", [("cvm_processor_cli", "--selector", "rules"), ("cvm", "process", "--batch")],
                         ids=["per-customer", "batch"])
def test_dry_run_does_not_wait_for_an_expired_request(run_cli, tmp_path: Path, command: tuple[str, ...]) -> None:
    """A dry run writes nothing, so the request stays pending in the ledger; past its deadline it is still not waited for."""
    assert run_cli("cvm_processor_cli", "--selector", "rules", "--customer_ids", "U128").returncode == 0
    later = run_cli(*command, "--customer_ids", "U128", "--dry-run", "--output_file", "dry.json", env={"CVM_NOW": EXPIRED_LATER})
    assert later.returncode == 0, later.stderr
    result = json.loads((tmp_path / "output" / "dry.json").read_text(encoding="utf-8"))["results"][0]
    assert result["status"] != "pending_approval"
    assert "Waiting for approval" not in result["explanation"]


PROTOTYPE = Path(__file__).resolve().parents[1] / "fixtures" / "prototype"


def _strict_json(path: Path) -> dict:
    """The result file, refusing NaN and Infinity (not JSON, and never a decision's number)."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in {path.name}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


@pytest.mark.slow
def test_prototype_data_same_results_on_both_paths(run_cli, tmp_path: Path) -> None:
    """``cvm process --batch`` and the per-customer path agree on every customer of the prototype's data."""
    common = ("--all_customers", "--dry-run", "--data-dir", str(PROTOTYPE / "data"), "--config", str(PROTOTYPE / "cvm_config.yaml"))
    for name, extra in (("one.json", ()), ("batch.json", ("--batch",))):
        done = run_cli("cvm", "process", *common, *extra, "--output_file", name)
        assert done.returncode == 0, done.stderr
    one, batch = (
        {r["customer_id"]: r for r in _strict_json(tmp_path / "output" / name)["results"]} for name in ("one.json", "batch.json")
    )
    assert one.keys() == batch.keys() == {f"P10{k}" for k in range(1, 7)}
    for cid, expected in one.items():
        for key in ("status", "selected_treatment", "expected_value", "confidence", "reasons", "alternatives", "data_quality"):
            assert batch[cid][key] == expected[key], (cid, key)
    assert batch["P104"]["selected_treatment"] == "loyalty_app"


@pytest.mark.slow
def test_money_that_is_no_amount_does_not_stop_the_batch(run_cli, tmp_path: Path) -> None:
    """Infinity, NaN and negative money in billing: exit 0, data-quality notes, nothing non-finite in the results."""
    data = tmp_path / "data"
    data.mkdir()
    for table in (PROTOTYPE / "data").iterdir():
        (data / table.name).write_bytes(table.read_bytes())
    bills = json.loads((data / "billing_data.json").read_text(encoding="utf-8"))
    bills[0]["monthly_bill"] = float("inf")
    bills[1]["roaming_charges"] = float("nan")
    bills[3]["additional_charges"] = [{"type": "roaming", "amount": float("-inf")}]
    bills[4]["additional_charges"] = -1e9
    bills[6]["roaming_charges"] = -1e9
    (data / "billing_data.json").write_text(json.dumps(bills), encoding="utf-8")
    assert "Infinity" in (data / "billing_data.json").read_text(encoding="utf-8")
    common = ("--all_customers", "--batch", "--data-dir", str(data), "--config", str(PROTOTYPE / "cvm_config.yaml"))
    done = run_cli("cvm", "process", *common, "--output_file", "money.json")
    assert done.returncode == 0, done.stderr
    results = {r["customer_id"]: r for r in _strict_json(tmp_path / "output" / "money.json")["results"]}
    assert all(r["status"] in ("success", "no_action", "pending_approval") for r in results.values())
    notes = [n for cid in ("P101", "P102", "P103", "P104") for n in results[cid]["data_quality"]]
    assert any("monthly_bill" in n and "row skipped" in n for n in notes)
    assert any("roaming_charges is not a finite amount" in n for n in notes)
    assert any("a charge amount is not a finite amount" in n for n in notes)
    assert any("additional_charges is negative" in n for n in notes)
    assert any("roaming_charges is negative" in n for n in notes)
    # The same folder in Parquet mode (large-run output): finite numbers or nulls only.
    config = yaml.safe_load((PROTOTYPE / "cvm_config.yaml").read_text(encoding="utf-8"))
    config["batch"] = {"json_results_max": 0}
    parquet_config = tmp_path / "parquet.yaml"
    parquet_config.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = run_cli("cvm", "process", "--all_customers", "--batch", "--data-dir", str(data), "--config", str(parquet_config),
                   "--output_file", "money-big.json")
    assert done.returncode == 0, done.stderr
    summary = _strict_json(tmp_path / "output" / "money-big.json")
    table = pq.read_table(summary["results_file"])
    for column in ("expected_value", "confidence"):
        assert all(v is None or math.isfinite(v) for v in table.column(column).to_pylist()), column


@pytest.mark.slow
def test_parquet_error_rows_have_nulls_not_nan(run_cli, tmp_path: Path) -> None:
    """An unknown customer in a Parquet result has no expected value or confidence: null, not NaN."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {"json_results_max": 0}
    config = tmp_path / "parquet.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = run_cli("cvm", "process", "--customer_ids", "U124,U999", "--batch", "--config", str(config), "--output_file", "ids.json")
    assert done.returncode == 1
    table = pq.read_table(_strict_json(tmp_path / "output" / "ids.json")["results_file"]).to_pylist()
    error = next(row for row in table if row["customer_id"] == "U999")
    assert error["status"] == "error" and error["expected_value"] is None and error["confidence"] is None
