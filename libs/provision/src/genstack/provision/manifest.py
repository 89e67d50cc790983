"""The model manifest: a YAML file that says which files a service needs, from where, when.

Format (``schema: 1``)::

    schema: 1
    name: comfyui
    description: ComfyUI models of the seed system
    variables:                      # every environment variable the conditions read
      ENABLE_CONTROLNET: {type: bool, default: "true", doc: Download ControlNet FP16 models}
      CONTROLNET_MODELS:
        type: list
        default: canny,depth,openpose
        choices: [canny, depth, openpose, lineart, normal]
        doc: Comma-separated ControlNet models
    models:
      - id: controlnet-canny
        group: ControlNet canny (SD 1.5)
        source: hf://comfyanonymous/ControlNet-v1-1_fp16_safetensors/control_v11p_sd15_canny_fp16.safetensors@main
        dest: controlnet/control_v11p_sd15_canny_fp16.safetensors
        size: 722596960             # exact bytes, checked; or approx_size: "723 MB" to plan with
        sha256: null                # unknown: taken from the hub at download time and recorded
        when: ENABLE_CONTROLNET and 'canny' in CONTROLNET_MODELS
        vram_gb: 2

Sources: ``hf://<owner>/<repo>/<path>@<revision>`` (a file; without ``<path>`` the whole
repository, filtered by ``include:`` globs, into the directory ``dest``),
``civitai://<model-version-id>``, or an ``https://`` (``http://``) URL.

Destinations are relative paths under the models root; one that is absolute, holds ``..``
or otherwise leaves the root is rejected. Entries with ``for_each: VAR`` are templates,
expanded once per item of the list variable ``VAR`` (``{item}`` in id, source and dest).

:func:`load_manifest` validates all of it and raises :class:`ManifestError` naming the file,
the entry and the field for every problem.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genstack.provision.conditions import Condition, ConditionError

__all__ = [
    "CATALOG_NAMES",
    "CivitaiSource",
    "HfSource",
    "Manifest",
    "ManifestError",
    "ManifestRoot",
    "ModelEntry",
    "Source",
    "UrlSource",
    "Variable",
    "is_safe_relative",
    "load_catalog",
    "load_manifest",
    "parse_size",
    "parse_source",
]

CATALOG_NAMES = ("comfyui", "xtts", "chatterbox")
STATE_DIR = ".genstack"  # under the models root: ledger and locks; no entry may write there

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._{}-]{0,127}$")
_HF_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class ManifestError(ValueError):
    """A manifest is not valid; the message lists every problem found, one per line."""

    def __init__(self, where: str, problems: Sequence[str]) -> None:
        self.where = where
        self.problems = list(problems)
        super().__init__(f"invalid manifest {where}:\n" + "\n".join(f"  - {p}" for p in problems))


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class HfSource:
    """A file (or, with ``path`` empty, a whole repository) on the Hugging Face Hub."""

    repo: str
    path: str
    revision: str

    @property
    def is_snapshot(self) -> bool:
        return not self.path

    def __str__(self) -> str:
        tail = f"/{self.path}" if self.path else ""
        return f"hf://{self.repo}{tail}@{self.revision}"


@dataclass(frozen=True)
class CivitaiSource:
    """A model version on CivitAI (its primary file)."""

    version_id: str

    is_snapshot = False

    def __str__(self) -> str:
        return f"civitai://{self.version_id}"


@dataclass(frozen=True)
class UrlSource:
    url: str

    is_snapshot = False

    def __str__(self) -> str:
        return self.url


Source = HfSource | CivitaiSource | UrlSource


def parse_source(text: str) -> Source:
    """Parse a source URI; raise ValueError saying what is wrong with it."""
    if text.startswith("hf://"):
        body, at, revision = text[len("hf://") :].rpartition("@")
        if not at:
            body, revision = revision, "main"
        if not revision or any(c in revision for c in " \\") or ".." in revision:
            raise ValueError(f"bad revision {revision!r} in {text!r}")
        parts = body.split("/")
        if len(parts) < 2 or not all(_HF_REPO_PART.match(p) for p in parts[:2]):
            raise ValueError(
                f"{text!r} is not hf://<owner>/<repo>[/<path>][@<revision>] "
                "(owner and repo: letters, digits, '.', '_', '-')"
            )
        path = "/".join(parts[2:])
        if path and not is_safe_relative(path):
            raise ValueError(f"bad file path {path!r} in {text!r}")
        return HfSource(repo="/".join(parts[:2]), path=path, revision=revision)
    if text.startswith("civitai://"):
        version = text[len("civitai://") :]
        if not version.isdigit():
            raise ValueError(f"{text!r} is not civitai://<model-version-id> (digits)")
        return CivitaiSource(version_id=version)
    split = urlsplit(text)
    if split.scheme in ("https", "http") and split.hostname:
        if split.username or split.password:
            raise ValueError("credentials do not belong in a source URL; use HF_TOKEN etc.")
        return UrlSource(url=text)
    raise ValueError(
        f"{text!r} is not a source: use hf://<owner>/<repo>/<path>@<revision>, "
        "civitai://<model-version-id> or an https:// URL"
    )


def parse_size(text: str) -> int:
    """``"14.3 GB"`` -> bytes (decimal units; ``GiB`` etc. are binary)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size like '723 MB' or '14.3 GB'")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "B").lower()])


