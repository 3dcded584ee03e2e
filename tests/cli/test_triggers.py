"""``trigger_customers_cli`` and ``cvm triggers`` run as a user runs them: catalog, outputs, errors, process."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CONFIG

CLI = "trigger_customers_cli"
CONTRACT_KEYS = {"trigger_type", "matcher", "total_customers", "total_matches", "matches"}
MATCH_KEYS = {"customer_id", "reason", "evidence"}
RESULT_KEYS = {
    "customer_id", "status", "selected_treatment", "channel", "explanation", "confidence",
    "expected_value", "alternatives", "selector", "error",
}
BUILT_IN = {"network_issues", "billing_disputes", "churn_risk", "high_value", "roaming_issues"}
CHURN_RISK = {"U123", "U125", "U127", "U133"}


def nonblank(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_usage_error(proc: Any, *mentions: str) -> str:
    """Exit 2, exactly one line on stderr naming what is wrong, no traceback anywhere."""
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = nonblank(proc.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    for mention in mentions:
        assert mention in lines[0], f"{mention!r} not in {lines[0]!r}"
    return lines[0]


def write_config(folder: Path, triggers: dict[str, Any] | None = None, capacity: dict[str, int] | None = None) -> Path:
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    doc.setdefault("triggers", {}).update(triggers or {})
    for tid, limit in (capacity or {}).items():
        doc["constraints"][tid]["max_per_day"] = limit
    path = folder / "my_config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def trigger_json(proc: Any) -> dict[str, Any]:
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def load_results(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"no result file at {path}"
    return json.loads(path.read_text(encoding="utf-8"))


class TestListTriggers:
    """list-triggers shows every trigger with its source, as a table or as JSON."""

    def test_table(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "list-triggers")
        assert proc.returncode == 0, proc.stderr
        for name in (*BUILT_IN, "at_risk_with_poor_network", "custom"):
            assert name in proc.stdout
        rows = [line for line in proc.stdout.splitlines() if "at_risk_with_poor_network" in line]
        assert rows and "config" in rows[0]
        rows = [line for line in proc.stdout.splitlines() if "high_value" in line]
        assert rows and "built-in" in rows[0] and "billing.monthly_revenue >= 70" in rows[0]

    def test_json(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "list-triggers", "--output", "json")
        assert proc.returncode == 0, proc.stderr
        catalog = {t["name"]: t for t in json.loads(proc.stdout)}
        assert set(catalog) == {*BUILT_IN, "at_risk_with_poor_network", "custom"}
        assert catalog["at_risk_with_poor_network"]["source"] == "config"
        assert catalog["at_risk_with_poor_network"]["condition"].startswith("churn_probability >= 0.5")
        assert {catalog[n]["source"] for n in BUILT_IN} == {"built-in"}
        assert all(catalog[n]["description"] and catalog[n]["condition"] for n in BUILT_IN)
        assert "signal" in catalog["network_issues"]["keywords"]


class TestConfigTriggers:
    """A config trigger is checked when the config loads and then runs like a built-in one."""

    def test_syntax_error_exits_2_naming_trigger_and_column(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, {"broken": {"description": "x", "condition": "churn_probability >= 0.5 and and tenure_months > 1"}})
        line = assert_usage_error(run_cli(CLI, "list-triggers", "--config", str(config)), "triggers.broken.condition", "column 30")
        assert str(config) in line or config.name in line

    def test_unknown_field_exits_2_naming_trigger(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, {"typo": {"description": "x", "condition": "churn_probability > 0.5 and network.latncy_ms > 70"}})
        assert_usage_error(run_cli(CLI, "list-triggers", "--config", str(config)), "triggers.typo.condition", "network.latncy_ms", "column 29")

    @pytest.mark.slow
    def test_valid_config_trigger_is_listed_and_runs(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, {"big_spender_at_risk": {
            "description": "Pays a lot and may leave", "condition": "billing.monthly_revenue >= 90 and churn_probability >= 0.6",
        }})
        listed = run_cli(CLI, "list-triggers", "--output", "json", "--config", str(config))
        assert listed.returncode == 0, listed.stderr
        catalog = {t["name"]: t for t in json.loads(listed.stdout)}
        assert catalog["big_spender_at_risk"]["source"] == "config"
        assert catalog["big_spender_at_risk"]["description"] == "Pays a lot and may leave"
        proc = run_cli(CLI, "trigger", "--all-customers", "--trigger-type", "big_spender_at_risk", "--output", "json", "--config", str(config))
        assert proc.returncode == 0, proc.stderr
        doc = trigger_json(proc)
        assert doc["trigger_type"] == "big_spender_at_risk"
        assert [m["customer_id"] for m in doc["matches"]] == ["U125"]
        assert "billing.monthly_revenue 95.9 >= 90" in doc["matches"][0]["reason"]


class TestTriggerOutputs:
    """trigger writes the JSON contract, a CSV row per match, a table, and files where a user expects them."""

    def test_json_contract(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "trigger", "--all-customers", "--trigger-type", "network_issues", "--output", "json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert CONTRACT_KEYS <= set(doc)
        assert set(doc) - CONTRACT_KEYS <= {"errors"}
        assert doc["trigger_type"] == "network_issues"
        assert doc["matcher"] == "condition"
        assert doc["total_customers"] == 12
        assert doc["total_matches"] == len(doc["matches"]) == 2
        assert {m["customer_id"] for m in doc["matches"]} == {"U123", "U130"}
        for m in doc["matches"]:
            assert MATCH_KEYS <= set(m) and set(m) - MATCH_KEYS <= {"score"}
            assert isinstance(m["reason"], str) and m["reason"]
            assert isinstance(m["evidence"], list) and m["evidence"]
            for e in m["evidence"]:
                assert {"source", "date", "text"} <= set(e)
                assert e["source"] and e["date"] and e["text"]
        u123 = next(m for m in doc["matches"] if m["customer_id"] == "U123")
        assert "network.avg_latency_ms = 144.7" in [e["text"] for e in u123["evidence"]]
        assert "network.dropped_calls = 23" in [e["text"] for e in u123["evidence"]]

    def test_csv_one_row_per_match(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "trigger", "--all-customers", "--trigger-type", "billing_disputes", "--output", "csv")
        assert proc.returncode == 0, proc.stderr
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        assert [r["customer_id"] for r in rows] == ["U125", "U126", "U127", "U133"]
        for row in rows:
            assert {"customer_id", "reason", "evidence"} <= set(row)
            assert row["reason"].startswith("Bill shock")
            assert "[" in row["evidence"] and row["evidence"].strip()

    def test_bare_output_file_lands_in_output_dir(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        proc = run_cli(CLI, "trigger", "--all-customers", "--trigger-type", "roaming_issues", "--output", "json", "--output-file", "roaming.json")
        assert proc.returncode == 0, proc.stderr
        path = tmp_path / "output" / "roaming.json"
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert [m["customer_id"] for m in doc["matches"]] == ["U126"]
        assert not (tmp_path / "roaming.json").exists()
        assert "{" not in proc.stdout
        assert str(path) in proc.stderr

    def test_output_file_with_folder_is_written_where_it_says(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        proc = run_cli(CLI, "trigger", "--all-customers", "--trigger-type", "churn_risk", "--output", "csv", "--output-file", "mine/churn.csv")
        assert proc.returncode == 0, proc.stderr
        rows = list(csv.DictReader((tmp_path / "mine" / "churn.csv").open(encoding="utf-8")))
        assert {r["customer_id"] for r in rows} == CHURN_RISK
        assert not (tmp_path / "output" / "mine").exists()

    def test_unified_cvm_command(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli("cvm", "triggers", "trigger", "--customer-ids", "U126,U128", "--trigger-type", "high_value", "--output", "json")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["total_customers"] == 2
        assert {m["customer_id"] for m in doc["matches"]} == {"U126", "U128"}

    def test_table_with_an_unknown_customer(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "trigger", "--customer-ids", "U126,U999", "--trigger-type", "roaming_issues")
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert "U126" in proc.stdout and "1 of 2 customer(s) matched" in proc.stdout
        assert "U999" in proc.stdout + proc.stderr

    def test_unknown_customer_warns_and_others_still_run(self, run_cli: Callable[..., Any]) -> None:
        proc = run_cli(CLI, "trigger", "--customer-ids", "U999,U127,U128", "--trigger-type", "churn_risk", "--output", "json")
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        warnings = nonblank(proc.stderr)
        assert len(warnings) == 1 and warnings[0].startswith("warning:") and "U999" in warnings[0]
        doc = json.loads(proc.stdout)
        assert doc["total_customers"] == 3
        assert [m["customer_id"] for m in doc["matches"]] == ["U127"]
        assert [e["customer_id"] for e in doc["errors"]] == ["U999"]


class TestBadInput:
    """Bad input exits 2 with one clear line on stderr and no traceback."""

    @pytest.mark.parametrize(
        ("args", "mentions"),
        [
            (["--all-customers", "--trigger-type", "no_such_trigger"], ["no_such_trigger", "network_issues"]),
            (["--all-customers", "--trigger-type", "custom", "--keywords", ","], ["--keywords"]),
            (["--all-customers", "--trigger-type", "custom", "--description", "the customers who are with the"], ["--description", "stop words"]),
            (["--all-customers", "--customer-ids", "U123", "--trigger-type", "churn_risk"], ["--customer-ids", "--all-customers"]),
            (["--all-customers", "--trigger-type", "churn_risk", "--keywords", "signal"], ["--keywords", "custom"]),
            (["--all-customers", "--trigger-type", "custom", "--keywords", "signal", "--data-types", "call_transcripts,sms"], ["sms"]),
            (["--customer-ids", "U1 23;rm", "--trigger-type", "churn_risk"], ["U1 23;rm"]),
            (["--trigger-type", "churn_risk"], ["--customer-ids", "--all-customers"]),
        ],
        ids=["unknown-trigger", "empty-keywords", "stop-words-description", "ids-and-all", "keywords-not-custom", "unknown-data-type", "malformed-id", "no-selection"],
    )
    def test_exit_2(self, run_cli: Callable[..., Any], args: list[str], mentions: list[str]) -> None:
        assert_usage_error(run_cli(CLI, "trigger", *args), *mentions)


class TestProcess:
    """process decides for the matched customers through consent and capacity, into the standard result file."""

    def test_treatment_goes_to_consenting_matches_only(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        proc = run_cli(CLI, "process", "--all-customers", "--trigger-type", "churn_risk", "--treatment", "retention_email", "--output-file", "churn.json")
        assert proc.returncode == 0, proc.stderr
        doc = load_results(tmp_path / "output" / "churn.json")
        assert {"run_id", "generated_at", "summary", "results"} <= set(doc)
        results = {r["customer_id"]: r for r in doc["results"]}
        assert set(results) == CHURN_RISK
        assert all(RESULT_KEYS <= set(r) for r in results.values())
        u133 = results["U133"]
        assert (u133["status"], u133["selected_treatment"]) == ("no_action", "ignore")
        assert ("retention_email", "no_consent") in [(a["treatment_id"], a["reason"]) for a in u133["alternatives"]]
        for cid in CHURN_RISK - {"U133"}:
            assert (results[cid]["status"], results[cid]["selected_treatment"], results[cid]["channel"]) == ("success", "retention_email", "email")
            assert results[cid]["error"] is None
        assert doc["summary"]["total_customers"] == 4

    def test_capacity_is_respected(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        config = write_config(tmp_path, capacity={"retention_email": 1})
        proc = run_cli(
            CLI, "process", "--all-customers", "--trigger-type", "churn_risk", "--treatment", "retention_email",
            "--config", str(config), "--output-file", "cap.json",
        )
        assert proc.returncode == 0, proc.stderr
        results = load_results(tmp_path / "output" / "cap.json")["results"]
        given = [r["customer_id"] for r in results if r["selected_treatment"] == "retention_email"]
        assert len(given) == 1 and given[0] != "U133"
        for r in results:
            if r["customer_id"] in given or r["customer_id"] == "U133":
                continue
            assert r["status"] == "no_action"
            assert ("retention_email", "capacity_exhausted") in [(a["treatment_id"], a["reason"]) for a in r["alternatives"]]

    def test_unknown_customer_is_reported_and_exits_1(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        # BUG (src/cli/triggers.py process / src/agents/orchestrator.py _trigger_and_process): the trigger's
        # errors (U999 unknown) are dropped; the result file lists only U127 and the exit code is 0, while
        # `trigger` with the same ids exits 1 with a warning. DESIGN §8: exit 1, and the file holds every customer.
        proc = run_cli(CLI, "process", "--customer-ids", "U999,U127", "--trigger-type", "churn_risk", "--output-file", "p.json")
        assert "Traceback" not in proc.stderr
        results = {r["customer_id"]: r for r in load_results(tmp_path / "output" / "p.json")["results"]}
        assert results["U127"]["status"] == "success"
        assert proc.returncode == 1
        assert "U999" in proc.stderr or ("U999" in results and results["U999"]["status"] == "error")

    def test_unknown_treatment_exits_2(self, run_cli: Callable[..., Any], tmp_path: Path) -> None:
        proc = run_cli(CLI, "process", "--all-customers", "--trigger-type", "churn_risk", "--treatment", "free_iphone", "--output-file", "x.json")
        assert_usage_error(proc, "free_iphone", "retention_email")
        assert not (tmp_path / "output" / "x.json").exists()


class TestLLMThroughTheCLI:
    """With an LLM endpoint, a description trigger asks the model and keeps only real quotes."""

    @pytest.mark.slow
    def test_description_with_the_stub(self, run_cli: Callable[..., Any], llm_stub: Any, llm_env: dict[str, str]) -> None:
        real, invented = "That's a scam and you've just let it through", "I am calling my lawyer"

        def respond(body: dict[str, Any]) -> dict[str, Any]:
            document = json.loads(body["messages"][1]["content"].split("\n", 1)[1])
            assert document["customer_id"] == "U125"
            return {"matches": True, "reason": "Disputes premium-rate charges.", "evidence": [real, invented]}

        llm_stub.default = respond
        proc = run_cli(
            CLI, "trigger", "--customer-ids", "U125", "--trigger-type", "custom", "--selector", "llm",
            "--description", "customers disputing charges they never agreed to", "--output", "json", env=llm_env,
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["matcher"] == "llm"
        assert [m["customer_id"] for m in doc["matches"]] == ["U125"]
        assert [e["text"] for e in doc["matches"][0]["evidence"]] == [real]
        assert llm_stub.request_count == 1 and not llm_stub.errors
