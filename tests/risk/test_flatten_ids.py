"""The kill switch cannot be defused by a producer that can append to the intent stream (XADD,
not through the gateway): the flatten's CLOSE ids cannot be predicted, only a result of the
governor's own intent counts for a round, and a producer's intent re-using a governor id is not
admitted as the governor's. Checked from the simulator's own positions and order history."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.app.service import Service
from quantum_exec.contracts import ResultStatus
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.risk.rounds import round_intent_id
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _service(desk: Desk) -> Service:
    settings = desk.settings(
        metrics_port=0,
        metrics_host="127.0.0.1",
        watchdog=False,
        risk_stream=f"{desk.names['intent_stream']}:risk",
    )
    service = Service(settings)
    desk.services.append(service)
    await service.start()
    return service


async def _events(desk: Desk) -> list[dict[str, Any]]:
    rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
    return [json.loads(fields[b"payload"], parse_float=Decimal) for _sid, fields in rows]


async def _xadd(desk: Desk, payload: dict[str, Any]) -> None:
    """A producer appending to the intent stream directly, in the envelope the governor uses."""
    await desk.redis.xadd(
        desk.names["intent_stream"],
        {"event_type": "trade.intent", "payload": json.dumps(payload), "source": "quantum-exec-risk"},
    )


async def _halt_flatten_and_wait_flat(desk: Desk, service: Service) -> None:
    store = RiskStore(desk.redis, service.settings)
    await store.transition(Request(TradingState.HALTED, "test: kill switch", "operator:test", flatten=True))
    await wait_for(lambda: desk.position("BTCUSDT") == 0, 30, "the flatten to close BTCUSDT on the exchange")

    async def finished() -> bool:
        return any(e["kind"] == "flatten_done" for e in await _events(desk))

    await wait_for(finished, 20, "flatten_done")


async def test_closes_published_first_under_guessable_ids_do_not_defuse_the_flatten(desk: Desk) -> None:
    service = await _service(desk)
    # Every id the governor used to give its first flatten's CLOSEs (risk-f1-<SYMBOL>-<round>),
    # with the governor's own payload: rejected, nothing is open yet.
    guessed = [f"risk-f1-BTCUSDT-{n}" for n in range(1, 6)]
    for intent_id in guessed:
        await _xadd(
            desk, {"intent_id": intent_id, "symbol": "BTCUSDT", "side": "CLOSE", "reason": "risk flatten f1"}
        )
    for intent_id in guessed:
        assert (await desk.result(intent_id)).status is ResultStatus.REJECTED
    await desk.publish(intent_id="open-1", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss_pct=3)
    assert (await desk.result("open-1")).status is ResultStatus.FILLED
    assert desk.position("BTCUSDT") == Decimal("0.010")

    await _halt_flatten_and_wait_flat(desk, service)
    events = await _events(desk)
    closes = [e for e in events if e["kind"] == "flatten_close"]
    assert len(closes) == 1 and closes[0]["intent_id"] not in guessed, closes
    assert closes[0]["intent_id"].startswith("risk-f1-BTCUSDT-1-")
    assert (await desk.result(closes[0]["intent_id"])).status is ResultStatus.FILLED
    done = next(e for e in events if e["kind"] == "flatten_done")
    assert done["numbers"]["closes"] == 1
    # The exchange's own history: one reduce-only close, and no conditional order of ours left.
    reduce_only = [o for o in desk.sim.state()["orders"] if o.get("reduceOnly") and o["type"] == "MARKET"]
    assert [(o["side"], Decimal(o["executedQty"])) for o in reduce_only] == [("SELL", Decimal("0.010"))]
    assert desk.open_algos("BTCUSDT") == []


async def test_a_foreign_intent_under_a_leaked_governor_id_counts_for_nothing(desk: Desk) -> None:
    """Even with the id known (the group's secret leaked: set here by hand), a producer's intent under
    it is not the governor's: the round counts for nothing and the next round closes."""
    service = await _service(desk)
    prefix = service.settings.key_prefix
    await desk.redis.set(f"{prefix}:risk:once:f1:nonce", "leaked")
    taken = round_intent_id("f1", "BTCUSDT", 1, "leaked")
    await _xadd(
        desk, {"intent_id": taken, "symbol": "BTCUSDT", "side": "CLOSE", "reason": "not the governor"}
    )
    assert (await desk.result(taken)).status is ResultStatus.REJECTED
    await desk.publish(intent_id="open-1", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss_pct=3)
    assert (await desk.result("open-1")).status is ResultStatus.FILLED

    await _halt_flatten_and_wait_flat(desk, service)
    events = await _events(desk)
    assert [e["intent_id"] for e in events if e["kind"] == "flatten_close"] == [
        taken,
        round_intent_id("f1", "BTCUSDT", 2, "leaked"),
    ]
    assert (await desk.result(round_intent_id("f1", "BTCUSDT", 2, "leaked"))).status is ResultStatus.FILLED
    done = next(e for e in events if e["kind"] == "flatten_done")
    assert done["numbers"]["closes"] == 1  # the one that ran for the governor
    # One result per intent id: the governor's round 1 was refused as an id conflict, never run.
    rows = await desk.redis.xrange(desk.names["result_stream"])
    ids = [decode_result_fields(f).intent_id for _sid, f in rows]
    assert ids.count(taken) == 1


async def test_a_reduce_only_intent_under_a_governor_looking_id_is_refused_while_halted(desk: Desk) -> None:
    service = await _service(desk)
    await desk.publish(intent_id="open-1", symbol="BTCUSDT", side="BUY", quantity="0.010")
    assert (await desk.result("open-1")).status is ResultStatus.FILLED
    store = RiskStore(desk.redis, service.settings)
    await store.transition(Request(TradingState.HALTED, "test: halt", "operator:test"))
    forged = "risk-liq20261207-BTCUSDT-1"
    await _xadd(
        desk,
        {"intent_id": forged, "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.004", "reduce_only": True},
    )
    result = await desk.result(forged)
    assert result.error is not None and result.error.code == "TRADING_HALTED", result
    assert desk.position("BTCUSDT") == Decimal("0.010")
