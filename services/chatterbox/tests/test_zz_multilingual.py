"""The multilingual model (ChatterboxMultilingualTTS) on its test checkpoint, offline: its
languages, the language reaching the model, a voice's own language, and Chinese read through
the checkpoint's own Cangjie table and segmenter (spacy_pkuseg would otherwise fetch its model
from GitHub at load, which fails without a network).

Named to run last: the session holds one model at a time, and the English one serves the
other files."""

from __future__ import annotations

import zipfile

import httpx
import pytest
from chatterbox_helpers import ChatterboxServer, Servers, tone_wave

from genstack.core.contracts.chatterbox import LANGUAGES
from genstack.testing.audio import pcm_samples
from genstack.tts.audio import encode_all


@pytest.fixture(scope="module")
def multilingual(servers: Servers) -> ChatterboxServer:
    return servers.get("multilingual")


def speak(server: ChatterboxServer, text: str = "Bonjour.", **body: object) -> bytes:
    payload = {"input": text, "voice": "default", "seed": 11, "response_format": "pcm", **body}
    response = server.post("/v1/audio/speech", json=payload)
    assert response.status_code == 200, response.text
    assert pcm_samples(response.content).size > 0
    return response.content


def test_it_lists_and_takes_its_23_languages(multilingual: ChatterboxServer) -> None:
    listed = httpx.get(f"{multilingual.url}/languages").json()["languages"]
    assert [entry["code"] for entry in listed] == list(LANGUAGES)
    assert len(listed) == 23
    models = httpx.get(f"{multilingual.url}/v1/models").json()["data"]
    assert "chatterbox-multilingual" in [m["id"] for m in models]
    refused = multilingual.post(
        "/v1/audio/speech", json={"input": "Hi.", "voice": "default", "language": "tlh"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "language"


def test_the_language_reaches_the_model(multilingual: ChatterboxServer) -> None:
    """Same seed, voice and text: the language tag alone changes the audio."""
    french = speak(multilingual, language="fr")
    assert speak(multilingual, language="FR") == french  # codes are matched loosely
    assert speak(multilingual, language="de") != french


def test_a_library_voice_speaks_its_own_language(multilingual: ChatterboxServer) -> None:
    reference = encode_all(tone_wave(150, 3.0), "wav", 24_000)
    created = httpx.post(
        f"{multilingual.url}/v1/audio/voices",
        files={"audio_sample": ("ref.wav", reference)},
        data={"name": "Amelie", "language": "fr"},
    )
    assert created.status_code == 201, created.text
    voice = {"id": created.json()["id"]}
    assert created.json()["language"] == "fr"
    unnamed = speak(multilingual, voice=voice)
    assert unnamed == speak(multilingual, voice=voice, language="fr")
    assert unnamed != speak(multilingual, voice=voice, language="en")


def test_chinese_is_segmented_and_converted_offline(multilingual: ChatterboxServer) -> None:
    """The server loaded without a network: it unpacked the checkpoint's segmenter where
    spacy_pkuseg looks. With the Cangjie table two Chinese phrases read as different codes
    (without it both would be unknown characters, the same tokens and the same audio)."""
    home = multilingual.model_dir / "pkuseg"
    with zipfile.ZipFile(home / "spacy_ontonotes.zip") as archive:
        packed = archive.read("weights.npz")
    assert (home / "spacy_ontonotes" / "weights.npz").read_bytes() == packed
    # One word each to the segmenter; to the tokenizer, unknown characters but for the table.
    hello = speak(multilingual, "你好。", language="zh")
    assert hello != speak(multilingual, "世界。", language="zh")
