"""``ComfyJobHandler``: one `workflow` job, start to end, as the job runtime calls it.

The API-format graph is run as given, with the bridge's changes (see ``workflow``): save
prefixes under the job id, inputs by URL fetched and uploaded first. The job id is the
prompt id (as a lowercase dashed UUID). Progress goes to the job; a cancel interrupts the
prompt in ComfyUI; what ComfyUI says is wrong becomes a failed job naming the node.
`image` and `video` jobs (typed templates) are not served here yet (issue 11).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from pydantic import ValidationError

from genstack.comfyui.client import (
    ComfyUIClient,
    ComfyUIError,
    ComfyUIUnavailableError,
    ExecutionFailedError,
    Progress,
    PromptInterruptedError,
    PromptLostError,
    PromptRejectedError,
    PromptTimeoutError,
)
from genstack.comfyui.inputs import InputError, InputFetcher, UnsafeUrlError
from genstack.comfyui.workflow import OutputError, output_files, prefix_outputs, url_inputs
from genstack.core.contracts.comfyui import WorkflowParams
from genstack.core.job_runner import JobCancelledError, JobContext, JobFailedError
from genstack.core.jobs import JobType

log = logging.getLogger(__name__)


def prompt_id_of(job_id: str) -> str:
    """ComfyUI wants a lowercase UUID; job ids are UUID4 hex."""
    return str(uuid.UUID(job_id))


class ComfyJobHandler:
    def __init__(
        self,
        client: ComfyUIClient,
        fetcher: InputFetcher,
        *,
        output_dir: Path,
        job_timeout_s: float | None = None,
    ) -> None:
        self.client = client
        self.fetcher = fetcher
        self.output_dir = output_dir
        self.job_timeout_s = job_timeout_s

    def __call__(self, ctx: JobContext) -> list[Path]:
        job = ctx.job
        if job.type != JobType.WORKFLOW:
            raise JobFailedError(
                "unsupported_job_type",
                f"this worker runs workflow jobs; {job.type} templates are not served yet",
            )
        try:
            params = WorkflowParams.model_validate(ctx.params)
        except ValidationError as exc:
            raise JobFailedError("invalid_params", str(exc)) from exc
        graph = prefix_outputs(params.workflow, job.id)
        try:
            self._upload_inputs(graph, job.id)
            result = self.client.run(
                graph,
                prompt_id_of(job.id),
                on_progress=ProgressReporter(ctx),
                cancelled=ctx.cancelled,
                timeout_s=self.job_timeout_s,
            )
        except PromptInterruptedError as exc:
            if ctx.cancelled():
                raise JobCancelledError(job.id) from exc
            raise JobFailedError("interrupted", f"{exc} (not by this job's cancel)") from exc
        except PromptRejectedError as exc:
            raise JobFailedError("invalid_workflow", str(exc)) from exc
        except ExecutionFailedError as exc:
            raise JobFailedError("execution_error", str(exc)) from exc
        except PromptLostError as exc:
            raise JobFailedError("backend_restarted", str(exc)) from exc
        except PromptTimeoutError as exc:
            raise JobFailedError("timeout", str(exc)) from exc
        except ComfyUIUnavailableError as exc:
            raise JobFailedError("backend_unavailable", str(exc), retryable=True) from exc
        except ComfyUIError as exc:
            raise JobFailedError("backend_error", str(exc)) from exc
        try:
            return output_files(result.outputs, self.output_dir, ctx.output_dir)
        except OutputError as exc:
            raise JobFailedError("bad_output", str(exc)) from exc

    def _upload_inputs(self, graph: dict[str, dict[str, object]], job_id: str) -> None:
        for index, wanted in enumerate(url_inputs(graph)):
            try:
                fetched = self.fetcher.fetch(wanted.url, wanted.kind, index)
            except UnsafeUrlError as exc:
                raise JobFailedError(
                    "input_refused", f"node {wanted.node_id} input {wanted.input!r}: {exc}"
                ) from exc
            except InputError as exc:
                raise JobFailedError(
                    "input_unavailable", f"node {wanted.node_id} input {wanted.input!r}: {exc}"
                ) from exc
            value = self.client.upload(
                fetched.data,
                fetched.name,
                subfolder=job_id,
                content_type=fetched.content_type,
            )
            inputs = graph[wanted.node_id]["inputs"]
            assert isinstance(inputs, dict)
            inputs[wanted.input] = value


class ProgressReporter:
    """Job progress from ComfyUI's, written only when it changes (events repeat)."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.last: tuple[float, str] | None = None

    def __call__(self, progress: Progress) -> None:
        now = (round(progress.fraction, 3), progress.message)
        if now != self.last:
            self.last = now
            self.ctx.progress(*now)
