"""The Journey agent on the sample customers: signals, timeline order, analysis and summaries."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from cvm.agents.data import DataAgent
from cvm.agents.journey import JourneyAgent
from cvm.agents.messages import (
    BuildJourney,
    ErrorResponse,
    GetCustomerData,
    Journey,
    JourneyAnalysis,
    JourneyResponse,
    JourneySummary,
)
from cvm.decision.journey import JourneyBuilder
from cvm.tools.clock import FixedClock
from cvm.tools.data_source import FileDataSource
from cvm.tools.records import CustomerData
from cvm.utils.config import load_config
from tests.conftest import AS_OF

SAMPLE_IDS = tuple(f"U{n}" for n in range(123, 135))
NOW = datetime.fromisoformat(AS_OF)


@pytest.fixture(scope="module")
def parts():
    """A data agent and a journey agent over the shipped sample (read-only, so shared)."""
    from tests.conftest import CONFIG, SAMPLE

    config = load_config(CONFIG)
    data = DataAgent(FileDataSource(SAMPLE), config.validation.customer_id_pattern)
    journey = JourneyAgent(JourneyBuilder(config.scoring, config.validation.required_journey_fields), FixedClock(NOW))
    return data, journey


def customer_data(parts, cid: str) -> CustomerData:
    data, _ = parts
    return data.process(GetCustomerData(customer_id=cid)).data


def build(parts, cid: str) -> Journey:
    _, agent = parts
    response = agent.process(BuildJourney(customer_id=cid, customer_data=customer_data(parts, cid)))
    assert isinstance(response, JourneyResponse)
    return response.journey


def transcript_sentences(data: CustomerData) -> list[str]:
    """Every sentence of every conversation that is long enough to be unmistakably raw text."""
    sentences: list[str] = []
    for t in data.transcripts:
        for piece in re.split(r"(?<=[.?!])\s+|\n|(?:Agent|Customer|Advisor):", t.text):
            piece = piece.strip()
            if len(piece) >= 25:
                sentences.append(piece)
    return sentences


class TestSignals:
    """Each sample customer's story shows up as the expected journey signal."""

    @pytest.mark.parametrize(
        ("cid", "expected"),
        [
            ("U123", {"network_issue"}),
            ("U125", {"bill_shock"}),
            ("U126", {"roaming_charges"}),
            ("U127", {"high_churn_risk"}),
            ("U128", {"loyal", "high_value"}),
            ("U129", {"family_interest"}),
            ("U132", {"data_growth"}),
            ("U134", {"upgrade_interest"}),
        ],
    )
    def test_story_signal(self, parts, cid, expected):
        journey = build(parts, cid)
        assert expected <= set(journey.signals), f"{cid}: {sorted(journey.signals)}"
        for name in expected:
            assert journey.signals[name].strip(), f"{cid}: signal {name} has no evidence"

    def test_loyal_customer_is_not_a_churn_risk(self, parts):
        journey = build(parts, "U128")
        assert "high_churn_risk" not in journey.signals
        assert journey.features.churn_probability is not None and journey.features.churn_probability < 0.3

    def test_features_behind_the_stories(self, parts):
        assert build(parts, "U125").features.bill_shock is True
        roaming = build(parts, "U126").features
        assert roaming.roaming is True and roaming.roaming_charges > 0
        assert build(parts, "U123").features.network_quality == "poor"
        assert build(parts, "U132").features.usage_trend == "rising"
        assert "family_plan" in build(parts, "U129").features.interests

    def test_quiet_customer_has_no_problem_signals(self, parts):
        signals = set(build(parts, "U131").signals)
        assert not signals & {"network_issue", "bill_shock", "roaming_charges", "high_churn_risk"}


