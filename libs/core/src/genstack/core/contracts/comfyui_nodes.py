"""ComfyUI's node catalogue: what the comfyui workers publish and the gateway checks a
`workflow` job against at submission.

Each worker reads its ComfyUI's ``/object_info`` (every node class with its inputs and
outputs; megabytes with custom nodes) and keeps what the check needs (:class:`NodeClass`:
the required and optional input names, the number of outputs, whether it is an output
node). It writes that as one field of the Redis hash :data:`NODES_KEY` (the field names
its host and ComfyUI), stamped with the Redis server's clock (one clock for every host) and
how long it stays good. The gateway takes the union of the fresh fields: a class is known
if any worker's ComfyUI has it, and an input is required only if every ComfyUI that has the
class requires it. A removed worker's field stops counting once stale; with no fresh field
at all the check is skipped and ComfyUI's own refusal fails the job, as before.

:func:`workflow_problems` checks what ComfyUI checks first when a prompt arrives
(``execution.validate_prompt``), no more: every node's class exists; the graph has an
output node; and, on the nodes an output node depends on (ComfyUI ignores the others),
every required input is there and every link ``[node_id, output_index]`` points at a node
of the graph and an output it has. ComfyUI answers the last two with an opaque
``KeyError`` or ``IndexError``. Values (ranges, choices, types) are ComfyUI's to check:
the worker reports its refusal naming the node and input.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

NODES_KEY = "genstack:comfyui:nodes"
WORKFLOW_PARAM = "params.workflow"
# A published field stays good for this many refresh intervals (one lost refresh is no gap).
STALE_AFTER_REFRESHES = 3

# Problem codes, as the gateway's 400 carries them.
UNKNOWN_NODE = "unknown_node"
MISSING_INPUT = "missing_input"
BAD_LINK = "bad_link"
NO_OUTPUT_NODE = "no_output_node"


class NodeClass(BaseModel):
    """What a submission check needs of one node class of ``/object_info``."""

    model_config = ConfigDict(frozen=True)

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    outputs: int | None = Field(default=None, ge=0, description="None: not known.")
    output_node: bool = False

    @property
    def declared(self) -> frozenset[str]:
        """The inputs ComfyUI reads (and follows links in); any other input is ignored."""
        return frozenset(self.required) | frozenset(self.optional)


class PublishedNodes(BaseModel):
    """One worker's field in :data:`NODES_KEY`."""

    published_at: float = Field(description="Redis server time (seconds) of the publication.")
    stale_after_s: float = Field(gt=0, description="Ignored once older than this.")
    nodes: dict[str, NodeClass]

    def fresh(self, now: float) -> bool:
        return now - self.published_at <= self.stale_after_s

    def to_json(self) -> str:
        """The field's value; defaults left out (a few hundred node classes are stored)."""
        return self.model_dump_json(exclude_defaults=True)


def _names(section: Any) -> tuple[str, ...]:
    return tuple(str(name) for name in section) if isinstance(section, Mapping) else ()


def node_class(info: Mapping[str, Any]) -> NodeClass:
    """The compact form of one ``/object_info`` entry (``input.required`` and
    ``input.optional``, ``output``, ``output_node``); what is missing or malformed is left
    unknown rather than guessed."""
    inputs = info.get("input")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    output = info.get("output")
    return NodeClass(
        required=_names(inputs.get("required")),
        optional=_names(inputs.get("optional")),
        outputs=len(output) if isinstance(output, list | tuple) else None,
        output_node=info.get("output_node") is True,
    )


def node_classes(object_info: Mapping[str, Any]) -> dict[str, NodeClass]:
    """The compact catalogue of ComfyUI's ``/object_info`` answer."""
    return {
        str(name): node_class(info)
        for name, info in object_info.items()
        if isinstance(info, Mapping)
    }


def merge(catalogues: Iterable[Mapping[str, NodeClass]]) -> dict[str, NodeClass]:
    """The union of several ComfyUIs' catalogues: a class any of them has; an input
    required only where every one that has the class requires it; a link checked against
    the most outputs any of them gives the class."""
    merged: dict[str, NodeClass] = {}
    for catalogue in catalogues:
        for name, node in catalogue.items():
            seen = merged.get(name)
            if seen is None:
                merged[name] = node
                continue
            required = tuple(n for n in seen.required if n in node.required)
            declared = [*seen.required, *seen.optional, *node.required, *node.optional]
            outputs = (
                None
                if seen.outputs is None or node.outputs is None
                else max(seen.outputs, node.outputs)
            )
            merged[name] = NodeClass(
                required=required,
                optional=tuple(dict.fromkeys(n for n in declared if n not in required)),
                outputs=outputs,
                output_node=seen.output_node or node.output_node,
            )
    return merged


