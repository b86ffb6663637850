"""Text normalisation shared by prepare_data, training and decoding."""

from __future__ import annotations

import re
import unicodedata

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A space next to a CJK character carries no meaning: Mandarin transcripts are written without spaces.
_SPACE_NEAR_CJK = re.compile(rf"(?<=[{_CJK}])\s+|\s+(?=[{_CJK}])")
_WHITESPACE = re.compile(r"\s+")
_CJK_CHAR = re.compile(rf"([{_CJK}])")


def is_cjk(char: str) -> bool:
    """True for a CJK unified ideograph."""
    return re.match(rf"[{_CJK}]", char) is not None


def normalize_text(text: str) -> str:
    """NFKC (full-width to half-width), lower-case, punctuation removed, spaces kept only between words.

    Apostrophes inside words (English "don't") are kept; every other Unicode punctuation or symbol is dropped.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    chars = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "'":
            chars.append(ch)
        elif category[0] in "PS" or category in ("Cc", "Cf"):
            chars.append(" ")
        else:
            chars.append(ch)
    text = "".join(chars)
    text = _SPACE_NEAR_CJK.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text.strip("'").strip()


def space_cjk(text: str) -> str:
    """Normalised text with every CJK character standing as a word of its own ("用iphone拍" -> "用 iphone 拍")."""
    return " ".join(_CJK_CHAR.sub(r" \1 ", text).split())
