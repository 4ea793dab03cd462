"""The embedded Redis of `serve` attacked as another user of the same host (issue 25, High).

A `serve` on the embedded defaults runs as the test's user with its state in a directory every
user may traverse, so nothing but the embedded server's own protection stands between another
local user (``nobody``, through ``setpriv``) and the intent stream. That user tries what the issue
did: XADD a 20x leveraged intent, and CONFIG SET dir + SAVE to write a file as the service's user;
on every address the server listens on (the one `serve` recorded, and any TCP port it holds).
The owner still works through the same address, and a real exchange on the embedded Redis is
refused unless QUANTUM_ALLOW_EMBEDDED_REDIS says otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from quantum_exec.app.embedded import EmbeddedRedis
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EXE = str(Path(sys.executable).parent / "quantum-exec")
INTENTS = "quantum:stream:trade.intent"
# The attacker's interpreter: the system one (the test's venv may sit where `nobody` cannot read).
SYSTEM_PYTHON = "/usr/bin/python3"

# Runs as the other user with nothing but the standard library: connect to one address, send raw
# RESP commands, print what came back (or why the connection failed) as one JSON line.
ATTACK = r"""
import json, socket, sys

def encode(parts):
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        data = part.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out

target, commands = sys.argv[1], json.loads(sys.argv[2])
try:
    if target.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(target)
    else:
        host, port = target.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
except OSError as exc:
    print(json.dumps({"refused": type(exc).__name__}))
    sys.exit(0)
replies = []
for command in commands:
    sock.sendall(encode(command))
    replies.append(sock.recv(65536).decode(errors="replace"))
print(json.dumps({"replies": replies}))
"""

# A reply the server gives without doing anything: not authenticated, or a command renamed away.
REFUSALS = ("-NOAUTH", "-ERR unknown command")


def _as_nobody_available() -> str | None:
    """Why the other-user attack cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "switching to another uid needs root"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    return None


needs_other_user = pytest.mark.skipif(_as_nobody_available() is not None, reason=str(_as_nobody_available()))


