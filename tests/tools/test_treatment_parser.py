"""The custom-treatment parser: free text and JSON into a validated treatment, and the optional LLM proposal.

The table below is the contract of the embedded parser: one line a marketer
writes, and the treatment CVM makes of it (defaults filled in). The LLM path
runs through the real ``openai`` client against the local stub server.
"""

from __future__ import annotations

import json

import pytest

from cvm.tools.llm import OpenAIJSONClient
from cvm.tools.treatment_parser import DEFAULTS, FIELDS, LLM_SCHEMA, complete, consent_warning, parse
from cvm.tools.treatment_store import slug_id
from cvm.utils.errors import UsageError
from tests.stub_openai import Answer, Status, StubOpenAI, response_schema

# text, display name, id, channel, purpose, max_per_day, priority, cost per contact (GBP)
TABLE = [
    ("Send personalized video message to customer with limit 10 and priority 2",
     "Personalized Video Message", "custom_personalized_video_message", "email", "marketing", 10, 2, 0.0),
    ("Send personalised video message to customers, limit 25",
     "Personalised Video Message", "custom_personalised_video_message", "email", "marketing", 25, 5, 0.0),
    ("Send personalized video message by SMS",
     "Personalized Video Message", "custom_personalized_video_message", "sms", "marketing", 100, 5, 0.0),
    ("Give loyal customers a free gift voucher costing £5",
     "Free Gift Voucher", "custom_free_gift_voucher", "email", "marketing", 100, 5, 5.0),
    ("Send gift voucher £50 each, requires approval",
     "Gift Voucher", "custom_gift_voucher", "email", "marketing", 100, 5, 50.0),
    ("Text customers about roaming bundle",
     "Roaming Bundle", "custom_roaming_bundle", "sms", "marketing", 100, 5, 0.0),
    ("Call customers to explain network fix",
     "Explain Network Fix", "custom_explain_network_fix", "call", "service_updates", 100, 5, 0.0),
    ("Network signal booster by SMS for service updates",
     "Network Signal Booster", "custom_network_signal_booster", "sms", "service_updates", 100, 5, 0.0),
    ("Email customers a 20% discount on their next bill, limit 500, costing 10p each",
     "20% Discount on Their Next Bill", "custom_20_discount_on_their_next_bill", "email", "marketing", 500, 5, 0.1),
    ("Push app notification about double data weekend to young users with priority 1",
     "App Notification about Double Data Weekend", "custom_app_notification_about_double_data_weekend",
     "push_notifications", "marketing", 100, 1, 0.0),
    ("Send SMS reminder for overdue bill payment, limit 200, priority 1",
     "SMS Reminder", "custom_sms_reminder", "sms", "billing", 200, 1, 0.0),
    ("Send a letter explaining roaming charges by post",
     "Letter Explaining Roaming Charges", "custom_letter_explaining_roaming_charges", "email", "billing", 100, 5, 0.0),
    ("Offer early upgrade to customers in contract month 22 via call, costing £8",
     "Early Upgrade", "custom_early_upgrade", "call", "marketing", 100, 5, 8.0),
    ('Add "Winter Warmer Bundle" by email, unlimited, high priority',
     "Winter Warmer Bundle", "custom_winter_warmer_bundle", "email", "marketing", None, 2, 0.0),
    ("Send winter bundle by sms, disabled",
     "Winter Bundle", "custom_winter_bundle", "sms", "marketing", 100, 5, 0.0),
    ("Offer loyalty reward points in the app, max 300 per day, cost 0.02",
     "Loyalty Reward Points", "custom_loyalty_reward_points", "push_notifications", "marketing", 300, 5, 0.02),
    ("Outage apology text for service updates, up to 1,000 a day",
     "Outage Apology Text", "custom_outage_apology_text", "sms", "service_updates", 1000, 5, 0.0),
    ("Send bill breakdown email explaining charges, 5k per day",
     "Bill Breakdown Email Explaining Charges", "custom_bill_breakdown_email_explaining_charges", "email", "billing", 5000, 5, 0.0),
    ("Ring high-value customers to say thank you, limit 20, costing £4.50",
     "Say Thank You", "custom_say_thank_you", "call", "marketing", 20, 5, 4.5),
    ("Send data boost offer via push notification, 150 per day, priority 3",
     "Data Boost Offer", "custom_data_boost_offer", "push_notifications", "marketing", 150, 3, 0.0),
    ("Send engineer visit confirmation by text message, low priority",
     "Engineer Visit Confirmation", "custom_engineer_visit_confirmation", "sms", "service_updates", 100, 5, 0.0),
    ("Mail a printed brochure about fibre broadband upgrade, costing 1.20",
     "Printed Brochure about Fibre Broadband Upgrade", "custom_printed_brochure_about_fibre_broadband_upgrade",
     "email", "marketing", 100, 5, 1.2),
    ("Create retention call-back for customers at risk of leaving, limit 5, priority 1, requires manager approval",
     "Retention Call-Back", "custom_retention_call_back", "call", "marketing", 5, 1, 0.0),
    ("Send payment plan reminder by email for billing, limit 300",
     "Payment Plan Reminder", "custom_payment_plan_reminder", "email", "billing", 300, 5, 0.0),
    ("Send newsletter with coverage improvements, at £0.01",  # a newsletter is marketing, not a service message
     "Newsletter", "custom_newsletter", "email", "marketing", 100, 5, 0.01),
    ("Offer family plan discount by e-mail, limit 30, priority 2, costing 15",
     "Family Plan Discount", "custom_family_plan_discount", "email", "marketing", 30, 2, 15.0),
    ("Notify customers of planned network maintenance in-app, urgent priority",
     "Planned Network Maintenance", "custom_planned_network_maintenance", "push_notifications", "service_updates", 100, 1, 0.0),
    ("Send VIP 5G upgrade invitation by email, no approval",
     "VIP 5G Upgrade Invitation", "custom_vip_5g_upgrade_invitation", "email", "marketing", 100, 5, 0.0),
    ("Send iPhone trade-in offer by text, priority 4, 2.50 pounds per contact",
     "iPhone Trade-In Offer", "custom_iphone_trade_in_offer", "sms", "marketing", 100, 4, 2.5),
]


