"""The live OCO lowers protection only on a position REST confirms.

An add-on another instance of ours filled (so this instance's executor never saw its REST answer)
arms its legs, sized to it; its fill and the position's push reach this instance seconds after the
legs' updates (events of different types in any order). Once the legs have settled, the view
(the first position only) says they are larger than the position: the OCO asks REST
(positionRisk), which holds the whole position, and leaves them whole. Before, it shrank them to
the first position and nothing grew them back. Checked from the simulator's own orders.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from binance_sim.params import Params
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id, replacement_of
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOL = "ETHUSDT"
FIRST = Decimal("0.1")
ADD = Decimal("0.2")
LAG_MS = 3000


async def test_legs_of_an_add_on_filled_elsewhere_are_not_shrunk_on_a_lagging_view(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    service = await desk.service(protection_timing="after_fill")
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
    await wait_for(lambda: account.position_amount(SYMBOL) == FIRST, 10, "the view sees the first fill")

    # Fills and position pushes reach this instance LAG_MS after the conditional orders' updates.
    desk.sim.set_faults(
        stream_reorder={
            "seed": 1,
            "max_delay_ms": 1,
            "type_delay_ms": {"ORDER_TRADE_UPDATE": LAG_MS, "ACCOUNT_UPDATE": LAG_MS},
        }
    )
    # The add-on, as another instance places it: the entry, then its reduce-only legs of its size.
    engine = desk.sim.engine
    mark = engine.mark(SYMBOL)
    engine.new_order(
        Params(
            {
                "symbol": SYMBOL,
                "side": "BUY",
                "type": "MARKET",
                "quantity": str(ADD),
                "newClientOrderId": client_order_id("add-on", "entry"),
            }
        )
    )
    legs = {
        client_order_id("add-on", "sl"): ("STOP_MARKET", mark * Decimal("0.98")),
        client_order_id("add-on", "tp"): ("TAKE_PROFIT_MARKET", mark * Decimal("1.02")),
    }
    for client_algo_id, (order_type, trigger) in legs.items():
        engine.new_algo_order(
            Params(
                {
                    "algoType": "CONDITIONAL",
                    "symbol": SYMBOL,
                    "side": "SELL",
                    "type": order_type,
                    "triggerPrice": str(trigger.quantize(Decimal("0.01"))),
                    "quantity": str(ADD),
                    "reduceOnly": "true",
                    "clientAlgoId": client_algo_id,
                }
            )
        )
    assert desk.position(SYMBOL) == FIRST + ADD

    with caplog.at_level(logging.WARNING, logger="quantum_exec.account.live_oco"):
        # The legs settle (0.5 s) long before the fill comes: the OCO looks at them on the old view.
        await wait_for(
            lambda: account.position_amount(SYMBOL) == FIRST + ADD, 15, "the view sees the add-on's fill"
        )
        await wait_for(lambda: account.oco.idle(SYMBOL), 15, "the OCO idle")

    for client_algo_id in legs:  # whole, never replaced by a smaller copy
        algo = desk.algo(client_algo_id)
        assert algo is not None and algo["algoStatus"] == "NEW", algo
        assert Decimal(algo["quantity"]) == ADD
        assert desk.algo(replacement_of(client_algo_id)) is None
    lags = [r for r in caplog.records if r.getMessage() == "oco.view_lags"]
    assert lags[0].kv == {"symbol": SYMBOL, "view": "0.100", "exchange": "0.300"}  # type: ignore[attr-defined]
