"""``dynamic_treatment_cli`` and ``cvm treatments`` run as a user runs them.

Custom treatments go to ``CVM_CUSTOM_TREATMENTS`` (a file in the test's temp
dir); ``process`` and ``batch`` decide with the real rules selector, ledger and
sample data, standard and custom treatments together.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvm.tools.treatment_store import TreatmentStore
from cvm.utils.config import CustomTreatmentSpec, RawConstraint
from tests.conftest import CONFIG, isolated_cli_env, run_console_script

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


@pytest.fixture(scope="module")
def video_added(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The store after one real ``add VIDEO`` (run once per module; the refusal tests start from it)."""
    folder = tmp_path_factory.mktemp("video_added")
    env = isolated_cli_env(folder, f"sqlite:///{folder / 'cvm.sqlite3'}")
    ok(run_console_script(CLI, "add", VIDEO, env=env, cwd=folder))
    return Path(env["CVM_CUSTOM_TREATMENTS"]).read_bytes()


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

    def test_get_shows_text_in_nested_values_as_written(self, cli: Run, tmp_path: Path) -> None:
        """A nested value was printed with JSON escapes: a signal named café read as caf\\u00e9."""
        config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
        config["treatments"]["retention_email"]["eligibility"] = {"required_signals": ["café_visit"]}
        path = tmp_path / "accented.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        shown = ok(cli("get", "retention_email", "--config", str(path))).stdout
        assert '"required_signals": ["café_visit"]' in shown and "\\u00e9" not in shown


