"""The embedded rules selector: expected value, relevance, offer scores, ranking and confidence."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvm.agents.base import expect
from cvm.agents.data import DataAgent
from cvm.agents.messages import (
    Candidate,
    CustomerDataResponse,
    CustomerListResponse,
    GetCustomerData,
    Journey,
    JourneyFeatures,
    ListCustomers,
)
from cvm.decision.journey import JourneyBuilder
from cvm.decision.scoring import fit, rank, score
from cvm.tools.data_source import FileDataSource
from cvm.tools.records import DataQualityIssue
from cvm.utils.config import IGNORE_ID, CVMConfig, ScoringSettings, Treatment, load_config

AS_OF = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
SCORING = ScoringSettings()  # horizon 12 months, default acceptance 0.2, default churn 0.2
RETAIN = "A retention discount so you stay."  # three words of the churn-risk vocabulary: full fit


def treatment(tid: str, description: str = "A plain card in the post.", *, cost: float = 1.0, priority: int = 5,
              value_per_accept: float = 0.0, name: str | None = None) -> Treatment:
    return Treatment(id=tid, display_name=name or tid.replace("_", " ").title(), description=description,
                     channel="email", purpose="marketing", cost_per_contact=cost, priority=priority, value_per_accept=value_per_accept)


def journey(*, churn: float | None = 0.5, revenue: float | None = 50.0, signals: dict[str, str] | None = None,
            offers: dict[str, float] | None = None, issues: int = 0, customer_id: str = "T1") -> Journey:
    return Journey(
        customer_id=customer_id, as_of=AS_OF,
        features=JourneyFeatures(churn_probability=churn, monthly_revenue=revenue, offer_scores=offers or {}),
        signals=signals or {},
        data_quality=tuple(DataQualityIssue(table="billing_data", message=f"issue {i}") for i in range(issues)),
    )


def ev_matches_fields(c: Candidate) -> bool:
    """EV == p_accept x value_at_stake - cost, up to the rounding of each stored field."""
    tolerance = 0.006 + 0.00005 * abs(c.value_at_stake) + 0.005 * c.p_accept
    return abs(c.expected_value - (c.p_accept * c.value_at_stake - c.cost)) <= tolerance


@pytest.fixture
def config(config_path: Path) -> CVMConfig:
    return load_config(config_path)


@pytest.fixture
def sample_journeys(config: CVMConfig, sample_dir: Path) -> list[Journey]:
    """Every sample customer's journey, built as the runtime builds it."""
    data_agent = DataAgent(FileDataSource(sample_dir))
    builder = JourneyBuilder(config.scoring)
    ids = expect(data_agent.process(ListCustomers()), CustomerListResponse).customer_ids
    journeys = [
        builder.build(expect(data_agent.process(GetCustomerData(customer_id=cid)), CustomerDataResponse).data, AS_OF)
        for cid in ids
    ]
    assert len(journeys) >= 10
    return journeys


