"""What the bridge changes in a workflow, and what it takes out of the result.

- every save node's ``filename_prefix`` goes under the job's folder (``<job-id>/...``), so
  outputs land in ``OUTPUT_DIR/<job-id>/`` and an identical resubmission writes new files
  instead of being answered from ComfyUI's cache;
- loader inputs given as http(s) URLs are found, to be fetched and uploaded first (and in a
  template's graph, those given as stored objects' keys, to be read from storage);
- a finished prompt's outputs are the files its history lists, checked on disk.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

# Loader node -> the input that names its file in ComfyUI's input folder.
URL_LOADERS: dict[str, str] = {
    "LoadImage": "image",
    "LoadImageMask": "image",
    "LoadAudio": "audio",
    "LoadVideo": "file",
    "VHS_LoadVideo": "video",
}
# What each loader's file must be (the Content-Type's major type).
LOADER_KIND: dict[str, str] = {
    "LoadImage": "image",
    "LoadImageMask": "image",
    "LoadAudio": "audio",
    "LoadVideo": "video",
    "VHS_LoadVideo": "video",
}


# A speech job's response_format -> ComfyUI's audio save node (and its quality input): what
# ComfyUI writes itself; other formats are refused at submission.
AUDIO_SAVERS: dict[str, tuple[str, dict[str, str]]] = {
    "flac": ("SaveAudio", {}),
    "mp3": ("SaveAudioMP3", {"quality": "V0"}),
    "opus": ("SaveAudioOpus", {"quality": "128k"}),
}


class OutputError(Exception):
    """The prompt succeeded but its files are not usable (missing, empty, elsewhere)."""


@dataclass(frozen=True)
class UrlInput:
    node_id: str
    class_type: str
    input: str
    url: str  # the URL, or the object key where ``stored``
    stored: bool = False

    @property
    def kind(self) -> str:
        return LOADER_KIND[self.class_type]


def _safe_prefix(prefix: str) -> str:
    """The node's own prefix, kept below the job's folder (no absolute path, no ``..``)."""
    parts = [p for p in PurePosixPath(prefix.replace("\\", "/")).parts if p not in ("/", "..")]
    return "/".join(parts) or "ComfyUI"


def prefix_outputs(graph: dict[str, dict[str, Any]], job_id: str) -> dict[str, dict[str, Any]]:
    """A copy of ``graph`` whose every ``filename_prefix`` starts with ``<job_id>/``."""
    result = copy.deepcopy(graph)
    for node in result.values():
        inputs = node.get("inputs") or {}
        prefix = inputs.get("filename_prefix")
        if isinstance(prefix, str):
            inputs["filename_prefix"] = f"{job_id}/{_safe_prefix(prefix)}"
    return result


def save_audio_as(graph: dict[str, dict[str, Any]], response_format: str) -> None:
    """Make every audio save node of ``graph`` write ``response_format`` (flac, mp3, opus)."""
    class_type, extra = AUDIO_SAVERS[response_format]
    savers = {name for name, _ in AUDIO_SAVERS.values()}
    for node in graph.values():
        if node.get("class_type") in savers:
            inputs = {k: v for k, v in node["inputs"].items() if k != "quality"}
            node["class_type"], node["inputs"] = class_type, {**inputs, **extra}


def url_inputs(graph: dict[str, dict[str, Any]]) -> list[UrlInput]:
    found = []
    for node_id, node in graph.items():
        name = URL_LOADERS.get(str(node.get("class_type")))
        value = (node.get("inputs") or {}).get(name) if name else None
        if isinstance(value, str) and value.lower().startswith(("http://", "https://")):
            found.append(UrlInput(node_id, str(node["class_type"]), str(name), value))
    return found


def stored_inputs(graph: dict[str, dict[str, Any]]) -> list[UrlInput]:
    """Loader inputs naming a stored object by its key (a template's input files: what is
    not a URL is a key, never a file of ComfyUI's input folder)."""
    found = []
    for node_id, node in graph.items():
        name = URL_LOADERS.get(str(node.get("class_type")))
        value = (node.get("inputs") or {}).get(name) if name else None
        if isinstance(value, str) and not value.lower().startswith(("http://", "https://")):
            found.append(UrlInput(node_id, str(node["class_type"]), str(name), value, stored=True))
    return found


def output_files(
    outputs: dict[str, dict[str, Any]], output_root: Path, job_dir: Path
) -> list[Path]:
    """The files a prompt's history lists as outputs (``type: output``; previews are temp
    files and skipped), each checked: inside ``job_dir``, present, not empty."""
    files: list[Path] = []
    job_dir = job_dir.resolve()
    for node_id, node_outputs in outputs.items():
        for items in node_outputs.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict) or "filename" not in item:
                    continue
                if item.get("type", "output") != "output":
                    continue
                path = output_root / str(item.get("subfolder") or "") / str(item["filename"])
                path = path.resolve()
                if job_dir not in path.parents:
                    raise OutputError(
                        f"node {node_id} wrote {item['filename']!r} outside the job's folder "
                        "(a save node whose prefix the bridge does not know)"
                    )
                if not path.is_file():
                    raise OutputError(f"node {node_id}'s output {path.name} is not on disk")
                if path.stat().st_size == 0:
                    raise OutputError(f"node {node_id}'s output {path.name} is empty")
                if path not in files:
                    files.append(path)
    return files
