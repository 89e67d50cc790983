"""A gateway backend params module for tests (``"module": "genstack.testing.gateway_backend"``
in GATEWAY_BACKENDS): its params steer :mod:`genstack.testing.job_worker`, so tests can ask
for success, failure, slow jobs and several files through the gateway's own job API.
Imported by the gateway process only (it needs pydantic and genstack-core)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from genstack.core.jobs import JobType


class ScriptedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=2, ge=0, le=50)
    sleep_s: float = Field(default=0.0, ge=0.0, le=120.0)
    files: int = Field(default=1, ge=1, le=5)
    fail_code: str | None = Field(default=None, max_length=64)
    fail_message: str | None = Field(default=None, max_length=500)


PARAMS = dict.fromkeys(JobType, ScriptedParams)
