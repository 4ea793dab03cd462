"""Protective legs go before the entries pacing holds: the simulator enforcing a small order limit.

The simulator advertises (exchangeInfo ``rateLimits``) and enforces 5 orders per 10 s, so pacing
sends 4. A LIMIT entry rests while three entries fill the window; six more entries on other
symbols wait for the next one; then the LIMIT fills. Its legs must take the next window's first
slots instead of waiting behind the six entries held before them (which would leave the position
unprotected for another 10 s or more).
"""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest

from binance_sim import SimConfig
from binance_sim.ratelimit import Limits
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.ops import metrics
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ORDERS_PER_10S = 5
FIRST = ["DOGEUSDT", "XRPUSDT", "ADAUSDT"]  # fill the window beside the resting LIMIT
HELD = ["ETHUSDT", "SOLUSDT", "LINKUSDT", "LTCUSDT", "AVAXUSDT", "DOTUSDT"]  # wait for the next


@pytest.fixture
def sim_config(tmp_path: Path) -> SimConfig:
    info = json.loads((resources.files("binance_sim") / "fixtures" / "exchange_info.json").read_text())
    for limit in info["rateLimits"]:
        if limit["rateLimitType"] == "ORDERS" and limit["interval"] == "SECOND":
            limit["limit"] = ORDERS_PER_10S
    path = tmp_path / "exchange_info.json"
    path.write_text(json.dumps(info))
    return SimConfig(limits=Limits(orders_per_10s=ORDERS_PER_10S), exchange_info_path=path)


def _held() -> float:
    return metrics.REGISTRY.get_sample_value("quantum_exec_pacing_held_orders") or 0.0


async def test_the_legs_of_a_fill_go_before_the_entries_pacing_holds(desk: Desk) -> None:
    await desk.service(max_concurrency=16)
    mark = desk.sim.engine.mark("BTCUSDT")
    price = (mark * Decimal("0.995")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="limit",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="LIMIT",
        price=str(price),
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.03")).quantize(Decimal("0.1"))),
    )
    for symbol in FIRST:
        await desk.publish(intent_id=f"first-{symbol}", symbol=symbol, side="BUY", position_size_usd="200")
    for symbol in FIRST:
        assert (await desk.result(f"first-{symbol}")).status is ResultStatus.FILLED
    for symbol in HELD:
        await desk.publish(intent_id=f"held-{symbol}", symbol=symbol, side="BUY", position_size_usd="200")
    await wait_for(lambda: _held() == len(HELD), 10, "the entries held for the next window")

    desk.sim.set_mark_price("BTCUSDT", price - Decimal("10"))  # the LIMIT fills: its legs are asked
    protected = await desk.result("limit", timeout_s=40)
    assert protected.protection is ProtectionState.PROTECTED
    for symbol in HELD:
        assert (await desk.result(f"held-{symbol}", timeout_s=40)).status is ResultStatus.FILLED

    state = desk.sim.state()
    leg_ids = {client_order_id("limit", "sl"), client_order_id("limit", "tp")}
    legs = [a for a in state["algoOrders"] if a["clientAlgoId"] in leg_ids]
    assert {a["clientAlgoId"] for a in legs} == leg_ids
    orders = {o["clientOrderId"]: o for o in state["orders"]}
    held_sent = sorted(int(orders[client_order_id(f"held-{s}", "entry")]["time"]) for s in HELD)
    legs_sent = max(int(a["createTime"]) for a in legs)
    # The next window (4 orders) goes to both legs and two entries; four entries wait a window more.
    after = [t for t in held_sent if t > legs_sent]
    assert len(after) >= len(HELD) - 2, (legs_sent, held_sent)
    assert desk.sim.rate_limited[429] == 0 and desk.sim.rate_limited[418] == 0
