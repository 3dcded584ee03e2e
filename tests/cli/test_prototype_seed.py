"""A folder in the reference prototype's shapes, with its style of config (an ``ignore`` entry included),
run end to end through the installed CLIs: every row read, the text triggers find who the words say."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

PROTOTYPE = Path(__file__).resolve().parents[1] / "fixtures" / "prototype"
DATA = str(PROTOTYPE / "data")
CONFIG = str(PROTOTYPE / "cvm_config.yaml")
AS_OF = "2026-11-23T10:00"

Run = Callable[..., CompletedProcess[str]]


def trigger(run_cli: Run, *args: str) -> dict[str, Any]:
    done = run_cli("trigger_customers_cli", "trigger", "--all-customers", "--data-dir", DATA, "--config", CONFIG,
                   "--as-of", AS_OF, "--output", "json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def matched(result: dict[str, Any]) -> list[str]:
    return sorted(m["customer_id"] for m in result["matches"])


class TestDecisions:
    def test_the_prototype_config_loads_and_every_customer_is_decided_without_a_note(self, run_cli: Run, tmp_path: Path) -> None:
        out = tmp_path / "r.json"
        done = run_cli("cvm_processor_cli", "--all_customers", "--data-dir", DATA, "--config", CONFIG, "--as-of", AS_OF,
                       "--output_file", str(out))
        assert done.returncode == 0, done.stderr
        results = {r["customer_id"]: r for r in json.loads(out.read_text())["results"]}
        assert sorted(results) == ["P101", "P102", "P103", "P104", "P105", "P106"]
        assert {cid: r["data_quality"] for cid, r in results.items()} == {cid: [] for cid in results}
        assert results["P101"]["selected_treatment"] == "service_call_back"  # the engineer call-back the transcript asks for

    def test_offer_history_moves_acceptance_and_is_quoted(self, run_cli: Run, tmp_path: Path) -> None:
        out = tmp_path / "r.json"
        done = run_cli("cvm_processor_cli", "--customer_ids", "P105,P106", "--data-dir", DATA, "--config", CONFIG,
                       "--as-of", AS_OF, "--output_file", str(out))
        assert done.returncode == 0, done.stderr
        results = {r["customer_id"]: r for r in json.loads(out.read_text())["results"]}
        p105 = " ".join(results["P105"]["reasons"])
        assert "declined similar offer(s)" in p105 and "20% off for 12 months declined 2026-05-10" in p105
        p106 = " ".join(results["P106"]["reasons"])
        assert results["P106"]["selected_treatment"] == "data_boost"
        assert "1 accepted and 0 declined" in p106 and "from 55% to 64%" in p106

    def test_no_action_display_name_comes_from_the_config(self, run_cli: Run, tmp_path: Path) -> None:
        out = tmp_path / "r.json"
        done = run_cli("cvm_processor_cli", "--customer_ids", "P104", "--data-dir", DATA, "--config", CONFIG, "--as-of", AS_OF,
                       "--output_file", str(out), env={"CVM_DB_URL": f"sqlite:///{tmp_path / 'l.db'}"})
        assert done.returncode == 0, done.stderr
        (result,) = json.loads(out.read_text())["results"]
        ignored = [a for a in result["alternatives"] if a["treatment_id"] == "ignore"]
        assert result["selected_treatment"] != "ignore" and ignored == []  # no action is the fallback, never an "alternative"


class TestTriggers:
    def test_roaming_from_a_typed_charge_and_the_customers_words(self, run_cli: Run) -> None:
        result = trigger(run_cli, "--trigger-type", "roaming_issues")
        assert matched(result) == ["P102"]

    def test_billing_disputes_find_the_disputing_customer(self, run_cli: Run) -> None:
        result = trigger(run_cli, "--trigger-type", "billing_disputes")
        assert "P103" in matched(result)

    def test_network_issues(self, run_cli: Run) -> None:
        assert matched(trigger(run_cli, "--trigger-type", "network_issues")) == ["P101"]

    def test_keywords_match_word_forms_and_skip_denials(self, run_cli: Run) -> None:
        result = trigger(run_cli, "--trigger-type", "custom", "--keywords", "drop,signal,coverage")
        assert matched(result) == ["P101"]  # P105 said "the signal's always been excellent ... no problems with coverage"
        (p101,) = result["matches"]
        assert any("dropping" in e["text"] for e in p101["evidence"])

    def test_exact_keywords_do_not_match_other_forms(self, run_cli: Run) -> None:
        result = trigger(run_cli, "--trigger-type", "custom", "--keywords", "drop", "--keyword-match", "exact")
        assert matched(result) == []

    def test_offline_semantic_trigger_reads_the_summaries(self, run_cli: Run) -> None:
        result = trigger(run_cli, "--trigger-type", "custom", "--description", "customers with dogs or other pets")
        assert result["matcher"] == "lexical-tfidf"
        assert matched(result) == ["P104"]


@pytest.mark.parametrize(
    ("treatment", "suggestion"),
    [("retention_emial", "did you mean retention_email or retention_sms?"), ("retention", "did you mean retention_sms or retention_email?")],
)
def test_an_unknown_treatment_names_the_similar_ones(run_cli: Run, treatment: str, suggestion: str) -> None:
    done = run_cli("trigger_customers_cli", "process", "--all-customers", "--trigger-type", "network_issues",
                   "--treatment", treatment, "--data-dir", DATA, "--config", CONFIG, "--as-of", AS_OF)
    assert done.returncode == 2
    assert f"unknown treatment {treatment!r}; {suggestion} known treatments:" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
