"""API keys: constant-time identification, bearer parsing."""

from __future__ import annotations

import pytest

from genstack.gateway.auth import ApiKeys, bearer_token

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
