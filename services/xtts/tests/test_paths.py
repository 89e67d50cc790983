"""Every field that names a voice or a file: paths, absolute paths and traversal get a 4xx,
and nothing is read or written outside the voice and output folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from xtts_helpers import XttsServer, start_xtts_server, tone_wave

from genstack.testing.audio import probe
from genstack.tts.audio import encode_all


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path
) -> Iterator[tuple[XttsServer, Path]]:
    """A server whose voices folder sits next to a real, readable reference file that no
    request may reach."""
    root = tmp_path_factory.mktemp("guarded")
    secret = root / "secret.wav"
    secret.write_bytes(encode_all(tone_wave(200, 2.0), "wav", 24_000))
    server = start_xtts_server(root, tiny_checkpoint)
    server.voices_dir.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, server.voices_dir / "linked.wav")  # a symlink out of the folder
    try:
        yield server, secret
    finally:
        server.process.stop()


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "logs" not in p.parts}


SPEAKERS = [
    "../secret",
    "../secret.wav",
    "/etc/passwd",
    "..\\secret.wav",
    "voices/../../secret.wav",
    "linked",
    "linked.wav",
    "C:\\secret.wav",
    "%2e%2e/secret",
]


@pytest.mark.parametrize("speaker", SPEAKERS)
def test_speaker_wav_is_never_a_path(guarded: tuple[XttsServer, Path], speaker: str) -> None:
    server, _ = guarded
    root = server.voices_dir.parent
    before = snapshot(root)
    body = {"text": "Hi.", "speaker_wav": speaker, "language": "en"}
    calls = [
        httpx.post(f"{server.url}/tts_to_audio/", json=body, timeout=60),
        httpx.get(f"{server.url}/tts_stream", params=body, timeout=60),
        httpx.post(f"{server.url}/tts_to_file", json={**body, "file_name_or_path": "ok.wav"}),
        httpx.post(
            f"{server.url}/v1/audio/speech", json={"input": "Hi.", "voice": speaker}, timeout=60
        ),
        httpx.post(
            f"{server.url}/v1/audio/speech",
            json={"input": "Hi.", "voice": {"id": speaker}},
            timeout=60,
        ),
    ]
    for response in calls:
        assert response.status_code in (400, 404), (response.request.url, response.text)
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "name",
    ["../secret.wav", "..%2Fsecret.wav", "linked.wav", "linked", "%2Fetc%2Fpasswd", "..", "."],
)
def test_sample_serves_only_voices_of_the_library(
    guarded: tuple[XttsServer, Path], name: str
) -> None:
    server, secret = guarded
    response = httpx.get(f"{server.url}/sample/{name}")
    assert 400 <= response.status_code < 500
    assert response.content != secret.read_bytes()


@pytest.mark.parametrize(
    "file_name",
    [
        "../escaped.wav",
        "/tmp/escaped.wav",
        "a/../../escaped.wav",
        "..",
        "sub/./x.wav",
        "~/x.wav",
        "x\\..\\..\\escaped.wav",
        "",
        "a" * 300 + ".wav",
    ],
)
def test_tts_to_file_writes_only_inside_the_output_folder(
    guarded: tuple[XttsServer, Path], file_name: str
) -> None:
    server, _ = guarded
    root = server.voices_dir.parent
    before = snapshot(root)
    response = httpx.post(
        f"{server.url}/tts_to_file",
        json={
            "text": "Hi.",
            "speaker_wav": "Ana Florence",
            "language": "en",
            "file_name_or_path": file_name,
        },
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert snapshot(root) == before
    assert not Path("/tmp/escaped.wav").exists()


def test_tts_to_file_writes_relative_names_under_output_xtts(
    guarded: tuple[XttsServer, Path],
) -> None:
    server, _ = guarded
    for name, codec in (("out.wav", "pcm_s16le"), ("chapter-1/line_02.mp3", "mp3float")):
        response = httpx.post(
            f"{server.url}/tts_to_file",
            json={
                "text": "Saved.",
                "speaker_wav": "Ana Florence",
                "language": "en",
                "file_name_or_path": name,
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        written = Path(response.json()["output_path"])
        assert written == (server.output_dir / "xtts" / name).resolve()
        assert probe(written.read_bytes()).codec == codec


@pytest.mark.parametrize("voice_id", ["..%2F..%2Fsecret", "linked", quote("/etc/passwd", safe="")])
def test_voice_routes_refuse_paths(guarded: tuple[XttsServer, Path], voice_id: str) -> None:
    server, secret = guarded
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/sample")):
        response = httpx.request(method, f"{server.url}/v1/audio/voices/{voice_id}{suffix}")
        assert 400 <= response.status_code < 500, (method, suffix, response.status_code)
    assert secret.exists()
    assert (server.voices_dir / "linked.wav").is_symlink()


def test_oversized_text_is_413_everywhere(guarded: tuple[XttsServer, Path]) -> None:
    server, _ = guarded
    text = "word " * 1000
    body = {"text": text, "speaker_wav": "Ana Florence", "language": "en"}
    assert httpx.post(f"{server.url}/tts_to_audio/", json=body).status_code == 413
    assert httpx.get(f"{server.url}/tts_stream", params=body).status_code == 413
    speech = {"input": text, "voice": "Ana Florence"}
    assert httpx.post(f"{server.url}/v1/audio/speech", json=speech).status_code == 413
