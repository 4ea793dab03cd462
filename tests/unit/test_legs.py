"""The pure part of the leg placer's policy: where a -2021 re-round puts the trigger."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import OrderSide, OrderType
from quantum_exec.execution.legs import inside_mark

D = Decimal


# A leg triggers when the price reaches it from where the mark is: a SELL stop and a BUY take-profit
# fire when the price falls (their trigger must be below the mark), a BUY stop and a SELL take-profit
# when it rises. The re-rounded trigger is one tick inside the mark on that side, on the tick grid.
@pytest.mark.parametrize(
    ("side", "order_type", "mark", "expected"),
    [
        (OrderSide.SELL, OrderType.STOP_MARKET, "95000.0", "94999.9"),  # the stop of a long
        (OrderSide.SELL, OrderType.TAKE_PROFIT_MARKET, "95000.0", "95000.1"),  # the target of a long
        (OrderSide.BUY, OrderType.STOP_MARKET, "95000.0", "95000.1"),  # the stop of a short
        (OrderSide.BUY, OrderType.TAKE_PROFIT_MARKET, "95000.0", "94999.9"),  # the target of a short
        (OrderSide.SELL, OrderType.STOP_MARKET, "95000.05", "94999.9"),  # off the grid: floored below
        (OrderSide.BUY, OrderType.STOP_MARKET, "95000.05", "95000.2"),  # off the grid: ceiled above
    ],
)
def test_a_rerounded_trigger_is_one_tick_inside_the_mark_on_its_safe_side(
    symbol_rules: dict[str, SymbolRules], side: OrderSide, order_type: OrderType, mark: str, expected: str
) -> None:
    assert inside_mark(symbol_rules["BTCUSDT"], side, order_type, D(mark)) == D(expected)
