"""The ComfyUI node catalogue check: what ComfyUI 0.3.64 refuses at once (each case below was
tried against it), found at submission, with the field at fault; nothing it accepts."""

from __future__ import annotations

from typing import Any

import pytest

from genstack.core.contracts.comfyui_nodes import (
    BAD_LINK,
    MISSING_INPUT,
    NO_OUTPUT_NODE,
    UNKNOWN_NODE,
    NodeClass,
    PublishedNodes,
    fresh_nodes,
    merge,
    node_classes,
    workflow_problems,
)

# Entries of a real ComfyUI 0.3.64's /object_info, as it answers them.
OBJECT_INFO: dict[str, Any] = {
    "EmptyImage": {
        "input": {
            "required": {
                "width": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "height": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                "batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}],
                "color": ["INT", {"default": 0, "min": 0, "max": 16777215, "step": 1}],
            }
        },
        "input_order": {"required": ["width", "height", "batch_size", "color"]},
        "output": ["IMAGE"],
        "output_is_list": [False],
        "output_name": ["IMAGE"],
        "name": "EmptyImage",
        "python_module": "nodes",
        "category": "image",
        "output_node": False,
    },
    "ImageInvert": {
        "input": {"required": {"image": ["IMAGE"]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE"],
        "name": "ImageInvert",
        "output_node": False,
    },
    "CreateVideo": {
        "input": {
            "required": {"images": ["IMAGE", {}], "fps": ["FLOAT", {"default": 30.0}]},
            "optional": {"audio": ["AUDIO", {}]},
        },
        "input_order": {"required": ["images", "fps"], "optional": ["audio"]},
        "output": ["VIDEO"],
        "name": "CreateVideo",
        "output_node": False,
    },
    "PreviewImage": {
        "input": {
            "required": {"images": ["IMAGE"]},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        },
        "input_order": {"required": ["images"], "hidden": ["prompt", "extra_pnginfo"]},
        "output": [],
        "name": "PreviewImage",
        "output_node": True,
    },
}
NODES = node_classes(OBJECT_INFO)


def graph(**changes: Any) -> dict[str, dict[str, Any]]:
    """EmptyImage -> ImageInvert -> PreviewImage, with ``changes`` (node id -> node)."""
    base: dict[str, dict[str, Any]] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    base.update({key.removeprefix("n"): value for key, value in changes.items()})
    return base


def found(workflow: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return [(p.code, p.param) for p in workflow_problems(workflow, NODES)]


def test_the_compact_form_keeps_inputs_outputs_and_the_output_flag() -> None:
    assert NODES["EmptyImage"] == NodeClass(
        required=("width", "height", "batch_size", "color"), outputs=1
    )
    assert NODES["CreateVideo"].optional == ("audio",)
    assert NODES["PreviewImage"] == NodeClass(required=("images",), outputs=0, output_node=True)
    # Hidden inputs are ComfyUI's own (the prompt, the node id): never the client's to send.
    assert "prompt" not in NODES["PreviewImage"].declared
    # Stored without the defaults, and read back the same.
    entry = PublishedNodes(published_at=5.0, stale_after_s=1, nodes=NODES)
    assert '"ImageInvert":{"required":["image"],"outputs":1}' in entry.to_json()
    assert PublishedNodes.model_validate_json(entry.to_json()) == entry


def test_an_entry_it_cannot_read_leaves_the_unknown_unknown() -> None:
    odd = node_classes({"Odd": {"input": "?", "output": None}, "NotAnEntry": 3})
    assert odd == {"Odd": NodeClass()}  # known class, nothing required, outputs unknown
    linked = graph(
        n2={"class_type": "Odd", "inputs": {}},
        n3={"class_type": "PreviewImage", "inputs": {"images": ["2", 5]}},
    )
    nodes = {**NODES, **odd}
    assert workflow_problems(linked, nodes) == []


def test_a_good_workflow_has_no_problem() -> None:
    assert found(graph()) == []
    # An optional input may be left out or linked.
    video = graph(
        n2={"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
        n3={"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    )
    assert found(video) == []


def test_unknown_classes_are_named_and_nothing_else_is_checked() -> None:
    workflow = graph(n2={"class_type": "NoSuchNode", "inputs": {}}, n4={"class_type": "Nope"})
    problems = workflow_problems(workflow, NODES)
    assert [(p.code, p.param) for p in problems] == [
        (UNKNOWN_NODE, "params.workflow.2.class_type"),
        (UNKNOWN_NODE, "params.workflow.4.class_type"),
    ]
    assert "node 2" in problems[0].message and "'NoSuchNode'" in problems[0].message


def test_a_missing_required_input_names_node_class_and_input() -> None:
    inputs = {"height": 8, "batch_size": 1, "color": 0}
    problems = workflow_problems(graph(n1={"class_type": "EmptyImage", "inputs": inputs}), NODES)
    assert [(p.code, p.param) for p in problems] == [
        (MISSING_INPUT, "params.workflow.1.inputs.width")
    ]
    assert problems[0].message == "node 1 (EmptyImage): required input 'width' is missing"
    # A node with no inputs at all misses each one.
    assert len(found(graph(n1={"class_type": "EmptyImage"}))) == 4


@pytest.mark.parametrize(
    ("link", "says"),
    [
        (["9", 0], "links to node '9', which is not in the workflow"),
        ([1, 0], "node ids are strings (['1', 0])"),
        (["1", 1], "links to output 1 of node 1 (EmptyImage), which has 1 output"),
        (["1", "0"], "an output index is a number"),
        (["1"], "a link is [node_id, output_index]"),
        (["1", 0, 0], "a link is [node_id, output_index]"),
    ],
)
def test_a_link_comfyui_cannot_follow_is_refused(link: list[Any], says: str) -> None:
    workflow = graph(n2={"class_type": "ImageInvert", "inputs": {"image": link}})
    problems = workflow_problems(workflow, NODES)
    assert [(p.code, p.param) for p in problems] == [(BAD_LINK, "params.workflow.2.inputs.image")]
    assert problems[0].message.startswith("node 2 (ImageInvert) input 'image' ")
    assert says in problems[0].message


def test_what_comfyui_lets_through_is_let_through() -> None:
    # A node no output depends on is never validated (nor run) by ComfyUI.
    dangling = graph(n4={"class_type": "EmptyImage", "inputs": {}})
    assert found(dangling) == []
    # An input the class does not declare is ignored, links and all.
    extra = graph(n2={"class_type": "ImageInvert", "inputs": {"image": ["1", 0], "x": ["9", 0]}})
    assert found(extra) == []
    # Python's indexing: ComfyUI takes -1 as the last output.
    assert found(graph(n2={"class_type": "ImageInvert", "inputs": {"image": ["1", -1]}})) == []


def test_a_workflow_without_an_output_node_is_refused_first() -> None:
    workflow = graph()
    del workflow["3"]
    workflow["2"]["inputs"] = {}  # a missing input too: ComfyUI reports only the outputs
    assert found(workflow) == [(NO_OUTPUT_NODE, "params.workflow")]


def test_problems_come_in_the_graphs_order() -> None:
    workflow = graph(
        n1={"class_type": "EmptyImage", "inputs": {"width": 8}},
        n2={"class_type": "ImageInvert", "inputs": {"image": ["7", 0]}},
        n4={"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    )
    assert found(workflow) == [
        (MISSING_INPUT, "params.workflow.1.inputs.height"),
        (MISSING_INPUT, "params.workflow.1.inputs.batch_size"),
        (MISSING_INPUT, "params.workflow.1.inputs.color"),
        (BAD_LINK, "params.workflow.2.inputs.image"),
    ]


def test_several_comfyuis_refuse_only_what_none_of_them_takes() -> None:
    old = {"EmptyImage": NodeClass(required=("width", "height"), optional=("color",), outputs=1)}
    new = {
        "EmptyImage": NodeClass(required=("width", "color"), outputs=2),
        "Custom": NodeClass(required=("x",), output_node=True),
    }
    merged = merge([old, new])
    assert merged["EmptyImage"] == NodeClass(
        required=("width",), optional=("height", "color"), outputs=2
    )
    assert merged["Custom"] == new["Custom"]
    assert merge([{"A": NodeClass(outputs=1)}, {"A": NodeClass()}])["A"].outputs is None


def published(nodes: dict[str, NodeClass], at: float, stale_after_s: float = 180) -> str:
    return PublishedNodes(
        published_at=at, stale_after_s=stale_after_s, nodes=nodes
    ).model_dump_json()


def test_only_fresh_publications_count() -> None:
    a = {"A": NodeClass(output_node=True)}
    b = {"B": NodeClass(output_node=True)}
    now = 1_000_000.0
    assert fresh_nodes([], now) is None
    assert fresh_nodes([published(a, now - 181)], now) is None  # a worker gone for good
    assert fresh_nodes([published(a, now - 10), published(b, now - 500)], now) == a
    assert fresh_nodes([published(a, now - 10), published(b, now)], now) == {**a, **b}
    # An empty catalogue never counts (it would refuse every workflow), nor an unreadable one.
    assert fresh_nodes([published({}, now), "{not json", '{"nodes": 3}'], now) is None