journeys_strategy = st.builds(
    lambda churn, revenue, offer, issues, signals: journey(
        churn=churn, revenue=revenue, offers={"retention_email": offer} if offer is not None else {}, issues=issues,
        signals={s: "evidence" for s in signals},
    ),
    churn=st.none() | st.floats(0, 1),
    revenue=st.none() | st.floats(0, 500),
    offer=st.none() | st.floats(0, 1),
    issues=st.integers(0, 8),
    signals=st.sets(st.sampled_from(["network_issue", "bill_shock", "high_churn_risk", "family_interest", "loyal", "data_growth"])),
)
treatments_strategy = st.lists(
    st.builds(
        treatment,
        tid=st.sampled_from(["retention_email", "family_plan", "service_sms", "data_boost", "loyalty_points", "custom_x"]),
        description=st.sampled_from(["A retention discount to stay.", "Add family lines for kids.", "An engineer will fix the network.", "Hello."]),
        cost=st.floats(0, 100),
        priority=st.integers(1, 9),
        value_per_accept=st.floats(0, 400),
    ),
    max_size=6,
    unique_by=lambda t: t.id,  # treatment ids are unique in any config
)
fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class TestExpectedValue:
    """Expected value is P(accept) x value at stake - cost, with a reason per factor."""

    def test_hand_computed_example(self) -> None:
        c = score(treatment("keep", RETAIN, cost=2.0), journey(churn=0.5, revenue=50.0), SCORING)
        # revenue at risk 0.5 x 50 x 12 = 300; fit = churn 0.5 x full word match = 0.5 -> saves 150;
        # no offer score -> P = default 0.2; EV = 0.2 x 150 - 2 = 28
        assert c.relevance == pytest.approx(0.5)
        assert c.p_accept == pytest.approx(SCORING.default_acceptance)
        assert c.value_at_stake == pytest.approx(150.0)
        assert c.cost == 2.0
        assert c.expected_value == pytest.approx(28.0)
        assert any("£300.00 at risk over 12 months" in r for r in c.reasons)
        assert c.reasons[-1] == "expected value 20% x £150.00 - £2.00 = £28.00"

    def test_treatment_that_answers_nothing_only_costs(self) -> None:
        c = score(treatment("card", cost=2.0), journey(churn=0.5, revenue=50.0), SCORING)
        assert c.relevance == 0.0
        assert c.value_at_stake == 0.0
        assert c.expected_value == -2.0

    def test_upsell_value_adds_to_value_at_stake(self) -> None:
        plain = score(treatment("a", RETAIN), journey(), SCORING)
        upsell = score(treatment("a", RETAIN, value_per_accept=100.0), journey(), SCORING)
        assert upsell.value_at_stake == pytest.approx(plain.value_at_stake + 100.0)
        assert upsell.expected_value > plain.expected_value
        assert any("adds £100.00 revenue if accepted" in r for r in upsell.reasons)

    def test_unknown_churn_assumes_a_default_and_says_so(self) -> None:
        c = score(treatment("a", RETAIN), journey(churn=None, revenue=50.0), SCORING)
        assert f"assumed churn probability {SCORING.default_churn_probability:.2f}" in c.reasons[0]
        assert "£120.00 at risk" in c.reasons[0]  # 0.2 x 50 x 12

    def test_formula_matches_every_sample_candidate(self, config: CVMConfig, sample_journeys: list[Journey]) -> None:
        for j in sample_journeys:
            for c in rank(config.treatments.values(), j, config.scoring).candidates:
                assert ev_matches_fields(c), (j.customer_id, c)
                assert c.cost == (config.treatments[c.treatment_id].cost_per_contact if c.treatment_id != IGNORE_ID else 0.0)

    @fuzz
    @given(j=journeys_strategy, ts=treatments_strategy)
    def test_formula_matches_random_candidates(self, j: Journey, ts: list[Treatment]) -> None:
        for c in rank(ts, j, SCORING).candidates:
            assert ev_matches_fields(c), c
            assert 0 <= c.p_accept <= 1
            assert 0 <= c.relevance <= 1


class TestIgnore:
    """ignore is always ranked, once, at expected value 0, and nothing worth no more than nothing beats it."""

    def test_no_treatments_leaves_only_ignore(self) -> None:
        ranking = rank([], journey(), SCORING)
        assert [c.treatment_id for c in ranking.candidates] == [IGNORE_ID]
        assert ranking.best.expected_value == 0.0

    def test_ignore_is_present_once_at_zero(self, config: CVMConfig, sample_journeys: list[Journey]) -> None:
        for j in sample_journeys:
            ignores = [c for c in rank(config.treatments.values(), j, config.scoring).candidates if c.treatment_id == IGNORE_ID]
            assert len(ignores) == 1
            assert ignores[0].expected_value == 0.0
            assert ignores[0].cost == 0.0

    def test_negative_value_ranks_below_ignore(self) -> None:
        ranking = rank([treatment("expensive", cost=1000.0)], journey(), SCORING)
        assert [c.treatment_id for c in ranking.candidates] == [IGNORE_ID, "expensive"]

    def test_zero_value_does_not_outrank_ignore(self) -> None:
        """A free treatment that answers nothing (a custom one without a cost, say) is worth exactly 0: no reason to contact."""
        ranking = rank([treatment("free_note", cost=0.0)], journey(), SCORING)
        assert [c.expected_value for c in ranking.candidates] == [0.0, 0.0]
        assert ranking.best.treatment_id == IGNORE_ID


class TestRanking:
    """Candidates are sorted by expected value, ties by priority, deterministically."""

    def test_sorted_by_expected_value_descending(self, config: CVMConfig, sample_journeys: list[Journey]) -> None:
        for j in sample_journeys:
            values = [c.expected_value for c in rank(config.treatments.values(), j, config.scoring).candidates]
            assert values == sorted(values, reverse=True), j.customer_id

    def test_tie_is_broken_by_priority(self) -> None:
        ranking = rank([treatment("low", RETAIN, priority=4), treatment("high", RETAIN, priority=1)], journey(), SCORING)
        assert ranking.candidates[0].expected_value > 0
        assert ranking.candidates[0].expected_value == ranking.candidates[1].expected_value
        assert [c.treatment_id for c in ranking.candidates[:2]] == ["high", "low"]

    def test_same_input_gives_same_ranking(self, config: CVMConfig, sample_journeys: list[Journey]) -> None:
        for j in sample_journeys:
            first = rank(config.treatments.values(), j, config.scoring)
            again = rank(config.treatments.values(), j, config.scoring)
            reversed_input = rank(list(config.treatments.values())[::-1], j, config.scoring)
            assert again == first
            assert reversed_input == first

    @fuzz
    @given(j=journeys_strategy, ts=treatments_strategy)
    def test_random_rankings_are_sorted_and_deterministic(self, j: Journey, ts: list[Treatment]) -> None:
        ranking = rank(ts, j, SCORING)
        values = [c.expected_value for c in ranking.candidates]
        assert values == sorted(values, reverse=True)
        assert rank(ts, j, SCORING) == ranking
        assert rank(ts[::-1], j, SCORING) == ranking