@pytest.mark.parametrize(("text", "name", "treatment_id", "channel", "purpose", "limit", "priority", "cost"), TABLE, ids=[r[2] for r in TABLE])
def test_free_text_table(text: str, name: str, treatment_id: str, channel: str, purpose: str, limit: int | None, priority: int, cost: float) -> None:
    spec, _ = complete(parse(text))
    c = spec.constraints
    assert (spec.display_name, slug_id(spec.display_name)) == (name, treatment_id)
    assert (spec.channel, spec.purpose) == (channel, purpose)
    assert (c.max_per_day, c.priority, c.cost_per_contact_pounds) == (limit, priority, pytest.approx(cost))
    assert spec.description == text  # the whole line is what the rules selector scores


def test_the_table_is_big_enough() -> None:
    assert len(TABLE) >= 25


@pytest.mark.parametrize(
    ("text", "approval", "enabled"),
    [
        ("Send gift voucher £50 each, requires approval", True, True),
        ("Create retention call-back, requires manager approval", True, True),
        ("Send VIP upgrade invitation by email, no approval", False, True),
        ("Send winter bundle by sms, disabled", False, False),
        ("Send winter bundle by sms, paused and priority 2", False, False),
        ("Send accessibility guide to disabled customers by email", False, True),  # a word, not a state
    ],
)
def test_approval_and_enabled(text: str, approval: bool, enabled: bool) -> None:
    spec, _ = complete(parse(text))
    assert (spec.requires_approval, spec.enabled) == (approval, enabled)


def test_sources_say_what_was_inferred_and_what_was_defaulted() -> None:
    _, sources = complete(parse("Send personalized video message to customer with limit 10 and priority 2"))
    assert set(sources) == set(FIELDS)
    assert sources["max_per_day"] == 'inferred from "limit 10"'
    assert sources["priority"] == 'inferred from "priority 2"'
    assert sources["channel"].startswith('inferred from "video message"')
    for name in ("purpose", "cost_per_contact_pounds", "enabled", "requires_approval"):
        assert sources[name] == f"default: {DEFAULTS[name][1]}"


