"""Typed templates: an API-format graph plus a declarative map from typed params to its inputs.

A template is data (``builtin_templates/<name>.yaml`` in this package, or the folder
COMFYUI_TEMPLATES_DIR names)::

    name: sdxl                      # the file's stem; what `template` in a job names
    type: image                     # the job type it serves: image | video | tts
    title: SDXL / Illustrious checkpoint, text to image
    rank: 20                        # the default template of its type is the available one
                                    # with the highest rank
    params:                         # typed param -> where it goes
      prompt:   {to: 6.text, required: true}
      width:    {to: 5.width, default: 1024}
      steps:    {to: [high.steps, low.steps], default: 20}     # several inputs
      split:    {to: [high.end_at_step, low.start_at_step], default: "= steps // 2"}
      seed:     {to: 3.seed}        # no default: a random seed per job
      image:    {load: LoadImage, to: 55.start_image}           # an input file: a LoadImage
                                                               # node is added and linked
      control_video:                                           # a loader's other inputs:
        {load: VHS_LoadVideo, to: 49.control_video,            # values or expressions
         loader_inputs: {frame_load_cap: "= frames", ...}}
      loras:    {lora_chain: {model: [4, 0], clip: [4, 1]}}     # LoraLoader nodes inserted
    graph: {...}                    # ComfyUI's API format: node id -> class_type, inputs

A param's ``default`` is a value, or ``"= <expression>"`` over the other params (integer
arithmetic only). A param naming a model file may instead list ``prefer: [file, ...]``: its
default is the first of them this ComfyUI has (and with ``any_file: true``, else any file of
its folder), which is how one template follows the variant provisioning chose
(QWEN_EDIT_MODEL, VIBEVOICE_MODEL) or a checkpoint a user added. Params the template does
not name are refused (a 400 at the gateway).
``check`` validates a template against ComfyUI's own node catalogue (``/object_info``):
every class type exists, every required input is given, every literal value is one ComfyUI
accepts (a COMBO value is also how a missing model file shows: ComfyUI lists the files it
has). The result, published by the worker, is what ``GET /v1/templates`` answers.
"""

from __future__ import annotations

import ast
import copy
import operator
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from genstack.core.contracts.comfyui import ImageParams, VibeVoiceParams, VideoParams
from genstack.core.contracts.comfyui_templates import PublishedTemplate, TemplateParam
from genstack.core.jobs import JobType

Graph = dict[str, dict[str, Any]]
Ref = tuple[str, int]  # a node's output: (node id, slot)
# Loader class added for an input-file param -> the input naming its file.
LOADER_INPUT = {
    "LoadImage": "image",
    "LoadImageMask": "image",
    "LoadAudio": "audio",
    "VHS_LoadVideo": "video",  # frames as IMAGE (core LoadVideo gives a VIDEO)
}

