"""What an admitted entry reserves of the exposure limits (risk/reservations.py): counted by every
admission until the entry's result, released exactly once, and lapsing with its lease when the
instance that reserved it is gone. Orders are checked from the simulator's own history."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.risk.limits import Holding, with_reserved
from quantum_exec.risk.reservations import Reservations
from support.desk import Desk
from support.waiting import wait_for

D = Decimal


def test_a_reservation_adds_to_its_symbol_or_opens_one_at_its_price() -> None:
    book = [Holding("BTCUSDT", D("0.010"), D(100000)), Holding("ETHUSDT", D("-1"), D(3000))]
    reserved = [
        Holding("BTCUSDT", D("0.005"), D(99000)),
        Holding("SOLUSDT", D("2"), D(150)),
        Holding("ETHUSDT", D("1"), D(3100)),
    ]
    merged = {h.symbol: h for h in with_reserved(book, reserved)}
    # BTC grows at the book's mark; SOL opens at its reserved price; ETH nets to flat and is gone.
    assert merged["BTCUSDT"] == Holding("BTCUSDT", D("0.015"), D(100000))
    assert merged["SOLUSDT"] == Holding("SOLUSDT", D("2"), D(150))
    assert "ETHUSDT" not in merged


def _sent(desk: Desk, intent_id: str) -> bool:
    return any(o["clientOrderId"] == client_order_id(intent_id, "entry") for o in desk.sim.state()["orders"])


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_dead_instances_reservation_counts_until_its_lease_lapses_and_is_released_once(
    desk: Desk,
) -> None:
    limit = D(2000)
    service = await desk.service(
        risk_stream=f"{desk.names['intent_stream']}:risk", risk_max_gross_notional_usd=limit
    )
    sim = desk.sim
    btc_mark, eth_mark = sim.engine.mark("BTCUSDT"), sim.engine.mark("ETHUSDT")
    # Another instance admitted a BTC entry of 60 % of the limit, then died: nobody renews it.
    dead = Reservations(desk.redis, service.settings, lease_ms=3000)
    epoch, _ = await dead.snapshot("")
    btc = (limit * D("0.6") / btc_mark).quantize(D("0.001"))
    assert await dead.reserve(epoch, "dead-entry", Holding("BTCUSDT", btc, btc_mark))
    eth = (limit * D("0.6") / eth_mark).quantize(D("0.001"))

    await desk.publish(intent_id="eth-1", symbol="ETHUSDT", side="BUY", quantity=str(eth))
    refused = await desk.result("eth-1")
    assert refused.status is ResultStatus.REJECTED and refused.error is not None
    assert refused.error.code == "RISK_LIMIT" and "max_gross_notional_usd" in refused.error.message
    assert not _sent(desk, "eth-1")

    # Its lease lapses (no renewal): the next admission no longer counts it.
    async def lapsed() -> bool:
        return (await dead.snapshot(""))[1] == []

    await wait_for(lapsed, 15, "the dead instance's reservation lapsed")
    await desk.publish(intent_id="eth-2", symbol="ETHUSDT", side="BUY", quantity=str(eth), stop_loss_pct=5)
    assert (await desk.result("eth-2")).status is ResultStatus.FILLED
    assert _sent(desk, "eth-2")
    # The filled entry's own reservation was released at its result: only its position counts now.
    assert (await dead.snapshot(""))[1] == []
    # Released exactly once: the lapsed one is gone, a second release finds nothing.
    assert not await dead.release("dead-entry")
    # The position is now on the exchange: a second ETH entry of the same size is refused by it.
    await desk.publish(intent_id="eth-3", symbol="ETHUSDT", side="BUY", quantity=str(eth))
    assert (await desk.result("eth-3")).status is ResultStatus.REJECTED
    assert not _sent(desk, "eth-3")
    # A reservation decided on an epoch that moved meanwhile is not made (the caller decides again).
    epoch, _ = await dead.snapshot("")
    assert await dead.reserve(epoch, "a", Holding("SOLUSDT", D(1), D(150)))
    assert not await dead.reserve(epoch, "b", Holding("SOLUSDT", D(1), D(150)))
    assert await dead.release("a") and not await dead.release("a")
