"""Control characters out of text that reaches a terminal, a report or the audit log.

Names and reasons typed by people, and treatment names from config or custom
treatment files, end up in tables on a terminal and in Markdown reports. An
escape sequence there can recolour, hide or rewrite what an approver sees; CR,
LF and BEL break one-line records. Names with control characters are refused;
free text has them removed (line breaks and tabs become spaces).
"""

from __future__ import annotations

import re
import unicodedata

_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Formatting characters that reorder how text is shown ("Trojan Source"), the directional marks included."""
# Whole terminal escape sequences (CSI "ESC [ ... m", OSC "ESC ] ... BEL", two-character ESC x).
_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_SPACE_LIKE = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]")


def is_control(char: str) -> bool:
    """C0 and C1 controls, DEL, and the bidirectional overrides."""
    return unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS


def first_control(text: str) -> str | None:
    """The first control character in ``text``, or None."""
    return next((c for c in text if is_control(c)), None)


def without_controls(text: str, *, sequences: bool = False) -> str:
    """``text`` with line breaks and tabs as spaces and every other control character removed.

    ``sequences``: remove whole escape sequences first, so no "[31m" is left (for text being stored anew);
    displays of stored text keep the remnant visible, so a reader sees something was there.
    """
    if sequences:
        text = _ESCAPE_SEQUENCE.sub("", text)
    spaced = _SPACE_LIKE.sub(" ", text)
    return spaced if first_control(spaced) is None else "".join(c for c in spaced if not is_control(c))
