"""``dynamic_treatment_cli`` and ``cvm treatments`` run as a user runs them.

Custom treatments go to ``CVM_CUSTOM_TREATMENTS`` (a file in the test's temp
dir); ``process`` and ``batch`` decide with the real rules selector, ledger and
sample data, standard and custom treatments together.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CLI = "dynamic_treatment_cli"
VIDEO = "Send personalized video message to customer with limit 10 and priority 2"
BOOSTER = "Network signal booster by SMS for service updates, limit 50"
FAMILY = "Email a family plan to add extra lines for children and partners, costing 1.50"

# A config whose standard treatments answer neither a network problem nor a family interest,
# so the custom treatments that do are the best fit for U123 (network) and U129 (family).
MINIMAL_CONFIG = """
treatments:
  loyalty_app: {display_name: Loyalty App Offer, description: A push notification inviting the customer to rewards in the app., permission_type: marketing}
  retention_email: {display_name: Retention Email, description: A personal email with a retention offer or discount for customers at risk of leaving., permission_type: marketing}
constraints:
  loyalty_app: {max_per_day: 300, cost_per_contact_pounds: 0.02, priority: 4}
  retention_email: {max_per_day: 500, cost_per_contact_pounds: 0.10, priority: 3}
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def custom_file(cli_env: dict[str, str]) -> Path:
    return Path(cli_env["CVM_CUSTOM_TREATMENTS"])


