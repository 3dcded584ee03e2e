"""The reference prototype's table shapes read into the typed records, with no data-quality note.

The fixture folder tests/fixtures/prototype/ is written for these tests in the
prototype's field names and shapes (both offer shapes in one table, both
billing and usage shapes, contact times as words).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from pathlib import Path

import pytest

from cvm.tools.data_source import FileDataSource
from cvm.tools.records import CustomerData, normalise_customer, parse_contact_time

PROTOTYPE = Path(__file__).resolve().parents[1] / "fixtures" / "prototype" / "data"


@pytest.fixture(scope="module")
def customers() -> dict[str, CustomerData]:
    source = FileDataSource(PROTOTYPE)
    return {cid: normalise_customer(cid, source.rows_for(cid), source.table_issues()) for cid in source.customer_ids()}


def test_every_well_formed_row_reads_without_a_note(customers: dict[str, CustomerData]) -> None:
    assert sorted(customers) == ["P101", "P102", "P103", "P104", "P105", "P106"]
    assert {cid: [i.message for i in c.data_quality] for cid, c in customers.items()} == {cid: [] for cid in customers}


class TestTranscripts:
    def test_summary_is_the_customers_words_with_label_type_and_minutes(self, customers: dict[str, CustomerData]) -> None:
        (call,) = customers["P101"].transcripts
        assert call.source == "call_transcripts"
        assert call.at == datetime(2026, 10, 20)
        assert call.customer_text.startswith("Customer reported that calls keep dropping")
        assert call.sentiment_label == "negative"
        assert call.topic == "technical_support"
        assert call.duration_seconds == 14 * 60

    def test_web_rows_keep_channel_and_resolution(self, customers: dict[str, CustomerData]) -> None:
        (chat,) = customers["P102"].transcripts
        assert (chat.source, chat.channel, chat.resolution, chat.sentiment_label) == ("web_transcripts", "web_chat", "resolved", "neutral")
        assert "roaming" in chat.customer_text


class TestOffers:
    def test_flat_offers_are_scores(self, customers: dict[str, CustomerData]) -> None:
        (offer,) = customers["P106"].offers
        assert (offer.offer_id, offer.acceptance_probability, offer.offer_name) == ("data_boost", 0.55, "Data Boost 20GB")
        assert offer.discount_amount == 5.0 and offer.original_price == 15.0
        assert offer.personalization_factors == ["high_data_usage", "evening_streaming"]
        assert offer.expiration_date == date(2026, 12, 31)

    def test_nested_offers_become_history_with_outcomes(self, customers: dict[str, CustomerData]) -> None:
        history = customers["P105"].offer_history
        assert [(o.type, o.status, o.offered_on, o.decided_on) for o in history] == [
            ("retention_discount", "declined", date(2026, 5, 1), date(2026, 5, 10)),
            ("retention_discount", "declined", date(2026, 8, 1), date(2026, 8, 9)),
            ("loyalty_points", "declined", date(2026, 8, 1), date(2026, 8, 9)),
        ]
        assert history[0].value == 16.0  # value_per_month when there is no numeric value
        assert history[2].value == 500.0 and "500 points" in (history[2].description or "")  # textual value kept as words

    def test_both_shapes_in_one_table(self, customers: dict[str, CustomerData]) -> None:
        p106 = customers["P106"]
        assert [o.offer_id for o in p106.offers] == ["data_boost"]
        assert [(o.type, o.status) for o in p106.offer_history] == [("data_addon", "accepted"), ("device_upgrade", "pending")]


class TestPermissions:
    @pytest.mark.parametrize(
        ("word", "window"),
        [
            ("morning", (time(9), time(12))), ("afternoon", (time(12), time(17))), ("evening", (time(17), time(21))),
            ("business_hours", (time(9), time(17))), ("Business Hours", (time(9), time(17))), ("18:00-20:00", (time(18), time(20))),
        ],
    )
    def test_contact_time_words_map_to_windows(self, word: str, window: tuple[time, time]) -> None:
        parsed = parse_contact_time(word)
        assert parsed is not None and (parsed.start, parsed.end) == window

    def test_any_means_no_preference(self, customers: dict[str, CustomerData]) -> None:
        assert parse_contact_time("any") is None
        assert customers["P104"].permissions is not None and customers["P104"].permissions.preferred_contact_time is None

    def test_language_and_per_channel_last_updated(self, customers: dict[str, CustomerData]) -> None:
        perms = customers["P105"].permissions
        assert perms is not None
        assert perms.preferred_language == "cy"
        assert perms.updated["email"] == "2026-06-01T10:00:00"
        assert perms.allows("call", "service_updates") and not perms.allows("call", "marketing")


class TestChurnBillingUsageClicks:
    def test_churn_lifetime_risk_factors_and_satisfaction(self, customers: dict[str, CustomerData]) -> None:
        churn = customers["P101"].churn
        assert churn is not None
        assert (churn.probability, churn.lifetime_months, churn.satisfaction_score) == (0.58, 28, 3.5)
        assert churn.risk_factors == ["network_complaints", "declining_usage"]

    def test_billing_charge_list_types_and_payment_fields(self, customers: dict[str, CustomerData]) -> None:
        latest = customers["P103"].billing[-1]
        assert latest.monthly_charge == 40.0
        assert [(c.type, c.amount) for c in latest.additional_charges] == [("data_overage", 18.0), ("premium_sms", 6.0)]
        assert latest.overage_total == 18.0 and latest.roaming_total == 0.0
        assert [(d.type, d.amount) for d in latest.discounts] == [("loyalty", 5.0)]
        assert (latest.payment_method, latest.auto_pay, latest.paperless_billing) == ("direct_debit", False, False)
        assert latest.has_payment_issues

    def test_monthly_charge_spelling_and_typed_roaming_charge(self, customers: dict[str, CustomerData]) -> None:
        latest = customers["P102"].billing[-1]
        assert latest.monthly_charge == 35.0
        assert latest.roaming_total == 42.5
        assert customers["P101"].billing[-1].has_payment_issues is False

    def test_both_usage_shapes(self, customers: dict[str, CustomerData]) -> None:
        assert customers["P101"].usage[-1].data_gb == 11.5  # data_usage_gb
        p102 = customers["P102"].usage[-1]
        assert (p102.data_gb, p102.roaming_data_gb) == (8.0, 3.2)  # total_data_gb, roaming_usage_gb
        p106 = customers["P106"].usage[-1]
        assert p106.data_by_app == {"video_streaming": 25.5, "social_media": 9.0, "browsing": 6.5}
        assert (p106.peak_usage_hour, p106.weekend_usage_percent) == (21, 38.5)

    def test_both_click_shapes(self, customers: dict[str, CustomerData]) -> None:
        (p104,) = customers["P104"].clicks
        assert p104.seconds == 450 and p104.device == "mobile" and p104.browser == "Safari"
        assert p104.pages == ("/shop/trackers", "/home", "/shop")
        (p106,) = customers["P106"].clicks
        assert (p106.seconds, p106.device, p106.click_path) == (95, "desktop", ())


class TestStillRejected:
    """A genuinely malformed row is one note; unknown extra fields are kept silently."""

    def test_malformed_rows_are_one_note_each(self) -> None:
        rows = {
            "call_transcripts": [{"customer_id": "X", "date": "2026-10-01", "sentiment": "furious", "summary": "hi"}],
            "offer_recommendations": [{"customer_id": "X", "recommended_offers": [], "outcome": {"status": "accepted"}}],
            "churn_score": [{"customer_id": "X", "churn_score": 0.5, "recent_satisfaction_score": 42}],
        }
        data = normalise_customer("X", rows)
        assert sorted((i.table, i.field) for i in data.data_quality) == [
            ("call_transcripts", "sentiment"), ("churn_score", "recent_satisfaction_score"), ("offer_recommendations", "recommended_offers"),
        ]

    def test_unknown_fields_are_kept_not_reported(self) -> None:
        row = {"customer_id": "X", "date": "2026-10-01", "summary": "hello", "agent_id": "A7", "queue": "billing"}
        data = normalise_customer("X", {"call_transcripts": [row]})
        assert data.data_quality == [] and data.transcripts[0].customer_text == "hello"


class TestHostileMoney:
    """Non-finite or negative money is a note and the amount is unknown; no infinity reaches a feature."""

    def write(self, folder: Path, text: str) -> FileDataSource:
        (folder / "billing_data.json").write_text(text, encoding="utf-8")
        return FileDataSource(folder)

    @pytest.mark.parametrize("bad", ["Infinity", "NaN", "1e400", "-Infinity"])
    def test_non_finite_bill_skips_that_bill_with_a_note(self, tmp_path: Path, bad: str) -> None:
        source = self.write(tmp_path, f'[{{"customer_id": "X", "billing_date": "2026-10-01", "monthly_bill": {bad}}},'
                                      '{"customer_id": "X", "billing_date": "2026-09-01", "monthly_bill": 30}]')
        data = normalise_customer("X", source.rows_for("X"), source.table_issues())
        assert [b.monthly_charge for b in data.billing] == [30.0]
        (issue,) = data.data_quality
        assert issue.field == "monthly_bill" and "finite number" in issue.message

    @pytest.mark.parametrize("amount", ["Infinity", "NaN", "-1e9", "1e400"])
    def test_bad_charge_is_dropped_and_the_bill_kept(self, tmp_path: Path, amount: str) -> None:
        source = self.write(tmp_path, '[{"customer_id": "X", "billing_date": "2026-10-01", "monthly_bill": 30, '
                                      f'"additional_charges": [{{"type": "roaming", "amount": {amount}}}, {{"type": "roaming", "amount": 5}}],'
                                      f'"roaming_charges": {amount}}}]')
        data = normalise_customer("X", source.rows_for("X"), source.table_issues())
        (bill,) = data.billing
        assert bill.roaming_total == 5.0 and math.isfinite(bill.total)
        assert sorted(i.field or "" for i in data.data_quality) == ["additional_charges.amount", "roaming_charges"]

    def test_negative_bare_charge_is_unknown(self, tmp_path: Path) -> None:
        source = self.write(tmp_path, json.dumps([{"customer_id": "X", "billing_date": "2026-10-01", "monthly_bill": 30, "additional_charges": -1e9}]))
        data = normalise_customer("X", source.rows_for("X"), source.table_issues())
        assert data.billing[0].extra_total == 0.0
        assert [i.message for i in data.data_quality] == ["additional_charges is negative (-1000000000.0); treated as unknown"]


class TestByteOrderMark:
    @pytest.mark.parametrize("ext", [".json", ".jsonl"])
    def test_a_bom_is_not_data(self, tmp_path: Path, ext: str) -> None:
        rows = [{"customer_id": "X", "churn_score": 0.7}]
        text = json.dumps(rows) if ext == ".json" else "\n".join(json.dumps(r) for r in rows)
        (tmp_path / f"churn_score{ext}").write_bytes(b"\xef\xbb\xbf" + text.encode())
        source = FileDataSource(tmp_path)
        assert source.table_issues() == []
        assert normalise_customer("X", source.rows_for("X")).churn.probability == 0.7  # type: ignore[union-attr]
