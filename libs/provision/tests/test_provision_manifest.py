"""The manifest format: schema validation with errors naming entry and field, conditions,
variables."""

from __future__ import annotations

import pytest

from genstack.provision import ManifestError, VariableError, parse_manifest
from genstack.provision.conditions import Condition, ConditionError
from genstack.provision.gpu import resolve_profile
from genstack.provision.manifest import (
    CivitaiSource,
    HfSource,
    UrlSource,
    parse_size,
    parse_source,
)
from genstack.provision.plan import resolve_variables, select_entries

HEADER = """schema: 1
name: t
variables:
  ENABLE_A: {type: bool, default: "true", doc: a}
  MODE: {type: choice, choices: [small, big], default: small, doc: mode}
  LIST: {type: list, choices: [x, y], default: "x", doc: list}
models:
"""


def entry(**fields: str) -> str:
    base = {
        "id": "one",
        "source": "hf://org/repo/file.bin@main",
        "dest": "checkpoints/file.bin",
        "approx_size": "1 GB",
    }
    base.update(fields)
    return "  - " + "\n    ".join(f"{k}: {v}" for k, v in base.items()) + "\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, where="t.yaml")
    assert "invalid manifest t.yaml" in str(info.value)
    return info.value.problems


def test_a_valid_manifest_parses() -> None:
    manifest = parse_manifest(HEADER + entry(when="ENABLE_A and MODE == 'big'"))
    assert manifest.models[0].id == "one"
    assert manifest.condition_names() == {"ENABLE_A", "MODE"}


def test_unknown_field_is_named_with_its_entry() -> None:
    found = problems(HEADER + entry() + entry(id="two", sorce="x"))
    assert found == ["models[1] (id 'two') field 'sorce': unknown field"]


def test_unknown_top_level_field() -> None:
    assert problems(HEADER.replace("name: t", "name: t\nextra: 1") + entry()) == [
        "extra: unknown field"
    ]


@pytest.mark.parametrize(
    "source",
    [
        "ftp://host/file",
        "hf://only-owner",
        "hf://org/re po/file@main",
        "civitai://abc",
        "s3://bucket/key",
        "https://user:pass@host/file",
        "hf://org/repo/../escape@main",
    ],
)
def test_bad_source_uri_is_named(source: str) -> None:
    found = problems(HEADER + entry(source=f"'{source}'"))
    assert len(found) == 1 and found[0].startswith("models[0] (id 'one') field 'source':")


@pytest.mark.parametrize(
    "dest", ["../outside.bin", "/etc/passwd", "a/../../b.bin", "a\\\\b.bin", ".", ".genstack/x"]
)
def test_destination_escaping_the_models_root_is_rejected(dest: str) -> None:
    found = problems(HEADER + entry(dest=f"'{dest}'"))
    assert len(found) == 1 and found[0].startswith("models[0] (id 'one') field 'dest':")


def test_conditions_must_use_declared_variables_and_allowed_syntax() -> None:
    assert problems(HEADER + entry(when="ENABLE_B")) == [
        "models[0] (id 'one') field 'when': ENABLE_B is not declared under variables"
    ]
    found = problems(HEADER + entry(when="__import__('os')"))
    assert "field 'when'" in found[0] and "Call is not allowed" in found[0]
    found = problems(HEADER + entry(when="ENABLE_A.real"))
    assert "Attribute is not allowed" in found[0]


def test_duplicate_ids_and_conflicting_destinations() -> None:
    found = problems(HEADER + entry() + entry(source="hf://org/other/file.bin@main"))
    assert any("field 'id': duplicate of models[0]" in p for p in found)
    assert any("field 'dest': checkpoints/file.bin also comes from" in p for p in found)


def test_every_problem_is_reported_at_once() -> None:
    found = problems(HEADER + entry(dest="'../x'") + entry(id="two", source="nope"))
    assert len(found) == 2


def test_size_sha_and_shape_rules() -> None:
    assert (
        "give 'size'"
        in problems(HEADER + "  - id: a\n    source: hf://o/r/f@main\n    dest: f\n")[0]
    )
    assert "64 hex digits" in problems(HEADER + entry(sha256="abc"))[0]
    assert "needs a dest ending in '/'" in problems(HEADER + entry(source="hf://org/repo@main"))[0]
    assert "only applies to repository sources" in problems(HEADER + entry(include="['*']"))[0]


def test_yaml_and_top_level_errors() -> None:
    assert "not valid YAML" in problems("schema: [1\n")[0]
    assert "top level must be a mapping" in problems("- 1\n")[0]


def test_source_parsing() -> None:
    assert parse_source("hf://a/b/c/d.bin@v1.0") == HfSource("a/b", "c/d.bin", "v1.0")
    assert parse_source("hf://a/b/c.bin") == HfSource("a/b", "c.bin", "main")
    assert parse_source("hf://a/b@refs/pr/1").is_snapshot
    assert parse_source("civitai://123") == CivitaiSource("123")
    assert parse_source("https://x.org/f.bin") == UrlSource("https://x.org/f.bin")
    assert parse_size("14.3 GB") == 14_300_000_000 and parse_size("1 KiB") == 1024


def test_condition_language() -> None:
    values = {"A": True, "B": False, "M": "Large", "L": ("canny", "depth")}
    assert Condition.parse("A and not B").evaluate(values)
    assert Condition.parse("M == 'large'").evaluate(values)  # variants ignore case
    assert Condition.parse("'CANNY' in L and 'lineart' not in L").evaluate(values)
    assert not Condition.parse("B or (A and M != 'Large')").evaluate(values)
    for bad in ("f(x)", "A + B", "[1]", "lambda: 1", "A if B else A", "a_lower"):
        with pytest.raises(ConditionError):
            Condition.parse(bad)


def test_variables_are_typed_and_bad_values_name_the_variable() -> None:
    manifest = parse_manifest(HEADER + entry(when="ENABLE_A and MODE == 'big'"))
    profile = resolve_profile({}, assume_vram_gb=24)
    values = resolve_variables(
        manifest, {"ENABLE_A": "yes", "MODE": "BIG", "LIST": "x, y"}, profile
    )
    assert values == {"ENABLE_A": True, "MODE": "big", "LIST": ("x", "y")}
    assert [e.id for e in select_entries(manifest, values)] == ["one"]
    with pytest.raises(VariableError) as info:
        resolve_variables(manifest, {"ENABLE_A": "maybe", "LIST": "z"}, profile)
    assert "ENABLE_A='maybe' is not a boolean" in str(info.value)
    assert "LIST: 'z' is not one of x, y" in str(info.value)


def test_for_each_expands_list_items_into_safe_paths() -> None:
    manifest = parse_manifest(
        """schema: 1
name: t
variables:
  IDS: {type: list, item_pattern: '^[0-9]+$', doc: ids}
models:
  - id: lora-{item}
    for_each: IDS
    source: civitai://{item}
    dest: loras/civitai_{item}.safetensors
    approx_size: 1 MB
"""
    )
    profile = resolve_profile({}, assume_vram_gb=24)
    values = resolve_variables(manifest, {"IDS": "12, 34"}, profile)
    assert [(e.id, e.dest) for e in select_entries(manifest, values)] == [
        ("lora-12", "loras/civitai_12.safetensors"),
        ("lora-34", "loras/civitai_34.safetensors"),
    ]
    with pytest.raises(VariableError, match="does not match"):
        resolve_variables(manifest, {"IDS": "../../x"}, profile)