class TestUpdateRemove:
    def test_update_changes_only_the_stated_fields(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        before = stored(custom_file)["custom_personalized_video_message"]
        out = ok(cli("update", "custom_personalized_video_message", "limit 20 and requires approval")).stdout
        assert "updated custom_personalized_video_message" in out and "unchanged" in out
        after = stored(custom_file)["custom_personalized_video_message"]
        assert after == {
            **before, "requires_approval": True, "constraints": {**before["constraints"], "max_per_day": 20},
            "description": VIDEO.replace("limit 10", "limit 20"),  # the description no longer states the old limit
        }

    def test_update_with_json(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        before = stored(custom_file)["custom_personalized_video_message"]
        ok(cli("update", "custom_personalized_video_message", '{"enabled": false, "constraints": {"priority": 1}}'))
        after = stored(custom_file)["custom_personalized_video_message"]
        assert after == {**before, "enabled": False, "constraints": {**before["constraints"], "priority": 1},
                         "description": VIDEO.replace("priority 2", "priority 1")}

    def test_update_restates_a_changed_limit_and_cost_in_the_description(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", "Send gift voucher by email with limit 10, costing £5"))
        out = ok(cli("update", "custom_gift_voucher", "limit 20, costing £7.50")).stdout
        assert "Send gift voucher by email with limit 20, costing £7.50" in out
        entry = stored(custom_file)["custom_gift_voucher"]
        assert entry["description"] == "Send gift voucher by email with limit 20, costing £7.50"
        assert (entry["constraints"]["max_per_day"], entry["constraints"]["cost_per_contact_pounds"]) == (20, 7.5)
        got = as_json(cli("get", "custom_gift_voucher", "--output", "json"))
        assert (got["description"], got["max_per_day"], got["cost_per_contact"]) == (entry["description"], 20, 7.5)

    def test_update_keeps_a_description_given_with_the_change_exactly(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        mine = "Our video; the limit 10 we agreed is history"
        ok(cli("update", "custom_personalized_video_message", json.dumps({"description": mine, "constraints": {"max_per_day": 20}})))
        entry = stored(custom_file)["custom_personalized_video_message"]
        assert (entry["description"], entry["constraints"]["max_per_day"]) == (mine, 20)

    def test_remove_a_custom_treatment(self, cli: Run, custom_file: Path) -> None:
        ok(cli("add", VIDEO))
        ok(cli("add", BOOSTER))
        assert "removed custom_personalized_video_message" in ok(cli("remove", "custom_personalized_video_message")).stdout
        assert list(stored(custom_file)) == ["custom_network_signal_booster"]

    @pytest.mark.slow
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
            (("add", "Send video message costing £1e308"), "constraints.cost_per_contact_pounds: 1e+308 is outside 0 to 10,000"),
            (("add", "Send video message, cost inf"), "constraints.cost_per_contact_pounds: 'inf' is not a finite number"),
            (("add", '{"display_name": "Video", "constraints": {"cost_per_contact_pounds": Infinity}}'),
             "constraints.cost_per_contact_pounds: Infinity is not a finite number; allowed: 0 to 10,000"),
            (("add", '{"display_name": "Video", "constraints": {"cost_per_contact_pounds": NaN}}'), "constraints.cost_per_contact_pounds: NaN"),
            (("add", '{"display_name": "Video", "constraints": {"cost_per_contact_pounds": -2}}'), "constraints.cost_per_contact_pounds: -2 is outside"),
            (("add", '{"display_name": "Video", "constraints": {"max_per_day": 1e300}}'), "constraints.max_per_day: 1e+300 is outside 0 to 10,000,000"),
            (("update", "custom_personalized_video_message", '{"constraints": {"cost_per_contact_pounds": 1e999}}'),
             "constraints.cost_per_contact_pounds: 1e999 is not a finite number"),
            (("update", "custom_personalized_video_message", "priority nan"), "constraints.priority: 'nan' is not a finite number"),
            (("add", '{"display_name": "Video\\u001b[2J", "channel": "sms"}'), "display_name: 'Video\\x1b[2J' contains the control character U+001B"),
            (("add", 'Send "Video\r\nFAKE: approved" by sms'), "contains the control character U+000D"),
            (("get", "custom_x\x1b[31m"), "ID: 'custom_x\\x1b[31m' contains the control character U+001B"),
            (("update", "custom_x\n", "limit 3"), "ID: 'custom_x\\n' contains the control character U+000A"),
            (("remove", "custom_x\x07"), "ID: 'custom_x\\x07' contains the control character U+0007"),
        ],
    )
    @pytest.mark.slow
    def test_one_line_and_nothing_written(
        self, cli: Run, custom_file: Path, video_added: bytes, args: tuple[str, ...], phrase: str
    ) -> None:
        custom_file.write_bytes(video_added)
        before = custom_file.read_bytes()
        assert_one_line_error(cli(*args), phrase)
        assert custom_file.read_bytes() == before

    @pytest.mark.slow
    def test_nothing_is_created_when_the_first_add_fails(self, cli: Run, custom_file: Path) -> None:
        assert_one_line_error(cli("add", "limit 10"), "no usable action")
        assert not custom_file.exists()

    def test_a_broken_file_is_named_and_never_overwritten(self, cli: Run, custom_file: Path) -> None:
        custom_file.write_text('{"custom_x": {"display_name": "X",', encoding="utf-8")
        for args in (("add", VIDEO), ("list",), ("remove", "custom_x"), ("batch", "U123")):
            assert_one_line_error(cli(*args), str(custom_file))
        assert custom_file.read_text(encoding="utf-8") == '{"custom_x": {"display_name": "X",'


class TestPurpose:
    """Selling is marketing, so a sales message never goes out on service or billing consent."""

    @pytest.mark.slow
    @pytest.mark.parametrize(
        ("text", "treatment_id", "purpose"),
        [
            ("Call customers to sell them the premium network plan", "custom_sell_them_the_premium_network_plan", "marketing"),
            ("Email customers to bill them for the new TV package", "custom_bill_them", "marketing"),
            ("Notify customers about planned network maintenance tonight", "custom_planned_network_maintenance_tonight", "service_updates"),
            ("Remind customers their bill is due", "custom_bill_is_due", "billing"),
        ],
    )
    def test_the_stored_purpose(self, cli: Run, custom_file: Path, text: str, treatment_id: str, purpose: str) -> None:
        proc = ok(cli("add", text))
        assert stored(custom_file)[treatment_id]["purpose"] == purpose
        assert "warning" not in proc.stderr

    @pytest.mark.slow
    def test_a_stated_purpose_its_words_contradict_is_kept_with_a_warning(self, cli: Run, custom_file: Path) -> None:
        body = {"display_name": "Network Plan", "channel": "call", "purpose": "service_updates",
                "description": "Call customers to sell them the premium network plan"}
        proc = ok(cli("add", json.dumps(body)))
        warning = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(warning) == 1 and warning[0].startswith("warning: purpose service_updates was kept as stated")
        assert '"purpose": "marketing"' in warning[0]
        assert stored(custom_file)["custom_network_plan"]["purpose"] == "service_updates"
        ok(cli("update", "custom_network_plan", '{"purpose": "marketing"}'))
        assert stored(custom_file)["custom_network_plan"]["purpose"] == "marketing"

    @pytest.mark.slow
    def test_the_warning_is_in_json_output_too(self, cli: Run) -> None:
        ok(cli("add", "Send bill reminder by sms"))
        report = as_json(cli("update", "custom_bill_reminder", '{"description": "Bill reminder with a free upgrade offer"}', "--output", "json"))
        assert report["treatment"]["purpose"] == "billing"
        assert len(report["warnings"]) == 1 and "purpose billing was kept as stated" in report["warnings"][0]


class TestFileSafety:
    """The treatments file behind a symlink, and a write the file system refuses."""

    @pytest.mark.slow
    def test_a_symlinked_file_is_written_through_and_stays_a_link(self, cli: Run, custom_file: Path, tmp_path: Path) -> None:
        real = tmp_path / "shared" / "treatments.json"
        real.parent.mkdir()
        custom_file.symlink_to(real)
        ok(cli("add", VIDEO))
        ok(cli("add", BOOSTER))
        ok(cli("update", "custom_personalized_video_message", "limit 20"))
        ok(cli("remove", "custom_network_signal_booster"))
        assert custom_file.is_symlink() and custom_file.readlink() == real
        assert list(stored(real)) == ["custom_personalized_video_message"]
        assert stored(real)["custom_personalized_video_message"]["constraints"]["max_per_day"] == 20
        assert sorted(p.name for p in real.parent.iterdir()) == ["treatments.json"]
        assert not list(tmp_path.glob("*.lock"))

    def test_a_refused_write_is_one_line_keeps_the_file_and_leaves_no_lock(
        self, cli: Run, cli_env: dict[str, str], custom_file: Path, tmp_path: Path
    ) -> None:
        store = TreatmentStore(custom_file)  # filled in-process: only the refused write needs a real CLI run
        for n in range(12):
            store.add(CustomTreatmentSpec(
                display_name=f"Winter Offer {n}", description="Send a winter offer by email " + "and more words " * 60,
                channel="email", purpose="marketing", constraints=RawConstraint(max_per_day=10, cost_per_contact=1.0),
            ))
        before = custom_file.read_bytes()
        limit = len(before) // 2  # the log of one command, in a fresh folder, stays far below it

        def small_files_only() -> None:
            """Files may not grow past ``limit`` bytes, so writing the treatments fails with EFBIG, as on a full disk."""
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        refused = subprocess.run(
            [str(Path(sys.executable).parent / CLI), "add", VIDEO], capture_output=True, text=True, cwd=tmp_path, timeout=120,
            env={**cli_env, "CVM_LOG_DIR": str(tmp_path / "limited_logs")}, stdin=subprocess.DEVNULL, preexec_fn=small_files_only,
        )
        assert_one_line_error(refused, f"{custom_file}: cannot be written (File too large)")
        assert custom_file.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("custom", ".custom"))) == ["custom_treatments.json"]


