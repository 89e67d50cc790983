"""The official openai client against a real server process."""

from __future__ import annotations

import io
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI
from tts_helpers import ToneServer, tone_wave

from genstack.testing.audio import pcm_samples, probe
from genstack.tts.audio import encode_all


@pytest.fixture(scope="module")
def client(tone: ToneServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{tone.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_speech_create_returns_a_playable_file(client: OpenAI) -> None:
    response = client.audio.speech.create(
        model="tone", voice="alto", input="Hello from the official client.", response_format="flac"
    )
    result = probe(response.content)
    assert result.codec == "flac"
    assert result.duration_s > 1.0


def test_streaming_response_arrives_in_pieces_and_plays(client: OpenAI) -> None:
    text = "First sentence here. Second sentence there. Third one to finish."
    with client.audio.speech.with_streaming_response.create(
        model="tone", voice="soprano", input=text, response_format="mp3"
    ) as response:
        pieces = list(response.iter_bytes(chunk_size=None))  # as the server sent them
    assert len(pieces) >= 3
    assert probe(b"".join(pieces)).duration_s > 2.0


def test_extra_body_passes_engine_fields(client: OpenAI) -> None:
    def make(**extra: object) -> bytes:
        return client.audio.speech.create(
            model="tone",
            voice="bass",
            input="Seeded speech.",
            response_format="pcm",
            extra_body={"seed": 11, "temperature": 1.0, **extra},
        ).content

    assert make() == make()
    assert make(vibrato=1.0) != make()
    assert pcm_samples(make()).size > 0


def test_errors_are_raised_as_openai_errors(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.audio.speech.create(model="tone", voice="nova", input="Who?")
    assert "voice 'nova' not found" in missing.value.message
    with pytest.raises(openai.APIStatusError) as too_long:
        client.audio.speech.create(model="tone", voice="alto", input="x" * 5000)
    assert too_long.value.status_code == 413


def test_voices_create_use_and_delete(client: OpenAI) -> None:
    sample = io.BytesIO(encode_all(tone_wave(180, 3.0), "mp3", 24_000))
    sample.name = "sample.mp3"
    voice = client.audio.voices.create(audio_sample=sample, consent="cons_1", name="Narrator")
    assert voice.name == "Narrator"
    assert voice.object == "audio.voice"
    assert voice.type == "audio_sample"
    spoken = client.audio.speech.create(
        model="tone", voice={"id": voice.id}, input="Now in my voice.", response_format="wav"
    )
    assert probe(spoken.content).duration_s > 0.5
    deleted = client.audio.voices.delete(voice.id)
    assert (deleted.id, deleted.deleted) == (voice.id, True)
    with pytest.raises(openai.NotFoundError):
        client.audio.voices.delete(voice.id)
