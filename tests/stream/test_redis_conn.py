"""The service's Redis connections (core.redis_conn): commands and pipelines on the quick write
path, over a unix socket and over TCP, and a frozen Redis still detected by the socket timeout,
for a command that is sent at once and for one the socket cannot take (the bounded drain)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.core import redis_client
from quantum_exec.core.redis_client import connect
from quantum_exec.core.redis_conn import QuickConnection, QuickUnixConnection
from quantum_exec.core.settings import Settings

# The client's socket timeout is block_ms / 1000 + SOCKET_MARGIN_S (shortened here), each command
# tried again by redis-py's retries: a deadline for a hang, not a timing assertion.
HANG_DEADLINE_S = 60


@pytest.fixture
def unix_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def tcp_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(port=0) as server:
        yield server


async def test_commands_and_pipelines_run_on_the_quick_connections(
    unix_server: EmbeddedRedis, tcp_server: EmbeddedRedis
) -> None:
    for server, kind in ((unix_server, QuickUnixConnection), (tcp_server, QuickConnection)):
        password = server.password if server is tcp_server else None
        settings = Settings(redis_url=server.url, redis_password=password)
        client = connect(settings, block_ms=100)
        try:
            assert client.connection_pool.connection_class is kind
            await client.set("k", b"v" * 300_000)  # larger than one socket write
            assert await client.get("k") == b"v" * 300_000
            pipe = client.pipeline(transaction=False)
            for i in range(50):
                pipe.incr("n", i)
            replies = await pipe.execute()
            assert replies[-1] == sum(range(50))
        finally:
            await client.aclose()


async def test_a_frozen_redis_is_detected_within_the_socket_timeout(
    unix_server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_client, "SOCKET_MARGIN_S", 0.5)
    # Two clients, each with a connection made before the freeze: the commands below take the
    # quick path (a command on a new connection fails at its handshake instead).
    writer = connect(Settings(redis_url=unix_server.url), block_ms=100)
    reader = connect(Settings(redis_url=unix_server.url), block_ms=100)
    try:
        assert await writer.ping() and await reader.ping()
        os.kill(unix_server.pid, signal.SIGSTOP)
        try:
            # Larger than what the socket buffers hold: the bounded drain times out (redis-py's
            # retry then finds no answer to a new connection's handshake either). Not the
            # deadline's own TimeoutError: a write left waiting would hang until it.
            with pytest.raises((RedisTimeoutError, RedisConnectionError)):
                await asyncio.wait_for(writer.set("big", b"x" * 64_000_000), HANG_DEADLINE_S)
            # Sent at once (the socket takes it): the read times out.
            with pytest.raises((RedisTimeoutError, RedisConnectionError)):
                await asyncio.wait_for(reader.get("k"), HANG_DEADLINE_S)
        finally:
            os.kill(unix_server.pid, signal.SIGCONT)
        assert await writer.ping() and await reader.ping()  # new connections once it answers
    finally:
        await writer.aclose()
        await reader.aclose()
