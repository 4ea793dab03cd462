"""Two LIMIT entries on one side, each partly filled while working: Binance keeps one closePosition
stop per side (-4130), so the second entry's protection cannot be a second closePosition stop."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _resting(desk: Desk) -> list[dict[str, Any]]:
    return [o for o in desk.sim.state()["orders"] if o["type"] == "LIMIT" and o["status"] == "NEW"]


async def test_a_second_partly_filled_limit_on_one_side_is_protected_too(desk: Desk) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    price = (mark * Decimal("0.995")).quantize(Decimal("0.1"))
    sl, tp = (
        (mark * Decimal("0.97")).quantize(Decimal("0.1")),
        (mark * Decimal("1.03")).quantize(Decimal("0.1")),
    )
    for n, intent_id in enumerate(("two-lim-1", "two-lim-2")):
        await desk.publish(
            intent_id=intent_id,
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.020",
            order_type="LIMIT",
            price=str(price - n),
            stop_loss=str(sl),
            take_profit=str(tp),
            expire_after_s=4,
        )
        await wait_for(lambda: len(_resting(desk)) == 1, 10, f"{intent_id} resting")
        [order] = _resting(desk)
        desk.sim.engine.trade_against("BTCUSDT", order["clientOrderId"], Decimal("0.010"))
        result = await desk.result(intent_id)  # the rest expires after 4 s
        print(intent_id, result.status, result.protection, result.executed_quantity, result.error)
        print(
            [
                (a["orderType"], a["closePosition"], a["quantity"], a["clientAlgoId"])
                for a in desk.open_algos("BTCUSDT")
            ]
        )
    assert desk.position("BTCUSDT") == Decimal("0.020")
    stops = [a for a in desk.open_algos("BTCUSDT") if a["orderType"] == "STOP_MARKET"]
    # Both entries' stops stand: the first's closePosition, the second's a reduce-only 0.010 (Binance
    # refused a second closePosition stop on the side), and likewise the targets.
    assert sorted((a["closePosition"], a["quantity"]) for a in stops) == [(False, "0.010"), (True, "0.000")]
    targets = [a for a in desk.open_algos("BTCUSDT") if a["orderType"] == "TAKE_PROFIT_MARKET"]
    assert sorted((a["closePosition"], a["quantity"]) for a in targets) == [(False, "0.010"), (True, "0.000")]