# Loader inputs that name a model file, by the models folder ComfyUI lists them from: a
# missing file in them is "model not provisioned", not "bad value".
MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("UnetLoaderGGUF", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("CLIPLoaderGGUF", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("TurboWanModelLoader", "model_name"): "diffusion_models",
    ("TurboWanVAELoader", "vae_name"): "vae",
    ("VibeVoiceSingleSpeakerNode", "model"): "vibevoice",
    ("VibeVoiceMultipleSpeakersNode", "model"): "vibevoice",
}
SEED_MAX = 2**32 - 1  # what every seed input in the templates accepts (VibeVoice's limit)


class TemplateError(ValueError):
    """A template file that is not well formed (a bug in the template, found at load)."""


class ParamsError(ValueError):
    """Params a template cannot take; ``param`` names the offending one."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Target:
    node: str
    input: str

    @classmethod
    def parse(cls, text: object) -> Target:
        node, _, name = str(text).partition(".")
        if not node or not name:
            raise TemplateError(f"target {text!r} is not <node>.<input>")
        return cls(node, name)

    def __str__(self) -> str:
        return f"{self.node}.{self.input}"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    targets: tuple[Target, ...] = ()
    default: Any = None
    required: bool = False
    prefer: tuple[str, ...] = ()  # model files, best first: the default is the first present
    any_file: bool = False  # with none of `prefer` present, any file of the folder will do
    load: str | None = None  # the loader class added for an input file (LoadImage, ...)
    loader_inputs: dict[str, Any] = field(default_factory=dict)  # its other inputs
    lora_chain: tuple[Ref, Ref | None] | None = None

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any]) -> ParamSpec:
        unknown = set(raw) - {
            "to",
            "default",
            "required",
            "prefer",
            "any_file",
            "load",
            "loader_inputs",
            "lora_chain",
        }
        if unknown:
            raise TemplateError(f"param {name}: unknown keys {sorted(unknown)}")
        to = raw.get("to", [])
        targets = tuple(Target.parse(t) for t in (to if isinstance(to, list) else [to]))
        chain = None
        if "lora_chain" in raw:
            spec = raw["lora_chain"]
            clip = spec.get("clip")
            chain = (_ref(spec["model"]), _ref(clip) if clip else None)
        if not targets and chain is None:
            raise TemplateError(f"param {name}: needs `to` or `lora_chain`")
        if raw.get("load") is not None and raw["load"] not in LOADER_INPUT:
            raise TemplateError(f"param {name}: cannot load with {raw['load']!r}")
        if raw.get("loader_inputs") and raw.get("load") is None:
            raise TemplateError(f"param {name}: `loader_inputs` without `load`")
        return cls(
            name,
            targets,
            default=raw.get("default"),
            required=bool(raw.get("required", False)),
            prefer=tuple(str(f) for f in raw.get("prefer") or ()),
            any_file=bool(raw.get("any_file", False)),
            load=raw.get("load"),
            loader_inputs=dict(raw.get("loader_inputs") or {}),
            lora_chain=chain,
        )


def _ref(value: Any) -> Ref:
    """A node output as the YAML writes it: ``[node, slot]``."""
    return (str(value[0]), int(value[1]))


@dataclass(frozen=True)
class Template:
    name: str
    type: JobType
    title: str
    rank: int
    params: dict[str, ParamSpec]
    graph: Graph
    notes: str = ""
    source: str = ""

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any]) -> Template:
        if raw.get("name", name) != name:
            raise TemplateError(f"{name}: `name` {raw.get('name')!r} is not the file's name")
        graph = raw.get("graph")
        if not isinstance(graph, dict) or not graph:
            raise TemplateError(f"{name}: `graph` is empty")
        graph = {str(k): v for k, v in graph.items()}
        params = {p: ParamSpec.parse(p, spec) for p, spec in (raw.get("params") or {}).items()}
        template = cls(
            name=name,
            type=JobType(raw["type"]),
            title=str(raw.get("title", name)),
            rank=int(raw.get("rank", 0)),
            params=params,
            graph=graph,
            notes=str(raw.get("notes", "")).strip(),
            source=str(raw.get("source", "")).strip(),
        )
        template._check_targets()
        return template

    def _check_targets(self) -> None:
        for spec in self.params.values():
            for target in spec.targets:
                if target.node not in self.graph:
                    raise TemplateError(f"{self.name}: param {spec.name} -> unknown node {target}")
            if spec.lora_chain:
                for ref in spec.lora_chain:
                    if ref is not None and ref[0] not in self.graph:
                        raise TemplateError(f"{self.name}: lora_chain from unknown node {ref}")

    def defaults(self) -> dict[str, Any]:
        """Each param's default: literal values, the expression as written, the first
        preferred file."""
        found = {n: s.default for n, s in self.params.items() if s.default is not None}
        return found | {
            n: s.prefer[0] for n, s in self.params.items() if s.prefer and n not in found
        }

    def bind(
        self,
        params: Mapping[str, Any],
        *,
        defaults: Mapping[str, Any] | None = None,
        rng: Callable[[int, int], int] | None = None,
    ) -> Graph:
        """The graph with ``params`` (and the defaults of those not given: ``defaults``, the
        ones a check found for this ComfyUI, over the template's) in place. Raises
        ParamsError for a param this template does not take or a missing required one."""
        for name in params:
            if name not in self.params:
                raise ParamsError(name, f"template {self.name!r} does not take {name!r}")
        found = {k: v for k, v in (defaults or {}).items() if not _is_expression(v)}
        given = {k: v for k, v in found.items() if v is not None} | {
            k: v for k, v in params.items() if v is not None
        }
        values = self._values(given, rng or random.randint)
        graph = copy.deepcopy(self.graph)
        for name, spec in self.params.items():
            value = values.get(name)
            if value is None:
                continue
            if spec.lora_chain is not None:
                _insert_loras(graph, spec.lora_chain, value)
            elif spec.load is not None:
                _add_loaders(graph, name, spec, value, values)
            else:
                for target in spec.targets:
                    graph[target.node]["inputs"][target.input] = value
        return graph

    def _values(self, params: Mapping[str, Any], rng: Callable[[int, int], int]) -> dict[str, Any]:
        values = {k: v for k, v in params.items() if v is not None}
        for name, spec in self.params.items():
            if name in values:
                continue
            if _is_expression(spec.default):
                continue  # after every literal, below
            if spec.default is not None:
                values[name] = spec.default
            elif spec.prefer:
                values[name] = spec.prefer[0]
            elif name == "seed":
                values[name] = rng(0, SEED_MAX)
            elif spec.required:
                raise ParamsError(name, f"template {self.name!r} needs {name!r}")
        for name, spec in self.params.items():
            if name not in values and _is_expression(spec.default):
                values[name] = evaluate(str(spec.default)[1:], values)
        return values


def _is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith("=")


def load_node_id(param: str, index: int = 0) -> str:
    """The id of the loader node ``bind`` adds for an input-file param (the ``index``-th of
    a list)."""
    return f"{param}_load" if index == 0 else f"{param}_load_{index}"


def _add_loaders(
    graph: Graph, name: str, spec: ParamSpec, value: Any, values: Mapping[str, Any]
) -> None:
    """One loader node per file; a single file feeds every target, a list of files feeds
    the targets in order (VibeVoice's speaker1_voice ... speaker4_voice)."""
    files = value if isinstance(value, list) else [value]
    if len(files) > len(spec.targets) and isinstance(value, list):
        raise ParamsError(name, f"{name!r} takes at most {len(spec.targets)} files")
    others = {
        key: evaluate(v[1:], values) if _is_expression(v) else v
        for key, v in spec.loader_inputs.items()
    }
    for index, file in enumerate(files):
        node_id = load_node_id(name, index)
        inputs = {LOADER_INPUT[str(spec.load)]: file, **others}
        graph[node_id] = {"class_type": spec.load, "inputs": inputs}
        targets = spec.targets[index : index + 1] if isinstance(value, list) else spec.targets
        for target in targets:
            graph[target.node]["inputs"][target.input] = [node_id, 0]


def _insert_loras(
    graph: Graph, chain: tuple[Ref, Ref | None], loras: Iterable[Mapping[str, Any]]
) -> None:
    """One LoraLoader per lora (LoraLoaderModelOnly where the chain has no clip) after the
    model and clip outputs, in order; their consumers then take the end of the chain."""
    first_model = [chain[0][0], chain[0][1]]
    first_clip = [chain[1][0], chain[1][1]] if chain[1] else None
    model, clip = first_model, first_clip
    added: list[str] = []
    for index, lora in enumerate(loras):
        node_id = f"lora_{index}"
        strength = float(lora.get("strength", 1.0))
        inputs: dict[str, Any] = {
            "model": model,
            "lora_name": lora["name"],
            "strength_model": strength,
        }
        if clip is None:
            graph[node_id] = {"class_type": "LoraLoaderModelOnly", "inputs": inputs}
        else:
            inputs |= {"clip": clip, "strength_clip": float(lora.get("strength_clip", strength))}
            graph[node_id] = {"class_type": "LoraLoader", "inputs": inputs}
            clip = [node_id, 1]
        model = [node_id, 0]
        added.append(node_id)
    for node_id, node in graph.items():
        if node_id in added:
            continue
        for key, value in node["inputs"].items():
            if value == first_model:
                node["inputs"][key] = model
            elif first_clip is not None and value == first_clip:
                node["inputs"][key] = clip


_OPERATORS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def evaluate(expression: str, names: Mapping[str, Any]) -> int:
    """Integer arithmetic over the params (``steps // 2``, ``frames * 2 - 1``): + - * // %,
    names and integer literals, nothing else."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return int(_OPERATORS[type(node.op)](walk(node.left), walk(node.right)))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and isinstance(names.get(node.id), int | float):
            return int(names[node.id])
        raise TemplateError(f"cannot evaluate {ast.dump(node)} in {expression!r}")

    return walk(ast.parse(expression.strip(), mode="eval"))


# -- loading ------------------------------------------------------------------------------


def load_template(path: Path) -> Template:
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise TemplateError(f"{path}: not a mapping")
    return Template.parse(path.stem, raw)


def load_templates(folder: Path | None = None) -> dict[str, Template]:
    """Every template of ``folder`` (the package's own by default), by name."""
    if folder is None:
        root = resources.files("genstack.comfyui") / "builtin_templates"
        paths = [Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")]
    else:
        paths = list(folder.glob("*.yaml"))
    return {t.name: t for t in (load_template(p) for p in sorted(paths))}


# -- checking against ComfyUI's catalogue ------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why a template cannot run here: a node missing, an input ComfyUI would refuse, or a
    model file not provisioned (``folder``/``file`` set)."""

    message: str
    folder: str | None = None
    file: str | None = None


@dataclass
class Availability:
    template: Template
    problems: list[Problem] = field(default_factory=list)
    choices: dict[str, list[str]] = field(default_factory=dict)  # param -> files it may name
    defaults: dict[str, Any] = field(default_factory=dict)  # the defaults on this ComfyUI

    @property
    def available(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str | None:
        return "; ".join(p.message for p in self.problems) or None


def _spec(object_info: Mapping[str, Any], class_type: str, name: str) -> Any:
    info = object_info.get(class_type, {}).get("input", {})
    for group in ("required", "optional"):
        if name in (info.get(group) or {}):
            return info[group][name]
    return None


def _combo(spec: Any) -> list[Any] | None:
    """The allowed values of a COMBO input: ``[[...], {...}]`` or the newer
    ``["COMBO", {"options": [...]}]``."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None


def check_graph(
    graph: Graph, object_info: Mapping[str, Any], *, unchecked: set[str] | None = None
) -> list[Problem]:
    """What ComfyUI would refuse in ``graph``: unknown class types, missing required inputs,
    links to missing nodes, values outside a COMBO's list or an INT/FLOAT's range (except in
    the ``unchecked`` nodes, whose values are not known yet)."""
    problems: list[Problem] = []
    for node_id, node in graph.items():
        class_type = node["class_type"]
        where = f"node {node_id} ({class_type})"
        if class_type not in object_info:
            problems.append(
                Problem(f"{where}: ComfyUI has no node {class_type} (custom node missing?)")
            )
            continue
        inputs = node.get("inputs", {})
        required = object_info[class_type].get("input", {}).get("required") or {}
        for name in required:
            if name not in inputs:
                problems.append(Problem(f"{where}: input {name!r} is missing"))
        for name, value in inputs.items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                if str(value[0]) not in graph:
                    problems.append(
                        Problem(f"{where}: input {name!r} links to missing node {value[0]}")
                    )
                continue
            if node_id not in (unchecked or set()):
                spec = _spec(object_info, class_type, name)
                problems.extend(_check_value(where, class_type, name, value, spec))
    return problems


def _check_value(where: str, class_type: str, name: str, value: Any, spec: Any) -> list[Problem]:
    options = _combo(spec)
    if options is not None:
        if value in options:
            return []
        folder = MODEL_INPUTS.get((class_type, name))
        if folder is not None:
            return [Problem(f"model file {folder}/{value} is not present", folder, str(value))]
        shown = ", ".join(map(str, options[:12]))
        return [Problem(f"{where}: input {name!r}: {value!r} is not one of {shown}")]
    if isinstance(spec, list) and spec and spec[0] in ("INT", "FLOAT") and len(spec) > 1:
        limits = spec[1] if isinstance(spec[1], dict) else {}
        if isinstance(value, str):  # ComfyUI converts with int()/float(): a number's text only
            try:
                value = float(value)
            except ValueError:
                return [Problem(f"{where}: input {name!r}: {value!r} is not a number")]
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = limits.get("min"), limits.get("max")
            if low is not None and value < low:
                return [Problem(f"{where}: input {name!r}: {value} is below {low}")]
            if high is not None and value > high:
                return [Problem(f"{where}: input {name!r}: {value} is above {high}")]
    return []


def check(template: Template, object_info: Mapping[str, Any]) -> Availability:
    """Whether ``template`` runs on this ComfyUI with its defaults (required params given a
    placeholder, input files not checked: they are the job's), the files each file-naming
    param may choose from, and the defaults on this ComfyUI (the preferred file present)."""
    result = Availability(template, defaults=template.defaults())
    for name, spec in template.params.items():
        for target in spec.targets:
            class_type = template.graph[target.node]["class_type"]
            options = _combo(_spec(object_info, class_type, target.input))
            if (class_type, target.input) in MODEL_INPUTS and options is not None:
                result.choices[name] = [str(o) for o in options]
        if spec.lora_chain is not None:
            options = _combo(_spec(object_info, "LoraLoader", "lora_name"))
            result.choices[name] = [str(o) for o in options or []]
        if spec.prefer:
            present = result.choices.get(name, [])
            found = [f for f in spec.prefer if f in present]
            if found:
                result.defaults[name] = found[0]
            elif spec.any_file and present:
                result.defaults[name] = present[0]
    placeholders: dict[str, Any] = {}
    for name, spec in template.params.items():
        if spec.required and spec.default is None and not spec.prefer:
            placeholders[name] = "placeholder" if spec.load is None else "input.png"
    graph = template.bind(placeholders, defaults=result.defaults, rng=lambda low, high: low)
    loaded = {
        load_node_id(n, i)
        for n, s in template.params.items()
        if s.load is not None
        for i in range(len(s.targets))
    }
    # A loader of the graph itself whose file a param sets: the job's file, not checkable.
    loaded |= {
        target.node
        for s in template.params.values()
        if s.load is None
        for target in s.targets
        if LOADER_INPUT.get(template.graph[target.node]["class_type"]) == target.input
    }
    problems = check_graph(graph, object_info, unchecked=loaded)
    result.problems = [_explain_preferred(p, template) for p in problems]
    return result


def _explain_preferred(problem: Problem, template: Template) -> Problem:
    """A missing file that was only the first of several preferred ones: say so."""
    for spec in template.params.values():
        if problem.file is not None and problem.file in spec.prefer and len(spec.prefer) > 1:
            files = ", ".join(spec.prefer)
            message = f"none of the model files {files} is in {problem.folder}/"
            return Problem(message, problem.folder, problem.file)
    return problem


# -- what the worker publishes ------------------------------------------------------------

PARAMS_MODELS: dict[JobType, type[BaseModel]] = {
    JobType.IMAGE: ImageParams,
    JobType.VIDEO: VideoParams,
    JobType.TTS: VibeVoiceParams,
}


def _plain(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A field's JSON schema without pydantic's ``anyOf [..., null]`` of an optional."""
    plain = {k: v for k, v in schema.items() if k not in ("anyOf", "default", "title")}
    for branch in schema.get("anyOf", []):
        if branch.get("type") != "null":
            plain = {**branch, **plain}
            break
    return plain


def _narrow(schema: dict[str, Any], spec: Any) -> None:
    """Narrow a param's schema by ComfyUI's input spec (``["INT", {"min", "max", "step"}]``)."""
    if not (isinstance(spec, list) and len(spec) > 1 and spec[0] in ("INT", "FLOAT")):
        return
    limits = spec[1] if isinstance(spec[1], dict) else {}
    low, high, step = limits.get("min"), limits.get("max"), limits.get("step")
    if low is not None:
        schema["minimum"] = max(low, schema.get("minimum", low))
    if high is not None:
        schema["maximum"] = min(high, schema.get("maximum", high))
    if spec[0] == "INT" and isinstance(step, int) and step > 1:
        schema["x-step"] = {"from": int(low or 0), "step": step}


def published(result: Availability, object_info: Mapping[str, Any]) -> PublishedTemplate:
    """The template as ``GET /v1/templates`` shows it and the gateway checks jobs against."""
    template = result.template
    base = PARAMS_MODELS[template.type].model_json_schema()
    fields = base.get("properties", {})
    params: dict[str, TemplateParam] = {}
    for name, spec in template.params.items():
        field_name = "input" if name == "text" and "text" not in fields else name
        schema = _plain(fields.get(field_name, {}))
        schema.pop("$ref", None)
        if spec.targets and spec.load is None:
            target = spec.targets[0]
            info = _spec(object_info, template.graph[target.node]["class_type"], target.input)
            options = result.choices.get(name, _combo(info))
            if options is not None:
                schema["enum"] = list(options)
            _narrow(schema, info)
        if spec.lora_chain is not None:
            item = {
                "type": "object",
                "properties": {"name": {"enum": result.choices.get(name, [])}},
            }
            schema = {"type": "array", "items": item, "maxItems": schema.get("maxItems", 8)}
        default = result.defaults.get(name)
        if isinstance(default, str) and default.startswith("="):
            schema["x-default-expression"] = default[1:].strip()
            default = None
        params[name] = TemplateParam(schema=schema, required=spec.required, default=default)
    return PublishedTemplate(
        name=template.name,
        type=template.type,
        title=template.title,
        rank=template.rank,
        available=result.available,
        reason=result.reason,
        params=params,
        notes=template.notes,
    )
