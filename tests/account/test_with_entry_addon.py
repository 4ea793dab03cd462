"""QUANTUM_PROTECTION_TIMING=with_entry on a symbol already holding a position on the intent's side:
the add-on's reduce-only legs, sized to it, travel beside its entry (one round trip to protected),
are resized when it fills less, withdrawn when it fills nothing, and survive a SIGKILL between the
entry and the legs. Every check reads the simulator's own orders, never the service's records."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from binance_sim.book import BookConfig
from quantum_exec.contracts import ExecutionResult, ProtectionState, ResultStatus
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.core.ids import client_order_id, replacement_of
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SYMBOL = "BTCUSDT"
TENTH = Decimal("0.1")
FIRST = Decimal("0.01")
ADD = Decimal("0.02")


def _triggers(desk: Desk, sl: str = "0.98", tp: str = "1.02") -> tuple[Decimal, Decimal]:
    mark = desk.sim.engine.mark(SYMBOL)
    return (mark * Decimal(sl)).quantize(TENTH), (mark * Decimal(tp)).quantize(TENTH)


async def _open(desk: Desk, intent_id: str, quantity: Decimal, sl: Decimal, tp: Decimal) -> None:
    await desk.publish(
        intent_id=intent_id,
        symbol=SYMBOL,
        side="BUY",
        quantity=str(quantity),
        stop_loss=str(sl),
        take_profit=str(tp),
    )


def _legs_of(desk: Desk, intent_id: str) -> list[dict[str, Any]]:
    """Every conditional order of the intent on the simulator (both ids a leg may take), oldest first."""
    ids = set()
    for kind in ("sl", "tp"):
        plain = client_order_id(intent_id, kind)
        ids |= {plain, replacement_of(plain)}
    return [a for a in desk.sim.state()["algoOrders"] if a["clientAlgoId"] in ids]


def _entries(desk: Desk, intent_id: str) -> list[dict[str, Any]]:
    entry = client_order_id(intent_id, "entry")
    return [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == entry]


def _assert_protected_by_reduce_only_legs(
    desk: Desk, result: ExecutionResult, size: Decimal, sl: Decimal, tp: Decimal
) -> None:
    """P3/P5 from the exchange: the result's legs are NEW there, reduce-only, of ``size``, at the
    intent's triggers, and they are the intent's only armed legs."""
    assert result.protection is ProtectionState.PROTECTED, result
    for leg, trigger in ((result.stop_loss, sl), (result.take_profit, tp)):
        assert leg is not None and leg.state == "NEW" and not leg.close_position
        on_exchange = desk.algo(leg.client_algo_id)
        assert on_exchange is not None and on_exchange["algoStatus"] == "NEW", on_exchange
        assert on_exchange["reduceOnly"] is True and on_exchange["closePosition"] is False
        assert Decimal(on_exchange["quantity"]) == size == leg.quantity
        assert Decimal(on_exchange["triggerPrice"]) == trigger == leg.trigger_price
        assert on_exchange["algoId"] == leg.algo_id
    armed = [a for a in _legs_of(desk, result.intent_id or "") if a["algoStatus"] == "NEW"]
    assert len(armed) == 2, armed


async def _first_position(desk: Desk, publish_to: str = "first") -> tuple[Decimal, Decimal]:
    sl, tp = _triggers(desk, "0.97", "1.03")
    await _open(desk, publish_to, FIRST, sl, tp)
    first = await desk.result(publish_to)
    assert first.status is ResultStatus.FILLED and first.protection is ProtectionState.PROTECTED
    return sl, tp


def _first_legs_untouched(desk: Desk, first: str = "first") -> None:
    """The earlier intent's legs (closePosition, placed from flat) are still armed, never replaced."""
    legs = _legs_of(desk, first)
    assert len(legs) == 2 and {a["algoStatus"] for a in legs} == {"NEW"}, legs
    assert all(a["closePosition"] for a in legs)


