"""Finding words and meanings in customers' conversations, offline.

* ``KeywordMatcher``: comma-separated keywords or phrases, matched
  case-insensitively on word boundaries ("poor coverage" matches across any
  whitespace, "drop" does not match "dropbox"), with a snippet around each hit.
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


class KeywordMatcher:
    """Case-insensitive, word-boundary, phrase-aware keyword search."""

    def __init__(self, keywords: Sequence[str]):
        if not keywords:
            raise ValueError("no keywords given")
        self.keywords = list(keywords)
        self._patterns = [
            (k, re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in k.split()) + r"(?!\w)", re.IGNORECASE))
            for k in self.keywords
        ]

    def find(self, passages: Iterable[Passage]) -> tuple[list[str], list[Hit]]:
        """The keywords found, and one evidence snippet per passage that mentions any."""
        found: list[str] = []
        hits: list[Hit] = []
        for passage in passages:
            first = None
            for keyword, pattern in self._patterns:
                match = pattern.search(passage.text)
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
        self._idf = {c: math.log(1 + (total + 1) / (1 + n)) for c, n in counts.items()}

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
