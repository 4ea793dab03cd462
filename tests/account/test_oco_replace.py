"""The live OCO's replacements are make before break, and only the account-lease holder acts.

The service runs whole over real Redis and the simulator; what is checked is the simulator's own
history of conditional orders, never the service's records.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from redis import asyncio as aioredis

from binance_sim import Simulator
from quantum_exec.account.roles import replacement_of
from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import OrderSide, OrderType
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _long(intent_id: str, mark: Decimal, quantity: str) -> dict[str, Any]:
    return {
        "intent_id": intent_id,
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": quantity,
        "stop_loss": str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        "take_profit": str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    }


@pytest.mark.parametrize("kind", ["unavailable", "unknown_after"])
async def test_a_failed_replacement_keeps_the_old_leg_and_ends_with_one_set_of_legs(
    desk: Desk, kind: str
) -> None:
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("mbb-open", mark, "0.020"))
    opened = await desk.result("mbb-open")
    assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert opened.stop_loss is not None and opened.take_profit is not None
    old_legs = {opened.stop_loss.algo_id: opened.stop_loss.trigger_price}
    old_legs[opened.take_profit.algo_id] = opened.take_profit.trigger_price
    # The first replacement's placement answers 503 (not processed / processed, outcome unknown);
    # every placement takes 20 ms more, so a cancel sent before it would be visibly earlier.
    desk.sim.set_faults(
        faults=[
            {"kind": "latency", "method": "POST", "path": "/fapi/v1/algoOrder", "ms": 20},
            {"kind": kind, "method": "POST", "path": "/fapi/v1/algoOrder", "count": 1},
        ]
    )
    await desk.publish(
        intent_id="mbb-reduce", symbol="BTCUSDT", side="SELL", quantity="0.008", reduce_only=True
    )
    reduced = await desk.result("mbb-reduce")
    assert reduced.status is ResultStatus.FILLED and desk.position("BTCUSDT") == Decimal("0.012")

    def one_set() -> bool:
        legs = desk.open_algos("BTCUSDT")
        return len(legs) == 2 and all(Decimal(a["quantity"]) == Decimal("0.012") for a in legs)

    await wait_for(one_set, 15, "one set of legs of 0.012")
    history = [a for a in desk.sim.state()["algoOrders"] if a["symbol"] == "BTCUSDT"]
    assert len(history) == 4, history  # the two legs and one replacement of each, nothing more
    new_legs = {Decimal(a["triggerPrice"]): a for a in desk.open_algos("BTCUSDT")}
    assert set(new_legs) == set(old_legs.values())
    for algo_id, trigger in old_legs.items():
        [old] = [a for a in history if a["algoId"] == algo_id]
        new = new_legs[trigger]
        assert old["algoStatus"] == "CANCELED" and new["side"] == old["side"] == "SELL"
        assert new["orderType"] == old["orderType"]
        # Make before break: the old leg was still armed when its replacement was placed.
        assert old["updateTime"] >= new["createTime"], (old, new)


async def _open_and_close_by_hand(desk: Desk, intent_id: str, cut: Any) -> tuple[str, str]:
    """A protected long, then ``cut()`` (the leader loses Redis or its lease) and a close by hand;
    returns the legs' client ids."""
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long(intent_id, mark, "0.010"))
    opened = await desk.result(intent_id)
    assert opened.protection is ProtectionState.PROTECTED
    assert opened.stop_loss is not None and opened.take_profit is not None
    gateway = BinanceGateway(desk.settings(), desk.sim.base_url)
    await gateway.start()
    try:
        await cut()
        await gateway.place_market("BTCUSDT", OrderSide.SELL, Decimal("0.010"), "by-hand-close")
    finally:
        await gateway.close()
    return opened.stop_loss.client_algo_id, opened.take_profit.client_algo_id


async def test_a_leader_whose_lease_went_to_another_owner_cancels_no_legs(desk: Desk) -> None:
    service = await desk.service(account_lease_ttl_s=3.0)
    account = service.account
    assert account is not None and account.leader

    async def another_owner() -> None:
        # Another instance holds the account lease now; this one has not noticed yet.
        await desk.redis.set(account.store.lease_key, "999999|someone-else", px=60_000)

    legs = await _open_and_close_by_hand(desk, "fence-open", another_owner)
    assert desk.position("BTCUSDT") == 0
    await wait_for(lambda: account.position_amount("BTCUSDT") == 0, 5, "the close seen by the follower")
    await wait_for(lambda: account.oco.idle(), 5, "the OCO idle")
    assert [desk.algo_status(leg) for leg in legs] == ["NEW", "NEW"]
    assert not account.leader  # it asked Redis before the cancel, and stands down

    # The lease free again: the instance takes it, resyncs, and cancels the legs of the flat symbol.
    await desk.redis.delete(account.store.lease_key)
    await wait_for(lambda: account.leader, 5, "the lease taken back")
    await wait_for(
        lambda: [desk.algo_status(leg) for leg in legs] == ["CANCELED"] * 2, 10, "the legs cancelled"
    )


async def test_a_leader_cut_off_from_redis_cancels_no_legs(
    sim: Simulator, unique_names: dict[str, Any]
) -> None:
    # TCP (port=0: chosen at the first start, kept across stop/start): the server comes back at the
    # address the service knows, as a restarted Redis does.
    with EmbeddedRedis(port=0) as private:
        desk = Desk(sim, aioredis.Redis.from_url(private.url, protocol=2), unique_names, private.url)
        try:
            service = await desk.service(account_lease_ttl_s=3.0)
            account = service.account
            assert account is not None and account.leader

            async def redis_gone() -> None:
                await asyncio.to_thread(private.stop)

            legs = await _open_and_close_by_hand(desk, "cut-open", redis_gone)
            await wait_for(
                lambda: account.position_amount("BTCUSDT") == 0, 5, "the close seen by the follower"
            )
            await wait_for(lambda: account.oco.idle(), 15, "the OCO idle")
            assert [desk.algo_status(leg) for leg in legs] == ["NEW", "NEW"]
            assert not account.leader

            # Redis back (empty): the instance takes the lease, resyncs and cancels the flat legs.
            await asyncio.to_thread(private.start)
            await wait_for(lambda: account.leader, 10, "the lease taken again")
            await wait_for(
                lambda: [desk.algo_status(leg) for leg in legs] == ["CANCELED"] * 2, 10, "the legs cancelled"
            )
        finally:
            await desk.close()


async def test_a_leg_armed_twice_is_left_armed_once(desk: Desk) -> None:
    """A copy of a leg under its alternate id (a replacement whose outcome was unknown and landed
    late, or a resumed attempt) is noticed when it is armed: one of the two is cancelled."""
    await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(**_long("twin-open", mark, "0.010"))
    opened = await desk.result("twin-open")
    assert opened.protection is ProtectionState.PROTECTED and opened.stop_loss is not None
    gateway = BinanceGateway(desk.settings(), desk.sim.base_url)
    await gateway.start()
    try:
        await gateway.place_algo(
            "BTCUSDT",
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            opened.stop_loss.trigger_price,
            replacement_of(opened.stop_loss.client_algo_id),
            quantity=Decimal("0.010"),
            working_type="MARK_PRICE",
            price_protect=False,
        )
    finally:
        await gateway.close()
    stops = [opened.stop_loss.client_algo_id, replacement_of(opened.stop_loss.client_algo_id)]
    await wait_for(
        lambda: sorted(str(desk.algo_status(s)) for s in stops) == ["CANCELED", "NEW"],
        5,
        "one stop left armed",
    )
    assert len(desk.open_algos("BTCUSDT")) == 2
