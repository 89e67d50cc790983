"""A real redis-server for tests: a local subprocess, or a container where Docker answers."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import redis

from genstack.testing.logs import tail
from genstack.testing.ports import free_port

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

__all__ = ["ContainerRedisServer", "RedisServer"]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class RedisServer:
    """``redis-server`` from PATH on 127.0.0.1, data (AOF) and log in ``dir``.

    ``appendfsync always`` so a restart or a SIGKILL in a test never loses an acknowledged
    write; ``save ""`` so no RDB snapshot hides whether the AOF did its job.
    """

    def __init__(self, dir: Path, port: int | None = None, appendonly: bool = True) -> None:
        self._dir = Path(dir)
        self._host = "127.0.0.1"
        # Chosen once, so restart() comes back on the same port.
        self._port = port if port is not None else free_port()
        self._appendonly = appendonly
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self._port}/0"

    @property
    def log_path(self) -> Path:
        return self._dir / "redis.log"

    def client(self) -> redis.Redis:
        """A new client (bytes responses); the caller closes it."""
        return redis.Redis.from_url(self.url, decode_responses=False)

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install redis-server)")
        self._dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port", str(self._port),
            "--bind", self._host,
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", "always",
            # Log to stdout, which goes to the log file: errors before the log file would
            # be opened (bad arguments) end up there too.
            "--logfile", "",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server on port {self._port} exited with {self._proc.returncode} "
                    f"while starting; log tail ({self.log_path}):\n{tail(self.log_path)}"
                )
            if _pings(self.url):
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"redis-server on port {self._port} did not answer PING within {START_TIMEOUT_S}s; "
            f"log tail ({self.log_path}):\n{tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGTERM (redis does a clean SHUTDOWN, flushing the AOF) and wait for the exit."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash. Only fsynced AOF data survives (all acknowledged writes)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait()

    def restart(self) -> None:
        """Stop, then start on the same port with the same data dir."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Release everything (for the container variant: also remove the container)."""
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ContainerRedisServer(RedisServer):
    """The same server as a ``redis:7`` container (testcontainers).

    The host port is bound explicitly, so a stop/start of the container keeps it; the
    container (and its AOF) lives until close().
    """

    IMAGE = "redis:7"

    def __init__(self, dir: Path, port: int | None = None, appendonly: bool = True) -> None:
        super().__init__(dir, port, appendonly)
        self._container: DockerContainer | None = None
        self._running = False

    def start(self) -> None:
        if self._running:
            return
        if self._container is None:
            from testcontainers.core.container import DockerContainer

            command = ["redis-server", "--save", "", "--appendfsync", "always"]
            command += ["--appendonly", "yes" if self._appendonly else "no"]
            self._container = (
                DockerContainer(self.IMAGE).with_command(command).with_bind_ports(6379, self._port)
            )
            self._container.start()
        else:
            self._container.get_wrapped_container().start()
        self._running = True
        self._host = self._container.get_container_host_ip()
        # Re-read: where the engine is reached through a gateway the port may differ.
        self._port = self._container.get_exposed_port(6379)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S * 3  # containers start slower
        while time.monotonic() < deadline:
            if _pings(self.url):
                return
            time.sleep(0.1)
        logs = self._container_logs()
        raise TimeoutError(f"redis container at {self.url} did not answer PING; logs:\n{logs}")

    def _container_logs(self) -> str:
        if self._container is None:
            return ""
        out, err = self._container.get_logs()
        text = (out + err).decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-40:])

    def stop(self) -> None:
        if self._container is not None and self._running:
            self._running = False
            self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT_S))

    def kill(self) -> None:
        if self._container is not None and self._running:
            self._running = False
            self._container.get_wrapped_container().kill()

    def close(self) -> None:
        container, self._container = self._container, None
        self._running = False
        if container is not None:
            container.stop()  # testcontainers' stop removes the container


def _pings(url: str) -> bool:
    """True if the server at ``url`` answers PING (not while it is still loading the AOF)."""
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        # BusyLoadingError (AOF still loading) is a ConnectionError: not ready yet either.
        return False
    finally:
        client.close()
