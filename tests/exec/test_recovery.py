"""The recovery seam against the simulator: a resumed attempt starts from what the exchange holds
under the intent's ids (execution/recovery.py), and its entry strategy resumes from those facts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from binance_sim import Simulator
from quantum_exec.contracts import ExecutionResult, ProtectionState, ResultStatus
from quantum_exec.core.errors import ReasonCode
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import OrderSide
from quantum_exec.execution.entries.slices import Child, Plan
from quantum_exec.execution.executor import Executor
from quantum_exec.execution.run import Attempt
from support.sim_state import algo_orders, intent, mark, orders

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SLICE = Decimal("0.002")


def _twap(key: str) -> dict[str, object]:
    return {
        "intent_id": key,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": 0.006,
        "execution": {"algo": "twap", "slices": 3, "interval_s": 0.5},
        "stop_loss_pct": 2,
        "take_profit_pct": 4,
    }


async def _earlier_attempt(executor: Executor, key: str, sent: int) -> None:
    """What a process that died mid-schedule leaves: the saved plan, and its first ``sent`` slices."""
    plan = Plan(tuple(Child(n, SLICE, 0.0) for n in (1, 2, 3)), time.time(), twap=True, side="BUY")
    await executor.plans.save(key, plan.to_json())
    for number in range(1, sent + 1):
        await executor.gateway.place_market("BTCUSDT", "BUY", SLICE, client_order_id(key, "entry", number))


def _children(sim: Simulator, key: str) -> list[str]:
    ids = {client_order_id(key, "entry", n) for n in range(1, 10)}
    return sorted(o["clientOrderId"] for o in orders(sim, symbol="BTCUSDT") if o["clientOrderId"] in ids)


async def test_a_resumed_schedule_sends_only_the_slices_the_exchange_does_not_hold(
    executor: Executor, sim: Simulator
) -> None:
    await _earlier_attempt(executor, "rec-twap", sent=2)

    result = await executor.execute(intent(**_twap("rec-twap")), resume=True)

    expected = [client_order_id("rec-twap", "entry", n) for n in (1, 2, 3)]
    assert _children(sim, "rec-twap") == sorted(expected)  # each slice exactly once (P2)
    assert result.status is ResultStatus.FILLED, result.error
    assert result.executed_quantity == 3 * SLICE  # the slices found count (P5)
    assert [c.client_order_id for c in result.children] == expected
    assert result.protection is ProtectionState.PROTECTED
    legs = algo_orders(sim, symbol="BTCUSDT", status="NEW")
    assert len(legs) == 2 and all(leg["closePosition"] for leg in legs)  # protected once (P3)


async def test_a_repair_follows_the_slices_found_and_sends_none(executor: Executor, sim: Simulator) -> None:
    await _earlier_attempt(executor, "rec-repair", sent=1)

    result = await executor.execute(intent(**_twap("rec-repair")), attempt=Attempt(resume=True, repair=True))

    assert _children(sim, "rec-repair") == [client_order_id("rec-repair", "entry", 1)]  # none sent
    assert result.status is ResultStatus.FAILED
    assert result.error is not None and result.error.code == ReasonCode.POISON_MESSAGE
    assert result.executed_quantity == SLICE  # what the exchange holds, said (P5)
    assert result.protection is ProtectionState.PROTECTED
    assert len(algo_orders(sim, symbol="BTCUSDT", status="NEW")) == 2  # and protected there (P3)


async def test_a_stop_entry_that_triggered_while_no_process_ran_is_protected_from_its_order(
    executor: Executor, sim: Simulator
) -> None:
    # The earlier attempt armed the stop entry and died; the market then went through its trigger.
    entry_id = client_order_id("rec-stop", "entry")
    trigger = (mark(sim, "ETHUSDT") * Decimal("1.01")).quantize(Decimal("0.01"))
    await executor.gateway.place_stop_entry(
        "ETHUSDT",
        OrderSide.BUY,
        trigger,
        entry_id,
        Decimal("0.1"),
        price=None,
        time_in_force=None,
        working_type="MARK_PRICE",
    )
    sim.set_mark_price("ETHUSDT", trigger + Decimal("1"))
    stop = [a for a in algo_orders(sim, symbol="ETHUSDT") if a["clientAlgoId"] == entry_id]
    assert stop and stop[0]["algoStatus"] == "FINISHED"

    result = await executor.execute(
        intent(
            intent_id="rec-stop",
            symbol="ETHUSDT",
            side="BUY",
            quantity=0.1,
            order_type="STOP_MARKET",
            stop_price=float(trigger),
            stop_loss_pct=2,
            take_profit_pct=4,
        ),
        resume=True,
    )

    assert result.status is ResultStatus.FILLED, result.error
    assert result.executed_quantity == Decimal("0.1") and result.reference_price == trigger
    assert len(orders(sim, symbol="ETHUSDT")) == 1  # the triggered order only: nothing placed again
    assert len([a for a in algo_orders(sim, symbol="ETHUSDT") if a["clientAlgoId"] == entry_id]) == 1
    assert result.protection is ProtectionState.PROTECTED
    assert len(algo_orders(sim, symbol="ETHUSDT", status="NEW")) == 2


async def _resume_long_after_first_receipt(executor: Executor, payload: dict[str, object]) -> ExecutionResult:
    """Resume an intent first received 120 s ago whose ``expire_after_s`` is 60: its window is over.
    Bounded well below the 60 s a window started over at the resume would hold it."""
    now = datetime.now(UTC)
    attempt = Attempt(resume=True, first_received_at=now - timedelta(seconds=120))
    return await asyncio.wait_for(
        executor.execute(intent(**payload), received_at=now, attempt=attempt), timeout=20
    )


async def test_a_resumed_limit_entry_keeps_the_expiry_of_its_first_receipt(
    executor: Executor, sim: Simulator
) -> None:
    entry_id = client_order_id("rec-limit-exp", "entry")
    price = (mark(sim, "ETHUSDT") * Decimal("0.9")).quantize(Decimal("0.01"))  # rests far below
    await executor.gateway.place_limit(
        "ETHUSDT", OrderSide.BUY, Decimal("0.1"), price, entry_id, time_in_force="GTC"
    )
    payload = {
        "intent_id": "rec-limit-exp",
        "symbol": "ETHUSDT",
        "side": "BUY",
        "quantity": 0.1,
        "order_type": "LIMIT",
        "price": float(price),
        "expire_after_s": 60,
    }

    result = await _resume_long_after_first_receipt(executor, payload)

    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == ReasonCode.ENTRY_EXPIRED, result.error
    [order] = [o for o in orders(sim, symbol="ETHUSDT") if o["clientOrderId"] == entry_id]
    assert order["status"] == "CANCELED"  # the one order, ended; nothing placed again


async def test_a_resumed_stop_entry_keeps_the_expiry_of_its_first_receipt(
    executor: Executor, sim: Simulator
) -> None:
    entry_id = client_order_id("rec-stop-exp", "entry")
    trigger = (mark(sim, "ETHUSDT") * Decimal("1.1")).quantize(Decimal("0.01"))  # never reached
    await executor.gateway.place_stop_entry(
        "ETHUSDT",
        OrderSide.BUY,
        trigger,
        entry_id,
        Decimal("0.1"),
        price=None,
        time_in_force=None,
        working_type="MARK_PRICE",
    )
    payload = {
        "intent_id": "rec-stop-exp",
        "symbol": "ETHUSDT",
        "side": "BUY",
        "quantity": 0.1,
        "order_type": "STOP_MARKET",
        "stop_price": float(trigger),
        "expire_after_s": 60,
    }

    result = await _resume_long_after_first_receipt(executor, payload)

    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == ReasonCode.ENTRY_EXPIRED, result.error
    [stop] = [a for a in algo_orders(sim, symbol="ETHUSDT") if a["clientAlgoId"] == entry_id]
    assert stop["algoStatus"] == "CANCELED"
    assert orders(sim, symbol="ETHUSDT") == []
