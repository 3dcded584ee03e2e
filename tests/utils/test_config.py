"""Loading cvm_config.yaml and custom_treatments.json: shapes accepted, errors that name file, key and fix."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cvm.utils.config import (
    IGNORE,
    STANDARD_CHANNELS,
    CVMConfig,
    Treatment,
    load_config,
    load_custom_treatments,
    normalise_purpose,
)
from cvm.utils.errors import ConfigError

STANDARD_IDS = [
    "service_call_back", "marketing_call_back", "retention_email", "retention_sms", "service_sms", "loyalty_app",
    "early_upgrade", "family_plan", "data_boost", "loyalty_points", "personalized_offer",
]

DOCUMENTED_CHANNELS = {
    "service_call_back": "call",
    "marketing_call_back": "call",
    "retention_email": "email",
    "early_upgrade": "email",
    "family_plan": "email",
    "personalized_offer": "email",
    "retention_sms": "sms",
    "service_sms": "sms",
    "data_boost": "sms",
    "loyalty_app": "push_notifications",
    "loyalty_points": "push_notifications",
}

# The reference prototype's file shape (DESIGN section 4), with no channel keys.
PROTOTYPE_YAML = """
treatments:
  service_call_back:
    display_name: "Service Call Back"
    description: "Call the customer about a service issue"
    enabled: true
    permission_type: service_update
  retention_email:
    display_name: "Retention Email"
    description: "Send a retention offer by email"
    enabled: true
    permission_type: marketing
  loyalty_app:
    display_name: "Loyalty App"
    description: "Push a loyalty offer"
    enabled: false
    permission_type: marketing
constraints:
  service_call_back:
    max_per_day: 3
    remaining_availability: 3
    cost_per_contact_pounds: 5.0
    priority: 1
  retention_email:
    max_per_day: 500
    remaining_availability: 120
    cost_per_contact_pounds: 0.1
    priority: 3
  loyalty_app:
    max_per_day: 300
    remaining_availability: 300
    cost_per_contact_pounds: 0.02
    priority: 4
settings:
  reset_constraints_daily: true
  default_output_file: "cvm_results.json"
  logging:
    default_level: "INFO"
    file_output: true
    format: "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    rotation:
      max_bytes: 10485760
      backup_count: 5
model:
  id: "gpt-4o"
  temperature: 0.1
  max_tokens: 2000
  planning_interval: 1
  additional_imports: ["json", "datetime", "pandas"]
validation:
  customer_id_pattern: "^U[0-9]{3,}$"
  max_customers_per_batch: 1000
  required_journey_fields: ["customer_id", "churn_probability"]
"""


def write(tmp_path: Path, text: str, name: str = "cvm_config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.path == str(path)
    return str(err.value)


class TestShippedConfig:
    """The repository's config/cvm_config.yaml loads with the standard set."""

    def test_eleven_standard_treatments(self, config_path: Path) -> None:
        config = load_config(config_path)
        assert sorted(config.treatments) == sorted(STANDARD_IDS)
        assert all(t.source == "standard" for t in config.treatments.values())
        assert config.source == str(config_path)

    def test_channels_match_the_documented_defaults(self, config_path: Path) -> None:
        config = load_config(config_path)
        assert {tid: t.channel for tid, t in config.treatments.items()} == DOCUMENTED_CHANNELS
        assert STANDARD_CHANNELS == DOCUMENTED_CHANNELS

    def test_constraints_are_applied(self, config_path: Path) -> None:
        config = load_config(config_path)
        call_back = config.treatment("service_call_back")
        assert (call_back.max_per_day, call_back.cost_per_contact, call_back.priority, call_back.purpose) == (3, 5.0, 1, "service_updates")
        upgrade = config.treatment("early_upgrade")
        assert (upgrade.max_per_day, upgrade.cost_per_contact, upgrade.priority, upgrade.purpose) == (50, 60.0, 2, "marketing")
        assert upgrade.eligibility.min_tenure_months == 12
        assert config.settings.currency == "GBP"
        assert config.settings.timezone == "Europe/London"
        assert config.policies.contact.max_contacts == {"marketing": 1}

    def test_ignore_is_built_in(self, config_path: Path) -> None:
        config = load_config(config_path)
        assert config.treatment("ignore") is IGNORE
        assert "ignore" not in config.treatments
        assert (IGNORE.channel, IGNORE.purpose) == ("none", "none")

    def test_unknown_treatment_lookup_lists_known_ones(self, config_path: Path) -> None:
        with pytest.raises(ConfigError, match="unknown treatment 'free_pizza'; known treatments: data_boost, early_upgrade"):
            load_config(config_path).treatment("free_pizza")


