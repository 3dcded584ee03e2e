"""The Insight agent: signals fused across the base, churn projected over a horizon."""

from __future__ import annotations

import math

import pytest

from cvm.agents.insight import HAZARD_FACTORS, SCORE_WINDOW_DAYS, churn_trajectory
from cvm.agents.messages import RISK_BANDS, ChurnForecast, ErrorResponse, Journey, JourneyFeatures, PortfolioChurn, SignalFusion


@pytest.fixture
def insight(make_runtime):
    return make_runtime().insight


def journey(churn: float | None, signals: dict[str, str] | None = None, sentiment: str = "unknown") -> Journey:
    return Journey(
        customer_id="C1", as_of="2026-11-23T10:00:00+00:00",
        features=JourneyFeatures(churn_probability=churn, sentiment_trend=sentiment), signals=signals or {},
    )


class TestFuseSignals:
    """Every customer's signals are counted and the most at risk listed with their evidence."""

    def test_sample_counts_match_each_journey(self, insight, make_runtime) -> None:
        fused = insight.process({"type": "fuse_signals"})
        assert isinstance(fused, SignalFusion)
        assert fused.customers == 12
        assert fused.customer_ids == tuple(f"U{n}" for n in range(123, 135))
        assert fused.signal_counts["network_issue"] == 2
        assert fused.customers_by_signal["network_issue"] == ("U123", "U130")
        assert sum(fused.signal_counts.values()) == sum(len(ids) for ids in fused.customers_by_signal.values())

    def test_at_risk_are_above_threshold_most_at_risk_first(self, insight) -> None:
        fused = insight.process({"type": "fuse_signals"})
        assert [c.customer_id for c in fused.at_risk] == ["U127", "U133", "U125"]
        assert [c.churn_probability for c in fused.at_risk] == [0.88, 0.78, 0.62]
        assert all(c.reasons and len(c.reasons) == len(c.signals) for c in fused.at_risk)

    def test_unknown_customer_is_an_error_entry_not_a_failure(self, insight) -> None:
        fused = insight.process({"type": "fuse_signals", "customer_ids": ["U123", "U999"]})
        assert fused.customers == 1
        assert [e["customer_id"] for e in fused.errors] == ["U999"]
        assert fused.errors[0]["error_type"] == "unknown_customer"

    def test_bad_message_is_a_typed_error(self, insight) -> None:
        answer = insight.process({"type": "forecast_churn", "horizon_days": 0})
        assert isinstance(answer, ErrorResponse)
        assert answer.error_type == "invalid_message"


class TestChurnTrajectory:
    """The projection compounds a hazard scaled by the journey's trends, and names each factor."""

    def test_no_trend_at_the_score_window_returns_the_score(self) -> None:
        trajectory = churn_trajectory(journey(0.4), SCORE_WINDOW_DAYS)
        assert trajectory.churn_at_horizon == pytest.approx(0.4, abs=1e-3)
        assert trajectory.trend == "stable"
        assert trajectory.drivers == ("no trend moves it",)

    def test_factors_multiply_the_hazard(self) -> None:
        signals = {"network_issue": "poor", "bill_shock": "jumped"}
        trajectory = churn_trajectory(journey(0.3, signals), 180)
        factor = HAZARD_FACTORS["network_issue"][0] * HAZARD_FACTORS["bill_shock"][0]
        expected = 1 - math.exp(math.log(0.7) / SCORE_WINDOW_DAYS * factor * 180)
        assert trajectory.churn_at_horizon == pytest.approx(expected, abs=1e-3)
        assert trajectory.trend == "rising"
        assert set(trajectory.drivers) == {"network quality is poor", "the latest bill jumped"}

    def test_improving_sentiment_lowers_the_projection(self) -> None:
        assert churn_trajectory(journey(0.5, sentiment="improving"), 90).trend == "falling"

    def test_no_score_is_unknown(self) -> None:
        trajectory = churn_trajectory(journey(None), 90)
        assert (trajectory.churn_now, trajectory.churn_at_horizon, trajectory.trend) == (None, None, "unknown")

    def test_forecast_lists_rising_customers_steepest_first(self, insight) -> None:
        forecast = insight.process({"type": "forecast_churn", "horizon_days": 90})
        assert isinstance(forecast, ChurnForecast)
        assert len(forecast.customers) == 12
        by_id = {t.customer_id: t for t in forecast.customers}
        rises = [by_id[c].churn_at_horizon - by_id[c].churn_now for c in forecast.rising]
        assert rises == sorted(rises, reverse=True)
        assert all(by_id[c].trend == "rising" for c in forecast.rising)
        assert "U123" in forecast.rising  # poor network and worsening sentiment


