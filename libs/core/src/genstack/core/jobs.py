"""The job contract shared by the gateway, the workers and the uploader (DESIGN.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobType(StrEnum):
    TTS = "tts"
    IMAGE = "image"
    VIDEO = "video"
    WORKFLOW = "workflow"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# Which status may follow which: a terminal job never comes back to life, and a late
# "running" from a redelivered task cannot overwrite "uploading".
ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.UPLOADING}
    ),
    JobStatus.RUNNING: frozenset(
        {JobStatus.UPLOADING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.UPLOADING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobError(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. 'upload_failed'.")
    message: str


class Artifact(BaseModel):
    key: str = Field(description="Object key in the bucket (or local store).")
    url: str | None = Field(default=None, description="Where a client can fetch it.")
    content_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Job(BaseModel):
    id: str = Field(default_factory=new_job_id)
    type: JobType
    backend: str
    params: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = JobStatus.QUEUED
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    error: JobError | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    webhook_url: str | None = Field(
        default=None, description="Notified (Standard Webhooks) when the job finishes."
    )
    owner: str | None = Field(
        default=None,
        max_length=64,
        description="Who submitted it: the gateway's id of the API key (a short hash, never the "
        "key). Only that key sees the job, unless GATEWAY_SHARED_JOBS is on.",
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class JobEvent(BaseModel):
    """One entry of a job's event stream; ``id`` is the Redis stream id (SSE Last-Event-ID)."""

    id: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
