"""Every deciding entry point takes the batch path from ``batch.auto_threshold`` customers on, as a user runs them.

``cvm_processor_cli`` / ``cvm process``, ``trigger_customers_cli process``,
``dynamic_treatment_cli batch`` and a flow's decide steps: at a threshold of 3
(temp config) the result carries the batch path's mark and the same decisions
as the per-customer path; below it nothing changes. Also: a Parquet folder is
counted by customers (not megabytes), the LLM selector stays on the per-customer
path with one line on stderr, and without DuckDB one line says how to get it.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
import yaml

from cvm.engine.deciding import MIN_BYTES_PER_CUSTOMER, customers_at_most
from tests.conftest import CONFIG, SAMPLE

COMPARED = ("status", "selected_treatment", "expected_value", "confidence", "reasons", "data_quality", "approval_rule")


def config_with(tmp_path: Path, name: str = "t3.yaml", **batch: int) -> str:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["batch"] = {**data.get("batch", {}), **batch}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def results(tmp_path: Path, name: str) -> tuple[dict, dict[str, dict]]:
    document = json.loads((tmp_path / "output" / name).read_text(encoding="utf-8"))
    return document["summary"], {r["customer_id"]: r for r in document["results"]}


def assert_same_decisions(one: dict[str, dict], batch: dict[str, dict]) -> None:
    assert one.keys() == batch.keys()
    for cid, expected in one.items():
        for key in COMPARED:
            assert batch[cid].get(key) == expected.get(key), (cid, key)
        by_id = lambda alts: sorted((a["treatment_id"], a["reason"], a["expected_value"]) for a in alts)  # noqa: E731
        assert by_id(batch[cid]["alternatives"]) == by_id(expected["alternatives"]), cid


def run_both(run_cli, tmp_path: Path, *command: str) -> tuple[dict, dict[str, dict], dict, dict[str, dict]]:
    """The command at the default threshold and at 3, each dry run; (summary, results) of both."""
    low = config_with(tmp_path, auto_threshold=3)
    for name, extra in (("one.json", ()), ("auto.json", ("--config", low))):
        done = run_cli(*command, *extra, "--dry-run", "--output_file", name)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    return (*results(tmp_path, "one.json"), *results(tmp_path, "auto.json"))


@pytest.mark.slow
@pytest.mark.parametrize("script", [("cvm_processor_cli",), ("cvm", "process")], ids=["cvm_processor_cli", "cvm-process"])
def test_process_all_customers_switches_at_the_threshold(run_cli, tmp_path: Path, script: tuple[str, ...]) -> None:
    one_summary, one, batch_summary, batch = run_both(run_cli, tmp_path, *script, "--all_customers", "--selector", "rules")
    assert "batch" not in one_summary
    assert batch_summary["batch"]["path"] == "batch"
    assert len(batch) == 12
    assert_same_decisions(one, batch)


@pytest.mark.slow
def test_process_customer_ids_count_too(run_cli, tmp_path: Path) -> None:
    """Three ids reach a threshold of 3; two do not."""
    low = config_with(tmp_path, auto_threshold=3)
    for ids, name in (("U124,U125,U126", "three.json"), ("U124,U125", "two.json")):
        done = run_cli("cvm", "process", "--customer_ids", ids, "--config", low, "--dry-run", "--output_file", name)
        assert done.returncode == 0, done.stderr
    assert "batch" in results(tmp_path, "three.json")[0]
    assert "batch" not in results(tmp_path, "two.json")[0]


@pytest.mark.slow
def test_triggers_process_switches_at_the_threshold(run_cli, tmp_path: Path) -> None:
    command = ("trigger_customers_cli", "process", "--all-customers", "--trigger-type", "churn_risk", "--selector", "rules")
    one_summary, one, batch_summary, batch = run_both(run_cli, tmp_path, *command)
    assert len(one) >= 3, "the sample has at least 3 churn-risk customers"
    assert "batch" not in one_summary and batch_summary["batch"]["path"] == "batch"
    assert_same_decisions(one, batch)


@pytest.mark.slow
def test_triggers_process_accepts_batch_and_refuses_it_with_a_treatment(run_cli, tmp_path: Path) -> None:
    base = ("trigger_customers_cli", "process", "--all-customers", "--trigger-type", "churn_risk", "--selector", "rules")
    done = run_cli(*base, "--batch", "--dry-run", "--output_file", "forced.json")
    assert done.returncode == 0, done.stderr
    assert "batch" in results(tmp_path, "forced.json")[0]
    refused = run_cli(*base, "--batch", "--treatment", "retention_email", "--dry-run")
    assert refused.returncode == 2
    assert "--treatment" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_treatments_batch_switches_at_the_threshold(run_cli, tmp_path: Path) -> None:
    command = ("dynamic_treatment_cli", "batch", "U124,U125,U126,U133", "--selector", "rules")
    one_summary, one, batch_summary, batch = run_both(run_cli, tmp_path, *command)
    assert "batch" not in one_summary and batch_summary["batch"]["path"] == "batch"
    assert_same_decisions(one, batch)
    forced = run_cli("cvm", "treatments", "batch", "U124,U125", "--batch", "--selector", "rules", "--dry-run", "--output_file", "f.json")
    assert forced.returncode == 0, forced.stderr
    assert "batch" in results(tmp_path, "f.json")[0]


@pytest.mark.slow
def test_unknown_id_on_the_automatic_batch_path_exits_1(run_cli, tmp_path: Path) -> None:
    """Same exit codes on both paths: a customer no table mentions is an error row, the others are decided."""
    low = config_with(tmp_path, auto_threshold=3)
    done = run_cli("cvm", "process", "--customer_ids", "U124,U125,U999", "--config", low, "--dry-run", "--output_file", "e.json")
    assert done.returncode == 1, done.stderr
    summary, rows = results(tmp_path, "e.json")
    assert "batch" in summary and rows["U999"]["status"] == "error" and rows["U124"]["status"] != "error"


DECIDE = """
    flow_id: decide_everyone
    steps:
      - {id: load, agent: data, action: list_customers}
      - {id: decide, agent: orchestrator, action: process_batch, depends_on: [load],
         parameters: {customer_ids: "${steps.load.output.customer_ids}", run_id: "${run.id}"}}
