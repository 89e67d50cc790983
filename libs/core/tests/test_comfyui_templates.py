"""The published templates' contract: which template a job or an edit gets by default."""

from __future__ import annotations

from genstack.core.contracts.comfyui_templates import (
    PublishedTemplate,
    PublishedTemplates,
    TemplateParam,
    default_template,
    edit_template,
    fresh_templates,
)
from genstack.core.jobs import JobType

PROMPT = TemplateParam(schema={"type": "string"}, required=True)


def template(
    name: str,
    *,
    rank: int = 0,
    available: bool = True,
    job_type: JobType = JobType.IMAGE,
    image: TemplateParam | None = None,
) -> PublishedTemplate:
    params = {"prompt": PROMPT} | ({"image": image} if image is not None else {})
    return PublishedTemplate(
        name=name, type=job_type, rank=rank, available=available, params=params
    )


NEEDS_IMAGE = TemplateParam(schema={"type": "string"}, required=True)
TAKES_IMAGE = TemplateParam(schema={"type": "string"})


def test_the_edit_template_is_the_best_available_one_that_needs_an_image() -> None:
    templates = {
        t.name: t
        for t in (
            template("txt2img", rank=10),
            template("img2img", rank=9, image=TAKES_IMAGE),  # takes one, does not need it
            template("qwen-edit-full", rank=8, image=NEEDS_IMAGE, available=False),
            template("qwen-edit-gguf", rank=5, image=NEEDS_IMAGE),
            template("b-edit", rank=1, image=NEEDS_IMAGE),
            template("a-edit", rank=1, image=NEEDS_IMAGE),
            template("i2v", rank=20, image=NEEDS_IMAGE, job_type=JobType.VIDEO),
        )
    }
    chosen = edit_template(templates)
    assert chosen is not None and chosen.name == "qwen-edit-gguf"
    del templates["qwen-edit-gguf"]
    chosen = edit_template(templates)
    assert chosen is not None and chosen.name == "a-edit"  # ties: by name
    default = default_template(templates, JobType.IMAGE)
    assert default is not None and default.name == "txt2img"
    assert edit_template({"txt2img": templates["txt2img"]}) is None


def test_an_available_copy_of_a_template_wins_over_an_unavailable_one() -> None:
    down = template("qwen-edit", image=NEEDS_IMAGE, available=False)
    up = template("qwen-edit", image=NEEDS_IMAGE)
    fields = [
        PublishedTemplates(
            published_at=100, stale_after_s=60, templates={"qwen-edit": t}
        ).model_dump_json(by_alias=True)
        for t in (down, up)
    ]
    merged = fresh_templates(fields, now=120)
    assert merged is not None and merged["qwen-edit"].available
    assert edit_template(merged) == up
    assert fresh_templates(fields, now=200) is None  # both stale
