"""Bounds on LLM text: what a generated description or caption may be, and how it is cleaned.

A server may answer with anything: megabytes in one "sentence", control characters, only
whitespace. :func:`clean_text` makes one line of at most :data:`MAX_CHARS` characters of an
answer (control and format characters dropped, whitespace collapsed to single spaces, one pair
of wrapping quotes removed, a longer text cut at a word boundary and reported as cut).
:func:`text_problem` says why a stored text (a hand-edited cache) is not acceptable, or ``None``.
"""
from __future__ import annotations

import unicodedata

__all__ = ["MAX_CHARS", "MAX_PER_CLASS", "clean_text", "text_problem"]

#: The longest description or caption kept, in characters (a CLIP text is 77 tokens).
MAX_CHARS = 500
#: The most descriptions one class may have (``n`` and a cache file's lists).
MAX_PER_CLASS = 50
#: Only this much of an answer is looked at; the rest of a longer one is cut off unread.
_RAW_LIMIT = 20 * MAX_CHARS
_CONTROL = frozenset({"Cc", "Cf", "Cs"})


def _is_control(ch: str) -> bool:
    """A control, format or surrogate character that is not whitespace."""
    return not ch.isspace() and unicodedata.category(ch) in _CONTROL


def _drop_controls(text: str) -> str:
    if text.isprintable():  # the common case: nothing to drop
        return text
    return "".join(ch for ch in text if not _is_control(ch))


def clean_text(text: str, max_chars: int = MAX_CHARS) -> tuple[str, bool]:
    """``(cleaned, cut)``: one line of at most ``max_chars`` characters, and whether it was cut.

    The cleaned text is empty when the answer held nothing but whitespace and control characters.
    """
    cut = len(text) > _RAW_LIMIT
    text = " ".join(_drop_controls(text[:_RAW_LIMIT]).split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    if len(text) > max_chars:
        cut = True
        space = text.rfind(" ", 0, max_chars + 1)
        text = (text[:space] if space >= max_chars // 2 else text[:max_chars]).rstrip()
    return text, cut


def text_problem(text: str, max_chars: int = MAX_CHARS) -> str | None:
    """Why ``text`` cannot be stored as a description or caption (too long, control characters), or None."""
    if len(text.strip()) > max_chars:
        return f"is {len(text.strip())} characters long (at most {max_chars}); shorten it"
    bad = next((ch for ch in text if _is_control(ch)), None) if not text.isprintable() else None
    if bad is not None:
        return f"holds the control character U+{ord(bad):04X}; remove it"
    return None