"""

OUTREACH = """
    flow_id: outreach
    steps:
      - {id: outreach, agent: orchestrator, action: trigger_and_process,
         parameters: {trigger: {trigger_type: churn_risk}, run_id: "${run.id}"}}
"""


@pytest.mark.slow
@pytest.mark.parametrize(("text", "step"), [(DECIDE, "decide"), (OUTREACH, "outreach")], ids=["process_batch", "trigger_and_process"])
def test_flow_decide_steps_switch_at_the_threshold(run_cli, tmp_path: Path, text: str, step: str) -> None:
    """A flow's decide step takes the batch path at the threshold (one batch commit in the ledger), with the same decisions."""
    flow = tmp_path / "flow.yaml"
    flow.write_text(textwrap.dedent(text), encoding="utf-8")
    low = config_with(tmp_path, auto_threshold=3)
    outputs = {}
    for name, extra in (("one", ()), ("auto", ("--config", low))):
        db = tmp_path / f"{name}.sqlite3"
        env = {"CVM_DB_URL": f"sqlite:///{db}"}
        done = run_cli("cvm", "flows", "run", str(flow), "--run-id", f"flow-{name}", *extra, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        shown = run_cli("cvm", "flows", "show", f"flow-{name}", "--output", "json", env=env)
        output = {s["step_id"]: s["output"] for s in json.loads(shown.stdout)["steps"]}[step]
        with sqlite3.connect(db) as conn:
            batches = conn.execute("SELECT COUNT(*) FROM audit_log WHERE event = 'batch_committed'").fetchone()[0]
        outputs[name] = (output.get("batch", output)["results"], batches)
    (one, one_batches), (auto, auto_batches) = outputs["one"], outputs["auto"]
    assert one_batches == 0 and auto_batches == 1
    assert len(one) >= 3
    assert_same_decisions({r["customer_id"]: r for r in one}, {r["customer_id"]: r for r in auto})


# --- counting customers, not megabytes ------------------------------------------------


@pytest.fixture
def parquet_folder(run_cli, tmp_path: Path) -> Path:
    pytest.importorskip("pyarrow")
    folder = tmp_path / "pq"
    done = run_cli("cvm", "data", "generate", "--customers", "8", "--out", str(folder), "--format", "parquet", "--seed", "7")
    assert done.returncode == 0, done.stderr
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
    return folder


@pytest.mark.slow
def test_a_small_parquet_folder_of_enough_customers_takes_the_batch_path(run_cli, tmp_path: Path, parquet_folder: Path) -> None:
    """Customers are counted, whatever the folder's size: 8 Parquet customers reach a threshold of 8."""
    exact = config_with(tmp_path, "t8.yaml", auto_threshold=8)
    above = config_with(tmp_path, "t9.yaml", auto_threshold=9)
    common = ("cvm", "process", "--all_customers", "--data-dir", str(parquet_folder), "--selector", "rules", "--dry-run")
    for config, name in ((exact, "eight.json"), (above, "nine.json")):
        done = run_cli(*common, "--config", config, "--output_file", name)
        assert done.returncode == 0, done.stderr
    batch_summary, batch = results(tmp_path, "eight.json")
    one_summary, one = results(tmp_path, "nine.json")
    assert batch_summary["batch"]["path"] == "batch" and "batch" not in one_summary
    assert len(one) == 8
    assert_same_decisions(one, batch)


@pytest.mark.slow
def test_the_bound_never_undercounts(tmp_path: Path, parquet_folder: Path) -> None:
    """customers_at_most: Parquet by footer rows, text by the fewest bytes a customer can take."""
    assert customers_at_most(parquet_folder) >= 8
    assert customers_at_most(SAMPLE) >= 12
    tight = tmp_path / "tight"
    tight.mkdir()
    (tight / "customers.csv").write_text("customer_id\n" + "".join(f"{c}\n" for c in "abcdefghij"), encoding="utf-8")
    (tight / "churn_score.jsonl").write_text("".join('{"customer_id":%d}\n' % d for d in range(10)), encoding="utf-8")
    (tight / "billing_data.json").write_text("[" + ",".join('{"customer_id":%d}' % d for d in range(10)) + "]", encoding="utf-8")
    assert customers_at_most(tight) >= 30
    assert MIN_BYTES_PER_CUSTOMER[".json"] == len('{"customer_id":0}') + 1


# --- what stays on the per-customer path, and says so ---------------------------------


@pytest.mark.slow
def test_llm_selector_stays_per_customer_and_says_so_once(run_cli, tmp_path: Path, llm_env) -> None:
    low = config_with(tmp_path, auto_threshold=3)
    done = run_cli("cvm", "process", "--all_customers", "--config", low, "--dry-run", "--output_file", "llm.json", env=llm_env)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "auto_threshold" in line]
    assert len(notes) == 1, done.stderr
    assert "LLM selector" in notes[0] and "per-customer path" in notes[0]
    assert "drop --batch" not in done.stderr
    summary, rows = results(tmp_path, "llm.json")
    assert "batch" not in summary and len(rows) == 12