@pytest.fixture
def cli(run_cli: Run) -> Run:
    """Run ``dynamic_treatment_cli`` with arguments."""
    return lambda *args, **kw: run_cli(CLI, *args, **kw)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc).stdout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *mentions: str) -> str:
    """Exit 2, exactly one line on stderr, no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr!r}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in proc.stdout + proc.stderr
    for mention in mentions:
        assert mention in lines[0], f"{mention!r} not in {lines[0]!r}"
    return lines[0]


def stored(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def results(tmp_path: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads((tmp_path / "output" / "cvm_results.json").read_text(encoding="utf-8"))
    return {r["customer_id"]: r for r in doc["results"]}


class TestHelp:
    def test_help_lists_patterns_json_fields_defaults_and_examples(self, cli: Run) -> None:
        text = ok(cli("help")).stdout
        for command in ("add TEXT_OR_JSON", "list [--custom-only]", "get ID", "update ID", "remove ID", "process CUSTOMER_ID", "batch IDS"):
            assert command in text
        for phrase in ("video message -> email", "push_notifications", "no postal", "limit 10", "priority 2", "costing 2.50",
                       "£50 each", "requires approval", '"constraints"', "cost_per_contact_pounds", "permission_type", "DEFAULTS", VIDEO):
            assert phrase in text, phrase

    def test_reachable_as_cvm_treatments(self, run_cli: Run, custom_file: Path) -> None:
        assert "FREE TEXT" in ok(run_cli("cvm", "treatments", "help")).stdout
        ok(run_cli("cvm", "treatments", "add", VIDEO))
        assert list(stored(custom_file)) == ["custom_personalized_video_message"]


class TestAdd:
    def test_text_prints_what_was_inferred_and_what_was_defaulted(self, cli: Run, custom_file: Path) -> None:
        out = ok(cli("add", VIDEO)).stdout
        assert "added custom_personalized_video_message" in out
        assert 'inferred from "limit 10"' in out and 'inferred from "priority 2"' in out
        assert "default:" in out and "purpose" in out
        entry = stored(custom_file)["custom_personalized_video_message"]
        assert entry["display_name"] == "Personalized Video Message"
        assert (entry["channel"], entry["purpose"]) == ("email", "marketing")
        assert entry["constraints"] == {"max_per_day": 10, "cost_per_contact_pounds": 0.0, "priority": 2}

    def test_json_output_and_a_clash_gets_a_numeric_suffix(self, cli: Run, custom_file: Path) -> None:
        first, second = as_json(cli("add", VIDEO, "--output", "json")), as_json(cli("add", VIDEO, "--output", "json"))
        assert (first["id"], second["id"]) == ("custom_personalized_video_message", "custom_personalized_video_message_2")
        assert second["treatment"]["max_per_day"] == 10
        assert second["sources"]["purpose"].startswith("default")
        assert any("was taken" in note for note in second["notes"])
        assert sorted(stored(custom_file)) == [first["id"], second["id"]]

    def test_json_input_and_get_parse_back(self, cli: Run) -> None:
        body = {"display_name": "Roaming Pass", "description": "Travel abroad roaming bundle", "channel": "sms",
                "purpose": "marketing", "requires_approval": True,
                "constraints": {"max_per_day": 200, "cost_per_contact_pounds": 0.05, "priority": 3}}
        added = as_json(cli("add", json.dumps(body), "--output", "json"))
        got = as_json(cli("get", added["id"], "--output", "json"))
        assert got == added["treatment"]
        assert (got["id"], got["channel"], got["purpose"], got["max_per_day"], got["cost_per_contact"], got["priority"], got["requires_approval"], got["source"]) == (
            "custom_roaming_pass", "sms", "marketing", 200, 0.05, 3, True, "custom",
        )

    def test_list_shows_standard_and_custom_and_filters(self, cli: Run) -> None:
        ok(cli("add", VIDEO))
        every = as_json(cli("list", "--output", "json"))
        assert {"retention_email", "service_call_back", "custom_personalized_video_message"} <= {t["id"] for t in every}
        custom = as_json(cli("list", "--custom-only", "--output", "json"))
        assert [(t["id"], t["source"]) for t in custom] == [("custom_personalized_video_message", "custom")]
        table = ok(cli("list", "--custom-only")).stdout
        assert "custom_personalized_video_message" in table and "retention_email" not in table

    def test_get_a_standard_treatment(self, cli: Run) -> None:
        assert as_json(cli("get", "retention_email", "--output", "json"))["source"] == "standard"
        assert "display_name        Retention Email" in ok(cli("get", "retention_email")).stdout


class TestUpdateRemove:
    def test_update_changes_only_the_stated_fields(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        before = stored(custom_file)["custom_personalized_video_message"]
        out = ok(cli("update", "custom_personalized_video_message", "limit 20 and requires approval")).stdout
        assert "updated custom_personalized_video_message" in out and "unchanged" in out
        after = stored(custom_file)["custom_personalized_video_message"]
        assert after == {**before, "requires_approval": True, "constraints": {**before["constraints"], "max_per_day": 20}}

    def test_update_with_json(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        before = stored(custom_file)["custom_personalized_video_message"]
        ok(cli("update", "custom_personalized_video_message", '{"enabled": false, "constraints": {"priority": 1}}'))
        after = stored(custom_file)["custom_personalized_video_message"]
        assert after == {**before, "enabled": False, "constraints": {**before["constraints"], "priority": 1}}

    def test_remove_a_custom_treatment(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        ok(cli("add", BOOSTER))
        assert "removed custom_personalized_video_message" in ok(cli("remove", "custom_personalized_video_message")).stdout
        assert list(stored(custom_file)) == ["custom_network_signal_booster"]

    @pytest.mark.parametrize(("args", "phrase"), [
        (("remove", "retention_email"), "standard treatment"),
        (("remove", "ignore"), "built in"),
        (("update", "service_call_back", "limit 3"), "standard treatment"),
    ])
    def test_a_standard_treatment_cannot_be_removed_or_changed(self, cli: Run, custom_file: Path, args: tuple[str, ...], phrase: str) -> None:
        ok(cli("add", VIDEO))
        before = custom_file.read_bytes()
        line = assert_one_line_error(cli(*args), phrase)
        assert "enabled: false" in line or "ignore" in args
        assert custom_file.read_bytes() == before


class TestBadInput:
    """Exit 2, one clear line, and the treatments file exactly as it was."""

    @pytest.mark.parametrize(
        ("args", "phrase"),
        [
            (("add", ""), "empty"),
            (("add", "   "), "empty"),
            (("add", "hello world"), "no usable action"),
            (("add", "Send video message, limit -5"), "max_per_day"),
            (("add", "Send video message, limit 99999999999"), "max_per_day"),
            (("add", '{"display_name": "Video",'), "invalid JSON"),
            (("add", '{"display_name": "Video", "channel": "post"}'), "channel"),
            (("add", '{"display_name": "Video", "constraints": {"max_per_day": "ten"}}'), "constraints.max_per_day"),
            (("add", VIDEO, "--parser", "magic"), "--parser"),
            (("get", "custom_nope"), "custom_nope"),
            (("update", "custom_nope", "limit 3"), "custom_nope"),
            (("update", "custom_personalized_video_message", "hello"), "nothing to change"),
            (("update", "custom_personalized_video_message", "limit -1"), "max_per_day"),
            (("remove", "custom_nope"), "custom_nope"),
        ],
    )
    def test_one_line_and_nothing_written(self, cli: Run, custom_file: Path, args: tuple[str, ...], phrase: str) -> None:
        ok(cli("add", VIDEO))
        before = custom_file.read_bytes()
        assert_one_line_error(cli(*args), phrase)
        assert custom_file.read_bytes() == before

    def test_nothing_is_created_when_the_first_add_fails(self, cli: Run, custom_file: Path) -> None:
        assert_one_line_error(cli("add", "limit 10"), "no usable action")
        assert not custom_file.exists()

    def test_a_broken_file_is_named_and_never_overwritten(self, cli: Run, custom_file: Path) -> None:
        custom_file.write_text('{"custom_x": {"display_name": "X",', encoding="utf-8")
        for args in (("add", VIDEO), ("list",), ("remove", "custom_x"), ("batch", "U123")):
            assert_one_line_error(cli(*args), str(custom_file))
        assert custom_file.read_text(encoding="utf-8") == '{"custom_x": {"display_name": "X",'


class TestDecisions:
    """Custom treatments take part in decisions: scored by their words, screened by their consent."""

    @pytest.fixture
    def minimal_config(self, tmp_path: Path) -> dict[str, str]:
        path = tmp_path / "minimal.yaml"
        path.write_text(MINIMAL_CONFIG, encoding="utf-8")
        return {"CVM_CONFIG": str(path)}

    def test_a_custom_treatment_is_chosen_where_the_journey_fits_and_never_without_consent(
        self, cli: Run, tmp_path: Path, minimal_config: dict[str, str]
    ) -> None:
        ok(cli("add", BOOSTER, env=minimal_config))
        ok(cli("add", FAMILY, env=minimal_config))
        ok(cli("batch", "U123,U129,U133,U130", env=minimal_config))
        by_id = results(tmp_path)
        assert by_id["U123"]["selected_treatment"] == "custom_network_signal_booster"
        assert (by_id["U123"]["channel"], by_id["U123"]["purpose"]) == ("sms", "service_updates")
        assert any(r.startswith("fits the journey (network issue") for r in by_id["U123"]["reasons"])
        assert by_id["U129"]["selected_treatment"] == "custom_family_plan"
        for cid in ("U133", "U130"):  # every permission N / no permissions record
            assert by_id[cid]["status"] == "no_action"
            reasons = {a["treatment_id"]: a["reason"] for a in by_id[cid]["alternatives"]}
            assert reasons["custom_network_signal_booster"] == reasons["custom_family_plan"] == "no_consent"

    def test_process_one_customer(self, cli: Run, tmp_path: Path, minimal_config: dict[str, str]) -> None:
        ok(cli("add", BOOSTER + ", requires approval", env=minimal_config))
        out = ok(cli("process", "U123", env=minimal_config)).stdout
        assert "custom_network_signal_booster" in out
        decision = results(tmp_path)["U123"]
        assert decision["selected_treatment"] == "custom_network_signal_booster"
        assert decision["requires_approval"] is True
        assert decision["status"] in ("success", "pending_approval")

    def test_with_the_full_config_custom_treatments_are_ranked_beside_the_standard_ones(self, cli: Run, tmp_path: Path) -> None:
        ok(cli("add", BOOSTER))
        ok(cli("add", "Send roaming bundle offer by text"))  # sms marketing: U124 said N to that
        ok(cli("batch", "U123,U124", "--dry-run"))
        by_id = results(tmp_path)
        u123 = {a["treatment_id"]: a for a in by_id["U123"]["alternatives"]}
        assert u123["custom_network_signal_booster"]["reason"] == "lower_ranked"
        assert u123["custom_network_signal_booster"]["expected_value"] > 0  # it fits the network issue
        u124 = {a["treatment_id"]: a["reason"] for a in by_id["U124"]["alternatives"]}
        assert u124["custom_roaming_bundle_offer"] == "no_consent"
        assert by_id["U124"]["selected_treatment"] != "custom_roaming_bundle_offer"

    @pytest.mark.parametrize(("args", "phrase"), [
        (("process", "U123,U124"), "use batch"),
        (("batch", " , "), "IDS is empty"),
        (("process", "bad id!"), "customer_id_pattern"),
    ])
    def test_bad_customer_ids(self, cli: Run, args: tuple[str, ...], phrase: str) -> None:
        assert_one_line_error(cli(*args), phrase)