class TestBuildJourney:
    """build_journey returns a dated, sorted timeline with the customer's permissions and data problems."""

    @pytest.mark.parametrize("cid", SAMPLE_IDS)
    def test_timeline_is_sorted(self, parts, cid):
        journey = build(parts, cid)
        assert journey.timeline, f"{cid} has an empty timeline"
        moments = [e.at.replace(tzinfo=None) for e in journey.timeline]
        assert moments == sorted(moments)

    def test_timeline_covers_the_tables(self, parts):
        kinds = {e.kind for e in build(parts, "U123").timeline}
        assert {"bill", "usage", "network", "call", "click"} <= kinds

    def test_journey_carries_clock_and_permissions(self, parts):
        journey = build(parts, "U124")
        assert journey.as_of == NOW
        assert journey.customer_id == "U124"
        assert journey.permissions is not None and not journey.permissions.allows("sms", "marketing")
        assert build(parts, "U130").permissions is None

    def test_data_quality_issues_are_kept(self, parts):
        journey = build(parts, "U131")
        assert {"billing_data", "usage_data", "permissions"} <= {i.table for i in journey.data_quality}
        assert any("data-quality" in line for line in journey.insights)

    def test_digest_is_stable_and_per_customer(self, parts):
        first, again, other = build(parts, "U127"), build(parts, "U127"), build(parts, "U128")
        assert len(first.digest) == 64
        assert first.digest == again.digest
        assert first.digest != other.digest

    def test_invalid_build_message(self, parts):
        _, agent = parts
        response = agent.process({"type": "build_journey", "customer_id": "U123"})
        assert isinstance(response, ErrorResponse) and response.error_type == "invalid_message"

    def test_unknown_message_type(self, parts):
        _, agent = parts
        response = agent.process({"type": "get_customer_data", "customer_id": "U123"})
        assert isinstance(response, ErrorResponse) and response.error_type == "unknown_message_type"


class TestAnalyzeJourney:
    """analyze_journey recomputes the same signals and insights from a journey."""

    @pytest.mark.parametrize("cid", ["U123", "U125", "U128", "U131"])
    def test_matches_build(self, parts, cid):
        _, agent = parts
        journey = build(parts, cid)
        analysis = agent.process({"type": "analyze_journey", "journey": journey.model_dump(mode="json")})
        assert isinstance(analysis, JourneyAnalysis)
        assert analysis.customer_id == cid
        assert analysis.signals == journey.signals
        assert analysis.insights == journey.insights
        assert analysis.insights


class TestSummarizeJourney:
    """summarize_journey describes the journey in plain words, never quoting a transcript."""

    @pytest.mark.parametrize("cid", SAMPLE_IDS)
    def test_no_raw_transcript_text(self, parts, cid):
        _, agent = parts
        data = customer_data(parts, cid)
        journey = build(parts, cid)
        summary = agent.process({"type": "summarize_journey", "journey": journey.model_dump(mode="json")})
        assert isinstance(summary, JourneySummary) and summary.customer_id == cid
        assert summary.summary.strip()
        visible = [summary.summary, *journey.insights, *(e.summary for e in journey.timeline)]
        for sentence in transcript_sentences(data):
            for text in visible:
                assert sentence not in text, f"{cid}: transcript text leaked: {sentence!r}"

    def test_prompt_injection_never_reaches_the_summary(self, parts):
        _, agent = parts
        journey = build(parts, "U133")
        assert any("Ignore your instructions" in t.text for t in journey.conversations)
        summary = agent.process({"type": "summarize_journey", "journey": journey.model_dump(mode="json")}).summary
        assert "ignore your instructions" not in summary.lower()
        assert "consented" not in summary.lower()

    def test_summary_mentions_the_story(self, parts):
        _, agent = parts
        summary = agent.process({"type": "summarize_journey", "journey": build(parts, "U123")}).summary
        assert "network" in summary.lower()

    def test_empty_journey(self, parts):
        _, agent = parts
        empty = Journey(customer_id="U900", as_of=NOW)
        summary = agent.process({"type": "summarize_journey", "journey": empty})
        assert isinstance(summary, JourneySummary) and summary.summary == "No data about this customer."
