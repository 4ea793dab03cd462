"""A partial CLOSE (issue #27): 30 % of a long with a stop and a three-level ladder, over the real
service, simulator and user stream. The position, the legs on the exchange (the stop resized make
before break, the ladder's levels kept in proportion) and the ledger (a partial exit in the open
trade, its realized PnL the exchange's to the last digit) all agree."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.protection_history import covered_at_every_moment, protection_events, stops_history
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_a_partial_close_of_30_percent_shrinks_the_legs_and_books_a_partial_exit(desk: Desk) -> None:
    service = await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="part-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * D("0.97")).quantize(D("0.1"))),
        take_profits=[{"pct": 2, "size_pct": 40}, {"pct": 3, "size_pct": 40}, {"pct": 4, "size_pct": 20}],
    )
    opened = await desk.result("part-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.take_profits is not None
    await desk.publish(intent_id="part-close", symbol="BTCUSDT", side="CLOSE", close_pct=30)
    closed = await desk.result("part-close")
    assert closed.status is ResultStatus.FILLED, closed
    assert closed.executed_quantity == D("0.003") and desk.position("BTCUSDT") == D("0.007")

    def legs() -> dict[str, list[Decimal]]:
        shown: dict[str, list[Decimal]] = {}
        for a in sorted(desk.open_algos("BTCUSDT"), key=lambda a: D(a["triggerPrice"])):
            shown.setdefault(a["orderType"], []).append(D(a["quantity"]))
        return shown

    # The stop covers what is left; the levels keep 40/40/20 of it (stepped, remainder last).
    want = {"STOP_MARKET": [D("0.007")], "TAKE_PROFIT_MARKET": [D("0.002"), D("0.002"), D("0.003")]}
    await wait_for(lambda: legs() == want, 15, f"legs {want}")
    assert all(a["reduceOnly"] for a in desk.open_algos("BTCUSDT"))
    covered_at_every_moment(desk)
    [changed] = [e for e in await protection_events(desk) if e["reason"] == "partial_close"]
    assert len(changed["before"]) == 4 and changed["symbol"] == "BTCUSDT"
    assert len([s for s in stops_history(desk) if s["algoStatus"] == "NEW"]) == 1
    # The ledger: one open trade with a partial exit of 0.003, realized PnL as the exchange booked.
    assert closed.order_id is not None
    booked = sum((D(t["realizedPnl"]) for t in desk.trades_of(closed.order_id)), D(0))
    assert service.book is not None
    book = service.book

    async def partial_exit() -> bool:
        trades = await book.open_trades()
        return len(trades) == 1 and trades[0].closing_quantity == D("0.003")

    await wait_for(partial_exit, 15, "the partial exit in the ledger")
    [trade] = await book.open_trades()
    assert trade.status == "open" and trade.max_quantity == D("0.010")
    assert trade.realized_pnl == booked
