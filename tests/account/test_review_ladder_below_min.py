"""Adversarial review of stop management (issue #27; P3, P5): a take-profit ladder whose only level falls
below minQty (5 % of 0.010 BTC: 0.0005, under the 0.001 minimum) has no next level to merge into.
FAILS on main (review/three): the entry is sent and answered FILLED / protected with no error and no
take-profit at all, on the exchange or in the result; the target asked for silently vanished. Either
refuse before sending (a reason code naming the level and minQty) or say so in the result."""

from __future__ import annotations

import pytest

from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_ladder_level_below_min_qty_is_not_dropped_silently(desk: Desk) -> None:
    await desk.service()
    await desk.publish(
        intent_id="tiny-tp",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss_pct=3,
        take_profits=[{"pct": "2", "size_pct": 5}],
    )
    result = await desk.result("tiny-tp")
    state = desk.sim.state()
    entry_sent = any(o["symbol"] == "BTCUSDT" for o in state["orders"])
    targets = [a for a in state["algoOrders"] if a["orderType"] == "TAKE_PROFIT_MARKET"]
    if not entry_sent:  # refused before anything was sent
        assert result.error is not None and "minQty" in result.error.message, result.error
        return
    assert targets or result.error is not None, (
        f"entry sent and answered {result.status.value}/{result.protection.value} with no error, "
        f"take_profits={result.take_profits}: the requested take-profit is nowhere on the exchange"
    )


async def test_a_result_saying_protected_has_a_leg_on_the_exchange(desk: Desk) -> None:
    """P3: the same ladder without a stop; a result saying ``protected`` must be true there."""
    await desk.service()
    await desk.publish(
        intent_id="tiny-only",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        take_profits=[{"pct": "2", "size_pct": 5}],
    )
    result = await desk.result("tiny-only")
    legs = [a for a in desk.sim.state()["algoOrders"] if a["algoStatus"] == "NEW"]
    assert result.protection.value != "protected" or legs, (
        f"result {result.status.value}/{result.protection.value} (error {result.error}) while "
        f"position {desk.position('BTCUSDT')} has no conditional order at all on the exchange"
    )
