"""Every field that names a voice or a file: paths, absolute paths and traversal get a 4xx,
and nothing is read or written outside the voice folder."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from chatterbox_helpers import ChatterboxServer, tone_wave

from genstack.tts.audio import encode_all

TRICKS = [
    "../secret",
    "../secret.wav",
    "/etc/passwd",
    "..\\secret.wav",
    "voices/../../secret.wav",
    "linked",
    "C:\\secret.wav",
    "%2e%2e/secret",
    "secret\x00.wav",
]


@pytest.fixture
def guarded(chatterbox: ChatterboxServer) -> tuple[ChatterboxServer, Path]:
    """The session server's voice folder sits next to a readable reference no request may
    reach, and holds a symlink to it."""
    root = chatterbox.voices_dir.parent
    secret = root / "secret.wav"
    if not secret.exists():
        secret.write_bytes(encode_all(tone_wave(200, 2.0), "wav", 24_000))
        chatterbox.voices_dir.mkdir(parents=True, exist_ok=True)
        os.symlink(secret, chatterbox.voices_dir / "linked.wav")
    return chatterbox, root


def snapshot(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.lstat().st_mtime_ns
        for p in root.rglob("*")
        if "logs" not in p.parts
    }


@pytest.mark.parametrize("trick", TRICKS)
def test_voice_names_are_never_paths(guarded: tuple[ChatterboxServer, Path], trick: str) -> None:
    server, root = guarded
    before = snapshot(root)
    url = server.url
    calls = [
        httpx.post(f"{url}/v1/audio/speech", json={"input": "Hi.", "voice": trick}),
        httpx.post(f"{url}/audio/speech", json={"input": "Hi.", "voice": {"id": trick}}),
        httpx.post(f"{url}/v1/audio/speech/upload", data={"input": "Hi.", "voice": trick}),
        httpx.post(
            f"{url}/voices",
            data={"voice_name": trick},
            files={"voice_file": ("v.wav", encode_all(tone_wave(150, 2.0), "wav", 24_000))},
        ),
        httpx.get(f"{url}/voices/{quote(trick, safe='')}"),
        httpx.get(f"{url}/voices/{quote(trick, safe='')}/download"),
        httpx.delete(f"{url}/v1/voices/{quote(trick, safe='')}"),
        httpx.get(f"{url}/v1/audio/voices/{quote(trick, safe='')}/sample"),
    ]
    for response in calls:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
    assert snapshot(root) == before


def test_an_upload_file_name_is_never_used(guarded: tuple[ChatterboxServer, Path]) -> None:
    server, root = guarded
    before = snapshot(root)
    created = httpx.post(
        f"{server.url}/voices",
        data={"voice_name": "named-by-form"},
        files={"voice_file": ("../../escaped.wav", encode_all(tone_wave(150, 2.0), "wav", 24_000))},
    )
    assert created.status_code == 201, created.text
    added = set(snapshot(root)) - set(before)
    assert added == {"voices/named-by-form.wav", "voices/named-by-form.json"}
    assert not (root.parent / "escaped.wav").exists()
    assert httpx.delete(f"{server.url}/voices/named-by-form").status_code == 200