class TestDecisions:
    """Custom treatments take part in decisions: scored by their words, screened by their consent."""

    @pytest.fixture
    def minimal_config(self, tmp_path: Path) -> dict[str, str]:
        path = tmp_path / "minimal.yaml"
        path.write_text(MINIMAL_CONFIG, encoding="utf-8")
        return {"CVM_CONFIG": str(path)}

    @pytest.mark.slow
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

    @pytest.mark.slow
    def test_process_one_customer(self, cli: Run, tmp_path: Path, minimal_config: dict[str, str]) -> None:
        ok(cli("add", BOOSTER + ", requires approval", env=minimal_config))
        out = ok(cli("process", "U123", env=minimal_config)).stdout
        assert "custom_network_signal_booster" in out
        decision = results(tmp_path)["U123"]
        assert decision["selected_treatment"] == "custom_network_signal_booster"
        assert decision["requires_approval"] is True
        assert decision["status"] in ("success", "pending_approval")

    @pytest.mark.slow
    def test_with_the_full_config_custom_treatments_are_ranked_beside_the_standard_ones(self, cli: Run, tmp_path: Path) -> None:
        ok(cli("add", BOOSTER))
        ok(cli("add", "Send roaming bundle offer by text"))  # sms marketing: U124 said N to that
        ok(cli("batch", "U123,U124", "--dry-run", "--output-file", "cvm_results.json"))  # a dry run writes the default file only when asked
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