def test_explicit_batch_with_llm_is_a_usage_error(run_cli, llm_env) -> None:
    for args in (["--selector", "llm"], []):  # llm named, or chosen by auto because OPENAI_API_KEY is set
        done = run_cli("cvm", "process", "--all_customers", "--batch", *args, env=llm_env)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr
        assert "--selector rules" in lines[0] and "LLM" in lines[0]


BLOCK_DUCKDB = '''
import sys

class _NoDuckDB:
    def find_spec(self, name, path=None, target=None):
        if name == "duckdb" or name.startswith("duckdb."):
            raise ModuleNotFoundError("No module named 'duckdb'", name=name)
        return None

sys.meta_path.insert(0, _NoDuckDB())
'''


@pytest.mark.slow
def test_without_duckdb_large_runs_stay_per_customer_with_one_hint(run_cli, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(BLOCK_DUCKDB, encoding="utf-8")
    low = config_with(tmp_path, auto_threshold=3)
    done = run_cli("cvm", "process", "--all_customers", "--selector", "rules", "--config", low, "--dry-run",
                   "--output_file", "plain.json", env={"PYTHONPATH": str(hook)})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "the batch path needs DuckDB" in lines[0] and "make install" in lines[0], done.stderr
    summary, rows = results(tmp_path, "plain.json")
    assert "batch" not in summary and len(rows) == 12