async def test_an_add_on_sends_reduce_only_legs_sized_to_it_in_the_entry_round_trip(desk: Desk) -> None:
    await desk.service(protection_timing="with_entry")
    await _first_position(desk)
    # 150 ms each way: legs sent after the fill would be created a round trip after the entry.
    desk.sim.config = dataclasses.replace(desk.sim.config, latency_ms=150)
    sl, tp = _triggers(desk)
    before = dict(desk.sim.request_counts)
    await _open(desk, "add-on", ADD, sl, tp)
    result = await desk.result("add-on")
    assert result.status is ResultStatus.FILLED and result.executed_quantity == ADD
    _assert_protected_by_reduce_only_legs(desk, result, ADD, sl, tp)
    [order] = _entries(desk, "add-on")  # P2
    legs = _legs_of(desk, "add-on")
    assert len(legs) == 2, legs  # placed once each, not again after the fill
    assert all(abs(int(a["createTime"]) - int(order["time"])) < 100 for a in legs), (legs, order)
    sent = {k: v - before.get(k, 0) for k, v in desk.sim.request_counts.items() if v != before.get(k, 0)}
    assert sent.get("POST /fapi/v1/algoOrder") == 2 and sent.get("POST /fapi/v1/order") == 1, sent
    assert desk.position(SYMBOL) == FIRST + ADD
    _first_legs_untouched(desk)
    assert len(await desk.results()) == 2  # P1


async def test_an_add_on_that_fills_part_has_its_legs_resized_to_the_fill(desk: Desk) -> None:
    await desk.service(protection_timing="with_entry")
    await _first_position(desk)
    mark = desk.sim.engine.mark(SYMBOL)
    # One level of 0.01 BTC at the mark; the next is 6 % away, past the 5 % marketTakeBound: the
    # MARKET add-on of 0.02 fills 0.01 and its rest expires.
    desk.sim.engine.ledger.book = BookConfig(depth_notional=mark * Decimal("0.0105"), level_bps=Decimal(600))
    sl, tp = _triggers(desk)
    await _open(desk, "part", ADD, sl, tp)
    result = await desk.result("part")
    [order] = _entries(desk, "part")
    filled = Decimal(order["executedQty"])
    assert order["status"] == "EXPIRED" and filled == Decimal("0.01")
    assert result.status is ResultStatus.PARTIAL and result.executed_quantity == filled  # P5
    _assert_protected_by_reduce_only_legs(desk, result, filled, sl, tp)
    # The legs of the requested size were replaced (make before break), not left over-sized.
    old = [a for a in _legs_of(desk, "part") if Decimal(a["quantity"]) == ADD]
    assert len(old) == 2 and {a["algoStatus"] for a in old} == {"CANCELED"}, old
    assert desk.position(SYMBOL) == FIRST + filled
    _first_legs_untouched(desk)


async def test_legs_beside_an_add_on_that_is_refused_are_withdrawn(desk: Desk) -> None:
    await desk.service(protection_timing="with_entry")
    await _first_position(desk)
    # The entry is refused (-2019) a while after the legs were placed.
    desk.sim.set_faults(
        faults=[
            {"kind": "latency", "ms": 300, "method": "POST", "path": "/fapi/v1/order"},
            {"kind": "insufficient_margin", "count": 1},
        ]
    )
    sl, tp = _triggers(desk)
    await _open(desk, "refused", ADD, sl, tp)
    result = await desk.result("refused")
    assert result.status is ResultStatus.REJECTED and result.error is not None
    assert result.error.code == "-2019"
    legs = _legs_of(desk, "refused")
    assert len(legs) == 2 and {a["algoStatus"] for a in legs} == {"CANCELED"}, legs
    assert desk.position(SYMBOL) == FIRST
    _first_legs_untouched(desk)


def _worker(desk: Desk, tmp_path: Path) -> KillableService:
    return KillableService(desk, tmp_path, "addon-worker", protection_timing="with_entry")


