"""A burst above Binance's order limits, the limits enforced by the simulator: entries that pacing
would hold past their intent's TTL are shed (never sent late), and the exchange never says 429."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.waiting import wait_for

# serial: a throughput bound (200-300 fills inside a 3 s TTL), measured without the suite's other workers.
pytestmark = [pytest.mark.integration, pytest.mark.serial, pytest.mark.timeout(120)]

# Small notionals on several symbols: ~330 one-order entries (the budget is 270 per 10 s).
SYMBOLS = {"DOGEUSDT": "40", "XRPUSDT": "3.0", "ADAUSDT": "14", "ARBUSDT": "15.0", "NEARUSDT": "5"}


@pytest.mark.skipif(
    bool(os.environ.get("QUANTUM_TEST_STREAM_REORDER")),
    reason="a throughput bound (>= 200 fills inside a 3 s TTL): the reorder fault holds every event "
    "30-60 ms and each entry waits for its fill's event to read its fees, so it measures the fault; "
    "shedding itself is covered in the plain run",
)
async def test_entries_pacing_would_send_past_their_ttl_are_shed_not_sent_late(desk: Desk) -> None:
    ttl_s = 3.0
    await desk.service(intent_ttl_s=ttl_s, max_concurrency=64)
    published: dict[str, float] = {}
    for i in range(330):
        symbol = list(SYMBOLS)[i % len(SYMBOLS)]
        key = f"burst-{i}"
        published[key] = time.time()
        await desk.publish(intent_id=key, symbol=symbol, side="BUY", quantity=SYMBOLS[symbol])

    async def all_answered() -> bool:
        return len(await desk.results()) >= len(published)

    await wait_for(all_answered, 60, "a result for every intent")
    results = await desk.results()
    filled = [k for k, r in results.items() if r.status is ResultStatus.FILLED]
    # Stale either way: shed by pacing ("not sent: ...") or, on a loaded machine, already past the
    # TTL when its turn came (the TTL guard). Neither is ever sent.
    shed = [k for k, r in results.items() if r.error is not None and r.error.code == "STALE_INTENT"]
    assert len(filled) + len(shed) == len(published), {
        (r.status, r.error and r.error.code) for r in results.values()
    }
    assert 200 <= len(filled) <= 300, (len(filled), len(shed))
    assert any(
        "not sent" in (results[k].error.message if results[k].error else "") for k in shed
    )  # pacing shed
    orders = {o["clientOrderId"]: o for o in desk.sim.state()["orders"]}
    for key in shed:  # shed means never sent
        assert client_order_id(key, "entry") not in orders
    for key in filled:  # and nothing was sent after its intent went stale
        sent_ms = int(orders[client_order_id(key, "entry")]["time"])
        assert sent_ms / 1000 <= published[key] + ttl_s + 0.05, key
    assert desk.sim.request_counts["POST /fapi/v1/order"] == len(filled)
    assert desk.sim.rate_limited[429] == 0 and desk.sim.rate_limited[418] == 0
    assert sum(Decimal(p["positionAmt"]) != 0 for p in desk.sim.state()["positions"]) == len(SYMBOLS)
