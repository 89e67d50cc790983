"""``ComfyJobHandler``: one job, start to end, as the job runtime calls it.

A `workflow` job's API-format graph is run as given; an `image`, `video` or `tts` job's
graph is its template's with the job's params (``TemplateRegistry``). Either way with the
bridge's changes (see ``workflow``): save prefixes under the job id, input files (URLs, or
stored objects' keys for a template's inputs) uploaded to ComfyUI first. The job id is the
prompt id (as a lowercase dashed UUID). Progress goes to the job; a cancel interrupts the
prompt in ComfyUI; what ComfyUI says is wrong becomes a failed job naming the node.
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
from genstack.comfyui.inputs import (
    FetchedInput,
    InputError,
    InputFetcher,
    StoredInputs,
    UnsafeUrlError,
    VoiceFiles,
)
from genstack.comfyui.template_registry import TemplateRegistry
from genstack.comfyui.templates import Graph
from genstack.comfyui.workflow import (
    AUDIO_SAVERS,
    OutputError,
    UrlInput,
    output_files,
    prefix_outputs,
    save_audio_as,
    stored_inputs,
    url_inputs,
)
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
        templates: TemplateRegistry | None = None,
        stored: StoredInputs | None = None,
        voices: VoiceFiles | None = None,
    ) -> None:
        self.client = client
        self.fetcher = fetcher
        self.output_dir = output_dir
        self.job_timeout_s = job_timeout_s
        self.templates = templates
        self.stored = stored
        self.voices = voices

    def graph(self, job_type: JobType, params: dict[str, object]) -> tuple[Graph, bool]:
        """The graph to run, and whether it is a template's (whose input files may be keys
        of stored objects; a raw workflow's names files of ComfyUI's input folder)."""
        if job_type == JobType.WORKFLOW:
            try:
                return WorkflowParams.model_validate(params).workflow, False
            except ValidationError as exc:
                raise JobFailedError("invalid_params", str(exc)) from exc
        if self.templates is None or job_type not in (JobType.IMAGE, JobType.VIDEO, JobType.TTS):
            raise JobFailedError(
                "unsupported_job_type", f"this worker does not run {job_type.value} jobs"
            )
        try:
            self.templates.ensure(self.client.object_info)
        except ComfyUIUnavailableError as exc:
            raise JobFailedError("backend_unavailable", str(exc), retryable=True) from exc
        _, graph = self.templates.graph_for(job_type, params)
        if job_type == JobType.TTS:
            response_format = str(params.get("response_format") or "mp3")
            if response_format not in AUDIO_SAVERS:
                raise JobFailedError(
                    "invalid_params",
                    f"response_format {response_format} is not one ComfyUI writes "
                    f"({', '.join(AUDIO_SAVERS)})",
                )
            save_audio_as(graph, response_format)
        return graph, True

    def __call__(self, ctx: JobContext) -> list[Path]:
        job = ctx.job
        source, templated = self.graph(job.type, ctx.params)
        graph = prefix_outputs(source, job.id)
        try:
            self._upload_inputs(graph, job.id, templated=templated)
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

    def _upload_inputs(self, graph: Graph, job_id: str, *, templated: bool) -> None:
        wanted = url_inputs(graph) + (stored_inputs(graph) if templated else [])
        for index, item in enumerate(wanted):
            fetched = self._read(item, index)
            value = self.client.upload(
                fetched.data,
                fetched.name,
                subfolder=job_id,
                content_type=fetched.content_type,
            )
            graph[item.node_id]["inputs"][item.input] = value

    def _read(self, wanted: UrlInput, index: int) -> FetchedInput:
        where = f"node {wanted.node_id} input {wanted.input!r}"
        voice = wanted.stored and wanted.kind == "audio" and "/" not in wanted.url
        source = self.voices if voice else self.stored
        if wanted.stored and source is None:
            missing = "voice library" if voice else "storage"
            raise JobFailedError("input_unavailable", f"{where}: this worker has no {missing}")
        try:
            if isinstance(source, VoiceFiles) and voice:
                return source.read(wanted.url, index)
            if isinstance(source, StoredInputs) and wanted.stored:
                return source.read(wanted.url, wanted.kind, index)
            return self.fetcher.fetch(wanted.url, wanted.kind, index)
        except UnsafeUrlError as exc:
            raise JobFailedError("input_refused", f"{where}: {exc}") from exc
        except InputError as exc:
            raise JobFailedError("input_unavailable", f"{where}: {exc}") from exc


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
