"""A copy found under a leg's alternate id is adopted only when it is that leg's: same symbol, side
and order type (a copy that is not is left alone, and the leg placed again under its own id)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from quantum_exec.account.roles import replacement_of
from quantum_exec.exchange.wire import AlgoOrder, OrderSide, OrderType
from quantum_exec.execution.leg_copies import find_copy
from quantum_exec.execution.protection import Leg

LEG_ID = "qxs-0123456789abcdef0123"


class _Legs:
    def __init__(self, found: AlgoOrder) -> None:
        self.found = found
        self.asked: list[str] = []

    async def find(self, client_algo_id: str) -> AlgoOrder | None:
        self.asked.append(client_algo_id)
        return self.found


def _copy(**over: Any) -> AlgoOrder:
    raw = {
        "algoId": 7,
        "clientAlgoId": replacement_of(LEG_ID),
        "symbol": "BTCUSDT",
        "side": "SELL",
        "orderType": "STOP_MARKET",
        "algoStatus": "NEW",
        "triggerPrice": "90000",
        "quantity": "0.020",
        "reduceOnly": True,
    } | over
    return AlgoOrder.parse(raw)


def _leg() -> Leg:
    return Leg(
        kind="SL",
        order_type=OrderType.STOP_MARKET,
        side=OrderSide.SELL,
        client_algo_id=LEG_ID,
        trigger_price=Decimal("90000"),
        quantity=Decimal("0.020"),
    )


async def test_the_legs_own_copy_is_adopted() -> None:
    leg, legs = _leg(), _Legs(_copy())
    await find_copy(legs, "BTCUSDT", leg)  # type: ignore[arg-type]
    assert legs.asked == [replacement_of(LEG_ID)]
    assert leg.order is not None and leg.order.algo_id == 7


async def test_a_copy_of_another_symbol_side_or_type_is_left_alone() -> None:
    for other in ({"symbol": "ETHUSDT"}, {"side": "BUY"}, {"orderType": "TAKE_PROFIT_MARKET"}):
        leg = _leg()
        await find_copy(_Legs(_copy(**other)), "BTCUSDT", leg)  # type: ignore[arg-type]
        assert leg.order is None and leg.replaces is None, other
        assert leg.client_algo_id == LEG_ID
