"""Chatterbox Turbo (ChatterboxTurboTTS: GPT-2 T3, MeanFlow S3Gen) on its test checkpoint,
found where provisioning puts it (the model folder's turbo/): it speaks, keeps its tags in the
text, ignores the guidance fields it has no use for, and takes no reference of 5 s or less.

Named to run last: the session holds one model at a time."""

from __future__ import annotations

import httpx
import pytest
from chatterbox_helpers import ChatterboxServer, Servers, tone_wave

from genstack.testing.audio import pcm_samples, probe
from genstack.tts.audio import encode_all


@pytest.fixture(scope="module")
def turbo(servers: Servers) -> ChatterboxServer:
    return servers.get("turbo")


def speak(server: ChatterboxServer, **body: object) -> httpx.Response:
    payload = {"input": "Well [chuckle] hello.", "voice": "default", "seed": 7, **body}
    return server.post("/v1/audio/speech", json={"response_format": "pcm", **payload})


def test_it_speaks_from_the_turbo_subfolder(turbo: ChatterboxServer) -> None:
    assert (turbo.model_dir / "turbo" / "t3_turbo_v1.safetensors").is_file()
    models = httpx.get(f"{turbo.url}/v1/models").json()["data"]
    assert "chatterbox-turbo" in [m["id"] for m in models]
    spoken = speak(turbo, response_format="mp3")
    assert spoken.status_code == 200, spoken.text
    assert probe(spoken.content).codec == "mp3float"
    languages = httpx.get(f"{turbo.url}/languages").json()["languages"]
    assert [entry["code"] for entry in languages] == ["en"]


def test_seeds_repeat_and_guidance_fields_are_ignored(turbo: ChatterboxServer) -> None:
    first = speak(turbo)
    assert first.status_code == 200, first.text
    assert speak(turbo).content == first.content
    # Turbo has no guidance, exaggeration or min_p: they change nothing.
    ignored = speak(turbo, exaggeration=2.0, cfg_weight=0.1, min_p=0.2)
    assert ignored.content == first.content
    assert speak(turbo, seed=8).content != first.content
    assert pcm_samples(first.content).size > 0


def test_a_reference_of_5_seconds_or_less_is_refused(turbo: ChatterboxServer) -> None:
    def voice(seconds: float, name: str) -> dict[str, str]:
        created = httpx.post(
            f"{turbo.url}/v1/audio/voices",
            files={"audio_sample": ("ref.wav", encode_all(tone_wave(150, seconds), "wav", 24_000))},
            data={"name": name},
        )
        assert created.status_code == 201, created.text
        return {"id": created.json()["id"]}

    short = speak(turbo, voice=voice(4.0, "Short"))
    assert short.status_code == 400
    assert "longer than 5 seconds" in short.json()["error"]["message"]
    cloned = speak(turbo, voice=voice(6.0, "Long"))
    assert cloned.status_code == 200, cloned.text
    assert cloned.content != speak(turbo).content  # the same seed: only the voice differs
