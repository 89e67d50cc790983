"""Job messages from a template are the messages genstack.core's job_message builds."""

from __future__ import annotations

import json
import uuid

from genstack.core.celery_app import create_celery_app
from genstack.core.job_task import job_message
from genstack.gateway.messages import JobMessages


def test_rendered_messages_equal_job_message_but_for_the_delivery_tag() -> None:
    app = create_celery_app("test", "redis://127.0.0.1:1/0")  # never connects
    messages = JobMessages(app)
    for queue in ("tts.xtts", "comfyui", "tts.xtts"):
        job_id = uuid.uuid4().hex
        rendered = json.loads(messages.render(job_id, queue))
        built = json.loads(job_message(app, job_id, queue))
        assert rendered["properties"].pop("delivery_tag") != built["properties"].pop("delivery_tag")
        rendered["properties"].pop("reply_to")  # per thread; unused (results are ignored)
        built["properties"].pop("reply_to")
        assert rendered == built


def test_delivery_tags_are_fresh_and_odd_ids_fall_back() -> None:
    app = create_celery_app("test", "redis://127.0.0.1:1/0")
    messages = JobMessages(app)
    tags = {json.loads(messages.render("a" * 32, "q"))["properties"]["delivery_tag"] for _ in "xyz"}
    assert len(tags) == 3
    odd = 'id"with\\quotes'
    assert json.loads(messages.render(odd, "q"))["headers"]["id"] == odd
