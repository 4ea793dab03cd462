"""Adversarial review of account.close_records: a CLOSE drops the records it made stale in its one
script. Another instance's add-on on the same symbol fills while the CLOSE's order travels (read
the position, sent reduce-only for that much, held by the exchange): the CLOSE fills all it was
sent, yet the add-on's position stands. Its record must survive (it names the add-on's fills and
re-protects it after a resync), checked against the simulator's position."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from quantum_exec.account.record import Record
from quantum_exec.account.roles import intent_digest
from quantum_exec.account.store import AccountStore
from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import OrderSide, OrderType
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOL = "ETHUSDT"
POST_ORDER = "POST /fapi/v1/order"


async def test_an_add_on_filled_under_a_travelling_close_keeps_its_record(desk: Desk) -> None:
    service = await desk.service()
    account, executor = service.account, service.executor
    assert account is not None and account.leader and executor is not None
    store = AccountStore(desk.redis, desk.settings())
    await desk.publish(intent_id="ca-open", symbol=SYMBOL, side="BUY", quantity="0.2")
    assert (await desk.result("ca-open")).status is ResultStatus.FILLED
    await wait_for(lambda: account.position_amount(SYMBOL) == Decimal("0.2"), 10, "the open seen")
    # The CLOSE's order (reduce-only SELL 0.2) is held 1.5 s by the exchange before it is processed.
    sent = desk.sim.request_counts[POST_ORDER]
    desk.sim.set_faults(faults=[{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order"}])
    await desk.publish(intent_id="ca-close", symbol=SYMBOL, side="CLOSE")
    await wait_for(lambda: desk.sim.request_counts[POST_ORDER] > sent, 10, "the close on its way")
    desk.sim.set_faults(faults=[])
    # Meanwhile another instance's add-on: its record, its fill, its record marked opened (what its
    # follower's opening()/opened() write), all before the CLOSE's order reaches the book.
    entry_id = client_order_id("ca-addon", "entry")
    digest = intent_digest(entry_id)
    assert digest is not None
    record = Record(
        digest=digest,
        intent_key="ca-addon",
        intent_id="ca-addon",
        symbol=SYMBOL,
        long=True,
        quantity=Decimal("0.05"),
        stop_loss=None,
        take_profit=None,
        opened=False,
    )
    await store.put_record(record)
    order = await executor.gateway.place_market(SYMBOL, OrderSide.BUY, Decimal("0.05"), entry_id)
    assert order.executed_qty == Decimal("0.05")
    await store.put_record(dataclasses.replace(record, opened=True))
    closed = await desk.result("ca-close")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.2"), closed
    assert desk.position(SYMBOL) == Decimal("0.05")  # the scenario: the add-on's position stands

    async def settled() -> bool:
        return account.position_amount(SYMBOL) == Decimal("0.05") and account.oco.idle(SYMBOL)

    await wait_for(settled, 10, "the view sees the add-on left open")
    keys = [r.intent_key for r in await store.records_of(SYMBOL)]
    assert "ca-addon" in keys, keys  # its position is open: its record stays


async def test_the_legs_of_an_add_on_filled_under_a_travelling_close_stay_armed(desk: Desk) -> None:
    """The add-on's stop was placed beside its entry (``with_entry``) before the CLOSE took the
    symbol's legs: the CLOSE must not cancel it once it finds the add-on's position standing (P3)."""
    service = await desk.service()
    account, executor = service.account, service.executor
    assert account is not None and account.leader and executor is not None
    store = AccountStore(desk.redis, desk.settings())
    await desk.publish(intent_id="cl-open", symbol=SYMBOL, side="BUY", quantity="0.2")
    assert (await desk.result("cl-open")).status is ResultStatus.FILLED
    await wait_for(lambda: account.position_amount(SYMBOL) == Decimal("0.2"), 10, "the open seen")
    entry_id, stop_id = client_order_id("cl-addon", "entry"), client_order_id("cl-addon", "sl")
    digest = intent_digest(entry_id)
    assert digest is not None
    record = Record(
        digest=digest,
        intent_key="cl-addon",
        intent_id="cl-addon",
        symbol=SYMBOL,
        long=True,
        quantity=Decimal("0.05"),
        stop_loss=None,
        take_profit=None,
        opened=False,
    )
    await store.put_record(record)
    mark = desk.sim.engine.mark(SYMBOL)
    stop = await executor.gateway.place_algo(
        SYMBOL,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        (mark * Decimal("0.9")).quantize(Decimal("0.01")),
        stop_id,
        quantity=Decimal("0.05"),
        working_type="MARK_PRICE",
        price_protect=False,
    )

    def stop_seen() -> bool:
        seen = account.state.algo_order(stop_id)
        return seen is not None and seen.is_armed and not account.state.settling(seen)

    await wait_for(stop_seen, 10, "the add-on's stop armed in the view")
    sent = desk.sim.request_counts[POST_ORDER]
    desk.sim.set_faults(faults=[{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order"}])
    await desk.publish(intent_id="cl-close", symbol=SYMBOL, side="CLOSE")
    await wait_for(lambda: desk.sim.request_counts[POST_ORDER] > sent, 10, "the close on its way")
    desk.sim.set_faults(faults=[])
    order = await executor.gateway.place_market(SYMBOL, OrderSide.BUY, Decimal("0.05"), entry_id)
    assert order.executed_qty == Decimal("0.05")
    await store.put_record(dataclasses.replace(record, opened=True))
    closed = await desk.result("cl-close")
    assert closed.status is ResultStatus.FILLED and closed.executed_quantity == Decimal("0.2"), closed
    assert desk.position(SYMBOL) == Decimal("0.05")

    async def settled() -> bool:
        return account.position_amount(SYMBOL) == Decimal("0.05") and account.oco.idle(SYMBOL)

    await wait_for(settled, 10, "the view sees the add-on left open")
    armed = [a for a in desk.open_algos(SYMBOL) if a["algoStatus"] == "NEW"]
    assert [(a["algoId"], Decimal(a["quantity"])) for a in armed] == [(stop.algo_id, Decimal("0.05"))], armed
    assert "cl-addon" in [r.intent_key for r in await store.records_of(SYMBOL)]
