"""The seeded world on 20,000 customers: plausible shares and distributions, every interest and signal."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date
from typing import Any

import pytest

from cvm.decision.journey import INTEREST_PATTERNS, JourneyBuilder
from cvm.synth import vocabulary
from cvm.tools.records import normalise_customer
from cvm.utils.config import load_config
from tests.conftest import CONFIG
from tests.synth.conftest import AS_OF, by_customer


class TestDistributions:
    """On 20,000 customers the shares match the design (wide enough bands for any seed)."""

    def test_churn_is_beta_shaped(self, population: dict[str, list[dict[str, Any]]]) -> None:
        churn = [r.get("churn_score", r.get("churn_probability")) for r in population["churn_score"]]
        assert len(churn) == 20_000 and all(0 < c < 1 for c in churn)
        assert 0.24 <= statistics.mean(churn) <= 0.36
        assert statistics.median(churn) < statistics.mean(churn)  # right-skewed
        assert 0.05 <= sum(c >= 0.6 for c in churn) / len(churn) <= 0.15

    @pytest.mark.slow
    def test_revenue_is_lognormal_by_segment(self, population: dict[str, list[dict[str, Any]]]) -> None:
        segment = {r["customer_id"]: r["segment"] for r in population["customers"]}
        charges: dict[str, list[float]] = defaultdict(list)
        for row in population["billing_data"]:
            if row.get("billing_date", row.get("date")) == "2026-09-01":
                charges[segment[row["customer_id"]]].append(row.get("monthly_bill", row.get("monthly_charge")))
        consumer, business = charges["consumer"], charges["small_business"]
        assert 0.10 <= len(business) / 20_000 <= 0.20
        assert 22 <= statistics.median(consumer) <= 38 and statistics.median(business) > statistics.median(consumer)
        assert statistics.mean(consumer) > statistics.median(consumer)

    def test_tenure_spans_new_and_long_standing_customers(self, population: dict[str, list[dict[str, Any]]]) -> None:
        months = [(date(2026, 11, 23) - date.fromisoformat(r["join_date"])).days / 30.4 for r in population["customers"]]
        assert 0.15 <= sum(m < 12 for m in months) / len(months) <= 0.25
        assert 0.20 <= sum(m >= 60 for m in months) / len(months) <= 0.45
        assert max(months) <= 181

    def test_network_bill_roaming_and_usage_shares(self, population: dict[str, list[dict[str, Any]]]) -> None:
        scoring = load_config(CONFIG).scoring
        poor = 0
        for rows in by_customer(population["network_data"]).values():
            latency = statistics.mean(r["avg_latency_ms"] for r in rows)
            dropped = sum(r["dropped_calls"] for r in rows)
            weakest = min(r["signal_strength_dbm"] for r in rows)
            poor += latency >= scoring.poor_latency_ms or dropped >= scoring.dropped_calls_threshold or weakest <= -105
        assert 0.12 <= poor / 20_000 <= 0.18
        def total(bill: dict[str, Any]) -> float:
            extra = bill["additional_charges"]
            extra = extra if isinstance(extra, float) else sum(c["amount"] for c in extra)
            return bill.get("monthly_bill", bill.get("monthly_charge")) + extra + bill.get("roaming_charges", 0.0)

        def roamed(bill: dict[str, Any]) -> bool:
            listed = bill["additional_charges"] if isinstance(bill["additional_charges"], list) else []
            return bill.get("roaming_charges", 0.0) > 0 or any("roaming" in c["description"].lower() for c in listed)

        shock = roaming = 0
        for rows in by_customer(population["billing_data"]).values():
            totals = [total(r) for r in rows]
            shock += totals[-1] >= scoring.bill_shock_ratio * statistics.mean(totals[:-1])
            roaming += any(roamed(r) for r in rows[-2:])
        assert 0.07 <= shock / 20_000 <= 0.15
        assert 0.06 <= roaming / 20_000 <= 0.10
        change = []
        for rows in by_customer(population["usage_data"]).values():
            gb = [r.get("total_data_gb", r.get("data_usage_gb")) for r in rows]
            change.append(gb[-1] / gb[0] - 1)
        assert 0.15 <= sum(c > 0.15 for c in change) / len(change) <= 0.25
        assert 0.10 <= sum(c < -0.15 for c in change) / len(change) <= 0.20

    def test_consent_differs_by_channel_and_purpose(self, population: dict[str, list[dict[str, Any]]]) -> None:
        records = population["permissions"]
        assert 0.02 <= 1 - len(records) / 20_000 <= 0.04
        rate = {
            (channel, purpose): sum(r["permissions"][channel][purpose] == "Y" for r in records) / len(records)
            for channel in ("email", "sms", "call", "push_notifications") for purpose in ("marketing", "service_updates", "billing")
        }
        marketing = [rate[c, "marketing"] for c in ("email", "sms", "push_notifications", "call")]
        assert marketing == sorted(marketing, reverse=True) and marketing[0] - marketing[-1] > 0.25
        assert 0.45 <= rate["email", "marketing"] <= 0.70 and 0.10 <= rate["call", "marketing"] <= 0.30
        for channel in ("email", "sms", "call"):
            assert rate[channel, "service_updates"] >= 0.75 and rate[channel, "billing"] >= 0.75
            assert rate[channel, "marketing"] < rate[channel, "service_updates"]
        assert len(Counter(r["do_not_disturb"] for r in records)) >= 4
        assert 0.6 <= sum("preferred_contact_time" in r for r in records) / len(records) <= 0.9

    def test_contacts_clicks_and_offers(self, population: dict[str, list[dict[str, Any]]]) -> None:
        assert 0.30 <= len(by_customer(population["call_transcripts"])) / 20_000 <= 0.42
        assert 0.15 <= len(by_customer(population["web_transcripts"])) / 20_000 <= 0.25
        assert 0.55 <= len(by_customer(population["web_clicks"])) / 20_000 <= 0.90
        offers = by_customer(population["offer_recommendations"])
        assert len(offers) == 20_000 and {len(rows) for rows in offers.values()} == {2, 3, 4}
        assert {r["offer_id"] for r in population["offer_recommendations"]} == set(vocabulary.TREATMENT_IDS)
        assert set(vocabulary.TREATMENT_IDS) <= set(load_config(CONFIG).treatments)
        for rows in offers.values():
            scores = [r["acceptance_probability"] for r in rows]
            assert scores == sorted(scores, reverse=True) and len({r["offer_id"] for r in rows}) == len(rows)

    def test_journeys_show_every_interest_and_signal(self, population: dict[str, list[dict[str, Any]]]) -> None:
        """The Journey agent on 1,500 of them finds every interest and the main signals."""
        wanted = {f"C{n:07d}" for n in range(1, 1501)}
        tables = {t: by_customer([r for r in rows if r["customer_id"] in wanted]) for t, rows in population.items()}
        builder = JourneyBuilder(load_config(CONFIG).scoring)
        interests: Counter[str] = Counter()
        signals: Counter[str] = Counter()
        for cid in sorted(wanted):
            data = normalise_customer(cid, {t: rows.get(cid, []) for t, rows in tables.items()})
            features = builder.features(data, AS_OF)
            interests.update(features.interests)
            signals.update(builder.signals(features).keys())
        assert set(interests) == set(INTEREST_PATTERNS)
        for name in ("network_issue", "bill_shock", "roaming_charges", "high_churn_risk", "cancellation_intent", "negative_sentiment",
                     "high_value", "loyal", "family_interest", "upgrade_interest", "data_growth", "cheaper_plan_interest", "overdue_payment"):
            assert signals[name] >= 10, (name, signals)