class TestRelevance:
    """A treatment whose description answers an active signal fits better, is likelier accepted and worth more."""

    FIX = treatment("network_fix", "An engineer calls back to fix the network signal.")
    CARD = treatment("card", "A birthday card in the post.")
    NETWORK = {"network_issue": "7 dropped calls"}

    def test_matching_description_is_more_relevant(self) -> None:
        j = journey(signals=self.NETWORK)
        fix, card = score(self.FIX, j, SCORING), score(self.CARD, j, SCORING)
        assert fix.relevance == 1.0
        assert card.relevance == 0.0
        assert fix.value_at_stake > card.value_at_stake
        assert fix.expected_value > card.expected_value
        assert [c.treatment_id for c in rank([self.CARD, self.FIX], j, SCORING).candidates][0] == "network_fix"
        assert any("fits the journey (network issue: 7 dropped calls)" in r for r in fix.reasons)
        assert any("addresses no journey signal" in r for r in card.reasons)

    def test_no_active_signal_means_no_fit(self) -> None:
        assert fit(self.FIX, journey(signals={})) == (0.0, None, None)
        assert fit(self.FIX, journey(churn=None, signals={}))[0] == 0.0

    def test_one_matching_word_counts_half(self) -> None:
        one_word = treatment("maybe", "We will look at your coverage.")
        relevance, signal, evidence = fit(one_word, journey(signals=self.NETWORK))
        assert relevance == pytest.approx(0.5)
        assert signal == "network_issue"
        assert evidence == "7 dropped calls"

    def test_churn_signal_strength_follows_churn_probability(self) -> None:
        retention = treatment("keep", RETAIN)
        signals = {"high_churn_risk": "high"}
        assert fit(retention, journey(churn=0.9, signals=signals))[0] == pytest.approx(0.9)
        assert fit(retention, journey(churn=0.65, signals=signals))[0] == pytest.approx(0.65)
        assert fit(retention, journey(churn=0.3))[0] == pytest.approx(0.3)  # the churn risk drives it even below the signal threshold


class TestOfferModel:
    """An offer-model acceptance score blends into P(accept) for the treatment it scored."""

    def test_high_offer_score_raises_p_accept(self) -> None:
        without = score(treatment("retention_email", RETAIN), journey(), SCORING)
        scored = score(treatment("retention_email", RETAIN), journey(offers={"retention_email": 0.9}), SCORING)
        assert without.p_accept == pytest.approx(SCORING.default_acceptance)
        assert scored.p_accept > without.p_accept
        assert scored.p_accept == pytest.approx(0.9)
        assert scored.expected_value > without.expected_value
        assert "offer model gives 90% acceptance" in scored.reasons

    def test_score_for_another_treatment_does_not_apply(self) -> None:
        without = score(treatment("retention_email", RETAIN), journey(), SCORING)
        other = score(treatment("retention_email", RETAIN), journey(offers={"family_plan": 0.9}), SCORING)
        assert other.p_accept == without.p_accept


class TestConfidence:
    """Confidence stays within [0, 1] and drops with data-quality problems."""

    def test_sample_confidences_are_bounded(self, config: CVMConfig, sample_journeys: list[Journey]) -> None:
        for j in sample_journeys:
            assert 0.0 <= rank(config.treatments.values(), j, config.scoring).confidence <= 1.0

    @fuzz
    @given(j=journeys_strategy, ts=treatments_strategy)
    def test_random_confidences_are_bounded(self, j: Journey, ts: list[Treatment]) -> None:
        assert 0.0 <= rank(ts, j, SCORING).confidence <= 1.0

    def test_data_quality_issues_lower_confidence(self) -> None:
        ts = [treatment("a", cost=1.0), treatment("b", cost=5.0)]
        clean = rank(ts, journey(issues=0), SCORING).confidence
        messy = rank(ts, journey(issues=4), SCORING).confidence
        assert messy < clean

    def test_more_known_data_raises_confidence(self) -> None:
        ts = [treatment("a")]
        sparse = rank(ts, journey(churn=None, revenue=50.0), SCORING).confidence
        fuller = rank(ts, journey(churn=0.5, revenue=50.0, offers={"a": 0.3}), SCORING).confidence
        assert fuller > sparse