class TestAcceptedShapes:
    """Minimal files and the prototype's file load; standard ids get their default channel."""

    def test_only_treatments_and_constraints(self, tmp_path: Path) -> None:
        path = write(tmp_path, """
            treatments:
              retention_email: {display_name: Retention Email}
            constraints:
              retention_email: {max_per_day: 10}
        """)
        config = load_config(path)
        assert list(config.treatments) == ["retention_email"]
        email = config.treatments["retention_email"]
        assert (email.channel, email.purpose, email.max_per_day, email.cost_per_contact, email.priority) == (
            "email", "marketing", 10, 0.0, 5,
        )
        assert config.settings.default_output_file == "cvm_results.json"
        assert config.model.id == "gpt-4o-mini"
        assert config.validation.customer_id_pattern == r"^[A-Za-z0-9_-]{1,64}$"

    def test_empty_file_has_no_treatments(self, tmp_path: Path) -> None:
        assert load_config(write(tmp_path, "")).treatments == {}

    def test_prototype_shape_loads(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, PROTOTYPE_YAML))
        call_back = config.treatments["service_call_back"]
        assert (call_back.channel, call_back.purpose, call_back.max_per_day, call_back.cost_per_contact, call_back.priority) == (
            "call", "service_updates", 3, 5.0, 1,
        )
        assert config.treatments["retention_email"].max_per_day == 500  # remaining_availability is ignored
        assert config.treatments["loyalty_app"].enabled is False
        assert config.treatments["loyalty_app"].channel == "push_notifications"
        assert config.settings.logging.rotation.backup_count == 5
        assert config.settings.logging.file_output is True
        assert config.model.additional_imports == ["json", "datetime", "pandas"]
        assert config.model.planning_interval == 1
        assert config.validation.customer_id_pattern == "^U[0-9]{3,}$"
        assert config.validation.required_journey_fields == ["customer_id", "churn_probability"]

    @pytest.mark.parametrize("tid", STANDARD_IDS)
    def test_standard_id_without_channel_gets_the_default(self, tmp_path: Path, tid: str) -> None:
        config = load_config(write(tmp_path, f"treatments:\n  {tid}: {{}}\n"))
        treatment = config.treatments[tid]
        assert treatment.channel == DOCUMENTED_CHANNELS[tid]
        assert treatment.purpose == ("service_updates" if tid.startswith("service_") else "marketing")
        assert treatment.display_name == tid.replace("_", " ").title()

    def test_explicit_channel_overrides_the_default(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, "treatments:\n  retention_email: {channel: sms, purpose: billing}\n"))
        assert (config.treatments["retention_email"].channel, config.treatments["retention_email"].purpose) == ("sms", "billing")

    def test_non_standard_treatment_with_channel(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, """
            treatments:
              winback_letter: {display_name: Win-back, channel: email, permission_type: email_marketing}
            constraints:
              winback_letter: {max_per_day: 0, cost_per_contact: 1.25, cost_per_contact_pounds: 9.0}
        """))
        letter = config.treatments["winback_letter"]
        assert (letter.source, letter.purpose, letter.max_per_day, letter.cost_per_contact) == ("config", "marketing", 0, 1.25)


