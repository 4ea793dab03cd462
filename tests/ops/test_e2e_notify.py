"""End to end: `quantum-exec serve` as a subprocess under a fake systemd notify socket."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from binance_sim import Simulator
from quantum_exec.app.embedded import EmbeddedRedis

from .conftest import NotifySocket

pytestmark = pytest.mark.integration

SIM_KEY = "quantum-sim-key"
SIM_SECRET = "quantum-sim-secret"
WATCHDOG_USEC = 1_000_000  # pings every 0.5 s: several arrive within a short test


class Received:
    """Datagrams from the service with their arrival times."""

    def __init__(self, notify: NotifySocket) -> None:
        self.notify = notify
        self.messages: list[str] = []
        self.times: list[float] = []

    def index(self, prefix: str) -> int | None:
        return next((i for i, m in enumerate(self.messages) if m.startswith(prefix)), None)

    async def until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Receive until ``predicate()``; fail at the deadline."""
        loop = asyncio.get_running_loop()
        self.notify.sock.setblocking(False)
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}; got {self.messages}")
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.notify.sock, 4096), remaining)
            except TimeoutError:
                continue
            self.messages.append(data.decode())
            self.times.append(time.monotonic())


async def test_ready_watchdog_stopping_in_order(
    sim: Simulator, redis_url: str, unique_names: dict[str, Any], notify_socket: NotifySocket
) -> None:
    script = Path(sys.executable).parent / "quantum-exec"
    if not script.exists():
        pytest.skip(f"{script} missing: install the package (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    env.update({f"QUANTUM_{k.upper()}": str(v) for k, v in unique_names.items()})
    env.update(
        {
            "QUANTUM_REDIS_URL": redis_url,
            "QUANTUM_EXCHANGE": "sim",
            "QUANTUM_BINANCE_BASE_URL": sim.base_url,
            "BINANCE_API_KEY": SIM_KEY,
            "BINANCE_API_SECRET": SIM_SECRET,
            "QUANTUM_METRICS_HOST": "127.0.0.1",
            "QUANTUM_METRICS_PORT": "0",
            "QUANTUM_BLOCK_MS": "100",
            "QUANTUM_SHUTDOWN_GRACE_S": "5",
            "NOTIFY_SOCKET": notify_socket.address,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        }
    )
    env.pop("WATCHDOG_PID", None)
    proc = await asyncio.create_subprocess_exec(
        str(script), "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    got = Received(notify_socket)
    try:
        await got.until(lambda: got.index("READY=1") is not None, 60, "READY=1")
        ready_at = got.index("READY=1")
        assert ready_at is not None
        await got.until(
            lambda: got.messages[ready_at + 1 :].count("WATCHDOG=1") >= 4,
            15,
            "four WATCHDOG=1 after READY=1 (the idle consumer loop feeds it)",
        )
        proc.send_signal(signal.SIGTERM)
        await got.until(lambda: got.index("STOPPING=1") is not None, 15, "STOPPING=1")
        returncode = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        output = (await proc.stdout.read()).decode() if proc.stdout else ""

    assert returncode == 0, output
    stopping_at = got.index("STOPPING=1")
    assert stopping_at is not None and ready_at < stopping_at
    assert [m for m in got.messages if m.startswith("READY=1")] == [got.messages[ready_at]]
    # The loop calls the hook on every iteration; pings leave at most once per half interval and
    # always well within the interval (systemd would kill the service otherwise).
    pings = [t for t, m in zip(got.times, got.messages, strict=True) if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(gaps) >= 3
    interval_s = WATCHDOG_USEC / 1_000_000
    assert min(gaps) >= interval_s / 2 * 0.8, gaps
    assert max(gaps) < interval_s, gaps
    for line in output.splitlines():
        assert orjson.loads(line)["event"], line  # JSON lines on stdout, one event each
    assert SIM_SECRET not in output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_redis_outage_at_start_and_mid_run_keeps_the_unit_alive(
    sim: Simulator, unique_names: dict[str, Any], notify_socket: NotifySocket
) -> None:
    """READY only once Redis answers; meanwhile the start timeout is extended (no failed start, no
    restart loop); an outage after READY keeps the watchdog fed from the reconnect loop."""
    script = Path(sys.executable).parent / "quantum-exec"
    port = _free_port()
    password = "notify-test-password"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    env.update({f"QUANTUM_{k.upper()}": str(v) for k, v in unique_names.items()})
    env.update(
        {
            "QUANTUM_REDIS_URL": f"redis://:{password}@127.0.0.1:{port}/0",
            "QUANTUM_BINANCE_BASE_URL": sim.base_url,
            "BINANCE_API_KEY": SIM_KEY,
            "BINANCE_API_SECRET": SIM_SECRET,
            "QUANTUM_METRICS_HOST": "127.0.0.1",
            "QUANTUM_METRICS_PORT": "0",
            "QUANTUM_BLOCK_MS": "100",
            "QUANTUM_REDIS_RECONNECT_MAX_S": "0.2",
            "NOTIFY_SOCKET": notify_socket.address,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        }
    )
    env.pop("WATCHDOG_PID", None)
    proc = await asyncio.create_subprocess_exec(
        str(script), "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    got = Received(notify_socket)
    server: EmbeddedRedis | None = None
    try:
        await got.until(
            lambda: sum(m.startswith("EXTEND_TIMEOUT_USEC=") for m in got.messages) >= 3,
            30,
            "start-up to ask for more time while Redis is unreachable",
        )
        assert got.index("READY=1") is None
        assert proc.returncode is None  # still trying, not failed
        server = EmbeddedRedis(port=port, password=password).start()
        await got.until(lambda: got.index("READY=1") is not None, 30, "READY=1 once Redis answers")

        server.stop()
        down_at = len(got.messages)
        await got.until(
            lambda: got.messages[down_at:].count("WATCHDOG=1") >= 3,
            15,
            "WATCHDOG=1 while Redis is down (the reconnect loop is alive)",
        )
        assert proc.returncode is None
        server = EmbeddedRedis(port=port, password=password).start()
        proc.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if server is not None:
            server.stop()
        output = (await proc.stdout.read()).decode() if proc.stdout else ""
    assert returncode == 0, output
    assert "redis.unreachable_at_start" in output
