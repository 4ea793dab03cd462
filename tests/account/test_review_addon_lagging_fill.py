"""Adversarial review, REGRESSION GUARD (passes on main): an add-on whose fill reaches the live
view later than its legs' updates (events of different types in any order) keeps the legs the
result calls protected.

The first position is protected by reduce-only legs of its own size (percentage triggers: sent
after the fill, QUANTUM_PROTECTION_MODE=quantity). The add-on's legs (sized to it) are armed on the
exchange while the view may still hold the first position only: were the live OCO to plan on
that view once the legs have "settled" (``SETTLE_GRACE_S``, 0.5 s), it would shrink the add-on's
legs to the first position, and nothing grows them back when the fill arrives. On main the view
is stale (or has the fill from the executor) until it agrees, so the OCO acts on nothing: the
position stays whole behind our legs. Checked from the simulator's own conditional orders.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOL = "ETHUSDT"
FIRST = Decimal("0.1")
ADD = Decimal("0.2")


def _covered(desk: Desk, order_type: str) -> Decimal:
    """What our armed legs of ``order_type`` close on the exchange (closePosition: everything)."""
    position = abs(desk.position(SYMBOL))
    return sum(
        (
            position if a["closePosition"] else Decimal(a["quantity"])
            for a in desk.sim.state()["algoOrders"]
            if a["symbol"] == SYMBOL
            and a["algoStatus"] == "NEW"
            and str(a["clientAlgoId"]).startswith("qx")
            and a["orderType"] == order_type
        ),
        Decimal(0),
    )


@pytest.mark.parametrize("timing", ["after_fill", "with_entry"])
@pytest.mark.parametrize(
    "lag",
    [
        {"ORDER_TRADE_UPDATE": 6000},
        {"ACCOUNT_UPDATE": 6000},
        {"ORDER_TRADE_UPDATE": 1500, "ACCOUNT_UPDATE": 1500},
    ],
)
async def test_an_add_on_whose_fill_lags_its_legs_keeps_them_whole(
    desk: Desk, timing: str, lag: dict[str, int]
) -> None:
    service = await desk.service(protection_timing=timing)
    account = service.account
    assert account is not None
    await desk.publish(
        intent_id="first",
        symbol=SYMBOL,
        side="BUY",
        quantity=str(FIRST),
        stop_loss_pct="3",
        take_profit_pct="3",
    )
    first = await desk.result("first")
    assert first.status is ResultStatus.FILLED and first.protection is ProtectionState.PROTECTED
    assert first.stop_loss is not None and first.stop_loss.quantity == FIRST  # reduce-only, its size
    await wait_for(lambda: account.position_amount(SYMBOL) == FIRST, 10, "the view sees the first fill")
    # From here fills (and the position's updates) reach the service 1.5 s after the legs' updates.
    desk.sim.set_faults(
        stream_reorder={
            "seed": 1,
            "max_delay_ms": 1,
            "type_delay_ms": lag,
        }
    )
    mark = desk.sim.engine.mark(SYMBOL)
    await desk.publish(
        intent_id="add-on",
        symbol=SYMBOL,
        side="BUY",
        quantity=str(ADD),
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.01"))),
        take_profit=str((mark * Decimal("1.02")).quantize(Decimal("0.01"))),
    )
    added = await desk.result("add-on")
    assert added.status is ResultStatus.FILLED and added.executed_quantity == ADD
    assert added.protection is ProtectionState.PROTECTED
    assert added.stop_loss is not None and added.stop_loss.quantity == ADD

    await wait_for(
        lambda: account.position_amount(SYMBOL) == FIRST + ADD, 10, "the view sees the add-on's fill"
    )
    await wait_for(lambda: account.oco.idle(SYMBOL), 10, "the OCO idle")
    assert desk.position(SYMBOL) == FIRST + ADD
    # P3: the whole position stands behind our stops and targets on the exchange.
    assert _covered(desk, "STOP_MARKET") >= FIRST + ADD, desk.open_algos(SYMBOL)
    assert _covered(desk, "TAKE_PROFIT_MARKET") >= FIRST + ADD, desk.open_algos(SYMBOL)
