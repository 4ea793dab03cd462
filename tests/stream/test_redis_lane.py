"""The scripts' lane (core.redis_lane) against a real redis-server: the scripts of one loop turn
share one connection and one write, each caller gets its own reply or its own error, a lost
connection fails only the calls whose replies were due (the next call works), a demoted master's
READONLY drops the connection, and an idle connection is PINGed before it is used again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.core import redis_client
from quantum_exec.core.redis_client import connect
from quantum_exec.core.redis_lane import lane_of
from quantum_exec.core.scripts import run_script
from quantum_exec.core.settings import Settings

ECHO = "redis.call('INCR', KEYS[1]) return ARGV[1]"
FAIL_ON = "if ARGV[1] == 'boom' then return redis.error_reply('ERR boom') end return ARGV[1]"
DEADLINE_S = 30


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


@pytest.fixture
async def client(server: EmbeddedRedis) -> AsyncIterator[Redis]:
    redis = connect(Settings(redis_url=server.url), block_ms=100)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _lane_connections(admin: Redis, name: bytes = b"quantum-exec") -> int:
    clients = await admin.client_list()
    return sum(1 for c in clients if c.get("name") == name.decode())


async def test_a_loop_turn_of_scripts_is_one_connection_and_each_gets_its_own_reply(client: Redis) -> None:
    assert lane_of(client) is not None
    script = client.register_script(ECHO)
    replies = await asyncio.gather(*(run_script(script, ["n"], [f"v{i}"]) for i in range(200)))
    assert replies == [f"v{i}".encode() for i in range(200)]
    assert int(await client.get("n")) == 200
    # redis-py's pool would have opened a connection per concurrent call; the lane used one, and
    # the GET above one more from the pool.
    assert await _lane_connections(client) <= 3


async def test_an_error_reply_fails_only_its_own_call(client: Redis) -> None:
    script = client.register_script(FAIL_ON)
    calls = [run_script(script, ["k"], [v]) for v in ("a", "boom", "c")]
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert got[0] == b"a" and got[2] == b"c"
    assert isinstance(got[1], ResponseError) and "boom" in str(got[1])


async def test_a_script_the_server_lost_is_loaded_again(client: Redis) -> None:
    script = client.register_script(ECHO)
    assert await run_script(script, ["n"], ["x"]) == b"x"
    await client.script_flush()
    assert await run_script(script, ["n"], ["y"]) == b"y"  # NOSCRIPT: loaded, sent again


async def test_a_cancelled_caller_does_not_shift_the_others_replies(client: Redis) -> None:
    script = client.register_script(ECHO)
    first = asyncio.ensure_future(run_script(script, ["n"], ["first"]))
    others = [asyncio.ensure_future(run_script(script, ["n"], [f"o{i}"])) for i in range(20)]
    await asyncio.sleep(0)  # written in this turn's flush
    first.cancel()
    assert await asyncio.gather(*others) == [f"o{i}".encode() for i in range(20)]
    assert await run_script(script, ["n"], ["after"]) == b"after"


async def test_a_closed_connection_fails_the_due_calls_and_the_next_call_works(client: Redis) -> None:
    script = client.register_script("return ARGV[1]")
    assert await run_script(script, [], ["warm"]) == b"warm"
    lane = lane_of(client)
    assert lane is not None
    # One write: QUIT (the server answers it, then closes without reading on), then a script.
    quit_reply = lane.call("QUIT")
    due = lane.call("EVALSHA", script.sha, 0, "lost")
    assert await asyncio.wait_for(quit_reply, DEADLINE_S) == b"OK"
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(due, DEADLINE_S)
    assert await asyncio.wait_for(run_script(script, [], ["again"]), DEADLINE_S) == b"again"


async def test_a_frozen_server_times_the_due_calls_out(
    server: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_client, "SOCKET_MARGIN_S", 0.5)
    client = connect(Settings(redis_url=server.url), block_ms=100)
    script = client.register_script("return ARGV[1]")
    try:
        assert await run_script(script, [], ["up"]) == b"up"
        os.kill(server.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(run_script(script, [], ["frozen"]), DEADLINE_S)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert await asyncio.wait_for(run_script(script, [], ["thawed"]), DEADLINE_S) == b"thawed"
    finally:
        await client.aclose()


async def test_a_demoted_master_drops_the_connection(server: EmbeddedRedis, client: Redis) -> None:
    script = client.register_script(ECHO)
    assert await run_script(script, ["n"], ["ok"]) == b"ok"
    admin = connect(Settings(redis_url=server.url), block_ms=100)
    try:
        # Now a replica of nobody: a write is refused with READONLY.
        await admin.execute_command("REPLICAOF", "127.0.0.1", "1")
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(run_script(script, ["n"], ["refused"]), DEADLINE_S)
        await admin.execute_command("REPLICAOF", "NO", "ONE")
        assert await asyncio.wait_for(run_script(script, ["n"], ["back"]), DEADLINE_S) == b"back"
    finally:
        await admin.aclose()


async def test_an_idle_connection_is_checked_before_it_is_used(client: Redis) -> None:
    script = client.register_script("return ARGV[1]")
    assert await run_script(script, [], ["one"]) == b"one"
    lane = lane_of(client)
    assert lane is not None
    conn = lane._conn
    assert conn is not None
    pings: list[str] = []
    check = conn.check_health

    async def counted() -> None:
        pings.append("ping")
        await check()

    conn.check_health = counted  # type: ignore[method-assign]
    conn.next_health_check = 0  # idle past the interval
    assert await run_script(script, [], ["two"]) == b"two"
    assert pings == ["ping"]
    assert await run_script(script, [], ["three"]) == b"three"
    assert pings == ["ping"]  # the reply moved the next check on


async def test_a_stopped_server_fails_the_call_within_the_socket_timeout(server: EmbeddedRedis) -> None:
    client = connect(Settings(redis_url=server.url), block_ms=100)
    script = client.register_script("return ARGV[1]")
    try:
        assert await run_script(script, [], ["up"]) == b"up"
        server.stop()
        with pytest.raises((RedisConnectionError, RedisTimeoutError, OSError)):
            await asyncio.wait_for(run_script(script, [], ["down"]), DEADLINE_S)
    finally:
        await client.aclose()


async def test_many_gives_each_command_its_reply_or_error_in_order(client: Redis) -> None:
    lane = lane_of(client)
    assert lane is not None
    replies = await lane.many(
        [("SET", "a", "1"), ("INCR", "no-such-number-key-x"), ("HSET", "a", "f", "v"), ("GET", "a")]
    )
    assert replies[0] == b"OK" and replies[1] == 1 and replies[3] == b"1"
    assert isinstance(replies[2], ResponseError)  # WRONGTYPE: that command alone