def is_safe_relative(path: str) -> bool:
    """A normalised relative POSIX path that stays inside its folder."""
    if not path or path.startswith("/") or "\\" in path or any(ord(c) < 32 for c in path):
        return False
    stripped = path.rstrip("/")
    normal = posixpath.normpath(stripped)
    return normal == stripped and normal != "." and not normal.startswith("../") and normal != ".."


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    """An environment variable that conditions read, with its type and default."""

    type: Literal["bool", "choice", "list", "string"]
    default: str = ""
    doc: str = Field(min_length=1, description="What it does; shown in docs and --dry-run.")
    choices: tuple[str, ...] | None = None
    auto: bool = Field(
        default=False,
        description="'auto' is a valid value, resolved from the detected GPU "
        "(genstack.provision.gpu).",
    )
    item_pattern: str | None = Field(
        default=None, description="Regex every list item must match (needed for for_each)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Variable:
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice variable needs 'choices'")
        if self.item_pattern is not None:
            re.compile(self.item_pattern)
        return self

    def parse(self, name: str, raw: str | None) -> bool | str | tuple[str, ...]:
        """The typed value of ``raw`` (None: the default); ValueError on a bad value."""
        text = (self.default if raw is None else raw).strip()
        if self.type == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"{name}={text!r} is not a boolean (true/false)")
        if self.type == "list":
            items = tuple(i.strip() for i in text.split(",") if i.strip())
            for item in items:
                if self.choices and item.lower() not in {c.lower() for c in self.choices}:
                    raise ValueError(f"{name}: {item!r} is not one of {', '.join(self.choices)}")
                if self.item_pattern and not re.fullmatch(self.item_pattern, item):
                    raise ValueError(f"{name}: {item!r} does not match {self.item_pattern}")
            return items
        if self.type == "choice":
            allowed = {c.lower(): c for c in self.choices or ()}
            if self.auto:
                allowed["auto"] = "auto"
            if text.lower() not in allowed:
                raise ValueError(f"{name}={text!r} is not one of {', '.join(allowed.values())}")
            return allowed[text.lower()]
        return text


class ModelEntry(_Strict):
    """One file (or, for an ``hf://`` repository source, one directory) to provision."""

    id: str = Field(description="Unique in the manifest: lowercase letters, digits, . _ -")
    group: str | None = Field(default=None, description="The model this file belongs to.")
    source: str
    dest: str = Field(description="Path under the models root; ends with / for a repository.")
    size: int | None = Field(default=None, ge=0, description="Exact size in bytes (checked).")
    approx_size: str | None = Field(default=None, description="Size estimate to plan with.")
    sha256: str | None = None
    when: str | None = Field(default=None, description="Condition; absent: always.")
    vram_gb: float = Field(default=0.0, ge=0, description="VRAM to run the model it is for.")
    include: tuple[str, ...] | None = Field(
        default=None, description="Globs of repository files to take (repository sources)."
    )
    for_each: str | None = Field(default=None, description="List variable to expand over.")
    notes: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be lowercase letters, digits, '.', '_', '-' (max 128)")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        parse_source(value.replace("{item}", "0"))
        return value

    @field_validator("dest")
    @classmethod
    def _dest(cls, value: str) -> str:
        if not is_safe_relative(value.replace("{item}", "x")):
            raise ValueError(
                f"{value!r} escapes the models root (must be a relative path without '..', "
                "not absolute, no backslashes)"
            )
        if value.split("/")[0] == STATE_DIR:
            raise ValueError(f"{STATE_DIR}/ is reserved for provisioning state")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not _HEX64.match(value):
            raise ValueError("must be 64 hex digits")
        return value.lower() if value else None

    @field_validator("approx_size")
    @classmethod
    def _approx(cls, value: str | None) -> str | None:
        if value is not None:
            parse_size(value)
        return value

    @field_validator("when")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Condition.parse(value)
            except ConditionError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        source = parse_source(self.source.replace("{item}", "0"))
        directory = self.dest.endswith("/")
        if source.is_snapshot != directory:
            raise ValueError(
                "a repository source (hf://owner/repo@rev, no file path) needs a dest ending "
                "in '/', and a file source a dest naming the file"
            )
        if self.include is not None and not source.is_snapshot:
            raise ValueError("'include' only applies to repository sources")
        if source.is_snapshot and self.sha256:
            raise ValueError("a repository source has no single sha256")
        if self.size is None and self.approx_size is None:
            raise ValueError("give 'size' (exact bytes) or 'approx_size' (e.g. '14.3 GB')")
        placeholder = "{item}" in self.id + self.source + self.dest
        if placeholder != (self.for_each is not None):
            raise ValueError("'{item}' placeholders and 'for_each' go together")
        return self

    @property
    def condition(self) -> Condition | None:
        return Condition.parse(self.when) if self.when else None

    @property
    def planned_size(self) -> int:
        """Exact size when known, else the estimate."""
        if self.size is not None:
            return self.size
        assert self.approx_size is not None
        return parse_size(self.approx_size)

    def parsed_source(self) -> Source:
        return parse_source(self.source)

    def wants(self, path: str) -> bool:
        """Whether repository file ``path`` is selected by ``include`` (all when absent)."""
        return self.include is None or any(fnmatch.fnmatchcase(path, g) for g in self.include)


