"""The moment of a HALT or REDUCING: a burst of entries on two instances races the transition; from
the time its risk event names on, no entry order reaches the exchange (the simulator's own order
history: each order's transaction time), and every entry either reached it before or was refused."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# (symbol, quantity): small entries the simulator fills at once.
SYMBOLS = (("BTCUSDT", "0.002"), ("ETHUSDT", "0.050"), ("SOLUSDT", "1"), ("BNBUSDT", "0.30"))
BURST = 48


async def _events(desk: Desk) -> list[dict[str, Any]]:
    rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    return [json.loads(fields[b"payload"], parse_float=Decimal) for _sid, fields in rows]


@pytest.mark.parametrize("to", [TradingState.HALTED, TradingState.REDUCING])
async def test_no_entry_order_reaches_the_exchange_after_the_transitions_moment(
    desk: Desk, to: TradingState
) -> None:
    risk = {"risk_stream": f"{desk.names['intent_stream']}:risk"}
    service = await desk.service(**risk)
    await desk.service(**risk, consumer_name=desk.names["consumer_name"] + "-b")
    ids = [f"burst-{n}" for n in range(BURST)]
    for n, intent_id in enumerate(ids):
        symbol, quantity = SYMBOLS[n % len(SYMBOLS)]
        await desk.publish(intent_id=intent_id, symbol=symbol, side="BUY", quantity=quantity)

    async def some_done() -> bool:
        return len(await desk.results()) >= 3

    await wait_for(some_done, 30, "the burst under way")
    store = RiskStore(desk.redis, service.settings)
    assert await store.transition(Request(to, "test: the moment", "operator:test")) is not None
    results = {intent_id: await desk.result(intent_id, 60) for intent_id in ids}

    (event,) = [e for e in await _events(desk) if e["kind"] == "transition"]
    moment_ms = int(datetime.fromisoformat(event["time"]).timestamp() * 1000)
    assert event["drain"]["unsettled"] == 0, event  # every entry admitted before it had its answer
    entries = {client_order_id(i, "entry"): i for i in ids}
    sent = {
        entries[o["clientOrderId"]]: o["time"]
        for o in desk.sim.state()["orders"]
        if o["clientOrderId"] in entries
    }
    late = {i: t - moment_ms for i, t in sent.items() if t > moment_ms}
    assert late == {}, f"entry orders after the moment (ms after it): {late}"
    refused = [i for i, r in results.items() if r.error is not None and r.error.code == f"TRADING_{to.value}"]
    filled = [i for i, r in results.items() if r.status is ResultStatus.FILLED]
    assert sorted(refused + filled) == sorted(ids), {i: r.status for i, r in results.items()}
    assert set(filled) == set(sent)  # every order that reached the exchange is a filled entry
    assert refused and filled  # the transition did land inside the burst