def attack_as_nobody(target: str, commands: list[list[str]]) -> dict[str, Any]:
    """Run :data:`ATTACK` as uid ``nobody`` against ``target`` (a socket path or host:port)."""
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    out = subprocess.run(
        [*as_nobody, SYSTEM_PYTHON, "-c", ATTACK, target, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def address(url: str) -> str:
    """``unix:///run/x.sock`` -> ``/run/x.sock``; ``redis://[:pw@]127.0.0.1:6390/0`` -> ``127.0.0.1:6390``."""
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        return rest.split("?", 1)[0]
    return rest.rsplit("@", 1)[-1].split("/", 1)[0]


def listening_tcp_ports(pid: int) -> list[int]:
    """The TCP ports process ``pid`` listens on (its socket inodes matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def intent_commands(drop: Path) -> list[list[str]]:
    """What the attacker sends: a 20x leveraged intent, then a file written where it chooses."""
    payload = {
        "intent_id": "attack-1",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "position_size_usd": 40000,
        "leverage": 20,
        "timestamp": time.time(),
    }
    return [
        ["XADD", INTENTS, "*", "event_type", "trade.intent", "payload", json.dumps(payload)],
        ["CONFIG", "SET", "dir", str(drop)],
        ["CONFIG", "SET", "dbfilename", "planted.rdb"],
        ["SAVE"],
    ]


def assert_refused(outcome: dict[str, Any], where: str) -> None:
    """Nothing the attacker sent was carried out: no connection, or every reply a refusal."""
    if "refused" in outcome:
        # The kernel's no: the socket's directory and mode, or no listener on that port. (Not
        # FileNotFoundError: that would be an attack on the wrong address, proving nothing.)
        assert outcome["refused"] in {"PermissionError", "ConnectionRefusedError"}, (where, outcome)
        return
    for reply in outcome["replies"]:
        assert reply.startswith(REFUSALS), f"{where} answered the other user: {outcome['replies']}"


class Serve:
    """`quantum-exec serve` on the embedded defaults, its state in a directory all users traverse."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.state = base / "state"
        self.runtime = base / "run"
        self.log_path = base / "serve.log"
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
        self.env = {
            **keep,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "QUANTUM_STATE_DIR": str(self.state),
            "QUANTUM_METRICS_HOST": "127.0.0.1",
            "QUANTUM_METRICS_PORT": "0",
            "QUANTUM_WATCHDOG": "false",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def endpoints(self) -> dict[str, Any]:
        try:
            data = json.loads((self.runtime / "quantum-exec" / "endpoints.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if self.proc is not None and data.get("pid") == self.proc.pid else {}

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([EXE, "serve"], env=self.env, stdout=log, stderr=log)
        wait_until(self.endpoints, 60, "serve to record its endpoints")

    def redis_pid(self) -> int:
        return int((self.state / "redis" / "redis.pid").read_text())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `quantum-exec` command as the same user, configured by nothing but the environment."""
        env = {k: v for k, v in self.env.items() if k != "QUANTUM_METRICS_PORT"}
        return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def serve() -> Iterator[Serve]:
    # Not under pytest's tmp_path (0700 by itself): every directory above the embedded server's
    # own must be open to others, or the test would pass without the server protecting anything.
    base = Path(tempfile.mkdtemp(prefix="qx-sec-", dir="/tmp"))
    base.chmod(0o755)
    running = Serve(base)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(base, ignore_errors=True)


def _drop_dir(serve: Serve) -> Path:
    """A directory the attacker owns, where a planted dump would land."""
    drop = serve.base / "drop"
    drop.mkdir(exist_ok=True)
    drop.chmod(0o777)
    return drop


@needs_other_user
def test_another_user_cannot_xadd_an_intent_or_move_the_dump(serve: Serve) -> None:
    recorded = str(serve.endpoints()["redis_url"])
    ports = listening_tcp_ports(serve.redis_pid())
    targets = [address(recorded)] + [f"127.0.0.1:{port}" for port in ports]
    drop = _drop_dir(serve)

    for target in targets:
        assert_refused(attack_as_nobody(target, intent_commands(drop)), target)

    owner = redis.Redis.from_url(recorded, protocol=2)
    try:
        landed = [f for _, f in owner.xrange(INTENTS) if b"attack-1" in f.get(b"payload", b"")]
        assert landed == []  # the XADD never landed
    finally:
        owner.close()
    assert list(drop.iterdir()) == []  # and no file was written where the attacker chose
    assert ports == []  # the embedded server holds no TCP port at all


def test_the_owner_has_no_config_debug_or_module(serve: Serve) -> None:
    owner = redis.Redis.from_url(str(serve.endpoints()["redis_url"]), protocol=2)
    try:
        for command in (("CONFIG", "SET", "dir", "/tmp"), ("DEBUG", "SLEEP", "0"), ("MODULE", "LIST")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                owner.execute_command(*command)
    finally:
        owner.close()


def test_the_cli_finds_the_embedded_serve_for_its_own_user(serve: Serve) -> None:
    submitted = serve.cli(
        "submit", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "200", "--leverage", "2",
        "--sl-pct", "2", "--tp-pct", "4", "--intent-id", "cli-own-user",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr

    def result_shown() -> bool:
        shown = serve.cli("results", "--json")
        return shown.returncode == 0 and any(
            json.loads(line).get("intent_id") == "cli-own-user" for line in shown.stdout.splitlines()
        )

    wait_until(result_shown, 30, "`results` to show the submitted intent's result")
    for command in ("positions", "trades", "summary", "check"):
        out = serve.cli(command)
        assert out.returncode == 0, f"{command}: {out.stderr}"
    assert "BTCUSDT" in serve.cli("positions").stdout


@needs_other_user
def test_a_tcp_embedded_redis_asks_another_user_for_its_password() -> None:
    drop = Path(tempfile.mkdtemp(prefix="qx-drop-", dir="/tmp"))
    try:
        drop.chmod(0o777)
        with EmbeddedRedis(port=0) as server:
            assert server.url.startswith("redis://") and server.port > 0
            password = server.password
            assert password is not None and len(password) >= 32
            # The password is in no argument another user can read in /proc.
            assert password.encode() not in Path(f"/proc/{server.pid}/cmdline").read_bytes()
            assert_refused(
                attack_as_nobody(f"127.0.0.1:{server.port}", intent_commands(drop)), "the TCP port"
            )
            owner = redis.Redis.from_url(server.url, protocol=2)
            try:
                assert owner.xlen(INTENTS) == 0
                owner.xadd(INTENTS, {"k": "v"})  # the owner, who has the password, is served
            finally:
                owner.close()
        assert list(drop.iterdir()) == []
    finally:
        shutil.rmtree(drop, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid needs root")
def test_a_state_directory_another_user_planted_is_refused(tmp_path: Path) -> None:
    """Whoever owns the directory could read the append-only file and reach the socket."""
    serve = Serve(tmp_path)
    planted = serve.state / "redis"
    planted.mkdir(parents=True)
    planted.chmod(0o777)
    os.chown(planted, pwd.getpwnam("nobody").pw_uid, -1)
    out = subprocess.run([EXE, "serve"], env=serve.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr  # a configuration error: QUANTUM_STATE_DIR
    assert "Traceback" not in out.stderr
    [line] = out.stderr.splitlines()
    assert str(planted) in line and "not a directory of this user" in line
    assert not (planted / "redis.sock").exists() and not (planted / "redis.conf").exists()


@pytest.mark.parametrize("exchange", ["live", "demo", "testnet"])
def test_a_real_exchange_on_the_embedded_redis_is_refused_naming_the_setting(
    tmp_path: Path, exchange: str
) -> None:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    env = {
        **keep,
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "QUANTUM_STATE_DIR": str(tmp_path / "state"),
        "QUANTUM_METRICS_PORT": "0",
        "QUANTUM_WATCHDOG": "false",
        "QUANTUM_EXCHANGE": exchange,
        "QUANTUM_LIVE_CONFIRM": "yes",
        "BINANCE_API_KEY": "k" * 64,
        "BINANCE_API_SECRET": "s" * 64,
    }
    out = subprocess.run([EXE, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("quantum-exec:") and "QUANTUM_ALLOW_EMBEDDED_REDIS" in line
    assert not (tmp_path / "state" / "redis").exists()  # no embedded server was started

    allowed = subprocess.run(
        [EXE, "serve", "--print-config"],
        env={**env, "QUANTUM_ALLOW_EMBEDDED_REDIS": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["allow_embedded_redis"] is True
