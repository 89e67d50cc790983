"""API keys: constant-time identification, bearer parsing."""

from __future__ import annotations

import hmac

import pytest

from genstack.http.auth import ApiKeys, bearer_token

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"


def test_known_keys_are_identified_and_distinct() -> None:
    keys = ApiKeys([KEY_A, KEY_B])
    id_a, id_b = keys.identify(KEY_A), keys.identify(KEY_B)
    assert id_a and id_b and id_a != id_b
    assert KEY_A not in id_a  # the id is a digest prefix, not the key


@pytest.mark.parametrize("presented", ["", "key-a", KEY_A + "x", KEY_A.upper(), " " + KEY_A])
def test_other_strings_are_not_keys(presented: str) -> None:
    assert ApiKeys([KEY_A, KEY_B]).identify(presented) is None


def test_no_keys_accepts_nothing() -> None:
    assert ApiKeys([]).identify(KEY_A) is None


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc", "abc"),
        (b"bearer abc", "abc"),
        (b"BEARER   abc  ", "abc"),
        (b"Bearer ", None),
        (b"Bearer", None),
        (b"Basic abc", None),
        (b"abc", None),
        (b"", None),
        (None, None),
    ],
)
def test_bearer_token(header: bytes | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_only_digests_are_held() -> None:
    keys = ApiKeys([KEY_A, KEY_B])
    assert KEY_A not in repr(vars(keys)) and KEY_A.encode() not in repr(vars(keys)).encode()


def test_identify_compares_with_every_key_whatever_matches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No early exit: the work done (and so the time taken) does not tell which key, or
    whether any, matched."""
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keys = ApiKeys([KEY_A, KEY_B, "key-c-0123456789abcdef"])
    for presented in (KEY_A, KEY_B, "key-c-0123456789abcdef", "nobody-0123456789abcdef"):
        calls.clear()
        keys.identify(presented)
        assert len(calls) == 3, presented
