"""Text chunking: split input into sentences an engine can speak one at a time.

Streaming speaks sentence by sentence, so the first sentence should be short and each part
must fit the engine's limit (XTTS truncates or fails past ~250 characters in English).
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? … (and their CJK forms), with closing quotes or brackets kept,
# before whitespace or, for CJK punctuation, anywhere.
_SENTENCE_END = re.compile(
    r"""(?<=[.!?…])["'”’)\]]*\s+"""  # noqa: RUF001 - typographic quotes on purpose
    r"""|(?<=[。！？])["'”’」』)\]]*\s*"""  # noqa: RUF001 - CJK punctuation on purpose
)
# Abbreviations after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "no",
        "fig",
        "approx",
        "inc",
        "ltd",
        "co",
        "mt",
        "ave",
        "dept",
        "est",
    ]
)
_CLAUSE_BREAK = re.compile(r"(?<=[,;:—–])\s+|(?<=[，；：、])")  # noqa: RUF001 - on purpose
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Collapse whitespace (newlines included) and strip control characters."""
    cleaned = "".join(ch for ch in text if ch.isprintable() or ch.isspace())
    return _SPACE.sub(" ", cleaned).strip()


def _ends_with_abbreviation(piece: str) -> bool:
    words = piece.rstrip().split(" ")
    last = words[-1].rstrip(".").lower() if words else ""
    return last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.start()]
        if piece.rstrip().endswith(".") and _ends_with_abbreviation(piece):
            continue  # "Dr. Smith" is one sentence
        pieces.append(text[start : match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Break an over-long sentence at clause marks, then at spaces, then anywhere."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for unit in _pack(_CLAUSE_BREAK.split(sentence), max_chars, " "):
        if len(unit) <= max_chars:
            parts.append(unit)
            continue
        for word_run in _pack(unit.split(" "), max_chars, " "):
            # A single "word" longer than the limit (CJK text has no spaces): cut it.
            parts.extend(word_run[i : i + max_chars] for i in range(0, len(word_run), max_chars))
    return [p.strip() for p in parts if p.strip()]


def _pack(units: list[str], max_chars: int, joiner: str) -> list[str]:
    """Join consecutive units while the result stays within max_chars."""
    packed: list[str] = []
    current = ""
    for unit in (u.strip() for u in units):
        if not unit:
            continue
        candidate = f"{current}{joiner}{unit}" if current else unit
        if len(candidate) <= max_chars or not current:
            current = candidate
        else:
            packed.append(current)
            current = unit
    if current:
        packed.append(current)
    return packed


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Sentences of ``text``, each at most ``max_chars`` long, in order. Nothing of the
    text is dropped but whitespace."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    chunks: list[str] = []
    for sentence in _sentences(normalise(text)):
        chunks.extend(_split_long(sentence, max_chars))
    return chunks