def test_defaults_are_the_documented_ones() -> None:
    spec, _ = complete(parse("Send a thank-you note"))
    c = spec.constraints
    assert (spec.channel, spec.purpose, c.max_per_day, c.cost_per_contact_pounds, c.priority, spec.enabled, spec.requires_approval) == tuple(
        DEFAULTS[name][0] for name in ("channel", "purpose", "max_per_day", "cost_per_contact_pounds", "priority", "enabled", "requires_approval")
    )


def test_a_named_channel_wins_over_item_words_and_earlier_channel_words() -> None:
    assert complete(parse("Send gift voucher by SMS"))[0].channel == "sms"
    assert complete(parse("Offer a call quality check by email"))[0].channel == "email"


def test_an_offer_is_marketing_even_about_the_network_or_the_bill() -> None:
    assert complete(parse("Send a free network signal booster by sms"))[0].purpose == "marketing"
    assert complete(parse("Send bill credit discount by email"))[0].purpose == "marketing"


# The purpose decides which consent a contact needs. Selling anything is marketing, whatever else the
# line mentions; service_updates and billing need the words of a service or bill message and nothing sold.
SELLING = [
    "Call customers to sell them the premium network plan",
    "Text customers promoting our partner's streaming service",
    "Email customers to bill them for the new TV package",
    "Call customers about network coverage and offer them an upgrade",
    "Send service update about our new broadband product",
    "Notify customers of planned maintenance and a half-price deal on boosters",
    "Remind customers their bill is due and cross-sell home broadband",
    "Text customers about a voucher for their next bill payment",
    "Send outage apology with 20% off next month",
    "Email customers upgrading their handset early",
    "Send invoice reminder with an exclusive add-on",
    "Call customers to introduce the family plan",
    "Text customers to subscribe to the sports channel",
    "Send network improvement news and a loyalty reward",
    "Email customers about the new 5G phones in store",
    "Send payment confirmation and buy-one-get-one on accessories",
    "Call customers about the network",  # nothing says what the message is: the strictest consent
    "Send a message about our network",
]
SERVICE_OR_BILLING = [
    ("Notify customers about planned network maintenance tonight", "service_updates"),
    ("Send outage notice by sms", "service_updates"),
    ("Text customers that the outage is fixed and service restored", "service_updates"),
    ("Send engineer visit confirmation by text message", "service_updates"),
    ("Call customers to book a repair of their broadband fault", "service_updates"),
    ("Push alert about network disruption in their area", "service_updates"),
    ("Send fraud alert about SIM swap attempts by sms", "service_updates"),
    ("Send service notice about the email server move", "service_updates"),
    ("Remind customers their bill is due", "billing"),
    ("Send payment due reminder by sms", "billing"),
    ("Email customers their invoice", "billing"),
    ("Text customers whose direct debit failed", "billing"),
    ("Send payment plan reminder by email", "billing"),
    ("Notify customers of the refund to their account", "billing"),
    ("Send overdue balance reminder by letter", "billing"),
]


@pytest.mark.parametrize("text", SELLING)
def test_selling_is_marketing_whatever_else_the_line_mentions(text: str) -> None:
    spec, sources = complete(parse(text))
    assert spec.purpose == "marketing", sources["purpose"]


@pytest.mark.parametrize(("text", "purpose"), SERVICE_OR_BILLING)
def test_a_service_or_bill_message_that_sells_nothing_keeps_its_purpose(text: str, purpose: str) -> None:
    spec, sources = complete(parse(text))
    assert spec.purpose == purpose, sources["purpose"]
    assert "sells nothing" in sources["purpose"]


def test_selling_overrules_a_stated_service_purpose_and_says_so() -> None:
    spec, sources = complete(parse("Sell the premium network plan by sms for service updates"))
    assert spec.purpose == "marketing"
    assert sources["purpose"].startswith('inferred from "Sell"')
    assert '"for service updates" was overruled' in sources["purpose"]


@pytest.mark.parametrize(
    ("text", "purpose"),
    [("Send roaming guide by sms for service updates", "service_updates"), ("Send statement copy as billing", "billing"),
     ("Send outage notice, purpose: marketing", "marketing")],
)
def test_a_stated_purpose_is_used_when_nothing_is_sold(text: str, purpose: str) -> None:
    spec, sources = complete(parse(text))
    assert spec.purpose == purpose
    assert sources["purpose"].startswith("stated") or purpose == "marketing"


