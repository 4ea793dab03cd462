"""The live OCO plans from a view whose fills lag its conditional orders' updates (events of
different types in swapped order): an entry's fill still on its way must not make the legs placed
for it look like orphans of a flat symbol."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import OrderSide
from support.desk import Desk
from support.sim_state import intent
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_legs_of_an_entry_whose_fill_lags_survive_the_oco_run_of_an_earlier_close(desk: Desk) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None
    await desk.publish(
        intent_id="first",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.2",
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    assert (await desk.result("first")).protection is ProtectionState.PROTECTED
    # The fills (and the position's updates) now reach the service 1.5 s after the legs' updates.
    desk.sim.set_faults(
        stream_reorder={
            "seed": 1,
            "max_delay_ms": 1,
            "type_delay_ms": {"ORDER_TRADE_UPDATE": 1500, "ACCOUNT_UPDATE": 1500},
        }
    )
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    assert (await desk.result("close")).status is ResultStatus.FILLED
    await desk.publish(
        intent_id="second",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.2",
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    second = await desk.result("second")
    assert second.protection is ProtectionState.PROTECTED
    assert second.stop_loss is not None and second.take_profit is not None

    async def caught_up() -> bool:
        return account.position_amount("ETHUSDT") == Decimal("0.2")

    await wait_for(caught_up, 10, "the view sees the second entry's fill")

    async def oco_idle() -> bool:
        return account.oco.idle("ETHUSDT")

    await wait_for(oco_idle, 10, "the OCO idle")
    assert desk.position("ETHUSDT") == Decimal("0.2")
    # P3: the position the result calls protected has its legs on the exchange.
    statuses = {
        leg.client_algo_id: desk.algo_status(leg.client_algo_id)
        for leg in (second.stop_loss, second.take_profit)
    }
    open_legs = desk.open_algos("ETHUSDT")
    assert len(open_legs) == 2, (statuses, open_legs)


async def test_records_of_a_position_whose_fill_lags_are_not_dropped_as_flat(desk: Desk) -> None:
    """Another instance's entry filled; its fill events are still on the way to this (leading)
    instance's view, which sees the symbol flat. An OCO run there (woken by someone else's
    conditional order that ended on the symbol) must not drop the entry's record on the view's
    word: REST holds the position, and without the record the reconcile would call it external."""
    service = await desk.service()
    account, executor = service.account, service.executor
    assert account is not None and account.leader and executor is not None
    trigger = (desk.sim.engine.mark("ETHUSDT") * Decimal("1.5")).quantize(Decimal("0.01"))
    foreign = await executor.gateway.place_stop_entry(
        "ETHUSDT",
        OrderSide.BUY,
        trigger,
        "manual-eth-kick",
        Decimal("0.1"),
        price=None,
        time_in_force=None,
        working_type="MARK_PRICE",
    )
    await wait_for(lambda: account.state.algo_order("manual-eth-kick") is not None, 5, "the order seen")
    # From here the foreign order's end reaches the view 1.5 s late, the entry's fill 4 s late: the
    # OCO runs in between, after the other instance wrote its record, on a view still flat.
    desk.sim.set_faults(
        stream_reorder={
            "seed": 1,
            "max_delay_ms": 1,
            "type_delay_ms": {"ALGO_UPDATE": 1500, "ORDER_TRADE_UPDATE": 4000, "ACCOUNT_UPDATE": 4000},
        }
    )
    await executor.gateway.cancel_algo(foreign.algo_id)
    # What the other instance's executor did: the record, the entry filled by REST.
    entry = intent(intent_id="elsewhere", symbol="ETHUSDT", side="BUY", quantity="0.1")
    key = "elsewhere"
    await account.opening(key, entry)
    order = await executor.gateway.place_market(
        "ETHUSDT", OrderSide.BUY, Decimal("0.1"), client_order_id(key, "entry")
    )
    assert order.executed_qty == Decimal("0.1")
    await account.opened(key, entry, order.executed_qty)

    async def kicked_and_idle() -> bool:
        seen = account.state.algo_order("manual-eth-kick")
        return seen is not None and seen.status.is_final and account.oco.idle("ETHUSDT")

    await wait_for(kicked_and_idle, 10, "the OCO run on the ended order's symbol done")
    assert account.state.known_amount("ETHUSDT") == 0, "the fill came before the OCO ran: no test"
    # Kept: REST holds the position the view does not see yet.
    assert [r.intent_key for r in await account.store.records_of("ETHUSDT")] == [key]

    async def caught_up() -> bool:
        return account.position_amount("ETHUSDT") == Decimal("0.1")

    await wait_for(caught_up, 10, "the view sees the fill")
    await wait_for(lambda: account.oco.idle("ETHUSDT"), 10, "the OCO idle")
    assert [r.intent_key for r in await account.store.records_of("ETHUSDT")] == [key]
