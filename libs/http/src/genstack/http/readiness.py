"""``GET /readyz``: ``{"ready": bool, "checks": {name: "ok" | reason}}``, 503 unless ready."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel
from starlette.responses import Response


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


def readiness_response(checks: Mapping[str, str]) -> Response:
    """Ready when every check says "ok"; otherwise 503, each failing check with its reason."""
    ready = all(value == "ok" for value in checks.values())
    body = Readiness(ready=ready, checks=dict(checks)).model_dump_json()
    return Response(body, status_code=200 if ready else 503, media_type="application/json")