async def test_sigkill_between_the_add_on_entry_and_its_legs(desk: Desk, tmp_path: Path) -> None:
    """The entry is on the exchange and its legs still travel (1.5 s, inside the 2 s recvWindow)
    when the process dies; the restarted one finds the entry, protects the add-on exactly once, and
    answers once."""
    worker = _worker(desk, tmp_path)
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await _first_position(desk)
        desk.sim.set_faults(
            faults=[{"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/algoOrder"}]
        )
        sl, tp = _triggers(desk)
        await _open(desk, "killed", ADD, sl, tp)
        await wait_for(lambda: bool(_entries(desk, "killed")), 10, "the add-on's entry on the exchange")
        worker.kill()
        assert not [a for a in _legs_of(desk, "killed") if a["algoStatus"] == "NEW"], "legs came first"
        desk.sim.set_faults(faults=[])
        worker.spawn()
        result = await desk.result("killed", timeout_s=40)
    finally:
        worker.kill()
    assert len(_entries(desk, "killed")) == 1  # P2
    assert result.status is ResultStatus.FILLED and result.executed_quantity == ADD
    _assert_protected_by_reduce_only_legs(desk, result, ADD, sl, tp)  # P3, once
    assert desk.position(SYMBOL) == FIRST + ADD
    _first_legs_untouched(desk)
    rows = await desk.redis.xrange(desk.names["result_stream"])
    assert sorted(decode_result_fields(fields).intent_id or "" for _sid, fields in rows) == [
        "first",
        "killed",
    ]  # P1


async def test_sigkill_after_legs_beside_an_add_on_whose_entry_was_never_placed(
    desk: Desk, tmp_path: Path
) -> None:
    """The legs are armed, the entry is refused (-2019), and the process dies before it withdraws
    them; the restarted one finds no entry, and the intent has gone stale meanwhile, so it sends
    nothing: the legs are withdrawn all the same, no reduce-only pair is left on a position the
    intent never added to."""
    worker = KillableService(desk, tmp_path, "addon-worker", protection_timing="with_entry", intent_ttl_s=4)
    try:
        worker.spawn()
        await wait_for(lambda: worker.started() == 1, 30, "the worker ready")
        await _first_position(desk)
        desk.sim.set_faults(
            faults=[
                {"kind": "latency", "ms": 1500, "method": "POST", "path": "/fapi/v1/order"},
                {"kind": "insufficient_margin", "count": 1},
            ]
        )
        sl, tp = _triggers(desk)
        await _open(desk, "never", ADD, sl, tp)
        await wait_for(
            lambda: sum(a["algoStatus"] == "NEW" for a in _legs_of(desk, "never")) == 2, 10, "the legs NEW"
        )
        # The refusal is decided as the entry arrives (its fault consumed) and answered 1.5 s later:
        # killed inside that, the process never hears it. Armed legs alone do not mean the entry was
        # sent yet (on a loaded machine it can still be on its way), so the kill waits for both.
        await wait_for(
            lambda: all(r.kind == "latency" for r in desk.sim.faults.rules), 10, "the entry refused"
        )
        worker.kill()
        desk.sim.set_faults(faults=[])
        await asyncio.sleep(4)  # the intent's TTL passes while no process runs
        worker.spawn()
        result = await desk.result("never", timeout_s=40)
    finally:
        worker.kill()
    assert not _entries(desk, "never")  # refused: never on the exchange, and not sent again
    assert result.status is ResultStatus.REJECTED and result.error is not None
    assert result.error.code == "STALE_INTENT", result.error
    # Withdrawn, under either id (this process's live OCO may have replaced them first: it does
    # not know the dead process's legs, which are larger than the position).
    legs = _legs_of(desk, "never")
    assert len(legs) >= 2 and {a["algoStatus"] for a in legs} == {"CANCELED"}, legs
    assert desk.position(SYMBOL) == FIRST
    _first_legs_untouched(desk)
    rows = await desk.redis.xrange(desk.names["result_stream"])
    assert sorted(decode_result_fields(fields).intent_id or "" for _sid, fields in rows) == [
        "first",
        "never",
    ]  # P1
