"""The job task's wire contract: how a job is put on a backend's queue.

The gateway writes the job record and sends ``JOB_TASK(job_id)`` to the backend's queue;
the backend's worker (:mod:`genstack.core.worker`) registers the task under the same name.
Tasks are sent by name, so producers never import workers.
"""

from __future__ import annotations

import base64
import json
import uuid

from celery import Celery
from kombu import serialization

JOB_TASK = "genstack.job.run"


def dispatch_job(app: Celery, job_id: str, queue: str) -> None:
    """Queue a job (its record must exist) for the workers of ``queue``. The Celery task id
    is the job id, so the task can be found (and revoked) by it."""
    app.send_task(JOB_TASK, args=[job_id], queue=queue, task_id=job_id)


def job_message(app: Celery, job_id: str, queue: str) -> str:
    """The message :func:`dispatch_job` publishes, as Celery's Redis transport keeps it (an
    entry of the list named ``queue``), for a producer that pushes it with ``LPUSH`` in its
    own Redis transaction together with the job's record (the gateway). Celery's own task
    message builder and serializer make it, so a worker takes it as one ``send_task`` sent."""
    headers, properties, body, _ = app.amqp.create_task_message(
        job_id, JOB_TASK, args=[job_id], kwargs={}, reply_to=app.thread_oid
    )
    content_type, content_encoding, data = serialization.dumps(
        body, serializer=app.conf.task_serializer
    )
    raw = data if isinstance(data, bytes) else data.encode(content_encoding or "utf-8")
    message = {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,  # persistent, as task_default_delivery_mode
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(message)