class TestConfigErrors:
    """Every invalid file is a ConfigError naming the file, the key and the fix."""

    def test_non_standard_without_channel(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  winback_letter: {display_name: Win-back}\n")
        assert config_error(path) == (
            f"{path}: treatments.winback_letter.channel is missing; add channel: one of email, sms, call, push_notifications"
        )

    def test_unknown_key_in_treatment(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {colour: blue}\n")
        assert config_error(path) == f"{path}: unknown key treatments.retention_email.colour; remove it or check its spelling"

    def test_unknown_top_level_key(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments: {}\nbudgets: {daily: 100}\n")
        assert config_error(path) == f"{path}: unknown key budgets; remove it or check its spelling"

    def test_unknown_key_in_settings(self, tmp_path: Path) -> None:
        path = write(tmp_path, "settings:\n  logging:\n    rotaton: {max_bytes: 1}\n")
        assert "unknown key settings.logging.rotaton" in config_error(path)

    def test_negative_max_per_day(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {}\nconstraints:\n  retention_email: {max_per_day: -1}\n")
        message = config_error(path)
        assert message.startswith(f"{path}: constraints.retention_email.max_per_day: ")
        assert "greater than or equal to 0" in message
        assert message.endswith("; fix the value (input was -1)")

    def test_bad_channel_value(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {channel: pigeon}\n")
        assert config_error(path).startswith(f"{path}: treatments.retention_email.channel: ")

    def test_bad_purpose(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {permission_type: gossip}\n")
        message = config_error(path)
        assert message.startswith(f"{path}: treatments.retention_email.permission_type: unknown purpose 'gossip'")

    def test_constraints_for_unknown_treatment(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {}\nconstraints:\n  free_pizza: {max_per_day: 1}\n")
        message = config_error(path)
        assert str(path) in message
        assert "constraints for unknown treatment(s) free_pizza; add them under treatments or remove them" in message

    def test_invalid_yaml(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {display_name: [unclosed\n")
        message = config_error(path)
        assert message.startswith(f"{path}: not valid YAML (")
        assert message.endswith("); fix the syntax")

    def test_yaml_that_is_not_a_mapping(self, tmp_path: Path) -> None:
        path = write(tmp_path, "- retention_email\n- retention_sms\n")
        assert config_error(path) == f"{path}: the file must hold a mapping of sections, not list"

    def test_missing_file(self, tmp_path: Path) -> None:
        path = tmp_path / "nope.yaml"
        assert config_error(path) == f"config file {path} not found; pass --config FILE or set CVM_CONFIG"

    def test_ignore_with_a_channel_is_rejected(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  ignore: {channel: email}\n")
        assert config_error(path) == (
            f"{path}: treatments.ignore.channel: no action contacts nobody and has no channel; remove the key"
        )

    def test_ignore_with_a_cost_is_rejected(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  ignore: {display_name: No Action}\nconstraints:\n  ignore: {cost_per_contact_pounds: 2}\n")
        assert config_error(path) == (
            f"{path}: constraints.ignore: no action contacts nobody, so it cannot cost 2.0 per contact; set it to 0"
        )

    def test_disabled_ignore_is_rejected(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  ignore: {enabled: false}\n")
        assert "treatments.ignore.enabled: no action is always available" in config_error(path)

    def test_bad_customer_id_pattern(self, tmp_path: Path) -> None:
        path = write(tmp_path, "validation:\n  customer_id_pattern: '^[A-Z'\n")
        message = config_error(path)
        assert message.startswith(f"{path}: validation.customer_id_pattern: ")
        assert "not a valid regular expression" in message

    def test_priority_zero_is_rejected(self, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {}\nconstraints:\n  retention_email: {priority: 0}\n")
        assert config_error(path).startswith(f"{path}: constraints.retention_email.priority: ")


class TestNormalisePurpose:
    """The prototype's permission_type spellings map onto the three purposes."""

    @pytest.mark.parametrize(
        "text,expected",
        [
            ("sms_marketing", "marketing"),
            ("email.service_updates", "service_updates"),
            ("service_update", "service_updates"),
            ("service", "service_updates"),
            ("push_notifications_marketing", "marketing"),
            ("call:billing", "billing"),
            ("  Marketing ", "marketing"),
            ("BILLING", "billing"),
        ],
    )
    def test_spellings(self, text: str, expected: str) -> None:
        assert normalise_purpose(text) == expected

    @pytest.mark.parametrize("text", ["", "sms", "promotions", "email_promotions"])
    def test_unknown(self, text: str) -> None:
        with pytest.raises(ValueError, match="unknown purpose"):
            normalise_purpose(text)


class TestCustomTreatments:
    """custom_treatments.json: missing means none, broken is a ConfigError, entries become custom treatments."""

    def test_missing_file_is_empty(self, tmp_path: Path) -> None:
        assert load_custom_treatments(tmp_path / "custom_treatments.json") == {}

    def test_empty_file_is_empty(self, tmp_path: Path) -> None:
        path = tmp_path / "custom_treatments.json"
        path.write_text("", encoding="utf-8")
        assert load_custom_treatments(path) == {}

    def test_broken_json_names_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "custom_treatments.json"
        path.write_text('{"custom_x": {', encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_custom_treatments(path)
        assert str(err.value).startswith(f"{path}: not valid JSON (")
        assert err.value.path == str(path)
        assert path.read_text(encoding="utf-8") == '{"custom_x": {'  # never overwritten by a failed load

    def test_top_level_list_is_rejected(self, tmp_path: Path) -> None:
        path = tmp_path / "custom_treatments.json"
        path.write_text("[]", encoding="utf-8")
        with pytest.raises(ConfigError, match="must be a JSON object mapping treatment ids to treatments"):
            load_custom_treatments(path)

    def test_valid_entries(self, tmp_path: Path) -> None:
        path = tmp_path / "custom_treatments.json"
        path.write_text(json.dumps({
            "custom_personalized_video_message": {
                "display_name": "Personalized Video Message",
                "description": "Send personalized video message to customer",
                "channel": "email",
                "purpose": "email_marketing",
                "constraints": {"max_per_day": 10, "priority": 2, "cost_per_contact_pounds": 1.5},
            },
            "custom_outage_sms": {"display_name": "Outage SMS", "channel": "sms", "purpose": "service_update"},
        }), encoding="utf-8")
        treatments = load_custom_treatments(path)
        assert treatments["custom_personalized_video_message"] == Treatment(
            id="custom_personalized_video_message",
            display_name="Personalized Video Message",
            description="Send personalized video message to customer",
            channel="email",
            purpose="marketing",
            max_per_day=10,
            cost_per_contact=1.5,
            priority=2,
            source="custom",
        )
        sms = treatments["custom_outage_sms"]
        assert (sms.source, sms.purpose, sms.max_per_day, sms.priority) == ("custom", "service_updates", None, 5)

    @pytest.mark.parametrize(
        "entry,key",
        [
            ({"display_name": "X", "channel": "carrier_pigeon"}, "custom_bad.channel"),
            ({"display_name": "X"}, "custom_bad.channel"),
            ({"display_name": "", "channel": "sms"}, "custom_bad.display_name"),
            ({"display_name": "X", "channel": "sms", "purpose": "gossip"}, "custom_bad.purpose"),
            ({"display_name": "X", "channel": "sms", "constraints": {"max_per_day": -3}}, "custom_bad.constraints.max_per_day"),
            ({"display_name": "X", "channel": "sms", "colour": "red"}, "custom_bad.colour"),
        ],
    )
    def test_bad_entry_names_id_and_field(self, tmp_path: Path, entry: dict, key: str) -> None:
        path = tmp_path / "custom_treatments.json"
        path.write_text(json.dumps({"custom_ok": {"display_name": "OK", "channel": "email"}, "custom_bad": entry}), encoding="utf-8")
        with pytest.raises(ConfigError) as err:
            load_custom_treatments(path)
        message = str(err.value)
        assert message.startswith(f"{path}: {key}: ")
        assert message.endswith("; fix the entry")

    def test_with_treatments_keeps_config_ids_on_clash(self, config_path: Path, tmp_path: Path) -> None:
        path = tmp_path / "custom_treatments.json"
        path.write_text(json.dumps({
            "retention_email": {"display_name": "Hijack", "channel": "sms"},
            "custom_new": {"display_name": "New", "channel": "sms"},
        }), encoding="utf-8")
        config: CVMConfig = load_config(config_path).with_treatments(load_custom_treatments(path))
        assert config.treatment("retention_email").display_name == "Retention Email"
        assert config.treatment("custom_new").source == "custom"
        assert len(config.treatments) == 12


class TestPrototypeConfig:
    """The reference prototype's config shape loads unchanged, its "No Action" entry included."""

    PATH = Path(__file__).resolve().parents[1] / "fixtures" / "prototype" / "cvm_config.yaml"

    def test_loads_with_ignore_mapped_onto_no_action(self) -> None:
        config = load_config(self.PATH)
        assert "ignore" not in config.treatments
        ignore = config.treatment("ignore")
        assert (ignore.display_name, ignore.channel, ignore.purpose, ignore.cost_per_contact, ignore.max_per_day) == (
            "No Action", "none", "none", 0.0, None,
        )
        assert len(config.treatments) == 11

    def test_permission_types_become_channels_and_purposes(self) -> None:
        config = load_config(self.PATH)
        assert (config.treatments["service_call_back"].channel, config.treatments["service_call_back"].purpose) == ("call", "service_updates")
        assert (config.treatments["retention_sms"].channel, config.treatments["retention_sms"].purpose) == ("sms", "marketing")
        assert config.treatments["early_upgrade"].cost_per_contact == 25.0

    def test_constraints_for_ignore_alone_are_accepted(self, tmp_path: Path) -> None:
        path = write(tmp_path, "constraints:\n  ignore: {max_per_day: 999999, remaining_availability: 999999, priority: 99}\n")
        assert load_config(path).treatment("ignore").max_per_day is None  # no action is never rationed


class TestNonFiniteMoney:
    """Infinity, NaN and absurd amounts in the config are errors naming the key, never numbers that poison sums."""

    @pytest.mark.parametrize(
        ("text", "key"),
        [
            ("treatments:\n  retention_email: {value_per_accept: .inf}\n", "treatments.retention_email.value_per_accept"),
            ("treatments:\n  retention_email: {value_per_accept: .nan}\n", "treatments.retention_email.value_per_accept"),
            ("treatments:\n  retention_email: {}\nconstraints:\n  retention_email: {cost_per_contact_pounds: .inf}\n",
             "constraints.retention_email.cost_per_contact_pounds"),
            ("treatments:\n  retention_email: {}\nconstraints:\n  retention_email: {cost_per_contact: 1e308}\n",
             "constraints.retention_email.cost_per_contact"),
            ("scoring: {high_value_monthly_revenue: .inf}\n", "scoring.high_value_monthly_revenue"),
        ],
    )
    def test_is_a_config_error_naming_the_key(self, tmp_path: Path, text: str, key: str) -> None:
        path = write(tmp_path, text)
        assert config_error(path).startswith(f"{path}: {key}: ")

    def test_through_the_cli_it_is_exit_2_with_one_line(self, run_cli: Any, tmp_path: Path) -> None:
        path = write(tmp_path, "treatments:\n  retention_email: {value_per_accept: .inf}\n")
        done = run_cli("cvm_processor_cli", "--customer_ids", "U123", "--config", str(path))
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "value_per_accept" in done.stderr


def test_circuit_breaker_threshold_reaches_the_llm_client(tmp_path: Path) -> None:
    from cvm.runtime import llm_client
    from cvm.tools.llm import LLMCircuitOpenError
    from cvm.utils.settings import RuntimeSettings

    config = load_config(write(tmp_path, "model: {circuit_breaker_failures: 2}\n"))
    circuit = llm_client(config, RuntimeSettings(_env_file=None)).circuit
    circuit.admit()
    circuit.record_failure("timeout")
    circuit.admit()  # one failure is below the configured 2
    circuit.record_failure("timeout")
    with pytest.raises(LLMCircuitOpenError, match="after 2 consecutive failed calls"):
        circuit.admit()
