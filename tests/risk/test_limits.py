"""Each exposure limit refuses the intent that would cross it, with the numbers, before any order;
a runaway producer is cut off at its intent rate. Limits changed at run time apply at once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.contracts.codec import encode_intent_fields
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.rules import fmt
from quantum_exec.risk.limits import LimitError, Limits, parse_limit
from quantum_exec.risk.store import RiskStore
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _sent(desk: Desk, intent_id: str) -> bool:
    return any(o["clientOrderId"] == client_order_id(intent_id, "entry") for o in desk.sim.state()["orders"])


async def _refused(desk: Desk, intent_id: str, code: str) -> str:
    result = await desk.result(intent_id)
    assert result.status is ResultStatus.REJECTED and result.error is not None, result
    assert result.error.code == code, result.error
    assert not _sent(desk, intent_id)
    return result.error.message


async def test_each_limit_refuses_the_intent_that_would_cross_it_with_the_numbers(desk: Desk) -> None:
    service = await desk.service(
        risk_stream=f"{desk.names['intent_stream']}:risk",
        risk_max_symbol_notional_usd=Decimal(1500),
        risk_max_leverage=5,
    )
    btc = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(intent_id="btc-1", symbol="BTCUSDT", side="BUY", quantity="0.010")
    assert (await desk.result("btc-1")).status is ResultStatus.FILLED
    await desk.publish(intent_id="btc-2", symbol="BTCUSDT", side="BUY", quantity="0.010")
    message = await _refused(desk, "btc-2", "RISK_LIMIT")
    assert message.startswith(f"max_symbol_notional_usd: {fmt(Decimal('0.010') * btc)} now, ")
    assert "above the limit 1500 (QUANTUM_RISK_MAX_SYMBOL_NOTIONAL_USD)" in message
    await desk.publish(intent_id="lev", symbol="ETHUSDT", side="BUY", quantity="0.100", leverage=10)
    assert "max_leverage: 0 now, 10 after this intent, above the limit 5" in await _refused(
        desk, "lev", "RISK_LIMIT"
    )

    store = RiskStore(desk.redis, service.settings)
    await store.set_limits({"max_open_positions": "1", "max_symbol_notional_usd": "off"}, [], "test")
    await desk.publish(intent_id="eth-1", symbol="ETHUSDT", side="BUY", quantity="0.100")
    assert "max_open_positions: 1 now, 2 after" in await _refused(desk, "eth-1", "RISK_LIMIT")
    await store.set_limits({"max_gross_notional_usd": "1200"}, ["max_open_positions"], "test")
    await desk.publish(intent_id="eth-2", symbol="ETHUSDT", side="BUY", quantity="0.100")
    assert "max_gross_notional_usd" in await _refused(desk, "eth-2", "RISK_LIMIT")
    # Reducing is never refused by a limit.
    await desk.publish(intent_id="btc-3", symbol="BTCUSDT", side="SELL", quantity="0.005")
    assert (await desk.result("btc-3")).status is ResultStatus.FILLED


async def test_a_runaway_producer_is_cut_off_at_its_rate(desk: Desk) -> None:
    await desk.service(risk_stream=f"{desk.names['intent_stream']}:risk", risk_max_intents_per_min=5)
    for n in range(10):  # a burst, faster than 10 per second
        await desk.publish(
            intent_id=f"run-{n}", symbol="ETHUSDT", side="BUY", quantity="0.050", model="runaway"
        )
    await desk.publish(intent_id="calm-0", symbol="ETHUSDT", side="BUY", quantity="0.050", model="calm")
    filled = [n for n in range(10) if (await desk.result(f"run-{n}")).status is ResultStatus.FILLED]
    assert len(filled) == 5
    for n in set(range(10)) - set(filled):
        assert "runaway: " in await _refused(desk, f"run-{n}", "RISK_RATE")
    assert (await desk.result("calm-0")).status is ResultStatus.FILLED  # another producer's own budget


async def _xadd(desk: Desk, source: str, **payload: object) -> None:
    """A producer's entry, ``source`` as the gateway writes it (the producer's authenticated name)."""
    await desk.redis.xadd(desk.names["intent_stream"], encode_intent_fields(payload, source))  # type: ignore[arg-type]


async def test_the_rate_is_the_publishers_whatever_model_it_names(desk: Desk) -> None:
    """The payload's ``model`` is the producer's to write: one naming another's model spends its own
    budget (the stream entry's ``source``), not the other's."""
    await desk.service(risk_stream=f"{desk.names['intent_stream']}:risk", risk_max_intents_per_min=3)
    for n in range(5):
        await _xadd(
            desk,
            "gw-mallory",
            intent_id=f"m-{n}",
            symbol="ETHUSDT",
            side="BUY",
            quantity="0.050",
            model="alice",
        )
    refused = [n for n in range(5) if (await desk.result(f"m-{n}")).status is ResultStatus.REJECTED]
    assert len(refused) == 2
    assert "gw-mallory/alice: 4 intents this minute" in await _refused(desk, f"m-{refused[0]}", "RISK_RATE")
    await _xadd(
        desk, "gw-alice", intent_id="a-0", symbol="ETHUSDT", side="BUY", quantity="0.050", model="alice"
    )
    assert (await desk.result("a-0")).status is ResultStatus.FILLED


async def test_an_intent_is_counted_once_however_often_it_is_resumed(desk: Desk) -> None:
    store = RiskStore(desk.redis, desk.settings())
    now = datetime.now(UTC)
    first = await store.count_intent("gw/model", "intent-1", now)
    again = await store.count_intent("gw/model", "intent-1", now)  # its attempt resumed
    other = await store.count_intent("gw/model", "intent-2", now)
    assert (first, again, other) == (1, 1, 2)


def test_limit_values_are_checked_and_named() -> None:
    assert parse_limit("QUANTUM_RISK_MAX_GROSS_NOTIONAL_USD", "1000.5") == (
        "max_gross_notional_usd",
        Decimal("1000.5"),
    )
    assert parse_limit("max_open_positions", "off") == ("max_open_positions", None)
    for key, value, says in (
        ("max_leverage", "2.5", "whole number"),
        ("max_drawdown_pct", "120", "below 100"),
        ("max_gross_notional_usd", "-1", "above 0"),
        ("max_cats", "1", "unknown limit 'max_cats'"),
        ("on_daily_loss", "panic", "reduce, halt, halt_flatten"),
    ):
        with pytest.raises(LimitError, match=says):
            parse_limit(key, value)
    assert Limits(max_leverage=3).with_overrides({"max_leverage": "off"}).max_leverage is None
