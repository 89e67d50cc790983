"""The multilingual model (CHATTERBOX_MODEL=multilingual) on its own test checkpoint: its 23
languages listed, a language reaching generate(), an unknown one a 400 naming the field.
Last in the session (zz): its server replaces the English one, so one model is loaded at a
time."""

from __future__ import annotations

import httpx
import pytest
from chatterbox_helpers import ChatterboxServer
from conftest import Servers

from genstack.core.contracts.chatterbox import LANGUAGES
from genstack.testing.audio import probe


@pytest.fixture(scope="module")
def multilingual(servers: Servers) -> ChatterboxServer:
    return servers.get("multilingual")


def test_its_languages_are_listed(multilingual: ChatterboxServer) -> None:
    listed = httpx.get(f"{multilingual.url}/languages").json()
    assert listed["model_type"] == "multilingual"
    assert [entry["code"] for entry in listed["languages"]] == list(LANGUAGES)
    assert listed["count"] == 23
    models = httpx.get(f"{multilingual.url}/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["chatterbox", "chatterbox-multilingual"]


@pytest.mark.parametrize("language", ["tlh", "xx", "en-xx", "../fr"])
def test_an_unknown_language_is_a_400_naming_the_field(
    multilingual: ChatterboxServer, language: str
) -> None:
    response = multilingual.post(
        "/v1/audio/speech", json={"input": "Bonjour.", "voice": "default", "language": language}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "language"


def test_a_language_reaches_the_model(multilingual: ChatterboxServer) -> None:
    body = {"input": "Bonjour.", "voice": "default", "seed": 2, "response_format": "wav"}
    french = multilingual.post("/v1/audio/speech", json={**body, "language": "fr"})
    assert french.status_code == 200, french.text
    german = multilingual.post("/v1/audio/speech", json={**body, "language": "DE"})
    assert german.status_code == 200, german.text
    assert probe(french.content).duration_s > 0.1
    assert french.content != german.content  # the language tag is part of the tokens
