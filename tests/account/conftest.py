"""The account tests' desk: a whole service on the simulator, stopped after the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis

from binance_sim import Simulator
from support.desk import Desk


@pytest.fixture
async def desk(sim: Simulator, redis_url: str, unique_names: dict[str, Any]) -> AsyncIterator[Desk]:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    desk = Desk(sim, client, unique_names, redis_url)
    try:
        yield desk
    finally:
        for service in desk.services:
            await asyncio.wait_for(service.stop(), 30)
        await client.aclose()
