"""Field types and the base model every backend's params share."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from genstack.core.jobs import JobType


def _safe_name(value: str) -> str:
    # Voices and templates are names inside the backend's own folder, never paths.
    if "/" in value or "\\" in value or value.startswith(".") or "\x00" in value:
        raise ValueError("must be a plain name, not a path")
    return value


SafeName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_safe_name)]


class Params(BaseModel):
    """Base of every params model: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


# What a backend module's PARAMS is: the params model of each job type it takes.
ParamsMap = dict[JobType, type[Params]]
