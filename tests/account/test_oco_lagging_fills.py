"""The live OCO plans from a view whose fills lag its conditional orders' updates (events of
different types in swapped order): an entry's fill still on its way must not make the legs placed
for it look like orphans of a flat symbol."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
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
