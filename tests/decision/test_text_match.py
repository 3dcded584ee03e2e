"""Offline text matching for custom triggers: keyword search, stemming and the lexical semantic matcher."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cvm.decision.text_match import (
    DEFAULT_SEMANTIC_THRESHOLD,
    KeywordMatcher,
    KeywordMode,
    LexicalSemanticMatcher,
    Passage,
    parse_keywords,
    snippet,
    stem,
)

VIDEO_CALLS = "customers with poor video call quality during business hours"


def found(keywords: list[str], *texts: str, mode: KeywordMode = "stemmed") -> list[str]:
    """The keywords a matcher finds in the given texts."""
    words, _ = KeywordMatcher(keywords, mode).find(Passage("call_transcripts", "2026-11-01", t) for t in texts)
    return words


def passage(text: str, source: str = "call_transcripts", date: str = "2026-11-06") -> Passage:
    return Passage(source, date, text)


class TestKeywordBoundaries:
    """A keyword matches whole words only, never a piece of a longer word."""

    @pytest.mark.parametrize("text", ["I keep my files in Dropbox", "no eavesdropping please", "stop the eavesdrop", "raindrops", "droplet"])
    def test_drop_does_not_match_inside_other_words(self, text: str) -> None:
        assert found(["drop"], text) == []

    @pytest.mark.parametrize(
        "text", ["my calls drop", "Drop, drop, drop.", "(drop)", "drop!", "calls drop-out all day", "'drop'", "DROP"],
    )
    def test_drop_matches_the_word_next_to_punctuation(self, text: str) -> None:
        assert found(["drop"], text) == ["drop"]

    def test_case_insensitive_both_ways(self) -> None:
        assert found(["SIGNAL"], "no signal at home") == ["SIGNAL"]
        assert found(["signal"], "NO SIGNAL AT HOME") == ["signal"]
        assert found(["Signal"], "sIgNaL") == ["Signal"]

    def test_keyword_with_regex_characters_is_literal(self) -> None:
        assert found(["0870 (premium)"], "calls to 0870 (premium) numbers") == ["0870 (premium)"]
        assert found(["a.b"], "axb") == []
        assert found(["£70"], "my bill has £70 of roaming on it") == ["£70"]

    def test_digits_and_underscores_are_word_characters(self) -> None:
        assert found(["5g"], "my 5g is slow") == ["5g"]
        assert found(["5g"], "my 5gb allowance") == []
        assert found(["pac"], "pac_code") == []


class TestKeywordPhrases:
    """A phrase matches across any run of whitespace, but not with other words in between."""

    @pytest.mark.parametrize("text", ["poor coverage here", "poor   coverage", "poor\ncoverage", "POOR\t coverage", "very poor coverage."])
    def test_phrase_matches_across_whitespace(self, text: str) -> None:
        assert found(["poor coverage"], text) == ["poor coverage"]

    @pytest.mark.parametrize("text", ["poor and coverage", "poorcoverage", "poor-coverage", "coverage poor"])
    def test_phrase_needs_its_words_adjacent(self, text: str) -> None:
        assert found(["poor coverage"], text) == []

    def test_exact_mode_needs_the_words_as_written(self) -> None:
        assert found(["poor coverage"], "poor coverages", mode="exact") == []
        assert found(["poor coverage"], "poor coverages") == ["poor coverage"]


class TestStemmedKeywords:
    """By default a keyword matches its word forms; ``exact`` matches the word as written."""

    @pytest.mark.parametrize("text", ["my calls dropped", "they keep dropping", "it drops all day", "DROPPED again", "the drop"])
    def test_drop_matches_its_forms(self, text: str) -> None:
        assert found(["drop"], text) == ["drop"]

    @pytest.mark.parametrize("text", ["my calls dropped", "they keep dropping", "it drops all day"])
    def test_exact_mode_does_not(self, text: str) -> None:
        assert found(["drop"], text, mode="exact") == []

    def test_the_keyword_form_does_not_matter(self) -> None:
        assert found(["dropping"], "calls drop at home") == ["dropping"]
        assert found(["charges"], "I was charged twice") == ["charges"]
        assert found(["dropped calls"], "constant drops call after call") == ["dropped calls"]
        assert found(["dropped calls"], "dropped the phone, calls fine") == []
        assert found(["dropped calls"], "so many dropping calls") == ["dropped calls"]

    def test_stems_never_reach_into_other_words(self) -> None:
        assert found(["drop"], "Dropbox", "eavesdropped", "raindrops") == []
        assert found(["bill"], "billion", "Billy rang") == []


class TestNegatedMentions:
    """A mention in a clause that denies the problem is not evidence of it."""

    @pytest.mark.parametrize(
        ("keywords", "text"),
        [
            (["signal"], "The signal's always been excellent."),
            (["coverage"], "There have been no problems with coverage at all."),
            (["signal", "coverage"], "Customer said the signal's always been excellent and there have been no problems with coverage."),
            (["drop"], "My calls haven't dropped once since the new mast."),
            (["drop"], "I never had a dropped call"),
            (["coverage"], "Coverage is great here"),
            (["bill"], "No issues with my bill this month"),
        ],
    )
    def test_denials_and_praise_are_not_hits(self, keywords: list[str], text: str) -> None:
        assert found(keywords, text) == []

    @pytest.mark.parametrize(
        ("keywords", "text"),
        [
            (["signal"], "I have no signal at home"),
            (["signal"], "I can't get a signal indoors"),
            (["coverage"], "There is no coverage in my street"),
            (["drop"], "Calls drop every evening and it's not good enough"),
            (["signal"], "The signal is fine in town, but at home the signal is terrible"),
            (["drop"], "Great, my calls dropped again!"),
        ],
    )
    def test_real_problems_still_match(self, keywords: list[str], text: str) -> None:
        assert found(keywords, text) == keywords

    def test_one_negated_and_one_real_mention_keeps_the_real_one_as_evidence(self) -> None:
        text = "No problems with the signal in town. At home the signal keeps cutting out."
        _, hits = KeywordMatcher(["signal"]).find([passage(text)])
        assert len(hits) == 1
        assert "At home the signal keeps cutting out" in hits[0].text

    def test_found_once_each_with_one_snippet_per_passage(self) -> None:
        matcher = KeywordMatcher(["signal", "refund", "cancel"])
        texts = [passage("I want a refund. No signal.", date="2026-10-01"), passage("signal gone again", source="web_transcripts", date="2026-11-01")]
        words, hits = matcher.find(texts)
        assert words == ["signal", "refund"]
        assert len(hits) == 2
        assert [(h.source, h.date) for h in hits] == [("call_transcripts", "2026-10-01"), ("web_transcripts", "2026-11-01")]
        assert hits[0].text.startswith("I want a refund")

    def test_no_keywords_is_an_error(self) -> None:
        with pytest.raises(ValueError):
            KeywordMatcher([])


class TestParseKeywords:
    """Comma-separated keywords are trimmed, inner whitespace collapsed, empty entries dropped."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("signal, drop,poor  coverage", ["signal", "drop", "poor coverage"]),
            ("  signal  ,, ,drop,", ["signal", "drop"]),
            ("poor\tcoverage", ["poor coverage"]),
            (",", []),
            ("", []),
            (" , ,  ", []),
        ],
    )
    def test_parse(self, text: str, expected: list[str]) -> None:
        assert parse_keywords(text) == expected


