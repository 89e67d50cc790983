"""ComfyUI's protocol, and only that (no Celery, no jobs): submit a prompt, follow it to its
end, cancel it, upload an input, read the node catalogue.

Following a prompt races two sources, so that neither can hang a job: the websocket
(``/ws?clientId=``: progress, the node running, success or error as it happens) and
``/history/{prompt_id}`` polled every ``poll_s`` (a websocket can stall or drop without a
close; the history entry is the result either way). When ComfyUI stops answering for
``grace_s`` the prompt is given up (:class:`ComfyUIUnavailableError`); when it answers again
but knows the prompt nowhere (not queued, not running, no history), it was restarted and
the prompt is lost (:class:`PromptLostError`).

Synchronous on purpose: a job handler runs in a Celery worker thread.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

log = logging.getLogger(__name__)

Graph = Mapping[str, Mapping[str, Any]]


class ComfyUIError(Exception):
    """Base of every error ComfyUI's answers are turned into."""


class ComfyUIUnavailableError(ComfyUIError):
    """ComfyUI did not answer (refused, timed out, 5xx): it may be starting or restarting."""


@dataclass(frozen=True)
class NodeProblem:
    """One reason ComfyUI refused a node: which node, its class, which input, and why."""

    node_id: str
    class_type: str | None
    input: str | None
    message: str

    def describe(self) -> str:
        where = f"node {self.node_id}"
        if self.class_type:
            where += f" ({self.class_type})"
        if self.input:
            where += f" input {self.input!r}"
        return f"{where}: {self.message}"


class PromptRejectedError(ComfyUIError):
    """ComfyUI refused the graph: a 400, or a 200 with non-empty ``node_errors``."""

    def __init__(self, kind: str, message: str, problems: list[NodeProblem]) -> None:
        self.kind = kind
        self.problems = problems
        detail = "; ".join(p.describe() for p in problems)
        if any(p.message == message for p in problems):
            super().__init__(detail)  # the node's own reason says it all
        else:
            super().__init__(f"{message}: {detail}" if detail else message)


class ExecutionFailedError(ComfyUIError):
    """A node raised while the prompt ran (``execution_error``)."""

    def __init__(
        self, node_id: str | None, class_type: str | None, exception_type: str, message: str
    ) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.exception_type = exception_type
        self.exception_message = message
        where = f"node {node_id} ({class_type})" if node_id else "the workflow"
        super().__init__(f"{where} failed: {exception_type}: {message}".rstrip(": "))


class PromptInterruptedError(ComfyUIError):
    """The prompt was interrupted (by this client's cancel, or in ComfyUI's UI)."""


class PromptLostError(ComfyUIError):
    """ComfyUI answers again but knows nothing of the prompt: it restarted mid-prompt."""


class PromptTimeoutError(ComfyUIError):
    """The prompt ran longer than the caller allowed."""


@dataclass
class Progress:
    """Where a prompt is: nodes done of total, the sampler's step of steps, the node running."""

    nodes_total: int
    nodes_done: int = 0
    node: str | None = None
    class_type: str | None = None
    step: int | None = None
    steps: int | None = None

    @property
    def fraction(self) -> float:
        if self.nodes_total <= 0:
            return 0.0
        part = self.step / self.steps if self.step is not None and self.steps else 0.0
        # Never 1.0 before the result: the job's files still have to be checked.
        return min(0.99, (self.nodes_done + part) / self.nodes_total)

    @property
    def message(self) -> str:
        text = f"node {self.nodes_done}/{self.nodes_total}"
        if self.node is not None:
            text += f", running {self.node}"
            if self.class_type:
                text += f" ({self.class_type})"
        if self.step is not None and self.steps:
            text += f", step {self.step}/{self.steps}"
        return text


@dataclass
class PromptResult:
    """The history entry of a finished prompt: its outputs per node, and its status."""

    prompt_id: str
    outputs: dict[str, dict[str, Any]]
    status: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]


def _never() -> bool:
    return False


def _ignore(_: Progress) -> None:
    return None