def test_an_incidental_purpose_word_is_not_a_statement() -> None:
    spec, _ = complete(parse("Offer a discount to customers with billing problems"))
    assert spec.purpose == "marketing"


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("hello world", "no usable action"),
        ("limit 10 and priority 2", "no usable action"),
        ("Send it to customers", "no usable action"),
        ("Send video message, limit -5", "constraints.max_per_day: -5 is outside"),
        ("Send video message, limit 99999999999", "constraints.max_per_day: 99999999999 is outside"),
        ("Send video message, limit 10.5", "not a whole number"),
        ("Send video message, priority 0", "constraints.priority: 0 is outside"),
        ("Send video message, priority 500", "constraints.priority: 500 is outside"),
        ("Send video message costing -3", "constraints.cost_per_contact_pounds: -3.0 is outside"),
        ("Send video message " + "very " * 500, "characters"),
        ("Send video message costing £1e308", "constraints.cost_per_contact_pounds: 1e+308 is outside 0 to 10,000"),
        ("Send video message, cost inf", "constraints.cost_per_contact_pounds: 'inf' is not a finite number; allowed: 0 to 10,000"),
        ("Send video message costing -infinity", "constraints.cost_per_contact_pounds: '-infinity' is not a finite number"),
        ("Send video message costing NaN", "constraints.cost_per_contact_pounds: 'NaN' is not a finite number"),
        ("Send video message £1e9 each", "constraints.cost_per_contact_pounds: 1000000000.0 is outside"),
        ("Send video message, limit inf", "constraints.max_per_day: 'inf' is not a finite number"),
        ("Send video message, limit 1e308", "constraints.max_per_day: a 309-digit number is outside 0 to 10,000,000"),
        ("Send video message, priority nan", "constraints.priority: 'nan' is not a finite number; allowed: 1 to 99"),
    ],
)
def test_bad_text_is_one_clear_usage_error(text: str, phrase: str) -> None:
    with pytest.raises(UsageError, match=phrase.replace("+", r"\+")) as caught:
        complete(parse(text))
    assert "\n" not in str(caught.value)


def test_numbers_in_exponent_form_are_read_whole() -> None:
    spec, _ = complete(parse("Send video message, limit 1e3, costing 2.5e-1"))
    assert (spec.constraints.max_per_day, spec.constraints.cost_per_contact_pounds) == (1000, 0.25)


def test_words_that_start_like_inf_or_nan_are_not_numbers() -> None:
    spec, _ = complete(parse("Send infant care guide by email, cost info from the nanny team, priority nanny-free"))
    assert spec.display_name == "Infant Care Guide"
    assert (spec.constraints.cost_per_contact_pounds, spec.constraints.priority) == (DEFAULTS["cost_per_contact_pounds"][0], DEFAULTS["priority"][0])


class TestControlCharacters:
    """Escape codes, line breaks and bells never reach a stored name or id; a description is stored without them."""

    @pytest.mark.parametrize(
        ("text", "phrase"),
        [
            ('{"display_name": "Video\\u001b[2J", "channel": "sms"}', "display_name: 'Video\\x1b[2J' contains the control character U+001B"),
            ('{"display_name": "Video\\r\\nPwned", "channel": "sms"}', "display_name: 'Video\\r\\nPwned' contains the control character U+000D"),
            ('{"display_name": "Video\\u0007", "channel": "sms"}', "U+0007"),
            ('{"display_name": "Video\\u009b31m", "channel": "sms"}', "U+009B"),
            ('{"display_name": "Video\\u202etxt.exe", "channel": "sms"}', "U+202E"),
            ('{"display_name": "Video", "channel": "sms\\n"}', "channel: 'sms\\n' contains"),
            ('{"display_name": "Video", "channel": "sms", "col\\u001bour": 1}', "a key: 'col\\x1bour' contains"),
            ('{"id": "custom_x\\n", "display_name": "Video", "channel": "sms"}', "id: 'custom_x\\n' is not a valid id"),
            ('Send "Video\x07" by sms', "the treatment text: 'Send \"Video\\x07\" by sms' contains the control character U+0007"),
            ("Send \x1b[31mRed\x1b[0m alert by sms", "contains the control character U+001B"),
            ("Send outage notice by sms\x00", "U+0000"),
        ],
    )
    def test_refused_in_names_ids_keys_and_the_text_a_name_comes_from(self, text: str, phrase: str) -> None:
        with pytest.raises(UsageError) as caught:
            complete(parse(text))
        assert phrase in str(caught.value)
        assert not any(c in str(caught.value) for c in "\x1b\x07\r\n\x00\x9b\u202e")

    def test_stripped_from_a_json_description(self) -> None:
        text = json.dumps({"display_name": "Video", "channel": "sms",
                           "description": "Red \x1b[31malert\x1b[0m\x07 now\r\nsecond line\x9b2J \x1b]0;title\x07done\u202e"})
        spec, _ = complete(parse(text))
        assert spec.description == "Red alert now second line done"

    def test_line_breaks_in_free_text_are_spaces(self) -> None:
        spec, _ = complete(parse("Send outage notice\r\nby sms\tlimit 20"))
        assert (spec.display_name, spec.channel, spec.constraints.max_per_day) == ("Outage Notice", "sms", 20)
        assert spec.description == "Send outage notice by sms limit 20"


