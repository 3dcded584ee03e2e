"""Finding words and meanings in customers' conversations, offline.

* ``KeywordMatcher``: comma-separated keywords or phrases, matched
  case-insensitively on word boundaries ("poor coverage" matches across any
  whitespace, "drop" does not match "dropbox"), by word form ("drop" finds
  "dropped"; ``exact`` mode turns that off), skipping negated mentions ("no
  problems with coverage"), with a snippet around each hit.
* ``LexicalSemanticMatcher``: a description such as "customers experiencing
  poor video call quality during business hours" becomes concepts (its content
  words, each widened by a small telecom synonym list and light stemming);
  every conversation is scored by the IDF-weighted share of concepts it
  mentions (TF-IDF coverage, IDF over all conversations scanned), and a
  customer matches when the best conversation reaches the threshold. The best
  sentences are the evidence.

Pure logic: the caller hands in the texts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could customer customers did do does doing down during each experiencing few for from further
    had has have having he her here hers him his how i if in into is it its itself just like me more most my no nor
    not of off on once only or other our out over own people person same she should so some such than that the
    their them then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your who've who're mention mentioning mentioned talk talking
    about complain complaining says said say having experience experienced issue issues problem problems""".split()
)

# Telecom synonyms: a description word -> words customers use for the same thing.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "video": ("facetime", "zoom", "whatsapp", "skype", "streaming", "youtube", "netflix"),
    "call": ("calls", "calling", "phone", "ring", "rang"),
    "quality": ("choppy", "breaking", "freezing", "freezes", "lag", "laggy", "drops", "dropping", "dropped", "cuts", "crackly"),
    "poor": ("bad", "terrible", "awful", "rubbish", "weak", "useless", "dreadful"),
    "signal": ("coverage", "reception", "bars", "network", "mast", "service"),
    "coverage": ("signal", "reception", "bars", "network", "mast"),
    "network": ("signal", "coverage", "reception", "mast", "4g", "5g"),
    "business": ("work", "working", "office", "meeting", "meetings", "clients", "daytime"),
    "hours": ("daytime", "9-5", "nine-to-five"),
    "slow": ("speed", "buffering", "lag", "sluggish", "crawl"),
    "internet": ("broadband", "data", "wifi", "browsing", "4g", "5g"),
    "bill": ("billing", "charge", "charges", "charged", "invoice", "overcharged", "statement"),
    "billing": ("bill", "charge", "charges", "charged", "invoice", "overcharged"),
    "expensive": ("price", "cost", "cheaper", "afford", "pricey"),
    "roaming": ("abroad", "travel", "holiday", "europe", "spain", "france"),
    "cancel": ("leave", "leaving", "switch", "switching", "pac", "terminate"),
    "leave": ("cancel", "leaving", "switch", "switching", "pac"),
    "family": ("kids", "children", "son", "daughter", "wife", "husband", "partner"),
    "upgrade": ("handset", "iphone", "galaxy", "pixel", "phone"),
    "data": ("gb", "allowance", "internet"),
    "pets": ("dog", "dogs", "cat", "cats", "puppy", "kitten", "vet"),
    "pet": ("dog", "dogs", "cat", "cats", "puppy", "kitten", "vet"),
    "dog": ("dogs", "puppy", "pet", "pets", "vet", "walkies"),
    "dogs": ("dog", "puppy", "pet", "pets", "vet", "walkies"),
    "angry": ("furious", "annoyed", "frustrated", "fed", "unacceptable"),
}

DEFAULT_SEMANTIC_THRESHOLD = 0.3
"""Tuned on the sample: customers' own words rarely cover more than half of a long description."""