class TestSnippet:
    """Evidence snippets are one line, with an ellipsis only on a side that was cut."""

    def test_short_text_has_no_ellipsis(self) -> None:
        text = "my calls drop"
        assert snippet(text, 9, 13) == "my calls drop"

    def test_cut_on_both_sides(self) -> None:
        text = "x" * 100 + " drop " + "y" * 100
        start = text.index("drop")
        out = snippet(text, start, start + 4, width=10)
        assert out.startswith("...") and out.endswith("...")
        assert "drop" in out
        assert len(out) <= 4 + 2 * 10 + 6

    def test_cut_on_one_side_only(self) -> None:
        text = "drop " + "y" * 100
        out = snippet(text, 0, 4, width=10)
        assert out.startswith("drop") and out.endswith("...")
        text = "y" * 100 + " drop"
        out = snippet(text, len(text) - 4, len(text), width=10)
        assert out.startswith("...") and out.endswith("drop")

    def test_newlines_collapse_to_one_line(self) -> None:
        text = "first line\n\nmy calls\n   drop at home"
        out = snippet(text, text.index("drop"), text.index("drop") + 4)
        assert "\n" not in out and "  " not in out
        assert out == "first line my calls drop at home"

    def test_keyword_hit_carries_a_snippet_around_the_match(self) -> None:
        text = "a" * 200 + " my calls keep dropping at home " + "b" * 200
        _, hits = KeywordMatcher(["dropping"]).find([passage(text)])
        assert len(hits) == 1
        assert "dropping" in hits[0].text
        assert hits[0].text.startswith("...") and hits[0].text.endswith("...")
        assert len(hits[0].text) < len(text)


