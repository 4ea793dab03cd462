"""A resumed attempt whose legs were replaced meanwhile under their other id (the live OCO of the
instance holding the account lease shrank them to the position it confirmed before the entry
filled, or moved a stop) arms each leg once: it adopts a copy that covers the leg, and replaces a
smaller one make before break (placed under the leg's own id, then the copy cancelled), instead of
placing a second copy beside it (execution/leg_copies.py). Checked from the simulator's own orders.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id, replacement_of
from quantum_exec.exchange.wire import OrderSide, OrderType
from quantum_exec.execution.executor import Executor
from support.sim_state import algo_orders, intent, mark

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SYMBOL = "BTCUSDT"
TENTH = Decimal("0.1")
SIZE = Decimal("0.020")


def _copies(sim: Simulator, key: str) -> list[dict[str, Any]]:
    """Every conditional order under either id of the intent's stop and target, oldest first."""
    ids = set()
    for role in ("sl", "tp"):
        plain = client_order_id(key, role)
        ids |= {plain, replacement_of(plain)}
    return [a for a in algo_orders(sim, symbol=SYMBOL) if a["clientAlgoId"] in ids]


async def _earlier_attempt(
    executor: Executor, key: str, sl: Decimal, tp: Decimal, copy_size: Decimal
) -> None:
    """What a stalled attempt and another instance's live OCO leave: the entry filled, its legs
    placed at ``SIZE`` under the intent's ids, then replaced by copies of ``copy_size`` under the
    other ids (placed, then the originals cancelled)."""
    gateway = executor.gateway
    await gateway.place_market(SYMBOL, OrderSide.BUY, SIZE, client_order_id(key, "entry"))
    for role, order_type, trigger in (
        ("sl", OrderType.STOP_MARKET, sl),
        ("tp", OrderType.TAKE_PROFIT_MARKET, tp),
    ):
        plain = client_order_id(key, role)  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {"working_type": "MARK_PRICE", "price_protect": False}
        first = await gateway.place_algo(
            SYMBOL, OrderSide.SELL, order_type, trigger, plain, quantity=SIZE, **kwargs
        )
        await gateway.place_algo(
            SYMBOL, OrderSide.SELL, order_type, trigger, replacement_of(plain), quantity=copy_size, **kwargs
        )
        assert await gateway.cancel_algo(first.algo_id)


def _triggers(sim: Simulator) -> tuple[Decimal, Decimal]:
    price = mark(sim, SYMBOL)
    return (price * Decimal("0.98")).quantize(TENTH), (price * Decimal("1.02")).quantize(TENTH)


async def _resume(executor: Executor, key: str, sl: Decimal, tp: Decimal) -> Any:
    payload = {
        "intent_id": key,
        "symbol": SYMBOL,
        "side": "BUY",
        "quantity": str(SIZE),
        "stop_loss": str(sl),
        "take_profit": str(tp),
    }
    return await executor.execute(intent(**payload), resume=True)


async def test_a_smaller_copy_is_replaced_by_the_leg_not_armed_beside_it(
    executor: Executor, sim: Simulator
) -> None:
    sl, tp = _triggers(sim)
    await _earlier_attempt(executor, "copy-small", sl, tp, Decimal("0.010"))

    result = await _resume(executor, "copy-small", sl, tp)

    assert result.status is ResultStatus.FILLED and result.executed_quantity == SIZE
    assert result.protection is ProtectionState.PROTECTED
    armed = [a for a in _copies(sim, "copy-small") if a["algoStatus"] == "NEW"]
    # P3, once: one armed copy of each leg, of the entry's size, the one the result names.
    assert sorted(a["clientAlgoId"] for a in armed) == sorted(
        client_order_id("copy-small", role) for role in ("sl", "tp")
    ), armed
    assert all(Decimal(a["quantity"]) == SIZE and a["reduceOnly"] for a in armed), armed
    assert result.stop_loss is not None and result.take_profit is not None
    assert {result.stop_loss.algo_id, result.take_profit.algo_id} == {a["algoId"] for a in armed}
    shrunk = [a for a in _copies(sim, "copy-small") if a["clientAlgoId"].startswith(("qxs1", "qxt1"))]
    assert [a["algoStatus"] for a in shrunk] == ["CANCELED", "CANCELED"], shrunk


async def test_a_copy_that_covers_the_leg_is_adopted_and_nothing_placed(
    executor: Executor, sim: Simulator
) -> None:
    sl, tp = _triggers(sim)
    await _earlier_attempt(executor, "copy-whole", sl, tp, SIZE)
    before = len(algo_orders(sim))

    result = await _resume(executor, "copy-whole", sl, tp)

    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert len(algo_orders(sim)) == before  # nothing placed: the copies are the legs
    armed = [a for a in _copies(sim, "copy-whole") if a["algoStatus"] == "NEW"]
    assert sorted(a["clientAlgoId"] for a in armed) == sorted(
        replacement_of(client_order_id("copy-whole", role)) for role in ("sl", "tp")
    ), armed
    assert result.stop_loss is not None and result.take_profit is not None
    assert result.stop_loss.client_algo_id == replacement_of(client_order_id("copy-whole", "sl"))
    assert {result.stop_loss.algo_id, result.take_profit.algo_id} == {a["algoId"] for a in armed}
    assert result.stop_loss.quantity == SIZE
