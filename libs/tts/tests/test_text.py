"""Sentence splitting: every part within the engine's limit, nothing lost, sensible breaks."""

from __future__ import annotations

import re

import pytest

from genstack.tts.text import normalise, split_sentences


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_splits_at_sentence_ends() -> None:
    text = "Hello there! How are you? I am fine. Thanks…  Bye"
    assert split_sentences(text, 250) == [
        "Hello there!",
        "How are you?",
        "I am fine.",
        "Thanks…",
        "Bye",
    ]


def test_abbreviations_and_initials_do_not_end_a_sentence() -> None:
    text = "Dr. Smith met J. R. Tolkien at 5 p.m. yesterday. Then they left."
    parts = split_sentences(text, 250)
    assert parts[0].startswith("Dr. Smith met J. R. Tolkien")
    assert parts[-1] == "Then they left."


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_sentences('He said "stop." She ran.', 250) == ['He said "stop."', "She ran."]


def test_cjk_sentences_split_without_spaces() -> None:
    exclaim, ask = "\uff01", "\uff1f"  # fullwidth ! and ?
    text = f"你好。今天天气很好{exclaim}我们走吧{ask}"
    assert split_sentences(text, 82) == ["你好。", f"今天天气很好{exclaim}", f"我们走吧{ask}"]


def test_long_sentences_break_at_clauses_then_words_within_the_limit() -> None:
    sentence = ", ".join(["the quick brown fox jumps over the lazy dog"] * 12) + "."
    parts = split_sentences(sentence, 100)
    assert len(parts) > 1
    assert all(len(p) <= 100 for p in parts)
    assert words(" ".join(parts)) == words(sentence)


def test_a_word_longer_than_the_limit_is_cut() -> None:
    parts = split_sentences("a" * 250, 100)
    assert [len(p) for p in parts] == [100, 100, 50]


@pytest.mark.parametrize("limit", [1, 7, 40, 250])
def test_nothing_is_lost_at_any_limit(limit: int) -> None:
    text = "One. Two, three; four: five! Six seven eight nine ten? " * 5 + "最后一句。"
    parts = split_sentences(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join("".join(parts).split()) == "".join(normalise(text).split())


def test_whitespace_and_control_characters_are_normalised() -> None:
    assert split_sentences("  Line one\nline two.\t\x00Next\r\n", 250) == [
        "Line one line two.",
        "Next",
    ]


def test_empty_text_gives_nothing_and_a_zero_limit_is_refused() -> None:
    assert split_sentences("   \n ", 10) == []
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("text", 0)