class ManifestRoot(_Strict):
    """Where genstack-provision puts a manifest's files when no --models-dir is given: the
    folder the service that reads them is configured with (its variable, its default)."""

    env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="e.g. XTTS_MODEL_DIR")
    default: str = Field(min_length=1, description="The folder when the variable is unset.")

    def path(self, env: Mapping[str, str]) -> Path:
        return Path(env.get(self.env) or self.default)


class Manifest(_Strict):
    schema_: Literal[1] = Field(alias="schema")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    enabled_by: str | None = Field(
        default=None,
        description="Bool variable that decides whether `genstack-provision --all` includes "
        "this manifest; a service provisioning its own manifest does not read it.",
    )
    root: ManifestRoot | None = Field(
        default=None,
        description="genstack-provision's models root for this manifest; without it, MODELS_DIR.",
    )
    variables: dict[str, Variable] = Field(default_factory=dict)
    models: tuple[ModelEntry, ...]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> Manifest:
        problems: list[str] = []
        for name in self.variables:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
                problems.append(f"variables: {name!r} is not an UPPER_CASE variable name")
        if self.enabled_by is not None and self.enabled_by not in self.variables:
            problems.append(f"enabled_by: {self.enabled_by} is not declared under variables")
        seen_ids: dict[str, int] = {}
        seen_dest: dict[str, ModelEntry] = {}
        for index, entry in enumerate(self.models):
            where = f"models[{index}] (id {entry.id!r})"
            if entry.id in seen_ids:
                problems.append(f"{where} field 'id': duplicate of models[{seen_ids[entry.id]}]")
            seen_ids[entry.id] = index
            other = seen_dest.get(entry.dest)
            if other is not None and other.source != entry.source:
                problems.append(
                    f"{where} field 'dest': {entry.dest} also comes from {other.source} "
                    f"(entry {other.id!r})"
                )
            seen_dest.setdefault(entry.dest, entry)
            condition = entry.condition
            for name in sorted(condition.names if condition else ()):
                if name not in self.variables:
                    problems.append(f"{where} field 'when': {name} is not declared under variables")
            if entry.for_each is not None:
                spec = self.variables.get(entry.for_each)
                if spec is None or spec.type != "list" or spec.item_pattern is None:
                    problems.append(
                        f"{where} field 'for_each': {entry.for_each} must be a declared list "
                        "variable with an item_pattern"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def condition_names(self) -> set[str]:
        names: set[str] = set()
        for entry in self.models:
            condition = entry.condition
            if condition is not None:
                names |= condition.names
            if entry.for_each:
                names.add(entry.for_each)
        if self.enabled_by:
            names.add(self.enabled_by)
        return names


# --------------------------------------------------------------------------- loading


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file (YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(str(path), [f"cannot read it: {exc.strerror}"]) from None
    return parse_manifest(text, where=str(path))


def parse_manifest(text: str, *, where: str = "<manifest>") -> Manifest:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(where, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ManifestError(where, ["the top level must be a mapping (schema, name, models)"])
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(where, _describe(exc, data)) from None


def load_catalog(name: str) -> Manifest:
    """One of the catalogue manifests shipped with genstack.core (see :data:`CATALOG_NAMES`)."""
    if name not in CATALOG_NAMES:
        raise ValueError(f"no catalogue {name!r}; there are: {', '.join(CATALOG_NAMES)}")
    resource = resources.files("genstack.provision").joinpath(f"catalog/{name}.yaml")
    return parse_manifest(resource.read_text(encoding="utf-8"), where=f"catalog/{name}.yaml")


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        loc = list(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        where = "manifest"
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            index = loc[1]
            models = data.get("models")
            entry = models[index] if isinstance(models, list) and index < len(models) else None
            entry_id = entry.get("id") if isinstance(entry, dict) else None
            where = f"models[{index}]" + (f" (id {entry_id!r})" if entry_id else "")
            loc = loc[2:]
        elif loc:
            where = str(loc[0])
            loc = loc[1:]
        field = ".".join(str(p) for p in loc)
        if field:
            problems.append(f"{where} field {field!r}: {message}")
        else:
            # Model-level validators may report several problems, one per line.
            problems.extend(
                line if line.startswith("models[") else f"{where}: {line}"
                for line in message.splitlines()
            )
    return problems
