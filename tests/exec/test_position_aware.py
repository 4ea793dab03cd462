"""Position-aware intents in one-way mode, one test per case of the README table, on the simulator.

Each test holds a position opened by an earlier intent (with its SL/TP), sends the next intent and
checks what the exchange holds afterwards: the position, which algo orders are open (side,
quantity, whose), and what the result says.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.contracts import ExecutionResult, ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.wire import OrderSide, OrderType
from quantum_exec.execution.executor import Executor, create_executor
from quantum_exec.execution.opposite import POSITION_META_KEY
from support.sim_state import algo_orders, intent, mark, orders, position_amount

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SYMBOL = "ETHUSDT"  # step 0.001, min notional 20, mark 3105.42
D = Decimal


async def send(executor: Executor, key: str, side: str, quantity: str, **extra: Any) -> ExecutionResult:
    """One intent with a 2% stop and a 2% target, as the producers send them."""
    return await executor.execute(
        intent(
            intent_id=key,
            symbol=SYMBOL,
            side=side,
            quantity=float(quantity),
            stop_loss_pct=2,
            take_profit_pct=2,
            **extra,
        )
    )


async def hold(executor: Executor, key: str, side: str, quantity: str) -> ExecutionResult:
    """Open the position the test starts from, protected by its own two legs."""
    result = await send(executor, key, side, quantity)
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    return result


def armed(sim: Simulator) -> dict[str, tuple[str, Decimal]]:
    """The open algo orders of the symbol: client id -> (side, quantity)."""
    return {
        a["clientAlgoId"]: (a["side"], D(a["quantity"]))
        for a in algo_orders(sim, symbol=SYMBOL, status="NEW")
    }


def legs(key: str, side: str, quantity: str) -> dict[str, tuple[str, Decimal]]:
    """The two legs intent ``key`` places, as :func:`armed` lists them."""
    return {client_order_id(key, role): (side, D(quantity)) for role in ("sl", "tp")}


def status_of(sim: Simulator, client_algo_id: str) -> str:
    return next(
        a["algoStatus"] for a in algo_orders(sim, symbol=SYMBOL) if a["clientAlgoId"] == client_algo_id
    )


async def test_flat_opens_and_protects_the_whole_fill(executor: Executor, sim: Simulator) -> None:
    result = await send(executor, "pa-flat", "BUY", "0.050")

    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert position_amount(sim, SYMBOL) == D("0.050")
    assert armed(sim) == legs("pa-flat", "SELL", "0.050")
    assert POSITION_META_KEY not in result.meta


async def test_same_side_adds_and_protects_the_addition(executor: Executor, sim: Simulator) -> None:
    await hold(executor, "pa-same-0", "BUY", "0.050")
    result = await send(executor, "pa-same-1", "BUY", "0.030")

    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert position_amount(sim, SYMBOL) == D("0.080")
    assert armed(sim) == legs("pa-same-0", "SELL", "0.050") | legs("pa-same-1", "SELL", "0.030")
    assert POSITION_META_KEY not in result.meta


async def test_opposite_smaller_reduces_and_places_no_legs(executor: Executor, sim: Simulator) -> None:
    await hold(executor, "pa-less-0", "SELL", "0.100")
    result = await send(executor, "pa-less-1", "BUY", "0.040")

    assert result.status is ResultStatus.FILLED, result.error
    assert result.executed_quantity == D("0.040") and result.error is None
    # Nothing was opened, so nothing new is protected; the old legs still cover the short.
    assert result.protection is ProtectionState.NOT_REQUESTED
    assert result.stop_loss is None and result.take_profit is None
    assert position_amount(sim, SYMBOL) == D("-0.060")
    assert armed(sim) == legs("pa-less-0", "BUY", "0.100")
    assert len(orders(sim, symbol=SYMBOL, type_="MARKET")) == 2
    netted = result.meta[POSITION_META_KEY]
    assert netted["netting"] == "opposite_smaller"
    assert (netted["before"], netted["after"], netted["cancelled_algo_ids"]) == (D("-0.100"), D("-0.060"), [])
    assert "no new SL/TP" in netted["note"]


async def test_opposite_equal_closes_and_cancels_only_our_old_legs(
    executor: Executor, sim: Simulator
) -> None:
    opened = await hold(executor, "pa-eq-0", "SELL", "0.100")
    # Somebody else's target on the symbol: never ours to cancel.
    foreign = await executor.gateway.place_algo(
        SYMBOL,
        OrderSide.BUY,
        OrderType.TAKE_PROFIT_MARKET,
        (mark(sim, SYMBOL) * D("0.9")).quantize(D("0.01")),
        "manual-target-1",
        quantity=D("0.100"),
        working_type="MARK_PRICE",
        price_protect=False,
    )
    result = await send(executor, "pa-eq-1", "BUY", "0.100")

    assert result.status is ResultStatus.FILLED and result.error is None
    assert result.protection is ProtectionState.NOT_REQUESTED
    assert result.stop_loss is None and result.take_profit is None
    assert position_amount(sim, SYMBOL) == 0
    assert armed(sim) == {"manual-target-1": ("BUY", D("0.100"))}
    for leg in (opened.stop_loss, opened.take_profit):
        assert leg is not None and status_of(sim, leg.client_algo_id) == "CANCELED"
    netted = result.meta[POSITION_META_KEY]
    assert netted["netting"] == "opposite_equal"
    assert (netted["before"], netted["after"]) == (D("-0.100"), D("0.000"))
    assert sorted(netted["cancelled_algo_ids"]) == sorted(
        leg.algo_id for leg in (opened.stop_loss, opened.take_profit) if leg is not None
    )
    assert foreign.algo_id not in netted["cancelled_algo_ids"]


async def test_opposite_larger_flips_and_protects_the_new_position(
    executor: Executor, sim: Simulator
) -> None:
    opened = await hold(executor, "pa-flip-0", "SELL", "0.100")
    result = await send(executor, "pa-flip-1", "BUY", "0.150")

    assert result.status is ResultStatus.FILLED, result.error
    assert result.executed_quantity == D("0.150")
    assert result.protection is ProtectionState.PROTECTED
    assert position_amount(sim, SYMBOL) == D("0.050")
    # New legs on the long's exit side, sized to the long; the short's legs are gone.
    assert armed(sim) == legs("pa-flip-1", "SELL", "0.050")
    assert result.stop_loss is not None and result.stop_loss.quantity == D("0.050")
    assert result.take_profit is not None and result.take_profit.quantity == D("0.050")
    for leg in (opened.stop_loss, opened.take_profit):
        assert leg is not None and status_of(sim, leg.client_algo_id) == "CANCELED"
    netted = result.meta[POSITION_META_KEY]
    assert netted["netting"] == "opposite_larger"
    assert (netted["before"], netted["after"]) == (D("-0.100"), D("0.050"))
    assert len(netted["cancelled_algo_ids"]) == 2


async def test_reject_policy_refuses_before_anything_is_sent(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    ex = await create_executor(make_settings(opposite_policy="reject"))
    try:
        await hold(ex, "pa-rej-0", "SELL", "0.100")
        before = sim.state()
        result = await send(ex, "pa-rej-1", "BUY", "0.040")
        after = sim.state()
        # Same side is no netting: the policy lets it through.
        added = await send(ex, "pa-rej-2", "SELL", "0.010")
    finally:
        await ex.close()

    assert result.status is ResultStatus.REJECTED
    assert result.error is not None and result.error.code == "OPPOSITE_POSITION"
    assert result.error.source.value == "validation"
    for part in (SYMBOL, "-0.100", "BUY of 0.04"):
        assert part in result.error.message
    assert after["orders"] == before["orders"] and after["algoOrders"] == before["algoOrders"]
    assert added.status is ResultStatus.FILLED and added.protection is ProtectionState.PROTECTED
    assert position_amount(sim, SYMBOL) == D("-0.110")


async def test_reduce_only_never_flips(executor: Executor, sim: Simulator) -> None:
    await hold(executor, "pa-ro-0", "SELL", "0.100")
    result = await executor.execute(
        intent(intent_id="pa-ro-1", symbol=SYMBOL, side="BUY", quantity=0.150, reduce_only=True)
    )

    assert result.status in (ResultStatus.FILLED, ResultStatus.PARTIAL), result.error
    assert result.protection is ProtectionState.NOT_REQUESTED
    assert position_amount(sim, SYMBOL) == 0
    assert POSITION_META_KEY not in result.meta