def fresh_nodes(fields: Iterable[str], now: float) -> dict[str, NodeClass] | None:
    """The merged catalogue of the fresh fields of :data:`NODES_KEY` (JSON of
    :class:`PublishedNodes`) at Redis time ``now``; None when no field is fresh (then
    nothing is checked)."""
    catalogues = []
    for value in fields:
        try:
            published = PublishedNodes.model_validate_json(value)
        except ValidationError as exc:
            log.warning("unreadable ComfyUI node catalogue ignored", extra={"err": str(exc)})
            continue
        if published.fresh(now) and published.nodes:
            catalogues.append(published.nodes)
    return merge(catalogues) if catalogues else None


@dataclass(frozen=True)
class WorkflowProblem:
    """Why ComfyUI would refuse a workflow: a code, where (node id, then ``class_type``
    or ``inputs``, input name) and a sentence naming the node, its class and input."""

    code: str
    where: tuple[str, ...]
    message: str

    @property
    def param(self) -> str:
        """The offending field of the job request, dotted: ``params.workflow.3.inputs.seed``."""
        return ".".join((WORKFLOW_PARAM, *self.where))


Workflow = Mapping[str, Mapping[str, Any]]


def workflow_problems(workflow: Workflow, nodes: Mapping[str, NodeClass]) -> list[WorkflowProblem]:
    """What ComfyUI would refuse in ``workflow`` (API format, already of the right shape:
    :class:`~genstack.core.contracts.comfyui.WorkflowParams`) given its ``nodes``; in the
    order ComfyUI looks: unknown classes, then no output node, then inputs and links, each in
    the graph's order. Empty: nothing ComfyUI refuses at once."""
    unknown = [
        WorkflowProblem(
            UNKNOWN_NODE,
            (node_id, "class_type"),
            f"node {node_id}: class_type {node['class_type']!r} is not a node of this "
            "ComfyUI (a custom node that is not installed, or a misspelt name)",
        )
        for node_id, node in workflow.items()
        if node["class_type"] not in nodes
    ]
    if unknown:
        return unknown  # ComfyUI stops at the first one; nothing else can be checked
    outputs = [
        node_id for node_id, node in workflow.items() if nodes[node["class_type"]].output_node
    ]
    if not outputs:
        return [
            WorkflowProblem(
                NO_OUTPUT_NODE,
                (),
                "the workflow has no output node (SaveImage, PreviewImage, SaveVideo, "
                "SaveAudio, ...): ComfyUI runs nothing without one",
            )
        ]
    used = _used_by(outputs, workflow, nodes)
    problems: list[WorkflowProblem] = []
    for node_id, node in workflow.items():
        if node_id in used:
            problems += _node_problems(node_id, node, workflow, nodes)
    return problems


def _links(node: Mapping[str, Any], declared: frozenset[str]) -> Iterable[tuple[str, Any]]:
    inputs = node.get("inputs") or {}
    return (
        (name, value)
        for name, value in inputs.items()
        if name in declared and isinstance(value, list)
    )


def _used_by(outputs: list[str], workflow: Workflow, nodes: Mapping[str, NodeClass]) -> set[str]:
    """The output nodes and every node they depend on through links (ComfyUI validates and
    runs only those)."""
    used: set[str] = set()
    todo = list(outputs)
    while todo:
        node_id = todo.pop()
        if node_id in used:
            continue
        used.add(node_id)
        node = workflow[node_id]
        for _, value in _links(node, nodes[node["class_type"]].declared):
            if len(value) == 2 and isinstance(value[0], str) and value[0] in workflow:
                todo.append(value[0])
    return used


def _node_problems(
    node_id: str, node: Mapping[str, Any], workflow: Workflow, nodes: Mapping[str, NodeClass]
) -> list[WorkflowProblem]:
    class_type = node["class_type"]
    spec = nodes[class_type]
    inputs = node.get("inputs") or {}
    where = f"node {node_id} ({class_type})"
    problems = [
        WorkflowProblem(
            MISSING_INPUT,
            (node_id, "inputs", name),
            f"{where}: required input {name!r} is missing",
        )
        for name in spec.required
        if name not in inputs
    ]
    for name, value in _links(node, spec.declared):
        reason = _bad_link(value, workflow, nodes)
        if reason is not None:
            problems.append(
                WorkflowProblem(
                    BAD_LINK, (node_id, "inputs", name), f"{where} input {name!r} {reason}"
                )
            )
    return problems


def _bad_link(value: list[Any], workflow: Workflow, nodes: Mapping[str, NodeClass]) -> str | None:
    """Why a link ``[node_id, output_index]`` cannot be followed, or None."""
    if len(value) != 2:
        return f"is {value!r}: a link is [node_id, output_index]"
    source, slot = value
    if not isinstance(source, str):
        return f"links to node {source!r}: node ids are strings ([{str(source)!r}, {slot!r}])"
    if source not in workflow:
        return f"links to node {source!r}, which is not in the workflow"
    class_type = workflow[source]["class_type"]
    count = nodes[class_type].outputs
    if not isinstance(slot, int):
        return f"links to output {slot!r} of node {source}: an output index is a number"
    if count is not None and not -count <= slot < count:
        return (
            f"links to output {slot} of node {source} ({class_type}), which has "
            f"{count} output{'' if count == 1 else 's'}"
        )
    return None
