"""SillyTavern's XTTS provider (public/scripts/extensions/tts/xtts.js), call by call, from
its default origin: speakers, settings with the string values its sliders give, a whole
file from tts_to_audio/, and tts_stream played by a plain GET (as an <audio> element does)."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
from xtts_helpers import XttsServer

from genstack.testing.audio import probe

ORIGIN = "http://localhost:8000"  # SillyTavern's default address
HEADERS = {"Origin": ORIGIN, "Content-Type": "application/json", "Cache-Control": "no-cache"}


def test_sillytavern_call_sequence(xtts: XttsServer) -> None:
    with httpx.Client(base_url=xtts.url, timeout=120, follow_redirects=False) as st:
        # fetchTtsVoiceObjects()
        speakers = st.get("/speakers", headers={"Origin": ORIGIN})
        assert speakers.status_code == 200
        assert speakers.headers["access-control-allow-origin"] == ORIGIN
        voices = speakers.json()
        assert {"name", "voice_id", "preview_url"} <= set(voices[0])
        voice = next(v for v in voices if v["name"] == "Ana Florence")

        # changeTTSSettings(): a CORS preflight (JSON + Cache-Control), then string values
        preflight = st.options(
            "/set_tts_settings",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,cache-control",
            },
        )
        assert preflight.status_code == 200
        settings = {
            "temperature": "0.65",
            "speed": "1.25",
            "length_penalty": "1.0",
            "repetition_penalty": "5.0",
            "top_p": "0.85",
            "top_k": "40",
            "enable_text_splitting": True,
            "stream_chunk_size": "120",
        }
        applied = st.post("/set_tts_settings", json=settings, headers=HEADERS)
        assert applied.status_code == 200, applied.text
        assert applied.json() == {"message": "Settings successfully applied"}
        current = st.get("/get_tts_settings").json()
        assert current["temperature"] == 0.65 and current["top_k"] == 40
        assert current["stream_chunk_size"] == 120 and current["speed"] == 1.25

        # fetchTtsGeneration(), not streaming
        audio = st.post(
            "/tts_to_audio/",
            json={
                "text": "Hello from Silly Tavern.",
                "speaker_wav": voice["voice_id"],
                "language": "en",
            },
            headers=HEADERS,
        )
        assert audio.status_code == 200, audio.text
        assert audio.headers["content-type"].startswith("audio/")
        assert audio.headers["access-control-allow-origin"] == ORIGIN
        whole = probe(audio.content)
        assert whole.codec == "pcm_s16le" and whole.duration_s > 0.05

        # fetchTtsGeneration(), streaming: the URL goes to an <audio> element
        query = urlencode(
            {
                "text": "Streaming. Two sentences.",
                "speaker_wav": voice["voice_id"],
                "language": "en",
            }
        )
        for path in ("/tts_stream/", "/tts_stream"):
            with st.stream("GET", f"{path}?{query}") as played:
                assert played.status_code == 200  # no redirect between the two spellings
                assert played.headers["content-type"] == "audio/wav"
                pieces = list(played.iter_raw())
            assert pieces[0][:4] == b"RIFF"  # a valid container from the first byte
            assert len(pieces) > 1  # sent as made, not in one piece
            assert probe(b"".join(pieces)).duration_s > 0.05

        # the preview button plays preview_url
        preview = httpx.get(voice["preview_url"], timeout=120)
        assert preview.status_code == 200
        assert probe(preview.content).duration_s > 0.05


def test_settings_are_per_client_not_global(xtts: XttsServer) -> None:
    st = httpx.Client(base_url=xtts.url)
    # Another machine: a different client address (127.0.0.2 is loopback too).
    other = httpx.Client(
        base_url=xtts.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")
    )
    st.post("/set_tts_settings", json={"temperature": "0.2", "speed": "0.5"})
    assert st.get("/get_tts_settings").json()["temperature"] == 0.2
    assert other.get("/get_tts_settings").json()["temperature"] == 0.75  # untouched default


def test_bad_settings_are_refused_and_change_nothing(xtts: XttsServer) -> None:
    with httpx.Client(base_url=xtts.url) as st:
        before = st.get("/get_tts_settings").json()
        for bad in ({"temperature": "hot"}, {"top_k": "500"}, {"speed": "9"}, [1, 2]):
            response = st.post("/set_tts_settings", json=bad)
            assert response.status_code == 400, bad
            assert response.json()["error"]["type"] == "invalid_request_error"
        assert st.get("/get_tts_settings").json() == before


def test_languages_and_speakers_list(xtts: XttsServer) -> None:
    languages = httpx.get(f"{xtts.url}/languages").json()["languages"]
    assert len(languages) == 17
    assert languages["English"] == "en" and languages["Chinese"] == "zh-cn"
    assert httpx.get(f"{xtts.url}/speakers_list").json()[:2] == ["Claribel Dervla", "Ana Florence"]


def test_tts_stream_post_as_the_old_docs_describe(xtts: XttsServer) -> None:
    response = httpx.post(
        f"{xtts.url}/tts_stream",
        json={"text": "Posted.", "speaker_wav": "Claribel Dervla", "language": "en"},
        timeout=120,
    )
    assert response.status_code == 200
    assert probe(response.content).duration_s > 0.05
