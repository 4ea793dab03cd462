"""Who drops a closed symbol's records: a CLOSE drops what it made stale itself (the position's
records and its own), so the live OCO reads none and asks REST nothing after it; a record nobody
here looks after (a dead instance's) is still dropped by the OCO, and only once REST says flat."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.account.record import Record
from quantum_exec.account.roles import intent_digest
from quantum_exec.account.store import AccountStore
from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import OrderSide
from support.desk import Desk
from support.killable import KillableService
from support.sim_state import intent
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

POSITION_RISK = "GET /fapi/v2/positionRisk"


async def test_a_close_leaves_no_record_for_the_oco_to_read_or_confirm(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None and account.leader
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    assert (await desk.result("open")).status is ResultStatus.FILLED

    async def open_seen() -> bool:
        return account.position_amount("ETHUSDT") == Decimal("0.2") and account.oco.idle("ETHUSDT")

    await wait_for(open_seen, 10, "the open in the view and the OCO idle")
    assert [r.intent_key for r in await account.store.records_of("ETHUSDT")] == ["open"]
    reads: list[str] = []
    records_of = account.store.records_of

    async def counted(symbol: str) -> list[Record]:
        reads.append(symbol)
        return await records_of(symbol)

    monkeypatch.setattr(account.store, "records_of", counted)
    before = desk.sim.request_counts[POSITION_RISK]
    await desk.publish(intent_id="close", symbol="ETHUSDT", side="CLOSE")
    assert (await desk.result("close")).status is ResultStatus.FILLED

    async def settled() -> bool:
        armed = [a for a in account.state.open_algo_orders("ETHUSDT") if a.is_armed]
        seen_flat = account.position_amount("ETHUSDT") == 0
        return seen_flat and not armed and not desk.open_algos("ETHUSDT") and account.oco.idle("ETHUSDT")

    await wait_for(settled, 10, "the close and the legs' ends seen, the OCO idle")
    # Every record is gone: the position's and the CLOSE's own, dropped by the CLOSE's script.
    assert await records_of("ETHUSDT") == []
    # The live OCO (woken by the close's fill and the legs' ends) read none and asked REST nothing.
    assert reads == []
    assert desk.sim.request_counts[POSITION_RISK] == before


async def test_a_dead_instances_record_goes_only_once_rest_says_flat(desk: Desk) -> None:
    """A record another instance wrote and will never drop (it died; no intent of it is in
    flight): the view sees the symbol flat while the fill is on the way, and REST holds the
    position, so the OCO keeps it; once the position is closed (outside), REST agrees: dropped."""
    service = await desk.service()
    account, executor = service.account, service.executor
    assert account is not None and account.leader and executor is not None
    entry_id = client_order_id("dead-open", "entry")
    digest = intent_digest(entry_id)
    assert digest is not None
    await account.store.put_record(
        Record(
            digest=digest,
            intent_key="dead-open",
            intent_id="dead-open",
            symbol="ETHUSDT",
            long=True,
            quantity=Decimal("0.1"),
            stop_loss=None,
            take_profit=None,
            opened=True,
        )
    )
    # Its entry filled on the exchange; its events reach this instance's view 4 s late.
    desk.sim.set_faults(
        stream_reorder={
            "seed": 1,
            "max_delay_ms": 1,
            "type_delay_ms": {"ORDER_TRADE_UPDATE": 4000, "ACCOUNT_UPDATE": 4000},
        }
    )
    order = await executor.gateway.place_market("ETHUSDT", OrderSide.BUY, Decimal("0.1"), entry_id)
    assert order.executed_qty == Decimal("0.1")
    before = desk.sim.request_counts[POSITION_RISK]
    account.oco.kick("ETHUSDT")
    await wait_for(lambda: account.oco.idle("ETHUSDT"), 10, "the OCO run done")
    assert account.state.known_amount("ETHUSDT") == 0, "the fill came before the OCO ran: no test"
    assert desk.sim.request_counts[POSITION_RISK] == before + 1  # asked REST
    assert [r.intent_key for r in await account.store.records_of("ETHUSDT")] == ["dead-open"]  # kept

    async def caught_up() -> bool:
        return account.position_amount("ETHUSDT") == Decimal("0.1")

    await wait_for(caught_up, 10, "the view sees the fill")
    # Closed by someone else: the view sees it flat, REST agrees, the record goes.
    await executor.gateway.place_market(
        "ETHUSDT", OrderSide.SELL, Decimal("0.1"), "manual-eth-close", reduce_only=True
    )

    async def dropped() -> bool:
        return await account.store.records_of("ETHUSDT") == [] and account.oco.idle("ETHUSDT")

    await wait_for(dropped, 15, "the record dropped")
    assert desk.sim.request_counts[POSITION_RISK] >= before + 2  # REST agreed first


async def test_a_close_killed_between_its_fill_and_its_script_ends_with_no_record(
    desk: Desk, tmp_path: Path
) -> None:
    """SIGKILL after the close filled on the exchange and before its script dropped the records
    (its answer lost, the lookup held): the successor resumes it, and the records end dropped -
    the position's and the CLOSE's own - with the position flat and the close sent once."""
    worker = KillableService(desk, tmp_path, consumer_name="close-worker")
    store = AccountStore(desk.redis, desk.settings())

    async def keys() -> list[str]:
        return sorted(r.intent_key for r in await store.records_of("BTCUSDT"))

    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await desk.publish(
            intent_id="kc-open",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.010",
            stop_loss_pct="3",
            take_profit_pct="3",
        )
        assert (await desk.result("kc-open", timeout_s=30)).status is ResultStatus.FILLED
        desk.sim.set_faults(
            faults=[
                {"kind": "unknown_after", "method": "POST", "path": "/fapi/v1/order", "count": 1},
                {"kind": "latency", "method": "GET", "path": "/fapi/v1/order", "ms": 4000},
            ]
        )
        await desk.publish(intent_id="kc-close", symbol="BTCUSDT", side="CLOSE")

        async def filled_unrecorded() -> bool:
            return desk.position("BTCUSDT") == 0 and await keys() == ["kc-close", "kc-open"]

        await wait_for(filled_unrecorded, 30, "the close filled, its records still there")
        worker.kill()
        desk.sim.set_faults(faults=[])
        worker.spawn()
        await wait_for(lambda: worker.started() == 2, 30, "the worker ready again")
        closed = await desk.result("kc-close", timeout_s=40)
        assert closed.status is ResultStatus.FILLED, closed

        async def no_records() -> bool:
            return await keys() == []

        await wait_for(no_records, 20, "the records dropped")
        close_id = client_order_id("kc-close", "close")
        sent = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == close_id]
        assert len(sent) == 1 and desk.position("BTCUSDT") == 0, sent
        await wait_for(lambda: not desk.open_algos("BTCUSDT"), 20, "the legs gone")
    finally:
        worker.kill()


async def test_a_close_on_an_instance_not_holding_the_lease_leaves_its_record_to_the_holder(
    desk: Desk,
) -> None:
    """The holder names the fills from the records of the other instances' intents: a CLOSE
    there keeps its own record (the holder's OCO drops it, once REST says flat), so the close's
    position event names the intent even when its fill reaches the holder after the CLOSE's
    script ran (fails with the record dropped there: the event names no intent)."""
    holder = await desk.service(consumer_name="holder")
    other = await desk.service(consumer_name="other")
    a, b = holder.account, other.account
    assert a is not None and b is not None and a.leader and not b.leader and other.executor is not None
    await desk.publish(intent_id="two-open", symbol="ETHUSDT", side="BUY", quantity="0.1")
    assert (await desk.result("two-open")).status is ResultStatus.FILLED

    def seen_open() -> bool:
        return a.position_amount("ETHUSDT") == b.position_amount("ETHUSDT") == Decimal("0.1")

    await wait_for(seen_open, 10, "both views see the open")
    # The fills reach both views a second late: the other instance's script runs first.
    delayed = {"ORDER_TRADE_UPDATE": 1000, "ACCOUNT_UPDATE": 1000}
    desk.sim.set_faults(stream_reorder={"seed": 1, "max_delay_ms": 1, "type_delay_ms": delayed})
    # What the other instance's Closer does (its executor would run it the same way).
    close = intent(intent_id="two-close", symbol="ETHUSDT", side="CLOSE")
    before = desk.sim.request_counts[POSITION_RISK]
    with b.closing("ETHUSDT"):
        await b.opening("two-close", close)
        order = await other.executor.gateway.place_market(
            "ETHUSDT", OrderSide.SELL, Decimal("0.1"), client_order_id("two-close", "close"), reduce_only=True
        )
        assert order.executed_qty == Decimal("0.1")
        b.saw_final("ETHUSDT", [order.order_id], order.update_time_ms)
        await b.closed("ETHUSDT", close_key="two-close", flat_by=[order.order_id])

    async def named() -> bool:
        return any(e.get("intent_id") == "two-close" for e in await desk.events())

    await wait_for(named, 10, "the close's position event, naming its intent")

    async def dropped() -> bool:
        return await a.store.records_of("ETHUSDT") == [] and a.oco.idle("ETHUSDT")

    await wait_for(dropped, 10, "the holder's OCO dropped the CLOSE's record")
    assert desk.sim.request_counts[POSITION_RISK] > before  # once REST agreed