class TestJSON:
    """The prototype's JSON shape plus channel, purpose and approval, validated by the config's model."""

    def test_prototype_shape_with_channel_purpose_and_approval(self) -> None:
        text = json.dumps({
            "display_name": "Personalized Video Message", "description": "A personal video from the care team",
            "enabled": True, "channel": "email", "purpose": "service_update", "requires_approval": True,
            "constraints": {"max_per_day": 10, "cost_per_contact_pounds": 2.5, "priority": 2},
        })
        spec, sources = complete(parse(text))
        assert (spec.display_name, spec.channel, spec.purpose, spec.requires_approval) == ("Personalized Video Message", "email", "service_updates", True)
        assert (spec.constraints.max_per_day, spec.constraints.cost_per_contact_pounds, spec.constraints.priority) == (10, 2.5, 2)
        assert all(sources[name] == "stated in the JSON" for name in FIELDS)

    def test_missing_fields_are_inferred_from_the_words_or_defaulted(self) -> None:
        spec, sources = complete(parse('{"display_name": "Roaming Pass", "description": "A roaming bundle by text for travel abroad"}'))
        assert (spec.channel, spec.purpose, spec.constraints.max_per_day) == ("sms", "marketing", DEFAULTS["max_per_day"][0])
        assert sources["channel"] == 'inferred from "by text"'
        assert sources["max_per_day"].startswith("default")

    def test_permission_type_and_an_explicit_id_are_accepted(self) -> None:
        draft = parse('{"id": "custom_video", "display_name": "Video", "channel": "email", "permission_type": "marketing"}')
        assert draft.requested_id == "custom_video"
        assert complete(draft)[0].purpose == "marketing"

    @pytest.mark.parametrize(
        ("text", "phrase"),
        [
            ('{"display_name": "Video", ', "invalid JSON at line 1 column"),
            ('["Video"]', "one treatment as a JSON object"),
            ('{"channel": "email"}', "display_name is required"),
            ('{"display_name": "Video", "channel": "post"}', "channel: Input should be"),
            ('{"display_name": "Video", "purpose": "sales"}', "purpose: unknown purpose 'sales'"),
            ('{"display_name": "Video", "colour": "red"}', "unknown key colour"),
            ('{"display_name": "Video", "enabled": "maybe"}', "enabled: Input should be a valid boolean"),
            ('{"display_name": "Video", "max_per_day": 10}', "max_per_day belongs under constraints"),
            ('{"display_name": "Video", "constraints": 10}', "constraints must be an object"),
            ('{"display_name": "Video", "constraints": {"max_per_day": "ten"}}', "constraints.max_per_day: Input should be a valid integer"),
            ('{"display_name": "Video", "constraints": {"max_per_day": -1}}', "constraints.max_per_day: -1 is outside"),
            ('{"display_name": "Video", "constraints": {"priority": 0}}', "constraints.priority: 0 is outside"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact_pounds": 1e9}}', "constraints.cost_per_contact_pounds"),
            ('{"display_name": "Video", "constraints": {"per_day": 3}}', "unknown key constraints.per_day"),
            ('{"display_name": "", "channel": "sms"}', "display_name: String should have at least 1 character"),
            ('{"id": "Bad Id!", "display_name": "Video"}', "id: 'Bad Id!' is not a valid id"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact_pounds": Infinity}}',
             "constraints.cost_per_contact_pounds: Infinity is not a finite number; allowed: 0 to 10,000"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact_pounds": -Infinity}}', "constraints.cost_per_contact_pounds: -Infinity"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact": NaN}}', "constraints.cost_per_contact: NaN is not a finite number"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact_pounds": 1e400}}', "constraints.cost_per_contact_pounds: 1e400 is not a finite"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact_pounds": -0.01}}', "constraints.cost_per_contact_pounds: -0.01 is outside 0 to 10,000"),
            ('{"display_name": "Video", "constraints": {"cost_per_contact": 20000}}', "constraints.cost_per_contact: 20000 is outside 0 to 10,000"),
            ('{"display_name": "Video", "constraints": {"max_per_day": Infinity}}', "constraints.max_per_day: Infinity is not a finite number"),
            ('{"display_name": "Video", "constraints": {"max_per_day": 1e20}}', "constraints.max_per_day: 1e+20 is outside 0 to 10,000,000"),
            ('{"display_name": "Video", "constraints": {"max_per_day": ' + "9" * 400 + '}}', "constraints.max_per_day: a 400-digit number is outside"),
            ('{"display_name": "Video", "constraints": {"priority": NaN}}', "constraints.priority: NaN is not a finite number; allowed: 1 to 99"),
            ('{"display_name": "Video", "value_per_accept": Infinity}', "value_per_accept: Infinity is not a finite number; allowed: 0 to 1,000,000"),
            ('{"display_name": "Video", "value_per_accept": 5e6}', "value_per_accept: 5000000.0 is outside 0 to 1,000,000"),
            ('{"display_name": "Video", "eligibility": [NaN]}', "eligibility: NaN is not a finite number; give a plain number"),
        ],
    )
    def test_errors_name_the_field(self, text: str, phrase: str) -> None:
        with pytest.raises(UsageError, match=phrase.replace("(", r"\(").replace("[", r"\[").replace("+", r"\+")) as caught:
            complete(parse(text))
        assert "\n" not in str(caught.value)

    def test_a_stated_purpose_its_words_contradict_is_kept_with_a_warning(self) -> None:
        text = json.dumps({"display_name": "Premium Plan", "channel": "sms", "purpose": "service_updates",
                           "description": "Call to sell the premium network plan"})
        spec, sources = complete(parse(text))
        assert (spec.purpose, sources["purpose"]) == ("service_updates", "stated in the JSON")
        warning = consent_warning(spec)
        assert warning is not None and "purpose service_updates was kept as stated" in warning
        assert '"Premium"' in warning and '"purpose": "marketing"' in warning and "\n" not in warning

    @pytest.mark.parametrize(
        "body",
        [
            {"display_name": "Maintenance Notice", "channel": "sms", "purpose": "service_updates", "description": "Planned maintenance tonight"},
            {"display_name": "Bill Reminder", "channel": "sms", "purpose": "billing", "description": "Your bill is due"},
            {"display_name": "Premium Plan", "channel": "sms", "purpose": "marketing", "description": "Sell the premium plan"},
            {"display_name": "Premium Plan", "channel": "sms", "description": "Sell the premium plan"},  # inferred: marketing
        ],
    )
    def test_no_warning_where_the_purpose_fits_the_words(self, body: dict) -> None:
        assert consent_warning(complete(parse(json.dumps(body)))[0]) is None