class TestForecastPortfolio:
    """A run's churn picture at any size: every score counted, the sample's trajectories equal the per-customer forecast."""

    @pytest.fixture
    def decided(self, make_runtime):
        runtime = make_runtime(run_id="run-insight")
        runtime.orchestrator.decide_many([f"U{n}" for n in range(123, 135)] + ["U999"])
        return runtime

    def test_counts_and_the_most_at_risk_match_every_journey(self, decided) -> None:
        picture = decided.insight.process({"type": "forecast_portfolio", "run_id": "run-insight", "top": 2})
        assert isinstance(picture, PortfolioChurn), picture
        per_customer = decided.insight.process({"type": "forecast_churn"})
        churn = {t.customer_id: t.churn_now for t in per_customer.customers}
        threshold = picture.threshold
        assert (picture.customers, picture.scored) == (13, 12) and picture.unknown_ids == ("U999",)
        assert picture.at_risk == sum(1 for p in churn.values() if p is not None and p >= threshold) == 3
        assert [a.customer_id for a in picture.most_at_risk] == ["U127", "U133"]
        fused = {a.customer_id: a for a in decided.insight.process({"type": "fuse_signals"}).at_risk}
        for a in picture.most_at_risk:
            assert (a.churn_probability, a.signals, a.reasons) == (
                fused[a.customer_id].churn_probability, fused[a.customer_id].signals, fused[a.customer_id].reasons,
            )
        bands = [sum(1 for p in churn.values() if lo <= p and (p < hi or hi == 1.0)) for lo, hi in RISK_BANDS]
        assert list(picture.bands) == bands
        assert sum(below + hot for below, hot in picture.histogram) == 12
        assert sum(hot for _, hot in picture.histogram) == picture.at_risk

    def test_segment_trajectories_are_the_per_customer_forecast_of_the_sample(self, decided) -> None:
        picture = decided.insight.process(
            {"type": "forecast_portfolio", "run_id": "run-insight", "horizon_days": 180, "sample_per_segment": 100}
        )
        per_customer = {t.customer_id: t for t in decided.insight.process({"type": "forecast_churn", "horizon_days": 180}).customers}
        assert sum(s.customers for s in picture.segments) == 13
        assert sum(s.sampled for s in picture.segments) == 12, "a sample larger than the segment is all of its scored customers"
        everyone = [t for t in per_customer.values() if t.churn_now is not None]
        assert sum(s.rising for s in picture.segments) == sum(1 for t in everyone if t.trend == "rising")
        horizon = sum((s.sample_churn_at_horizon_mean or 0) * s.sampled for s in picture.segments)
        assert horizon == pytest.approx(sum(t.churn_at_horizon or 0 for t in everyone), abs=1e-3)
        drivers = sum(n for s in picture.segments for n in s.drivers.values())
        assert drivers == sum(1 for t in everyone for d in t.drivers if d != "no trend moves it")

    def test_an_unreadable_churn_feed_means_every_risk_unknown_said_once(self, decided, make_runtime, data_copy) -> None:
        (data_copy / "churn_score.json").write_text("[{not json", encoding="utf-8")
        broken = make_runtime(run_id="run-insight", data_dir=data_copy)
        picture = broken.insight.process({"type": "forecast_portfolio", "run_id": "run-insight"})
        assert isinstance(picture, PortfolioChurn), picture
        assert (picture.customers, picture.scored, picture.at_risk, picture.most_at_risk) == (13, 0, 0, ())
        assert len(picture.errors) == 1 and "churn_score.json" in picture.errors[0]["error"]
        assert picture.unknown_ids[:2] == ("U123", "U124")
