"""A ComfyUI stand-in for CI: a real HTTP + websocket server (aiohttp) on loopback that
replays exchanges recorded from a real ComfyUI (``genstack-comfyui record``; the committed
files in services/comfyui/tests/recordings, whose folder the test gives). A submitted graph
is matched to the recording of the same graph (node ids, class types and literal inputs; save
prefixes and uploaded file names may differ); its websocket events are played to the
submitting client, its output files written to the output folder, and its history entry
served once it has ended. ``/object_info`` answers the recorded node classes, as ComfyUI
does (``object_info`` may be changed by a test: a ComfyUI with other nodes).

Faults for tests: ``ws_mode`` "silent" (a socket that stays open and says nothing) or
"drop" (closed at the first event); ``restart()`` forgets every prompt (a ComfyUI restart);
the recorded interrupt holds its prompt running until ``/interrupt`` names it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from genstack.testing.ports import free_port

PREFIX_KEY = "filename_prefix"
LOADER_INPUTS = {"image", "audio", "file", "video"}


def load_recordings(folder: Path) -> dict[str, dict[str, Any]]:
    """The recorded prompts (not system_stats.json nor object_info.json)."""
    loaded = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    return {name: data for name, data in loaded.items() if "submit" in data}


def _fill(value: Any, prompt_id: str, job: str) -> Any:
    return json.loads(json.dumps(value).replace("{{prompt_id}}", prompt_id).replace("{{job}}", job))


def _matches(recorded: dict[str, Any], graph: dict[str, Any]) -> bool:
    if set(recorded) != set(graph):
        return False
    for node_id, node in recorded.items():
        other = graph[node_id]
        if node.get("class_type") != other.get("class_type"):
            return False
        mine, theirs = node.get("inputs", {}), other.get("inputs", {})
        if set(mine) != set(theirs):
            return False
        for key, value in mine.items():
            if key == PREFIX_KEY:
                continue
            if key in LOADER_INPUTS and isinstance(value, str) and isinstance(theirs[key], str):
                if not theirs[key].endswith(value.rsplit("/", 1)[-1]):
                    return False
            elif value != theirs[key]:
                return False
    return True


class ComfyReplay:
    def __init__(self, output_dir: Path, recordings: Path) -> None:
        self.output_dir = output_dir
        self.recordings = load_recordings(recordings)
        self.stats = json.loads((recordings / "system_stats.json").read_text())
        # ComfyUI's /object_info entries of the recorded node classes (none: an empty one).
        catalogue = recordings / "object_info.json"
        self.object_info: dict[str, Any] = (
            json.loads(catalogue.read_text())["object_info"] if catalogue.is_file() else {}
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_mode = "normal"
        self.sockets: dict[str, list[web.WebSocketResponse]] = {}
        self.history: dict[str, Any] = {}
        self.running: dict[str, str] = {}  # prompt id -> recording name
        self.interrupts: list[str] = []
        self.deleted: list[str] = []
        self.submitted: list[dict[str, Any]] = []
        self.uploads: dict[str, bytes] = {}
        self._interrupted: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ComfyReplay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=2**26)
        app.router.add_get("/system_stats", self._system_stats)
        app.router.add_get("/object_info", self._object_info)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/queue", self._queue)
        app.router.add_post("/queue", self._queue_delete)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        async def down() -> None:
            for task in list(self._tasks):
                task.cancel()
            for sockets in self.sockets.values():
                for ws in sockets:
                    await ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def restart(self) -> None:
        """Forget every prompt, as a restarted ComfyUI does (sockets closed, no history)."""

        async def forget() -> None:
            for task in list(self._tasks):
                task.cancel()
            for sockets in self.sockets.values():
                for ws in sockets:
                    await ws.close()
            self.sockets.clear()
            self.running.clear()
            self.history.clear()

        asyncio.run_coroutine_threadsafe(forget(), self._loop).result(10)

    # -- routes -------------------------------------------------------------------------

    async def _system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response(self.object_info)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        field = form["image"]
        assert isinstance(field, web.FileField)
        subfolder = str(form.get("subfolder") or "")
        name = field.filename
        self.uploads[f"{subfolder}/{name}" if subfolder else name] = field.file.read()
        return web.json_response({"name": name, "subfolder": subfolder, "type": "input"})

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.submitted.append(body)
        graph = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        name = next((n for n, r in self.recordings.items() if _matches(r["prompt"], graph)), None)
        if name is None:
            error = {"type": "no_recording", "message": "the replay has no recording of this graph"}
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        job = self._job_folder(graph) or uuid.UUID(prompt_id).hex
        recording = _fill(self.recordings[name], prompt_id, job)
        submit = recording["submit"]
        if submit["status"] == 200:
            self.running[prompt_id] = name
            self._interrupted[prompt_id] = asyncio.Event()
            task = asyncio.create_task(
                self._play(recording, prompt_id, job, str(body.get("client_id") or ""))
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(submit["body"], status=submit["status"])

    @staticmethod
    def _job_folder(graph: dict[str, Any]) -> str | None:
        for node in graph.values():
            prefix = node.get("inputs", {}).get(PREFIX_KEY)
            if isinstance(prefix, str) and "/" in prefix:
                return prefix.split("/", 1)[0]
        return None

    async def _history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def _queue(self, request: web.Request) -> web.Response:
        running = [[i, pid, {}, {}, []] for i, pid in enumerate(self.running)]
        return web.json_response({"queue_running": running, "queue_pending": []})

    async def _queue_delete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.deleted.extend(body.get("delete") or [])
        return web.Response(status=200)

    async def _interrupt(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt_id = body.get("prompt_id")
        if prompt_id in self.running:
            self.interrupts.append(prompt_id)
            self._interrupted[prompt_id].set()
        return web.Response(status=200)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.query.get("clientId", "")
        self.sockets.setdefault(client_id, []).append(ws)
        status = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}
        await ws.send_json({"type": "status", "data": status})
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
        return ws

    # -- playback -----------------------------------------------------------------------

    async def _send(self, client_id: str, event: dict[str, Any]) -> None:
        if self.ws_mode == "silent":
            return
        for ws in list(self.sockets.get(client_id, [])):
            if self.ws_mode == "drop":
                await ws.close()
                continue
            if not ws.closed:
                await ws.send_json({"type": event["type"], "data": event["data"]})

    async def _play(self, recording: dict[str, Any], prompt_id: str, job: str, client: str) -> None:
        clock = 0.0
        for event in recording["ws"]:
            if event["type"] == "execution_interrupted":
                await self._interrupted[prompt_id].wait()  # runs until someone interrupts
            await asyncio.sleep(max(0.0, min(event["t"] - clock, 0.5)))
            clock = event["t"]
            if event["type"] == "execution_success":
                self._write_files(recording["files"], job)
            await self._send(client, event)
        if not recording["ws"]:
            self._write_files(recording["files"], job)
        self.history[prompt_id] = recording["history"].get(prompt_id)
        self.running.pop(prompt_id, None)

    def _write_files(self, files: dict[str, str], job: str) -> None:
        for relative, data in files.items():
            path = self.output_dir / job / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(data))
