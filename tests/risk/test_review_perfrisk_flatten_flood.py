"""Adversarial review of the one-script admission (issue #29): the kill switch under a flood of
entries it refuses.

FAILED on main at 44563cb: the admission script records every entry before the gate decides, even
one the state refuses (HALTED refuses them all), and the record is released only when its settle
reaches Redis (up to ``SETTLE_DELAY_S`` later, or with the next admission, which records itself).
While a producer keeps sending entries after a HALT + flatten (a strategy that does not know it is
halted), the admitted set is seldom empty, so the flatten's last step (no admitted entry without
its exchange answer) waits, tick after tick, for entries that will never be sent: the busier the
producer, the later ``flatten_done`` (sampled here: the set held refused entries most of the time).
Fixed: the script records an entry only when the state it reads may admit it.
Checked from the risk events and the simulator's own positions and order history."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

FLOOD_SYMBOLS = (("ETHUSDT", "0.050"), ("SOLUSDT", "1"), ("BNBUSDT", "0.30"))


async def _events(desk: Desk) -> list[dict[str, Any]]:
    rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    return [json.loads(fields[b"payload"], parse_float=Decimal) for _sid, fields in rows]


async def test_the_flatten_finishes_while_refused_entries_keep_arriving(desk: Desk) -> None:
    risk = {"risk_stream": f"{desk.names['intent_stream']}:risk"}
    service = await desk.service(**risk)
    await desk.publish(intent_id="open", symbol="BTCUSDT", side="BUY", quantity="0.010")
    assert (await desk.result("open")).status is ResultStatus.FILLED
    store = RiskStore(desk.redis, service.settings)
    assert await store.transition(Request(TradingState.HALTED, "review: halt", "operator:review"))
    published: list[str] = []
    flatten_seen = asyncio.Event()
    admitted_key = f"{service.settings.key_prefix}:risk:admitted"
    held: list[int] = []  # the admitted set's size, sampled while the flood runs (all refused)

    async def flood() -> None:
        # A producer that keeps its entries coming, a little ahead of what the service answers.
        n = 0
        while not flatten_seen.is_set() and n < 20_000:
            held.append(await desk.redis.zcard(admitted_key))
            backlog = len(published) - await desk.redis.xlen(desk.names["result_stream"])
            if backlog > 60:
                await asyncio.sleep(0.002)
                continue
            for _ in range(20):
                symbol, quantity = FLOOD_SYMBOLS[n % len(FLOOD_SYMBOLS)]
                intent_id = f"flood-{n}"
                await desk.publish(intent_id=intent_id, symbol=symbol, side="BUY", quantity=quantity)
                published.append(intent_id)
                n += 1

    flooding = asyncio.create_task(flood())
    try:

        async def flooding_steadily() -> bool:
            return await desk.redis.xlen(desk.names["result_stream"]) > 150

        await wait_for(flooding_steadily, 30, "the refused entries streaming in")
        # The kill switch while they keep coming: HALTED with a flatten.
        assert await store.transition(
            Request(TradingState.HALTED, "review: kill switch", "operator:review", flatten=True)
        )
        await wait_for(lambda: desk.position("BTCUSDT") == 0, 30, "the flatten's CLOSE on BTCUSDT")

        async def finished() -> bool:
            return any(e["kind"] == "flatten_done" for e in await _events(desk))

        # Nothing is left on the exchange and no entry is admitted: a few governor ticks at most.
        await wait_for(finished, 15, "flatten_done while refused entries keep arriving")
    finally:
        flatten_seen.set()
        await flooding
    assert len(published) > 200  # the flood did run through the flatten
    # HALTED refuses every one of them: none ever held back the flatten (or a transition).
    assert max(held) == 0, (
        f"refused entries held the admitted set in {sum(1 for h in held if h)} of {len(held)} samples"
    )
    results = await desk.results()
    for intent_id in published[:200]:
        result = results.get(intent_id) or await desk.result(intent_id, 30)
        assert result.error is not None and result.error.code == "TRADING_HALTED", result
    flooded = {symbol for symbol, _quantity in FLOOD_SYMBOLS}
    assert [o for o in desk.sim.state()["orders"] if o["symbol"] in flooded] == []  # nothing sent
