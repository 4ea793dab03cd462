"""run_script against a real Redis: EVALSHA, and a script the server lost loaded again."""

from __future__ import annotations

import pytest
from redis import asyncio as aioredis

from quantum_exec.core.scripts import run_script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

_INCR_BY: str = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_a_script_runs_and_is_loaded_again_after_a_flush(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        script = redis.register_script(_INCR_BY)
        key = "quantum-test:run-script:counter"
        await redis.delete(key)
        assert await run_script(script, keys=[key], args=[2]) == 2  # never loaded: NOSCRIPT, load, run
        assert await run_script(script, keys=[key], args=[3]) == 5
        await redis.script_flush()  # as a restart or a failover to a replica loses it
        assert await run_script(script, keys=[key], args=[4]) == 9  # run once, not twice
        assert await redis.script_exists(script.sha) == [True]
        await redis.delete(key)
    finally:
        await redis.aclose()
