"""The private redis-server: start, answer, restart on the same port, stop twice."""

from __future__ import annotations

import pytest
import redis

from quantum_exec.embedded import EmbeddedRedis

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