class TestUpdates:
    """``partial`` parsing states only what the text says; the rest of the entry stays as it is."""

    BASE = {
        "display_name": "Video", "description": "Send video", "enabled": True, "channel": "email", "purpose": "marketing",
        "requires_approval": False, "value_per_accept": 0.0,
        "constraints": {"max_per_day": 10, "cost_per_contact_pounds": 1.0, "priority": 2},
    }

    @pytest.mark.parametrize(
        ("text", "changed"),
        [
            ("limit 20", {"max_per_day": 20}),
            ("priority 1 and requires approval", {"priority": 1, "requires_approval": True}),
            ("by sms", {"channel": "sms"}),
            ("for service updates", {"purpose": "service_updates"}),
            ("disabled", {"enabled": False}),
            ("costing £0.50", {"cost_per_contact_pounds": 0.5}),
            ('{"constraints": {"max_per_day": 7}}', {"max_per_day": 7}),
            ('{"enabled": false}', {"enabled": False}),
        ],
    )
    def test_only_the_stated_fields_change(self, text: str, changed: dict) -> None:
        spec, sources = complete(parse(text, partial=True), base=self.BASE)
        after = spec.model_dump()
        after.update(after.pop("constraints"))
        before = {**self.BASE, **self.BASE["constraints"]}
        assert {k for k in FIELDS if after[k] != before[k]} == set(changed)
        assert {k: after[k] for k in changed} == changed
        assert {k for k, v in sources.items() if v != "unchanged"} == set(changed)

    @pytest.mark.parametrize(
        ("description", "constraints", "change", "restated"),
        [
            ("Send video with limit 10 and priority 2", {"max_per_day": 10, "priority": 2}, "limit 20",
             "Send video with limit 20 and priority 2"),
            ("Send video with limit 10 and priority 2", {"max_per_day": 10, "priority": 2}, "priority 1 and limit 7",
             "Send video with limit 7 and priority 1"),
            ("Send video, 5k per day", {"max_per_day": 5000}, "limit 6000", "Send video, 6000 per day"),
            ("Send video, up to 50 a day", {"max_per_day": 50}, "unlimited", "Send video, no limit"),
            ("Send video by email, unlimited, high priority", {"max_per_day": None, "priority": 2}, "limit 30 and priority 4",
             "Send video by email, limit 30, priority 4"),
            ("Send gift costing £5", {"cost_per_contact_pounds": 5.0}, "costing 7.5", "Send gift costing £7.50"),
            ("Send gift, 10p each", {"cost_per_contact_pounds": 0.1}, "costing 25p", "Send gift, 25p each"),
            ('Send video, limit 10', {"max_per_day": 10}, '{"constraints": {"max_per_day": 15}}', "Send video, limit 15"),
            # a phrase that states some other value was not describing the stored one: left as written
            ("Send video with limit 12", {"max_per_day": 10}, "limit 20", "Send video with limit 12"),
            ("Send video with limit 10.5", {"max_per_day": 10}, "limit 20", "Send video with limit 10.5"),
        ],
    )
    def test_a_changed_limit_priority_or_cost_is_restated_in_the_description(
        self, description: str, constraints: dict, change: str, restated: str
    ) -> None:
        base = {**self.BASE, "description": description, "constraints": {**self.BASE["constraints"], **constraints}}
        spec, _ = complete(parse(change, partial=True), base=base)
        assert spec.description == restated

    def test_a_description_given_with_the_change_is_kept_exactly(self) -> None:
        base = {**self.BASE, "description": "Send video with limit 10"}
        change = json.dumps({"description": "Hand-written: limit 10 is what marketing agreed", "constraints": {"max_per_day": 20}})
        spec, _ = complete(parse(change, partial=True), base=base)
        assert (spec.description, spec.constraints.max_per_day) == ("Hand-written: limit 10 is what marketing agreed", 20)

    def test_a_new_action_changes_name_and_description(self) -> None:
        spec, _ = complete(parse("Send personalized video message with limit 30", partial=True), base=self.BASE)
        assert (spec.display_name, spec.description, spec.constraints.max_per_day) == (
            "Personalized Video Message", "Send personalized video message with limit 30", 30,
        )
        assert spec.constraints.priority == 2

    def test_text_that_states_nothing_is_an_error(self) -> None:
        with pytest.raises(UsageError, match="nothing to change"):
            parse("hello", partial=True)


