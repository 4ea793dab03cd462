"""A poison intent whose one repair died too is answered from one read of the exchange (P5).

What the dead attempts left on the exchange is made here, under the intent's own client ids, by a
signed client as the dead process would have sent it: a CLOSE whose close order filled, a MARKET
entry filled with no legs, one filled with both legs armed, a STOP entry whose trigger placed its
order, a TWAP whose plan was lost with two slices filled, a LIMIT still resting. The idempotency
record says the intent was begun ``max_attempts`` times and its repair began too (the process was
killed at it). A real ``quantum-exec serve`` process then answers each one, and the promises are
counted from the simulator's order history: the result says at least what the exchange filled
(P5), and ``protected`` only where both legs are armed (P3).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from reliability.adversary import QUANTITY, TICK, promises, signed
from reliability.harness import Rig
from support.waiting import poll_until

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MAX_ATTEMPTS = 5


def _price(symbol: str, value: Decimal) -> str:
    return str(value.quantize(Decimal(TICK[symbol])))


def _order(rig: Rig, symbol: str, side: str, cid: str, **extra: Any) -> dict[str, Any]:
    params = {"symbol": symbol, "side": side, "type": "MARKET", "quantity": QUANTITY[symbol]}
    params.update(extra)
    reply: dict[str, Any] = signed(rig.sim, "POST", "/fapi/v1/order", {**params, "newClientOrderId": cid})
    return reply


def _leg(rig: Rig, symbol: str, cid: str, kind: str, trigger: Decimal) -> None:
    signed(
        rig.sim,
        "POST",
        "/fapi/v1/algoOrder",
        {
            "symbol": symbol,
            "algoType": "CONDITIONAL",
            "side": "SELL",
            "type": kind,
            "triggerPrice": _price(symbol, trigger),
            "closePosition": "true",
            "clientAlgoId": cid,
        },
    )


def _dead_attempts(rig: Rig, marks: dict[str, Decimal]) -> dict[str, dict[str, Any]]:
    """Leave on the exchange what attempts killed at each shape left; returns the intents."""
    intents: dict[str, dict[str, Any]] = {}

    def entry(intent_id: str, symbol: str, **extra: Any) -> dict[str, Any]:
        mark = marks[symbol]
        payload = {
            "intent_id": intent_id,
            "symbol": symbol,
            "side": "BUY",
            "quantity": QUANTITY[symbol],
            "stop_loss": _price(symbol, mark * Decimal("0.97")),
            "take_profit": _price(symbol, mark * Decimal("1.03")),
            **extra,
        }
        intents[intent_id] = payload
        return payload

    # CLOSE: a position (anyone's entry), then the dead attempt's close order, filled.
    _order(rig, "XRPUSDT", "BUY", "poison-xrp-open")
    intents["poison-close"] = {"intent_id": "poison-close", "symbol": "XRPUSDT", "side": "CLOSE"}
    _order(rig, "XRPUSDT", "SELL", client_order_id("poison-close", "close"), reduceOnly="true")
    # MARKET entry filled, killed before its legs.
    entry("poison-naked", "ETHUSDT")
    _order(rig, "ETHUSDT", "BUY", client_order_id("poison-naked", "entry"))
    # MARKET entry filled and protected, killed before its result.
    entry("poison-legs", "BTCUSDT")
    _order(rig, "BTCUSDT", "BUY", client_order_id("poison-legs", "entry"))
    _leg(
        rig,
        "BTCUSDT",
        client_order_id("poison-legs", "sl"),
        "STOP_MARKET",
        marks["BTCUSDT"] * Decimal("0.97"),
    )
    _leg(
        rig,
        "BTCUSDT",
        client_order_id("poison-legs", "tp"),
        "TAKE_PROFIT_MARKET",
        marks["BTCUSDT"] * Decimal("1.03"),
    )
    # STOP entry armed, then triggered while no process ran: the order its trigger placed filled.
    stop = _price("SOLUSDT", marks["SOLUSDT"] * Decimal("1.002"))
    entry("poison-stop", "SOLUSDT", order_type="STOP_MARKET", stop_price=stop, expire_after_s=30)
    signed(
        rig.sim,
        "POST",
        "/fapi/v1/algoOrder",
        {
            "symbol": "SOLUSDT",
            "algoType": "CONDITIONAL",
            "side": "BUY",
            "type": "STOP_MARKET",
            "quantity": QUANTITY["SOLUSDT"],
            "triggerPrice": stop,
            "clientAlgoId": client_order_id("poison-stop", "entry"),
        },
    )
    rig.sim.mark("SOLUSDT", marks["SOLUSDT"] * Decimal("1.004"))
    # TWAP of 3 slices, its plan lost with Redis writes: two slices on the exchange.
    entry(
        "poison-twap", "LINKUSDT", quantity="60", execution={"algo": "twap", "slices": 3, "interval_s": 0.5}
    )
    for number in (1, 2):
        _order(rig, "LINKUSDT", "BUY", client_order_id("poison-twap", "entry", number))
    # LIMIT entry still resting far below the market, nothing filled yet.
    price = _price("ETHUSDT", marks["ETHUSDT"] * Decimal("0.9"))
    entry("poison-limit", "ETHUSDT", order_type="LIMIT", price=price, expire_after_s=600)
    _order(
        rig,
        "ETHUSDT",
        "BUY",
        client_order_id("poison-limit", "entry"),
        type="LIMIT",
        price=price,
        timeInForce="GTC",
    )
    return intents


@pytest.mark.timeout(180)
def test_a_poison_intent_whose_repair_died_reports_what_the_exchange_filled(tmp_path: Path) -> None:
    with Rig(tmp_path) as rig:
        marks = {s: Decimal(rig.sim.state()["markPrices"][s]) for s in QUANTITY}
        intents = _dead_attempts(rig, marks)
        state = rig.sim.state()
        triggered = [
            a
            for a in state["algoOrders"]
            if a["clientAlgoId"] == client_order_id("poison-stop", "entry") and a.get("actualOrderId")
        ]
        assert triggered, "the stop entry triggered on the exchange"
        for intent_id in intents:
            rig.streams.client.hset(
                f"{rig.names.key_prefix}:idem:{intent_id}",
                mapping={"state": "in_flight", "attempts": MAX_ATTEMPTS, "repair": 1},
            )
        rig.streams.publish_many(list(intents.values()))
        service = rig.service("poison-a", max_attempts=MAX_ATTEMPTS, intent_ttl_s=600).start()
        results = rig.streams.wait_answered(set(intents), 60)
        assert service.terminate() == 0
        after = rig.sim.state()

    by_id = {r.intent_id: r for r in results}
    assert all(r.status is ResultStatus.FAILED for r in results), [r.status for r in results]
    assert all(r.error is not None and r.error.code == "POISON_MESSAGE" for r in results)
    verdict = promises(intents, results, after, {})
    assert verdict.violations == {}, verdict.violations
    # Nothing was sent: the answer only read the exchange.
    assert len(after["orders"]) == len(state["orders"])
    assert len(after["algoOrders"]) == len(state["algoOrders"])
    assert by_id["poison-close"].executed_quantity == Decimal(QUANTITY["XRPUSDT"])
    assert by_id["poison-close"].protection is ProtectionState.NOT_REQUESTED
    assert by_id["poison-naked"].executed_quantity == Decimal(QUANTITY["ETHUSDT"])
    assert by_id["poison-naked"].protection is ProtectionState.UNPROTECTED
    assert by_id["poison-legs"].protection is ProtectionState.PROTECTED
    assert by_id["poison-stop"].executed_quantity == Decimal(QUANTITY["SOLUSDT"])
    assert by_id["poison-stop"].protection is ProtectionState.UNPROTECTED
    assert by_id["poison-twap"].executed_quantity == Decimal(2 * 20)
    message = by_id["poison-naked"].error.message if by_id["poison-naked"].error else ""
    assert "filled 0.100" in message and "no SL/TP" in message, message
    # A LIMIT still resting: nothing filled yet, but it may fill with no SL/TP: said loudly.
    limit = by_id["poison-limit"]
    assert not limit.executed_quantity and limit.protection is ProtectionState.UNPROTECTED
    assert limit.error is not None and "still working" in limit.error.message, limit.error


@pytest.mark.timeout(120)
def test_a_poison_intent_whose_lookup_died_too_is_answered_without_the_exchange(tmp_path: Path) -> None:
    """The lookup is tried once: a process killed at it (record ``repair`` 2) answers blind."""
    with Rig(tmp_path) as rig:
        payload = {"intent_id": "poison-blind", "symbol": "ETHUSDT", "side": "BUY", "quantity": "0.100"}
        _order(rig, "ETHUSDT", "BUY", client_order_id("poison-blind", "entry"))
        rig.streams.client.hset(
            f"{rig.names.key_prefix}:idem:poison-blind",
            mapping={"state": "in_flight", "attempts": MAX_ATTEMPTS, "repair": 2},
        )
        rig.streams.publish(payload)
        service = rig.service("poison-b", max_attempts=MAX_ATTEMPTS, intent_ttl_s=600).start()
        [result] = rig.streams.wait_answered({"poison-blind"}, 60)
        assert poll_until(lambda: rig.streams.pending() == 0, 5)
        assert service.terminate() == 0
    assert result.error is not None and result.error.code == "POISON_MESSAGE"
    assert "could not be read" in result.error.message, result.error.message
    assert result.protection is ProtectionState.UNPROTECTED  # it may have opened a naked position