_TOKEN = re.compile(r"[a-z0-9][a-z0-9']*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def stem(word: str) -> str:
    """A light English stemmer: enough to make 'drops', 'dropped' and 'dropping' meet."""
    word = word.lower().strip("'")
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in ("ingly", "ing", "edly", "ed", "ies", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix == "ies":
                word += "y"
            break
    if len(word) > 3 and word[-1] == word[-2]:
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):  # phone/phones, charge/charges meet at phon, charg
        word = word[:-1]
    return word


def tokens(text: str) -> set[str]:
    return {stem(t) for t in _TOKEN.findall(text.lower())}


def snippet(text: str, start: int, end: int, width: int = 60) -> str:
    """The hit with some context, on one line, ellipsised."""
    left, right = max(0, start - width), min(len(text), end + width)
    core = " ".join(text[left:right].split())
    return ("..." if left else "") + core + ("..." if right < len(text) else "")


@dataclass(frozen=True)
class Passage:
    """A text to search, with where it came from."""

    source: str
    date: str | None
    text: str


@dataclass(frozen=True)
class Hit:
    source: str
    date: str | None
    text: str
    """The evidence snippet or sentence."""


def parse_keywords(text: str) -> list[str]:
    """``"signal, drop,poor  coverage"`` -> ``["signal", "drop", "poor coverage"]``; empty entries dropped."""
    return [" ".join(k.split()) for k in text.split(",") if k.strip()]


KeywordMode = Literal["stemmed", "exact"]

# Negation, for keyword evidence: a mention inside a clause that denies a problem is not evidence of one.
_CLAUSE_END = re.compile(r"[.!?;,:\n]|\bbut\b|\bhowever\b|\balthough\b|\bthough\b", re.IGNORECASE)
NEGATORS = frozenset({"no", "not", "never", "without", "none", "nothing", "nor", "hardly", "zero", "cannot"})
PROBLEM_NOUNS = frozenset({"problem", "problems", "issue", "issues", "trouble", "troubles", "complaint", "complaints", "fault", "faults"})
PRAISE = frozenset({
    "excellent", "great", "fine", "good", "perfect", "brilliant", "reliable", "strong", "solid", "flawless",
    "fantastic", "superb", "spotless", "faultless", "amazing",
})
# Things whose absence is the problem: "no signal" is evidence of a signal problem, "not dropping" is not of drops.
ABSENT_IS_PROBLEM = frozenset(stem(w) for w in (
    "signal", "coverage", "service", "reception", "internet", "data", "connection", "network", "bars", "wifi", "4g", "5g",
    "calls", "call", "texts", "broadband", "refund",
))
NEGATION_REACH = 3
"""A negator reaches this many words ahead ("haven't had any dropped calls")."""


def _is_negator(word: str) -> bool:
    return word in NEGATORS or word.endswith("n't")


def _clause(text: str, start: int, end: int) -> tuple[list[str], int]:
    """The words of the clause around ``text[start:end]``, and how many of them come before it."""
    left = max((m.end() for m in _CLAUSE_END.finditer(text, 0, start)), default=0)
    right = next((m.start() for m in _CLAUSE_END.finditer(text, end)), len(text))
    before = _TOKEN.findall(text[left:start].lower())
    after = _TOKEN.findall(text[end:right].lower())
    return before + ["<hit>"] + after, len(before)


def is_negated(text: str, start: int, end: int, keyword: str) -> bool:
    """Does the clause deny the problem the mention would show?

    Three plain rules (documented in the README): a negator within a few words
    before a problem noun ("no problems with coverage", "never had an issue");
    praise with no negator ("signal's always been excellent"); or a negator just
    before the keyword itself ("calls haven't dropped"), unless the keyword names
    something whose absence is the problem ("no signal").
    """
    words, at = _clause(text, start, end)
    negators = [i for i, w in enumerate(words) if _is_negator(w)]
    for i in negators:
        if any(w in PROBLEM_NOUNS for w in words[i + 1 : i + 1 + NEGATION_REACH + 1]):
            return True
    if not negators and any(w in PRAISE for w in words):
        return True
    just_before = [i for i in negators if at - NEGATION_REACH <= i < at]
    return bool(just_before) and not all(stem(w) in ABSENT_IS_PROBLEM for w in keyword.split())


def _word_pattern(word: str, mode: KeywordMode) -> str:
    """A word as a regular expression: literal in exact mode; in stemmed mode any word of the same stem."""
    if mode == "exact" or not word.isalpha():
        return re.escape(word)
    root = stem(word)
    root = root[:-1] if len(root) > 3 and root.endswith("y") else root
    return re.escape(root) + r"[\w']*"


class KeywordMatcher:
    """Case-insensitive, word-boundary, phrase-aware keyword search that ignores negated mentions.

    ``stemmed`` (the default) matches word forms: ``drop`` finds "drops",
    "dropped" and "dropping", never "dropbox"; ``exact`` matches the words as
    written. Either way a mention in a clause that denies a problem ("no problems
    with coverage") is not a hit.
    """

    def __init__(self, keywords: Sequence[str], mode: KeywordMode = "stemmed"):
        if not keywords:
            raise ValueError("no keywords given")
        self.keywords = list(keywords)
        self.mode = mode
        self._patterns = [
            (k, re.compile(r"(?<!\w)" + r"\s+".join(_word_pattern(w, mode) for w in k.split()) + r"(?!\w)", re.IGNORECASE))
            for k in self.keywords
        ]

    def _same_word(self, keyword: str, found: str) -> bool:
        if self.mode == "exact":
            return True
        return all(stem(a) == stem(b) for a, b in zip(keyword.split(), found.split()) if a.isalpha())

    def _first_hit(self, keyword: str, pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
        for match in pattern.finditer(text):
            if self._same_word(keyword, match.group()) and not is_negated(text, match.start(), match.end(), keyword):
                return match
        return None

    def find(self, passages: Iterable[Passage]) -> tuple[list[str], list[Hit]]:
        """The keywords found, and one evidence snippet per passage that mentions any."""
        found: list[str] = []
        hits: list[Hit] = []
        for passage in passages:
            first = None
            for keyword, pattern in self._patterns:
                match = self._first_hit(keyword, pattern, passage.text)
                if match:
                    if keyword not in found:
                        found.append(keyword)
                    if first is None or match.start() < first.start():
                        first = match
            if first is not None:  # one snippet per passage, around its earliest hit
                hits.append(Hit(passage.source, passage.date, snippet(passage.text, first.start(), first.end())))
        return found, hits


@dataclass(frozen=True)
class SemanticScore:
    score: float
    """IDF-weighted share of the description's concepts the best conversation mentions (0-1)."""
    concepts: tuple[str, ...]
    """The description words it matched."""
    evidence: tuple[Hit, ...]


class LexicalSemanticMatcher:
    """TF-IDF concept coverage of a description over conversations (see the module docstring)."""

    name = "lexical-tfidf"

    def __init__(self, description: str, threshold: float = DEFAULT_SEMANTIC_THRESHOLD):
        words = [w for w in _TOKEN.findall(description.lower()) if w not in STOP_WORDS and len(w) > 1]
        if not words:
            raise ValueError("the description has no content words (only stop words); describe what to look for")
        self.description = description
        self.threshold = threshold
        self.concepts: dict[str, frozenset[str]] = {}
        for word in dict.fromkeys(words):
            related = SYNONYMS.get(word) or SYNONYMS.get(stem(word)) or ()
            self.concepts[word] = frozenset({stem(word), *(stem(s) for s in related)})
        self._idf: dict[str, float] = {c: 1.0 for c in self.concepts}

    def fit(self, documents: Iterable[str]) -> None:
        """Learn each concept's IDF from every conversation that will be scanned."""
        counts = dict.fromkeys(self.concepts, 0)
        total = 0
        for doc in documents:
            total += 1
            words = tokens(doc)
            for concept, forms in self.concepts.items():
                if words & forms:
                    counts[concept] += 1
        seen = {c: math.log(1 + (total + 1) / (1 + n)) for c, n in counts.items() if n}
        # A description word nobody uses weighs like the rarest word somebody does: left at log(N) it
        # would outweigh every word that is used and let the score fall as the corpus grows (a
        # description that matched at 2k customers matched nobody at 10k).
        rarest = max(seen.values(), default=1.0)
        self._idf = {c: seen.get(c, rarest) for c in counts}

    def score(self, passages: Sequence[Passage]) -> SemanticScore:
        """The best conversation's coverage, with its best sentences as evidence."""
        weight = sum(self._idf.values()) or 1.0
        best = SemanticScore(0.0, (), ())
        for passage in passages:
            words = tokens(passage.text)
            matched = tuple(c for c, forms in self.concepts.items() if words & forms)
            coverage = round(sum(self._idf[c] for c in matched) / weight, 3)
            if coverage > best.score:
                best = SemanticScore(coverage, matched, tuple(self._best_sentences(passage, matched)))
        return best

    def _best_sentences(self, passage: Passage, matched: Sequence[str], keep: int = 2) -> list[Hit]:
        scored = []
        for sentence in _SENTENCE.split(passage.text):
            words = tokens(sentence)
            weight = sum(self._idf[c] for c in matched if words & self.concepts[c])
            if weight:
                scored.append((weight, " ".join(sentence.split())))
        scored.sort(key=lambda pair: -pair[0])
        return [Hit(passage.source, passage.date, text) for _, text in scored[:keep]]
