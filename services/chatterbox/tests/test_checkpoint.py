"""The checkpoint folder's parts that need no model: which files make a checkpoint complete,
Turbo provisioned into its subfolder (from a loopback hub), the multilingual segmenter's zip
unpacked where spacy_pkuseg looks (and refused when it would write outside its folder), and
the Cangjie table read from the folder."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from genstack.chatterbox.checkpoint import (
    CHECKPOINT_FILES,
    CheckpointError,
    ensure_checkpoint,
    load_cangjie,
    missing_files,
    pkuseg_home,
)
from genstack.testing.file_server import FileServer, add_hf_file, add_hf_tree


def test_a_checkpoint_is_complete_when_every_file_has_bytes(tmp_path: Path) -> None:
    for name in CHECKPOINT_FILES["english"]:
        (tmp_path / name).write_bytes(b"x")
    assert missing_files(tmp_path, "english") == []
    (tmp_path / "tokenizer.json").write_bytes(b"")
    assert missing_files(tmp_path, "english") == ["tokenizer.json"]
    assert "t3_mtl23ls_v2.safetensors" in missing_files(tmp_path, "multilingual")


def _zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_the_segmenter_zip_is_unpacked_once(tmp_path: Path) -> None:
    _zip(
        tmp_path / "pkuseg" / "spacy_ontonotes.zip", {"weights.npz": b"w", "features.msgpack": b"f"}
    )
    home = pkuseg_home(tmp_path)
    assert home == tmp_path / "pkuseg"
    model = home / "spacy_ontonotes"
    assert (model / "weights.npz").read_bytes() == b"w"
    assert (model / "features.msgpack").read_bytes() == b"f"
    (model / "features.msgpack").write_bytes(b"kept")  # unpacked already: left alone
    pkuseg_home(tmp_path)
    assert (model / "features.msgpack").read_bytes() == b"kept"
    assert sorted(p.name for p in home.iterdir()) == ["spacy_ontonotes", "spacy_ontonotes.zip"]


def test_no_zip_leaves_the_folder_to_pkuseg(tmp_path: Path) -> None:
    home = pkuseg_home(tmp_path)
    assert not (home / "spacy_ontonotes").exists()


@pytest.mark.parametrize("member", ["../escaped.txt", "/abs/escaped.txt", "a/../../escaped.txt"])
def test_a_zip_reaching_outside_its_folder_is_refused(tmp_path: Path, member: str) -> None:
    _zip(tmp_path / "pkuseg" / "spacy_ontonotes.zip", {member: b"x", "weights.npz": b"w"})
    with pytest.raises(CheckpointError, match="outside"):
        pkuseg_home(tmp_path)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "pkuseg" / "spacy_ontonotes").exists()


def test_a_broken_zip_is_named(tmp_path: Path) -> None:
    (tmp_path / "pkuseg").mkdir()
    (tmp_path / "pkuseg" / "spacy_ontonotes.zip").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"spacy_ontonotes\.zip"):
        pkuseg_home(tmp_path)


def _model_with_converter(word2cj: dict[str, str]) -> SimpleNamespace:
    converter = SimpleNamespace(word2cj=word2cj, cj2word={})
    return SimpleNamespace(tokenizer=SimpleNamespace(cangjie_converter=converter))


def test_the_cangjie_table_comes_from_the_folder(tmp_path: Path) -> None:
    (tmp_path / "Cangjie5_TC.json").write_text(
        json.dumps(["你\tonf", "好\tvnd", "妳\tvnd"]), encoding="utf-8"
    )
    model = _model_with_converter({})
    assert load_cangjie(model, tmp_path)
    converter = model.tokenizer.cangjie_converter
    assert converter.word2cj == {"你": "onf", "好": "vnd", "妳": "vnd"}
    assert converter.cj2word == {"onf": ["你"], "vnd": ["好", "妳"]}


def test_a_table_the_library_found_is_kept(tmp_path: Path) -> None:
    (tmp_path / "Cangjie5_TC.json").write_text(json.dumps(["你\tzzz"]), encoding="utf-8")
    model = _model_with_converter({"你": "onf"})
    assert load_cangjie(model, tmp_path)
    assert model.tokenizer.cangjie_converter.word2cj == {"你": "onf"}
    assert not load_cangjie(_model_with_converter({}), tmp_path / "elsewhere")


def test_turbo_is_provisioned_into_its_subfolder_from_its_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ensure_checkpoint against a loopback hub serving ResembleAI/chatterbox-turbo: the
    files chatterbox-tts's own from_pretrained would take, into turbo/, nothing else."""
    published = {name: f"{name} bytes".encode() * 200 for name in CHECKPOINT_FILES["turbo"]}
    published |= {"conds.pt": b"c" * 3000, "added_tokens.json": b"{}", "README.md": b"# no"}
    hub = FileServer(host="127.0.0.1").start()
    cdn = FileServer(host="127.0.0.2").start()
    try:
        add_hf_tree(hub, "ResembleAI/chatterbox-turbo", published)
        for name, data in published.items():
            add_hf_file(hub, cdn, "ResembleAI/chatterbox-turbo", name, data, lfs=len(data) > 1024)
        for key, value in {
            "HF_ENDPOINT": hub.url,
            "PROVISION_PROGRESS": "off",
            "PROVISION_MIN_FREE_GB": "0",
            "PROVISION_RETRY_BASE_S": "0.05",
        }.items():
            monkeypatch.setenv(key, value)
        models = tmp_path / "chatterbox"
        folder = ensure_checkpoint(models, "turbo")
    finally:
        hub.stop()
        cdn.stop()
    assert folder == models / "turbo"
    assert not (folder / "README.md").exists()
    for name, data in published.items():
        if name != "README.md":
            assert (folder / name).read_bytes() == data
    assert ensure_checkpoint(models, "turbo") == folder  # complete now: no hub needed