class TestStem:
    """The light stemmer makes the usual inflections of a word meet."""

    @pytest.mark.parametrize(
        "group",
        [
            ("drop", "drops", "dropped", "dropping"),
            ("call", "calls", "calling", "called"),
            ("signal", "signals"),
            ("freezes", "freezing"),
            ("battery", "batteries"),
            ("charged", "charges", "charging"),
        ],
    )
    def test_inflections_meet(self, group: tuple[str, ...]) -> None:
        assert len({stem(w) for w in group}) == 1, {w: stem(w) for w in group}

    def test_case_and_possessive(self) -> None:
        assert stem("Customer's") == stem("customer")
        assert stem("DROPPED") == stem("drop")

    def test_short_words_are_not_cut_to_nothing(self) -> None:
        assert stem("bus") == "bus"
        assert stem("is") == "is"
        assert stem("gas") == "gas"

    def test_singular_ending_in_e_meets_its_plural(self) -> None:
        # BUG (src/agents/text_match.py stem): 'es' is cut from the plural but the singular keeps its
        # silent 'e', so stem('phones') == 'phon' != stem('phone') == 'phone' (also charge/charges, line/lines).
        pairs = [("phone", "phones"), ("charge", "charges"), ("line", "lines"), ("price", "prices")]
        apart = {f"{a}/{b}": (stem(a), stem(b)) for a, b in pairs if stem(a) != stem(b)}
        assert apart == {}