def ws_url(base_url: str, client_id: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={client_id}", ""))


def node_problems(body: Mapping[str, Any], graph: Graph | None = None) -> list[NodeProblem]:
    """The per-node reasons of a refusal (``node_errors``), or the top-level one when ComfyUI
    names a node only in ``error.details`` (an unknown class: ``Node ID '#3'``)."""
    problems: list[NodeProblem] = []
    node_errors = body.get("node_errors") or {}
    if isinstance(node_errors, Mapping):
        for node_id, entry in node_errors.items():
            if not isinstance(entry, Mapping):
                continue
            class_type = entry.get("class_type") or _class_of(graph, str(node_id))
            for error in entry.get("errors") or [{}]:
                extra = error.get("extra_info") or {}
                message = str(error.get("message") or "invalid")
                details = error.get("details")
                if details and str(details) not in message:
                    message = f"{message} ({details})"
                problems.append(
                    NodeProblem(str(node_id), class_type, extra.get("input_name"), message)
                )
    error = body.get("error")
    if not problems and isinstance(error, Mapping):
        details = str(error.get("details") or "")
        if details.startswith("Node ID '#") and details.endswith("'"):
            node_id = details[len("Node ID '#") : -1]
            problems.append(
                NodeProblem(node_id, _class_of(graph, node_id), None, str(error.get("message")))
            )
    return problems


def _class_of(graph: Graph | None, node_id: str) -> str | None:
    if graph is None or node_id not in graph:
        return None
    value = graph[node_id].get("class_type")
    return value if isinstance(value, str) else None


class ComfyUIClient:
    """One ComfyUI at ``base_url``; thread-safe for separate prompts (httpx's pool)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        poll_s: float = 1.0,
        grace_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self.http.close()

    # -- plain requests ---------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ComfyUIUnavailableError(
                f"ComfyUI at {self.base_url} did not answer {method} {path}: {exc!r}"
            ) from exc
        if response.status_code >= 500:
            raise ComfyUIUnavailableError(
                f"ComfyUI answered {method} {path} with {response.status_code}"
            )
        return response

    def system_stats(self) -> dict[str, Any]:
        response = self._request("GET", "/system_stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def object_info(self) -> dict[str, Any]:
        response = self._request("GET", "/object_info")
        response.raise_for_status()
        info: dict[str, Any] = response.json()
        return info

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/history/{prompt_id}")
        response.raise_for_status()
        entry = response.json().get(prompt_id)
        return entry if isinstance(entry, dict) else None

    def queued(self, prompt_id: str) -> bool:
        """Whether the prompt is running or waiting in ComfyUI's queue."""
        response = self._request("GET", "/queue")
        response.raise_for_status()
        body = response.json()
        for key in ("queue_running", "queue_pending"):
            for item in body.get(key) or []:
                if len(item) > 1 and item[1] == prompt_id:
                    return True
        return False

    def upload(
        self, data: bytes, name: str, *, subfolder: str = "", content_type: str | None = None
    ) -> str:
        """Put a file in ComfyUI's input folder; returns the value a Load* node takes
        (``subfolder/name``)."""
        files = {"image": (name, data, content_type or "application/octet-stream")}
        form = {"type": "input", "subfolder": subfolder, "overwrite": "true"}
        response = self._request("POST", "/upload/image", files=files, data=form)
        if response.status_code != 200:
            raise ComfyUIError(
                f"ComfyUI refused the upload of {name!r}: {response.status_code} "
                f"{response.text[:200]}"
            )
        body = response.json()
        stored = str(body["name"])
        folder = str(body.get("subfolder") or "")
        return f"{folder}/{stored}" if folder else stored

    def submit(self, graph: Graph, prompt_id: str, client_id: str) -> None:
        """Queue ``graph`` as ``prompt_id`` (a lowercase UUID); raises PromptRejectedError
        when ComfyUI refuses it, naming each node, its class and input."""
        payload = {"prompt": graph, "prompt_id": prompt_id, "client_id": client_id}
        response = self._request("POST", "/prompt", json=payload)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code == 200 and not body.get("node_errors"):
            return
        error = body.get("error") if isinstance(body.get("error"), Mapping) else {}
        kind = str(error.get("type") or f"http_{response.status_code}")
        message = str(error.get("message") or response.text[:200] or "prompt refused")
        raise PromptRejectedError(kind, message, node_problems(body, graph))

    def cancel(self, prompt_id: str) -> None:
        """Stop the prompt wherever it is: its job-cancel endpoint where this ComfyUI has
        one, else removed from the queue and, if running, interrupted (by id, so another
        prompt is never hit)."""
        response = self._request("POST", f"/api/jobs/{prompt_id}/cancel")
        if response.status_code < 400:
            return
        self._request("POST", "/queue", json={"delete": [prompt_id]})
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    # -- one prompt, start to end -----------------------------------------------------

    @contextmanager
    def events(self, client_id: str) -> Iterator[EventSocket]:
        socket = EventSocket(ws_url(self.base_url, client_id))
        try:
            yield socket
        finally:
            socket.close()

    def run(
        self,
        graph: Graph,
        prompt_id: str | None = None,
        *,
        on_progress: ProgressCallback = _ignore,
        cancelled: CancelCheck = _never,
        timeout_s: float | None = None,
    ) -> PromptResult:
        """Submit ``graph`` and follow it to its end. On ``cancelled()`` the prompt is
        cancelled in ComfyUI and PromptInterruptedError raised."""
        prompt_id = prompt_id or str(uuid.uuid4())
        client_id = uuid.uuid4().hex
        with self.events(client_id) as socket:
            self.submit(graph, prompt_id, client_id)
            return self.follow(
                prompt_id,
                socket,
                nodes_total=len(graph),
                graph=graph,
                on_progress=on_progress,
                cancelled=cancelled,
                timeout_s=timeout_s,
            )

    def follow(
        self,
        prompt_id: str,
        socket: EventSocket,
        *,
        nodes_total: int,
        graph: Graph | None = None,
        on_progress: ProgressCallback = _ignore,
        cancelled: CancelCheck = _never,
        timeout_s: float | None = None,
    ) -> PromptResult:
        progress = Progress(nodes_total=nodes_total)
        done_nodes: set[str] = set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        next_poll = time.monotonic() + self.poll_s
        unreachable_since: float | None = None
        missing = 0
        while True:
            if cancelled():
                self._cancel_quietly(prompt_id)
                raise PromptInterruptedError(f"prompt {prompt_id} cancelled")
            if deadline is not None and time.monotonic() > deadline:
                self._cancel_quietly(prompt_id)
                raise PromptTimeoutError(f"prompt {prompt_id} ran longer than {timeout_s:g}s")
            event = socket.receive(min(0.5, self.poll_s))
            if event is not None and _for_prompt(event, prompt_id):
                finished = self._on_event(event, progress, done_nodes, graph)
                if finished:
                    next_poll = 0.0  # the history entry carries the outputs: read it now
                else:
                    on_progress(progress)
            if time.monotonic() < next_poll:
                continue
            next_poll = time.monotonic() + self.poll_s
            try:
                entry = self.history(prompt_id)
                known = entry is not None or self.queued(prompt_id)
            except ComfyUIUnavailableError:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.grace_s:
                    raise ComfyUIUnavailableError(
                        f"ComfyUI at {self.base_url} stopped answering for more than "
                        f"{self.grace_s:g}s while running prompt {prompt_id}"
                    ) from None
                continue
            if unreachable_since is not None:
                socket.reopen()  # ComfyUI is back: so may the event stream be
            unreachable_since = None
            if entry is not None:
                result = _finished(prompt_id, entry, graph)
                if result is not None:
                    return result
                continue
            # Two looks in a row, a poll apart: a prompt moves from the queue to the history
            # between two requests.
            missing = 0 if known else missing + 1
            if missing >= 2:
                raise PromptLostError(
                    f"ComfyUI no longer knows prompt {prompt_id} (not queued, not running, "
                    "no history): it was restarted while the prompt ran"
                )

    def _cancel_quietly(self, prompt_id: str) -> None:
        try:
            self.cancel(prompt_id)
        except ComfyUIError as exc:
            log.warning("could not cancel prompt %s in ComfyUI: %s", prompt_id, exc)

    @staticmethod
    def _on_event(
        event: Mapping[str, Any], progress: Progress, done: set[str], graph: Graph | None
    ) -> bool:
        """Update ``progress`` from one websocket event; True when the prompt has ended."""
        kind = event.get("type")
        data = event.get("data") or {}
        if kind == "execution_cached":
            done.update(str(n) for n in data.get("nodes") or [])
        elif kind == "executing":
            if progress.node is not None:
                done.add(progress.node)
            node = data.get("node")
            if node is None:
                return True  # ComfyUI's "prompt done" (older versions' only end signal)
            progress.node = str(node)
            progress.class_type = _class_of(graph, progress.node)
            progress.step = progress.steps = None
        elif kind == "executed":
            done.add(str(data.get("node")))
        elif kind == "progress":
            progress.step = int(data.get("value") or 0)
            progress.steps = int(data.get("max") or 0)
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            return True
        progress.nodes_done = min(len(done), progress.nodes_total)
        return False


def _for_prompt(event: Mapping[str, Any], prompt_id: str) -> bool:
    data = event.get("data")
    return isinstance(data, Mapping) and data.get("prompt_id") == prompt_id


def _finished(prompt_id: str, entry: Mapping[str, Any], graph: Graph | None) -> PromptResult | None:
    """The result of a history entry: None while it is not complete; raises for a prompt
    that failed or was interrupted."""
    status = entry.get("status") or {}
    messages = status.get("messages") or []
    for name, data in messages:
        if name == "execution_error":
            node_id = data.get("node_id")
            raise ExecutionFailedError(
                None if node_id is None else str(node_id),
                data.get("node_type") or _class_of(graph, str(node_id)),
                str(data.get("exception_type") or "Error"),
                str(data.get("exception_message") or "").strip(),
            )
        if name == "execution_interrupted":
            raise PromptInterruptedError(f"prompt {prompt_id} was interrupted in ComfyUI")
    if status and not status.get("completed") and status.get("status_str") != "success":
        if status.get("status_str") == "error":
            raise ExecutionFailedError(None, None, "Error", "ComfyUI reports the prompt failed")
        return None
    return PromptResult(prompt_id, dict(entry.get("outputs") or {}), dict(status))


class EventSocket:
    """ComfyUI's websocket for one client id, best effort: failures to connect or a dropped
    connection only mean fewer progress events (the history poll still ends the prompt)."""

    def __init__(self, url: str, open_timeout_s: float = 5.0) -> None:
        self.url = url
        self.open_timeout_s = open_timeout_s
        self._conn: ClientConnection | None = None
        self._stack = ExitStack()  # websockets wants its connection used as a context
        self.reopen()

    def reopen(self) -> None:
        self.close()
        try:
            # max_size: preview images arrive as binary frames; they are read and dropped.
            self._conn = self._stack.enter_context(
                connect(self.url, open_timeout=self.open_timeout_s, max_size=2**26)
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.info("ComfyUI's websocket not open (%r): following by history only", exc)
            self._conn = None

    def receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next JSON event, or None after ``timeout_s`` (or at once when closed)."""
        if self._conn is None:
            time.sleep(timeout_s)
            return None
        try:
            message = self._conn.recv(timeout=timeout_s)
        except TimeoutError:
            return None
        except (ConnectionClosed, OSError):
            log.info("ComfyUI's websocket closed: following by history only")
            self.close()
            return None
        if isinstance(message, bytes):
            return None
        try:
            event = json.loads(message)
        except ValueError:
            return None
        return event if isinstance(event, dict) else None

    def close(self) -> None:
        self._conn = None
        self._stack.close()
