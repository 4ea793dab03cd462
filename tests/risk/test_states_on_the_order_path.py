"""The trading states on the real service and the simulator: kept in Redis and shared, refused
before any order (checked from the simulator's own order history), HALTED ends working entries and
keeps the protective legs, one risk event per transition."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _risk(desk: Desk) -> dict[str, Any]:
    return {"risk_stream": f"{desk.names['intent_stream']}:risk"}


async def _events(desk: Desk) -> list[dict[str, Any]]:
    rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    return [json.loads(fields[b"payload"], parse_float=Decimal) for _sid, fields in rows]


def _entries(desk: Desk, prefix: str) -> list[dict[str, Any]]:
    """Every order the simulator ever received whose client id belongs to intents ``prefix``*."""
    return [
        o
        for o in desk.sim.state()["orders"]
        if any(o["clientOrderId"] == client_order_id(f"{prefix}{n}", "entry") for n in range(10))
    ]


async def test_reducing_then_halted_refuse_new_exposure_before_any_order(desk: Desk) -> None:
    service = await desk.service(**_risk(desk))
    other = await desk.service(**_risk(desk), consumer_name=desk.names["consumer_name"] + "-b")
    await desk.publish(intent_id="open-1", symbol="BTCUSDT", side="BUY", quantity="0.010")
    assert (await desk.result("open-1")).status is ResultStatus.FILLED
    store = RiskStore(desk.redis, service.settings)
    await store.transition(Request(TradingState.REDUCING, "test: reduce", "operator:test"))

    # Either instance: the state is in Redis, read before every entry.
    for n in range(4):
        await desk.publish(intent_id=f"add-{n}", symbol="BTCUSDT", side="BUY", quantity="0.002")
    await desk.publish(intent_id="sell-part", symbol="BTCUSDT", side="SELL", quantity="0.004")
    await desk.publish(intent_id="flip", symbol="BTCUSDT", side="SELL", quantity="0.050")
    for n in range(4):
        result = await desk.result(f"add-{n}")
        assert result.status is ResultStatus.REJECTED and result.error is not None
        assert result.error.code == "TRADING_REDUCING" and "test: reduce" in result.error.message
    assert (await desk.result("sell-part")).status is ResultStatus.FILLED  # it only reduces
    flip = await desk.result("flip")  # it would open a short beyond the long
    assert flip.error is not None and flip.error.code == "TRADING_REDUCING"
    assert desk.position("BTCUSDT") == Decimal("0.006")

    await store.transition(Request(TradingState.HALTED, "test: halt", "operator:test"))
    await desk.publish(intent_id="add-9", symbol="ETHUSDT", side="SELL", quantity="0.100")
    await desk.publish(
        intent_id="reduce-9", symbol="BTCUSDT", side="SELL", quantity="0.002", reduce_only=True
    )
    await desk.publish(intent_id="close-9", symbol="BTCUSDT", side="CLOSE")
    for refused in ("add-9", "reduce-9"):
        result = await desk.result(refused)
        assert result.error is not None and result.error.code == "TRADING_HALTED"
    assert (await desk.result("close-9")).status is ResultStatus.FILLED  # a CLOSE always runs
    assert desk.position("BTCUSDT") == 0
    # From the exchange's own history: no entry of a refused intent ever reached it.
    assert _entries(desk, "add-") == [] and _entries(desk, "reduce-") == []
    assert not [
        o for o in desk.sim.state()["orders"] if o["clientOrderId"] == client_order_id("flip", "entry")
    ]
    events = await _events(desk)
    assert [(e["from"], e["to"], e["by"]) for e in events] == [
        ("ACTIVE", "REDUCING", "operator:test"),
        ("REDUCING", "HALTED", "operator:test"),
    ]
    assert other.governor is not None and other.governor.gate.state.state is TradingState.HALTED


async def test_halted_ends_a_working_limit_entry_and_keeps_the_protective_legs(desk: Desk) -> None:
    service = await desk.service(**_risk(desk))
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="lim-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="LIMIT",
        price=str((mark * Decimal("0.99")).quantize(Decimal("0.1"))),
        stop_loss=str((mark * Decimal("0.95")).quantize(Decimal("0.1"))),
        expire_after_s=120,
    )
    await desk.publish(intent_id="open-2", symbol="ETHUSDT", side="BUY", quantity="0.100", stop_loss_pct=3)
    opened = await desk.result("open-2")
    assert opened.protection is ProtectionState.PROTECTED

    def resting() -> list[dict[str, Any]]:
        return [o for o in desk.sim.state()["orders"] if o["type"] == "LIMIT" and o["status"] == "NEW"]

    await wait_for(resting, 10, "the LIMIT resting on the book")
    await RiskStore(desk.redis, service.settings).transition(
        Request(TradingState.HALTED, "test: halt", "operator:test")
    )
    result = await desk.result("lim-1")
    assert result.executed_quantity == 0 and result.status is ResultStatus.FAILED
    [order] = [o for o in desk.sim.state()["orders"] if o["type"] == "LIMIT"]
    assert order["status"] == "CANCELED"
    # The ETH position keeps its stop on the exchange.
    assert desk.position("ETHUSDT") == Decimal("0.100")
    assert [a["orderType"] for a in desk.open_algos("ETHUSDT")] == ["STOP_MARKET"]


async def test_halted_ends_a_twap_and_an_armed_stop_entry_saying_why(desk: Desk) -> None:
    service = await desk.service(**_risk(desk))
    await desk.publish(
        intent_id="twap-1",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.400",
        execution={"algo": "twap", "slices": 4, "interval_s": 3},
        stop_loss_pct=3,
    )
    btc = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="stop-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="STOP_MARKET",
        stop_price=str((btc * Decimal("1.05")).quantize(Decimal("0.1"))),
        expire_after_s=120,
    )

    def started() -> bool:
        twap = [o for o in desk.sim.state()["orders"] if o["symbol"] == "ETHUSDT" and o["status"] == "FILLED"]
        return len(twap) >= 1 and bool(desk.open_algos("BTCUSDT"))

    await wait_for(started, 15, "the first TWAP slice filled and the stop entry armed")
    await RiskStore(desk.redis, service.settings).transition(
        Request(TradingState.HALTED, "test: halt", "operator:test")
    )
    twap = await desk.result("twap-1", timeout_s=30)
    stop = await desk.result("stop-1", timeout_s=30)
    assert twap.error is not None and twap.error.code == "ENTRY_ENDED_EARLY"
    assert twap.error.message.endswith("trading is HALTED"), twap.error.message
    sent = [o for o in desk.sim.state()["orders"] if o["symbol"] == "ETHUSDT" and o["type"] == "MARKET"]
    assert 1 <= len(sent) < 4 and twap.executed_quantity == sum(Decimal(o["executedQty"]) for o in sent)
    # What filled keeps its stop on the exchange (P3).
    assert desk.position("ETHUSDT") == twap.executed_quantity
    assert [a["orderType"] for a in desk.open_algos("ETHUSDT")] == ["STOP_MARKET"]
    # The armed stop entry is cancelled on the exchange: nothing of it is left.
    assert stop.executed_quantity == 0 and desk.open_algos("BTCUSDT") == []


async def test_a_modify_is_executed_while_reducing_and_refused_while_halted(desk: Desk) -> None:
    service = await desk.service(**_risk(desk))
    await desk.publish(intent_id="pos-1", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss_pct=3)
    assert (await desk.result("pos-1")).protection is ProtectionState.PROTECTED
    store = RiskStore(desk.redis, service.settings)
    await store.transition(Request(TradingState.REDUCING, "test: reduce", "operator:test"))
    await desk.publish(intent_id="mod-1", symbol="BTCUSDT", side="MODIFY", stop_loss_pct=2)
    assert (await desk.result("mod-1")).error is None
    stops = [a for a in desk.open_algos("BTCUSDT") if a["orderType"] == "STOP_MARKET"]
    await store.transition(Request(TradingState.HALTED, "test: halt", "operator:test"))
    algos_before = len(desk.sim.state()["algoOrders"])
    await desk.publish(intent_id="mod-2", symbol="BTCUSDT", side="MODIFY", stop_loss_pct=1)
    refused = await desk.result("mod-2")
    assert refused.error is not None and refused.error.code == "TRADING_HALTED"
    # The legs stay as they were: nothing was sent for the refused MODIFY.
    assert [a for a in desk.open_algos("BTCUSDT") if a["orderType"] == "STOP_MARKET"] == stops
    assert len(desk.sim.state()["algoOrders"]) == algos_before
