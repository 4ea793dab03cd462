"""The private redis-server: start, answer, restart on the same port, stop twice."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from quantum_exec.embedded import EmbeddedRedis, EmbeddedRedisError, find_redis_server
from support.waiting import alive, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_start_restart_stop() -> None:
    server = EmbeddedRedis(persistent=True)
    with server:
        client = redis.Redis.from_url(server.url, protocol=2)
        assert server.port != 6379
        client.set("k", "v")
        port = server.port
        server.restart()
        assert server.port == port
        client = redis.Redis.from_url(server.url, protocol=2)
        assert client.get("k") == b"v"  # append-only file kept the data
        client.close()
    assert not server.running
    server.stop()  # safe twice


def test_not_persistent_forgets() -> None:
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url, protocol=2)
        client.set("k", "v")
        server.restart()
        client = redis.Redis.from_url(server.url, protocol=2)
        assert client.get("k") is None
        client.close()


def test_session_fixture_is_not_6379(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, protocol=2)
    assert client.ping()
    client.close()


def test_state_dir_keeps_data_across_owners_and_refuses_a_second_owner(tmp_path: Path) -> None:
    state = tmp_path / "redis"
    with EmbeddedRedis(state_dir=state) as server:
        client = redis.Redis.from_url(server.url, protocol=2)
        client.xadd("s", {"k": "v"})
        client.close()
        with pytest.raises(EmbeddedRedisError, match="in use by another quantum-exec process"):
            EmbeddedRedis(state_dir=state).start()
    assert (state / "appendonly.aof").exists()
    with EmbeddedRedis(state_dir=state) as again:  # a new process on the same directory
        client = redis.Redis.from_url(again.url, protocol=2)
        assert client.xlen("s") == 1
        client.close()


def test_server_dies_with_a_sigkilled_owner(tmp_path: Path) -> None:
    state = tmp_path / "redis"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from quantum_exec.embedded import EmbeddedRedis;"
            "EmbeddedRedis(state_dir=Path(sys.argv[1])).start(); print('up', flush=True); time.sleep(60)",
            str(state),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == b"up"
        pid = int((state / "redis.pid").read_text())
        assert alive(pid)
        owner.kill()
        owner.wait()
        wait_until(lambda: not alive(pid), 10, "redis-server to die with its owner")
    finally:
        owner.kill()
        owner.wait()


def test_next_start_stops_a_server_left_behind(tmp_path: Path) -> None:
    """A server whose owner vanished without the death signal (e.g. an older build) is stopped."""
    state = tmp_path / "redis"
    state.mkdir()
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    stray = subprocess.Popen(
        [
            find_redis_server(),
            "--port",
            str(number),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(state),
            "--pidfile",
            str(state / "redis.pid"),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: (state / "redis.pid").exists(), 10, "the stray server's pidfile")
        with EmbeddedRedis(state_dir=state) as server:
            assert stray.wait(timeout=10) is not None
            assert int((state / "redis.pid").read_text()) != stray.pid
            client = redis.Redis.from_url(server.url, protocol=2)
            assert client.ping()
            client.close()
    finally:
        stray.kill()
        stray.wait()
