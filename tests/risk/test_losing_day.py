"""A scripted losing day on the real service and the simulator: positions open, the mark walks
against them, the day's loss crosses the limit mid-burst. From that moment no entry reaches the
exchange (its own order history), REDUCING, then (the action raised at run time) HALTED + flatten:
flat, no conditional order of ours, one risk event per transition, and the day figure equal to the
simulator's trades to the cent; resuming needs force until the next UTC day."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from quantum_exec.app.service import Service
from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "risk-losing-day-token-0123456789"


async def _post(service: Service, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{service.metrics_port}{path}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as r:
        return r.status, json.loads(await r.read(), parse_float=Decimal)


async def test_a_losing_day_reduces_then_halts_and_flattens(desk: Desk) -> None:
    settings = desk.settings(
        metrics_port=0,
        metrics_host="127.0.0.1",
        watchdog=False,
        api_token=TOKEN,
        risk_stream=f"{desk.names['intent_stream']}:risk",
        risk_max_daily_loss_usd=Decimal(15),
        risk_check_interval_s=0.1,
    )
    service = Service(settings)
    desk.services.append(service)
    await service.start()
    assert service.governor is not None
    gate = service.governor.gate
    sim = desk.sim
    btc = sim.engine.mark("BTCUSDT")
    await desk.publish(intent_id="day-0", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss_pct=10)
    assert (await desk.result("day-0")).status is ResultStatus.FILLED

    # The burst: one entry after another while the mark walks down 0.5 % a step.
    outcomes: dict[str, str] = {}
    for n in range(1, 12):
        sim.set_mark_price("BTCUSDT", (btc * (1 - Decimal("0.005") * n)).quantize(Decimal("0.1")))
        intent_id = f"day-{n}"
        await desk.publish(
            intent_id=intent_id, symbol="ETHUSDT", side="BUY", quantity="0.050", stop_loss_pct=10
        )
        result = await desk.result(intent_id)
        outcomes[intent_id] = result.error.code if result.error else result.status.value
        if n == 6:  # let the governor see the walk before the rest of the burst
            await wait_for(lambda: gate.state.state == "REDUCING", 10, "REDUCING for the day's loss")
    refused = [i for i, code in outcomes.items() if code == "TRADING_REDUCING"]
    filled = [i for i, code in outcomes.items() if code == "filled"]
    assert refused and filled and set(refused) | set(filled) == set(outcomes), outcomes
    first_refused = min(int(i.split("-")[1]) for i in refused)
    assert all(int(i.split("-")[1]) < first_refused for i in filled)  # none gets through after the cut
    sent = {o["clientOrderId"] for o in sim.state()["orders"]}
    assert not [i for i in refused if client_order_id(i, "entry") in sent]
    assert all(client_order_id(i, "entry") in sent for i in filled)

    status, body = await _post(service, "/api/control/limits", {"on_daily_loss": "halt_flatten", "who": "t"})
    assert status == 200 and body["limits"]["on_daily_loss"] == "halt_flatten"

    def clean() -> bool:
        state = sim.state()
        flat = all(Decimal(p["positionAmt"]) == 0 for p in state["positions"])
        ours = [
            a for a in state["algoOrders"] if a["algoStatus"] == "NEW" and a["clientAlgoId"].startswith("qx")
        ]
        return flat and not ours and not gate.state.flatten and gate.state.state == "HALTED"

    await wait_for(clean, 30, "HALTED, flattened: flat and no conditional order of ours")
    rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    events = [json.loads(f[b"payload"], parse_float=Decimal) for _sid, f in rows]
    transitions = [(e["from"], e["to"], e["by"], e.get("limit")) for e in events if e["kind"] == "transition"]
    assert transitions == [
        ("ACTIVE", "REDUCING", "governor", "max_daily_loss_usd"),
        ("REDUCING", "HALTED", "governor", "max_daily_loss_usd"),
    ]
    assert [e["kind"] for e in events].count("flatten_done") == 1
    first = next(e for e in events if e["kind"] == "transition")
    assert first["numbers"]["pnl"] <= -15 and first["numbers"]["max"] == 15

    # The day's figure: the ledger's booked PnL equals the simulator's trades, to the cent.
    trades = sim.state()["trades"]
    expected = sum((Decimal(t["realizedPnl"]) - Decimal(t["commission"]) for t in trades), Decimal(0))

    async def booked() -> bool:
        day = service.governor.status()["day"] if service.governor else None
        return day is not None and day["booked"] == expected and day["unrealized"] == 0

    await wait_for(booked, 15, f"the ledger's day figure at {expected}")

    status, body = await _post(service, "/api/control/state", {"state": "ACTIVE"})
    assert status == 409 and "--force" in body["error"]["message"]
    status, body = await _post(service, "/api/control/state", {"state": "ACTIVE", "force": True})
    assert status == 200 and body["state"]["state"] == "ACTIVE"