# -- the optional LLM proposal, through the real openai client ---------------------------

WHATSAPP = "Send WhatsApp nudge about roaming passes with limit 10"


def llm(stub: StubOpenAI) -> OpenAIJSONClient:
    return OpenAIJSONClient(
        model="stub-model", api_key="test-key", base_url=stub.base_url, timeout_seconds=2,
        max_retries=0, max_concurrency=1,
    )


def proposal(**fields: object) -> dict:
    return {name: fields.get(name) for name in LLM_SCHEMA["required"]}


class TestLLMProposal:
    def test_fills_what_the_text_left_open_and_the_validator_keeps_only_valid_values(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Answer(proposal(display_name="Roaming Passes Nudge", channel="sms", purpose="marketing", max_per_day=20, priority=1)))
        draft = parse(WHATSAPP, llm=llm(llm_stub))
        spec, sources = complete(draft)
        assert (spec.display_name, spec.channel, spec.purpose) == ("Roaming Passes Nudge", "sms", "marketing")
        assert spec.constraints.max_per_day == 10  # the text said 10: the parser's number stands
        assert spec.constraints.priority == DEFAULTS["priority"][0]  # 1 is not in the text: rejected
        assert sources["channel"] == "proposed by the LLM"
        assert any("rejected by the validator: priority" in note for note in draft.notes)

    def test_request_is_strict_json_schema_with_the_line_as_quoted_data(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Answer(proposal()))
        parse(WHATSAPP, llm=llm(llm_stub))
        body = llm_stub.last_request
        assert response_schema(body) == LLM_SCHEMA
        assert body["response_format"]["json_schema"]["strict"] is True
        assert json.loads(body["messages"][-1]["content"]) == {"line": WHATSAPP}

    @pytest.mark.parametrize(
        "bad",
        [
            {"display_name": "Free iPhone For Everyone"},  # words the line never used
            {"channel": "post"},
            {"purpose": "sales"},
            {"cost_per_contact_pounds": 3.5},
        ],
    )
    def test_invalid_proposals_are_dropped(self, llm_stub: StubOpenAI, bad: dict) -> None:
        llm_stub.push(Answer(proposal(**bad)))
        spec, _ = complete(parse(WHATSAPP, llm=llm(llm_stub)))
        baseline, _ = complete(parse(WHATSAPP))
        assert spec == baseline

    def test_a_quoted_name_is_never_replaced(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Answer(proposal(display_name="Nudge")))
        spec, _ = complete(parse('Send "Roaming Nudge" by whatsapp', llm=llm(llm_stub)))
        assert spec.display_name == "Roaming Nudge"

    def test_an_llm_failure_falls_back_to_the_embedded_parser(self, llm_stub: StubOpenAI) -> None:
        llm_stub.push(Status(500, {"x-should-retry": "false"}))
        draft = parse(WHATSAPP, llm=llm(llm_stub))
        assert complete(draft)[0] == complete(parse(WHATSAPP))[0]
        assert any("LLM parser not used" in note for note in draft.notes)

    @pytest.mark.parametrize(
        ("text", "proposed"),
        [
            ("Call customers to sell them the premium network plan", "service_updates"),  # rules: marketing (selling)
            ("Send WhatsApp nudge about roaming passes", "billing"),  # rules: unsure, so marketing
            ("Send WhatsApp nudge about roaming passes", "service_updates"),
        ],
    )
    def test_a_purpose_looser_than_the_rules_is_rejected(self, llm_stub: StubOpenAI, text: str, proposed: str) -> None:
        llm_stub.push(Answer(proposal(purpose=proposed)))
        draft = parse(text, llm=llm(llm_stub))
        assert complete(draft)[0].purpose == "marketing"
        assert any("rejected by the validator: purpose" in note for note in draft.notes)

    def test_the_llm_may_make_the_purpose_stricter(self, llm_stub: StubOpenAI) -> None:
        text = "Notify customers about planned network maintenance and the gadget"
        assert complete(parse(text))[0].purpose == "service_updates"
        llm_stub.push(Answer(proposal(purpose="marketing")))
        spec, sources = complete(parse(text, llm=llm(llm_stub)))
        assert (spec.purpose, sources["purpose"]) == ("marketing", "proposed by the LLM")

    def test_the_llm_may_confirm_a_service_purpose(self, llm_stub: StubOpenAI) -> None:
        text = "Notify customers about planned network maintenance tonight"
        llm_stub.push(Answer(proposal(purpose="service_updates")))
        draft = parse(text, llm=llm(llm_stub))
        assert complete(draft)[0].purpose == "service_updates"
        assert not any("rejected" in note for note in draft.notes)

    def test_updates_never_ask_the_llm(self, llm_stub: StubOpenAI) -> None:
        parse("limit 20", partial=True, llm=llm(llm_stub))
        assert llm_stub.request_count == 0
