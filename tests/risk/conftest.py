"""The risk tests' own Redis client (a fresh one per test, on the session's real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis import asyncio as aioredis


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        yield client
    finally:
        await client.aclose()
