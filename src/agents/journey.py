"""The Journey agent: builds, analyses and summarises journeys (the rules are in ``cvm.decision.journey``)."""

from __future__ import annotations

from cvm.agents.base import BaseAgent, handles
from cvm.agents.messages import (
    AnalyzeJourney,
    BuildJourney,
    JourneyAnalysis,
    JourneyResponse,
    JourneySummary,
    SummarizeJourney,
)
from cvm.decision.journey import JourneyBuilder
from cvm.tools.clock import Clock


class JourneyAgent(BaseAgent):
    """Builds, analyses and summarises journeys."""

    name = "JourneyAgent"

    def __init__(self, builder: JourneyBuilder, clock: Clock):
        self._builder = builder
        self._clock = clock

    @handles(BuildJourney)
    def _build(self, message: BuildJourney) -> JourneyResponse:
        return JourneyResponse(journey=self._builder.build(message.customer_data, self._clock.now()))

    @handles(AnalyzeJourney)
    def _analyze(self, message: AnalyzeJourney) -> JourneyAnalysis:
        j = message.journey
        signals = self._builder.signals(j.features)
        insights = self._builder.insights(j.features, signals, j.data_quality)
        return JourneyAnalysis(customer_id=j.customer_id, signals=signals, insights=tuple(insights))

    @handles(SummarizeJourney)
    def _summarize(self, message: SummarizeJourney) -> JourneySummary:
        j = message.journey
        recent = "; ".join(e.summary for e in j.timeline[-3:])
        text = " ".join(j.insights) + (f" Most recent: {recent}." if recent else "")
        return JourneySummary(customer_id=j.customer_id, summary=text.strip() or "No data about this customer.")