class TestLexicalSemanticMatcher:
    """A description's content words, widened by synonyms, are scored against each conversation."""

    POSITIVE = (
        "Customer: Every Zoom meeting with clients freezes. My Teams calls keep freezing during work meetings, "
        "it is choppy all morning. Agent: Sorry to hear that."
    )
    NEGATIVE_BIRTHDAY = "Customer: I want to buy a birthday present for my daughter. Can I order it online?"
    NEGATIVE_ROAMING = "Customer: I was on holiday in Spain and the roaming charges on my bill were a shock."

    def test_positive_transcript_matches(self) -> None:
        matcher = LexicalSemanticMatcher(VIDEO_CALLS)
        result = matcher.score([passage(self.POSITIVE)])
        assert result.score >= matcher.threshold
        assert {"video", "call", "quality", "business"} <= set(result.concepts)
        assert not {"customers", "with", "during"} & set(result.concepts)

    @pytest.mark.parametrize("text", [NEGATIVE_BIRTHDAY, NEGATIVE_ROAMING])
    def test_unrelated_transcripts_do_not_match(self, text: str) -> None:
        matcher = LexicalSemanticMatcher(VIDEO_CALLS)
        assert matcher.score([passage(text)]).score < matcher.threshold

    def test_after_fit_the_positive_still_wins(self) -> None:
        texts = [self.POSITIVE, self.NEGATIVE_BIRTHDAY, self.NEGATIVE_ROAMING]
        matcher = LexicalSemanticMatcher(VIDEO_CALLS)
        matcher.fit(texts)
        scores = [matcher.score([passage(t)]).score for t in texts]
        assert scores[0] >= matcher.threshold
        assert scores[1] < matcher.threshold and scores[2] < matcher.threshold

    def test_best_conversation_decides(self) -> None:
        matcher = LexicalSemanticMatcher(VIDEO_CALLS)
        one = matcher.score([passage(self.NEGATIVE_BIRTHDAY), passage(self.POSITIVE, source="web_transcripts", date="2026-11-07")])
        assert one.score == matcher.score([passage(self.POSITIVE)]).score
        assert {h.source for h in one.evidence} == {"web_transcripts"}
        assert {h.date for h in one.evidence} == {"2026-11-07"}

    @pytest.mark.parametrize("description", ["the of and", "customers who are", "  ", "a a a, i"])
    def test_stop_words_only_is_an_error(self, description: str) -> None:
        with pytest.raises(ValueError, match="content words"):
            LexicalSemanticMatcher(description)

    def test_evidence_are_whole_sentences_of_the_matching_text(self) -> None:
        matcher = LexicalSemanticMatcher(VIDEO_CALLS)
        text = (
            "Customer: Hello there.\nMy Zoom calls freeze all the time at the office. "
            "I had to leave a client meeting twice! The weather is nice though."
        )
        result = matcher.score([passage(text)])
        sentences = {" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+|\n+", text)}
        assert result.evidence, "a match without evidence"
        assert len(result.evidence) <= 2
        for hit in result.evidence:
            assert hit.text in sentences
            assert hit.source == "call_transcripts" and hit.date == "2026-11-06"
        assert "The weather is nice though." not in {h.text for h in result.evidence}
        assert "My Zoom calls freeze all the time at the office." in {h.text for h in result.evidence}

    def test_no_text_scores_zero(self) -> None:
        result = LexicalSemanticMatcher(VIDEO_CALLS).score([])
        assert result.score == 0.0 and result.concepts == () and result.evidence == ()

    def test_default_threshold(self) -> None:
        assert LexicalSemanticMatcher(VIDEO_CALLS).threshold == DEFAULT_SEMANTIC_THRESHOLD
        assert LexicalSemanticMatcher(VIDEO_CALLS, 0.9).threshold == 0.9

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.lists(st.sampled_from(["zoom", "calls", "freezing", "work", "poor", "birthday", "spain", "daytime", "the", "and", "."]), max_size=25).map(" ".join),
            min_size=1, max_size=6,
        )
    )
    def test_scores_are_between_zero_and_one(self, texts: list[str]) -> None:
        matcher = LexicalSemanticMatcher(VIDEO_CALLS)
        matcher.fit(texts)
        for text in texts:
            assert 0.0 <= matcher.score([passage(text)]).score <= 1.0
        assert 0.0 <= matcher.score([passage(t) for t in texts]).score <= 1.0


@pytest.mark.parametrize("customers", [600, 6_000, 60_000])
def test_a_semantic_score_does_not_fall_as_the_corpus_grows(customers: int) -> None:
    """The benchmark's miss: 'weak' and 'calls' appear in no conversation; weighed at log(N) they drowned the
    words that do appear, so the same conversation matched at 2k customers and nobody at 10k."""
    said = "My signal keeps dropping at home, this is the third time."
    others = ("Thanks, that was helpful.", "My bill is too high.", "I want a family plan.", "I keep running out of data.", "I'm leaving.")
    corpus = [said if i % 6 == 0 else others[i % 6 - 1] for i in range(customers)]
    matcher = LexicalSemanticMatcher("Customers complaining about dropped calls and weak signal at home")
    matcher.fit(corpus)
    result = matcher.score([Passage("call_transcripts", "2026-11-12", said)])
    assert result.score == pytest.approx(0.6, abs=0.01)  # three of five equally rare words
    assert set(result.concepts) == {"dropped", "signal", "home"}
    assert result.score >= DEFAULT_SEMANTIC_THRESHOLD


def test_a_word_nobody_uses_still_counts_against_a_partial_match() -> None:
    matcher = LexicalSemanticMatcher("roaming charges in japan")
    matcher.fit(["I was charged for roaming in Spain."] * 5 + ["Thanks."] * 50)
    partial = matcher.score([Passage("call_transcripts", None, "I was charged for roaming in Spain.")])
    assert "japan" not in partial.concepts
    assert partial.score < 1.0
