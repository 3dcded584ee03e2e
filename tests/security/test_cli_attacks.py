"""Hostile command lines, run as a user would: each is refused with exit 2 and one line, never a crash.

Devices, FIFOs and folders given as output files; clocks at the end of time;
conditions nested thousands deep; control characters in approvers' names and
reasons; non-finite numbers in results.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli.test_processor import assert_usage_error, ledger_rows, rules
from tests.conftest import CONFIG


def config_with_trigger(folder: Path, name: str, condition: str) -> Path:
    """The shipped config plus one trigger with ``condition``."""
    doc = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    doc["triggers"][name] = {"description": "hostile", "condition": condition}
    path = folder / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


class TestClockAtTheEndOfTime:
    """A clock whose day keys and windows would overflow is a usage error, by flag or by environment."""

    def test_as_of_year_9999(self, run_cli, tmp_path):
        proc = run_cli("cvm", "process", *rules("--all_customers", "--as-of", "9999-12-31T23:59"))
        text = assert_usage_error(proc, "9999-12-31T23:59", "out of range", "2000-01-01", "9000-12-31")
        assert "internal error" not in text
        assert ledger_rows(tmp_path, "SELECT COUNT(*) FROM decisions") in ([], [(0,)])

    def test_cvm_now_year_9999(self, run_cli):
        proc = run_cli("cvm", "approvals", "list", env={"CVM_NOW": "9999-12-31T23:59"})
        assert_usage_error(proc, "out of range")

    def test_as_of_year_1(self, run_cli):
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--as-of", "0001-01-01"))
        assert_usage_error(proc, "out of range")


class TestHostileConditions:
    """A trigger condition nested thousands deep is a config error naming the trigger."""

    def test_twenty_thousand_nested_not(self, run_cli, tmp_path):
        config = config_with_trigger(tmp_path, "deep_one", "not " * 20_000 + "churn_probability > 0.5")
        proc = run_cli("cvm", "triggers", "list-triggers", "--config", str(config))
        text = assert_usage_error(proc, "triggers.deep_one.condition", "expression too deep", "hostile.yaml")
        assert "MemoryError" not in text and "RecursionError" not in text

    def test_twenty_thousand_nested_not_stops_processing(self, run_cli, tmp_path):
        config = config_with_trigger(tmp_path, "deep_one", "not " * 20_000 + "churn_probability > 0.5")
        proc = run_cli("cvm_processor_cli", *rules("--customer_ids", "U124", "--config", str(config)))
        assert_usage_error(proc, "triggers.deep_one.condition", "expression too deep")
        assert not (tmp_path / "output" / "cvm_results.json").exists()
