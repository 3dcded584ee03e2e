"""The conversation templates: known slots, the words the Journey agent listens for, the right mood."""

from __future__ import annotations

import statistics
from string import Formatter

import pytest

from cvm.decision.journey import INTEREST_PATTERNS, interest_match, sentiment
from cvm.synth.vocabulary import CALL_OPENERS, CHAT_OPENERS, CLOSERS, CONVERSATIONS, SLOTS, TOPICS


class TestConversations:
    """Templates carry the words the Journey agent listens for, and only their own topic's words."""

    SAMPLE = dict(
        first="Sam", agent="Priya", place="Leeds", price="£30", bill="£80", extra="£50", roaming="£40", country="Spain",
        competitor="giffgaff", offer="£20", phone="Pixel 10", ref="NW-123456", weeks="two weeks", days="a week",
        family="my son", gb="20GB", day_part="evening",
    )
    EXPECTED = {
        "network": {"coverage"}, "bill": {"billing"}, "roaming": {"roaming"}, "cancel": {"cancellation", "competitor"},
        "data": {"data"}, "family": {"family_plan"}, "upgrade": {"upgrade"}, "cheaper": {"cheaper_plan"},
        "happy": set(), "general": set(),
    }

    def test_every_slot_is_known(self) -> None:
        lines = [words for turns in CONVERSATIONS.values() for variant in turns for _, words in variant]
        used = {name for line in [*lines, *CALL_OPENERS, *CHAT_OPENERS, *CLOSERS] for _, name, _, _ in Formatter().parse(line) if name}
        assert used <= SLOTS
        assert set(CONVERSATIONS) == set(TOPICS)

    @pytest.mark.parametrize("topic", TOPICS)
    def test_customer_words_show_the_topic_and_no_other_worry(self, topic: str) -> None:
        worries = {"coverage", "billing", "cancellation", "competitor", "cheaper_plan", "data"} - self.EXPECTED[topic]
        for variant in CONVERSATIONS[topic]:
            said = " ".join(words.format(**self.SAMPLE) for speaker, words in variant if speaker == "customer")
            found = {interest for interest in INTEREST_PATTERNS if interest_match(said, interest)}
            assert self.EXPECTED[topic] <= found, (topic, said)
            assert not (found & worries) - ({"billing"} if topic == "roaming" else set()), (topic, found)

    def test_complaints_sound_negative_and_thanks_positive(self) -> None:
        def mood(topic: str) -> list[float]:
            return [sentiment(" ".join(w.format(**self.SAMPLE) for s, w in v if s == "customer")) for v in CONVERSATIONS[topic]]

        assert statistics.mean(mood("network") + mood("bill") + mood("cancel")) < -0.3
        assert min(mood("happy")) > 0.3
