"""Two instances share one account: SIGKILL the account-lease holder while a stop triggers.

The survivor takes the lease over within its TTL and finishes what the dead one may not have
done: the sibling is cancelled (once), every position event is published exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import asyncio as aioredis

from binance_sim import Simulator
from quantum_exec.contracts import ProtectionState, encode_intent_fields
from quantum_exec.contracts.result import decode_result_fields
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WORKER = Path(__file__).with_name("account_worker.py")


def _spawn(
    sim: Simulator, redis_url: str, names: dict[str, Any], tmp_path: Path, name: str
) -> subprocess.Popen[bytes]:
    config = {
        **names,
        "redis_url": redis_url,
        "consumer_name": name,
        "binance_base_url": sim.base_url,
        "api_key": "quantum-sim-key",
        "api_secret": "quantum-sim-secret",
        "block_ms": 100,
        "claim_interval_s": 0.2,
        "order_lookup_interval_s": 0.05,
        "recv_window_ms": 2000,
        "account_lease_ttl_s": 1.0,
        "watchdog": False,
        "events_path": str(tmp_path / "events.txt"),
    }
    log = (tmp_path / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, str(WORKER), orjson.dumps(config).decode()], stderr=log)


def _ready(tmp_path: Path) -> list[str]:
    path = tmp_path / "events.txt"
    return path.read_text().split() if path.exists() else []


async def test_killing_the_lease_holder_during_a_trigger_repeats_no_effect(
    sim: Simulator, redis: aioredis.Redis, redis_url: str, unique_names: dict[str, Any], tmp_path: Path
) -> None:
    lease_key = f"{unique_names['key_prefix']}:account:lease"
    procs = {name: _spawn(sim, redis_url, unique_names, tmp_path, name) for name in ("inst-a", "inst-b")}
    try:
        await wait_for(lambda: {"inst-a", "inst-b"} <= set(_ready(tmp_path)), 30, "both instances ready")
        holder_value = await redis.get(lease_key)
        assert holder_value is not None
        holder = holder_value.decode().split("|", 1)[1].split(":", 1)[0]
        survivor = ({"inst-a", "inst-b"} - {holder}).pop()

        mark = sim.engine.mark("BTCUSDT")
        stop = (mark * Decimal("0.98")).quantize(Decimal("0.1"))
        payload = {
            "intent_id": "takeover-1",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "0.010",
            "stop_loss": str(stop),
            "take_profit": str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
        }
        await redis.xadd(unique_names["intent_stream"], encode_intent_fields(payload, "test"))  # type: ignore[arg-type]

        async def result() -> Any:
            rows = await redis.xrange(unique_names["result_stream"])
            return decode_result_fields(rows[0][1]) if rows else None

        await wait_for(result, 20, "the result")
        done = await result()
        assert done.protection is ProtectionState.PROTECTED
        target_id = done.take_profit.client_algo_id

        # The stop crosses but is held in TRIGGERING; the holder dies as it is released.
        sim.set_faults(hold_triggering=True)
        sim.set_mark_price("BTCUSDT", stop * Decimal("0.999"))
        sim.set_faults(hold_triggering=False)
        procs[holder].kill()
        procs[holder].wait(10)

        def target_status() -> str:
            return next(a["algoStatus"] for a in sim.state()["algoOrders"] if a["clientAlgoId"] == target_id)

        await wait_for(lambda: target_status() == "CANCELED", 10, "the target cancelled")
        taken = await redis.get(lease_key)
        assert taken is not None and survivor in taken.decode()

        async def events() -> list[dict[str, Any]]:
            rows = await redis.xrange(unique_names["position_stream"])
            return [json.loads(f[b"payload"], parse_float=Decimal) for _sid, f in rows]

        async def closed() -> bool:
            return any(e["kind"] == "closed" for e in await events())

        await wait_for(closed, 10, "the closed event")
        published = await events()
        assert len({e["event_id"] for e in published}) == len(published)
        assert [e["kind"] for e in published] == ["opened", "closed"]
        assert published[1]["reason"] == "stop_loss" and published[1]["intent_id"] == "takeover-1"
        assert [a["algoStatus"] for a in sim.state()["algoOrders"]].count("CANCELED") == 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
