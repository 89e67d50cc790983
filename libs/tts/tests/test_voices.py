"""The voice library: server-chosen ids, nothing outside its folder, limits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tts_helpers import tone_wave

from genstack.testing.audio import probe
from genstack.tts.audio import encode_all
from genstack.tts.voices import (
    STORE_RATE,
    InvalidVoiceIdError,
    VoiceLibrary,
    VoiceLibraryFullError,
    VoiceNotFoundError,
)


@pytest.fixture
def library(tmp_path: Path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices", max_voices=3)


def test_add_stores_playable_audio_under_a_new_safe_id(library: VoiceLibrary) -> None:
    voice = library.add("Ana's Voice! ../../etc", tone_wave(200, 2.0))
    assert voice.id.startswith("ana-s-voice-etc-")
    assert voice.path.parent == library.root.resolve()
    assert voice.name == "Ana's Voice! ../../etc"
    assert voice.duration_s == pytest.approx(2.0)
    stored = probe(voice.path.read_bytes())
    assert (stored.codec, stored.rate) == ("pcm_s16le", STORE_RATE)
    assert library.add("Ana's Voice! ../../etc", tone_wave(200, 2.0)).id != voice.id
    assert [v.id for v in library.list()] == sorted(v.id for v in library.list())


def test_names_without_ascii_get_a_generic_id(library: VoiceLibrary) -> None:
    assert library.add("声音", tone_wave(200, 1.0)).id.startswith("voice-")


@pytest.mark.parametrize(
    "bad",
    ["../secret", "/etc/passwd", "a/b", "..", ".hidden", "x" * 65, "", "name.wav", "a b"],
)
def test_invalid_ids_are_refused_before_any_file_access(library: VoiceLibrary, bad: str) -> None:
    with pytest.raises(InvalidVoiceIdError):
        library.get(bad)
    with pytest.raises(InvalidVoiceIdError):
        library.delete(bad)


def test_a_symlink_out_of_the_folder_is_not_followed(library: VoiceLibrary, tmp_path: Path) -> None:
    outside = tmp_path / "outside.wav"
    outside.write_bytes(encode_all(tone_wave(200, 1.0), "wav", STORE_RATE))
    library.ensure()
    os.symlink(outside, library.root / "escape.wav")
    with pytest.raises(InvalidVoiceIdError, match="outside"):
        library.get("escape")
    with pytest.raises(InvalidVoiceIdError):
        library.delete("escape")
    assert outside.exists()
    assert library.list() == []


def test_hand_dropped_wav_files_are_voices_named_by_their_file(library: VoiceLibrary) -> None:
    library.ensure()
    (library.root / "female_01.wav").write_bytes(encode_all(tone_wave(220, 1.5), "wav", STORE_RATE))
    (library.root / "not valid.wav").write_bytes(b"ignored: not a valid id")
    voices = library.list()
    assert [(v.id, v.name) for v in voices] == [("female_01", "female_01")]
    assert voices[0].duration_s == pytest.approx(1.5)


def test_delete_removes_audio_and_metadata(library: VoiceLibrary) -> None:
    voice = library.add("gone", tone_wave(200, 1.0))
    assert json.loads((library.root / f"{voice.id}.json").read_text())["name"] == "gone"
    library.delete(voice.id)
    assert sorted(p.name for p in library.root.iterdir()) == []
    with pytest.raises(VoiceNotFoundError):
        library.get(voice.id)


def test_the_library_refuses_voices_past_its_limit(library: VoiceLibrary) -> None:
    for i in range(3):
        library.add(f"v{i}", tone_wave(200, 1.0))
    with pytest.raises(VoiceLibraryFullError, match="maximum of 3"):
        library.add("one too many", tone_wave(200, 1.0))
    assert len(library.list()) == 3
    assert not [p for p in library.root.iterdir() if p.name.startswith(".upload-")]


def test_a_replaced_file_is_a_new_version(library: VoiceLibrary) -> None:
    voice = library.add("v", tone_wave(200, 1.0))
    voice.path.write_bytes(encode_all(tone_wave(300, 2.0), "wav", STORE_RATE))
    assert library.get(voice.id).version != voice.version
