"""The upload task contract: how any producer hands a finished file to its host's uploader.

Producers (the XTTS, Chatterbox and ComfyUI workers) write a file under OUTPUT_DIR and call
:func:`enqueue_upload`; the uploader of the same host (queue ``upload.<NODE_ID>``) uploads it,
verifies it and, with a job id, adds the artifact to the job.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Literal

from celery import Celery
from pydantic import BaseModel, Field

UPLOAD_TASK = "genstack.upload.file"
_DATE = r"^\d{4}-\d{2}-\d{2}$"


def upload_queue(node_id: str) -> str:
    return f"upload.{node_id}"


class UploadRequest(BaseModel):
    path: str = Field(min_length=1, max_length=4096, description="Absolute path on this host.")
    job_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,128}$")
    date: str | None = Field(
        default=None,
        pattern=_DATE,
        description="Key date (UTC). Fixed at enqueue so a retried task keeps its key; "
        "when absent the file's mtime date is used, which is just as stable.",
    )
    job_files: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="How many files the job hands over in all: the upload that brings the "
        "job's verified artifacts to this count ends the job 'succeeded'.",
    )
    source: Literal["producer", "watch", "rescan"] = "producer"
    enqueued_at: float = Field(default_factory=time.time)


def object_key(prefix: str, date: str, relative: str) -> str:
    """``outputs/YYYY-MM-DD/<relative>`` (the seed's layout)."""
    if not re.match(_DATE, date):
        raise ValueError(f"bad key date {date!r}")
    parts = [p for p in (prefix.strip("/"), date, relative.strip("/")) if p]
    return "/".join(parts)


def date_of(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def enqueue_upload(
    app: Celery,
    path: str,
    *,
    node_id: str,
    job_id: str | None = None,
    job_files: int | None = None,
    date: str | None = None,
    source: Literal["producer", "watch", "rescan"] = "producer",
) -> str:
    """Queue an upload of ``path`` on ``node_id``'s uploader; returns the Celery task id."""
    request = UploadRequest(path=path, job_id=job_id, job_files=job_files, date=date, source=source)
    result = app.send_task(
        UPLOAD_TASK, args=[request.model_dump(mode="json")], queue=upload_queue(node_id)
    )
    return str(result.id)
