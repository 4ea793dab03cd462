"""The executor end to end against the simulator: orders, protection, rejections, faults."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.rules import floor_to_step
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.wire import OrderSide, OrderType
from quantum_exec.execution.executor import Executor, create_executor
from quantum_exec.ops import metrics
from support.sim_state import algo_orders, intent, mark, orders, position_amount

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def inject(
    sim: Simulator,
    kind: str,
    *,
    method: str | None = None,
    path: str | None = None,
    count: int = 1,
    **extra: Any,
) -> None:
    rule: dict[str, Any] = {"kind": kind, "count": count, **extra}
    if method:
        rule["method"] = method
    if path:
        rule["path"] = path
    sim.set_faults({"faults": [rule]})


def request_count(endpoint: str, method: str = "POST") -> float:
    total = 0.0
    for metric in metrics.REGISTRY.collect():
        if metric.name != "quantum_exec_exchange_requests":
            continue
        for sample in metric.samples:
            if (
                sample.name.endswith("_total")
                and sample.labels["endpoint"] == endpoint
                and sample.labels["method"] == method
            ):
                total += sample.value
    return total


async def test_long_is_filled_protected_and_priced_from_trades(executor: Executor, sim: Simulator) -> None:
    price = mark(sim, "BTCUSDT")
    result = await executor.execute(
        intent(
            intent_id="long-1",
            symbol="BTCUSDT",
            side="BUY",
            position_size_usd=1000.0,
            leverage=5,
            stop_loss_pct=2,
            take_profit_pct=4,
            model="ensemble",
            confidence=0.72,
        )
    )
    assert result.status is ResultStatus.FILLED, result.error
    assert result.protection is ProtectionState.PROTECTED
    assert result.executed_quantity == Decimal("0.010")
    assert result.avg_price == price
    assert result.meta == {"model": "ensemble", "confidence": Decimal("0.72")}

    entries = orders(sim, symbol="BTCUSDT", type_="MARKET")
    assert len(entries) == 1
    assert entries[0]["clientOrderId"] == result.client_order_id == client_order_id("long-1", "entry")
    assert entries[0]["orderId"] == result.order_id and entries[0]["status"] == "FILLED"

    armed = {a["orderType"]: a for a in algo_orders(sim, symbol="BTCUSDT", status="NEW")}
    assert set(armed) == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    # long: the stop rounds up and the target rounds down to the 0.10 tick
    assert Decimal(armed["STOP_MARKET"]["triggerPrice"]) == Decimal("93329.9")  # 95234.5 * 0.98 = 93329.81
    assert Decimal(armed["TAKE_PROFIT_MARKET"]["triggerPrice"]) == Decimal("99043.8")  # * 1.04 = 99043.88
    for algo in armed.values():
        assert algo["side"] == "SELL" and Decimal(algo["quantity"]) == Decimal("0.010")
        assert algo["workingType"] == "MARK_PRICE" and algo["priceProtect"] in (True, "true")
    assert result.stop_loss is not None and result.stop_loss.algo_id == armed["STOP_MARKET"]["algoId"]
    assert result.take_profit is not None and result.take_profit.client_algo_id == client_order_id(
        "long-1", "tp"
    )

    trades = [t for t in sim.state()["trades"] if t["orderId"] == result.order_id]
    assert result.commission == sum((Decimal(t["commission"]) for t in trades), Decimal(0)) > 0
    assert result.commission_asset == "USDT" and result.fee_usd == result.commission
    assert sim.state()["leverage"]["BTCUSDT"] == 5
    assert sim.state()["marginType"]["BTCUSDT"] in ("ISOLATED", "isolated")


async def test_short_with_absolute_triggers_rounds_to_the_safe_side(
    executor: Executor, sim: Simulator
) -> None:
    price = mark(sim, "ETHUSDT")
    result = await executor.execute(
        intent(
            intent_id="short-1",
            symbol="ethusdt",
            action="sell",
            position_size_usd=1500.0,
            stop_loss=3167.5432,
            take_profit=3012.2567,
        )
    )
    assert result.status is ResultStatus.FILLED, result.error
    assert result.protection is ProtectionState.PROTECTED
    assert position_amount(sim, "ETHUSDT") == -result.executed_quantity  # type: ignore[operator]
    armed = {a["orderType"]: a for a in algo_orders(sim, symbol="ETHUSDT", status="NEW")}
    # short: the stop rounds down, the target rounds up (tick 0.01)
    assert Decimal(armed["STOP_MARKET"]["triggerPrice"]) == Decimal("3167.54")
    assert Decimal(armed["TAKE_PROFIT_MARKET"]["triggerPrice"]) == Decimal("3012.26")
    assert all(a["side"] == "BUY" for a in armed.values())
    assert (
        Decimal(armed["STOP_MARKET"]["triggerPrice"])
        > price
        > Decimal(armed["TAKE_PROFIT_MARKET"]["triggerPrice"])
    )


STALE = (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 99.0}, "NOTIONAL_BELOW_MIN"),
        ({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 50.0}, "QTY_BELOW_MIN"),
        ({"symbol": "FOOUSDT", "side": "BUY", "position_size_usd": 100.0}, "UNKNOWN_SYMBOL"),
        ({"symbol": "SRMUSDT", "side": "BUY", "position_size_usd": 100.0}, "SYMBOL_NOT_TRADING"),
        ({"symbol": "BTCUSDT_260327", "side": "BUY", "position_size_usd": 500.0}, "CONTRACT_NOT_ALLOWED"),
        (
            {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 500.0, "leverage": 50},
            "LEVERAGE_ABOVE_LIMIT",
        ),
        (
            {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 500.0, "timestamp": STALE},
            "STALE_INTENT",
        ),
        (
            {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 500.0, "stop_loss": 99000.0},
            "SL_TP_WRONG_SIDE",
        ),
        (
            {"symbol": "BTCUSDT", "side": "SELL", "position_size_usd": 500.0, "take_profit": 99000.0},
            "SL_TP_WRONG_SIDE",
        ),
        ({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 100000.0}, "NOTIONAL_ABOVE_LIMIT"),
        ({"symbol": "BTCUSDT", "side": "CLOSE"}, "NO_POSITION"),
    ],
)
async def test_rejections_have_a_reason_and_place_nothing(
    executor: Executor, sim: Simulator, payload: dict[str, Any], code: str
) -> None:
    result = await executor.execute(intent(intent_id=f"rej-{code}", **payload))
    assert result.status is ResultStatus.REJECTED
    assert result.error is not None and result.error.code == code
    assert result.error.message
    assert orders(sim) == [] and algo_orders(sim) == []


async def test_allowlist_guard(make_settings: Callable[..., Settings], sim: Simulator) -> None:
    ex = await create_executor(make_settings(symbol_allowlist="ETHUSDT"))
    try:
        result = await ex.execute(
            intent(intent_id="allow-1", symbol="BTCUSDT", side="BUY", position_size_usd=500)
        )
    finally:
        await ex.close()
    assert result.error is not None and result.error.code == "SYMBOL_NOT_ALLOWED"
    assert orders(sim) == []


async def test_min_notional_message_states_the_numbers(executor: Executor) -> None:
    result = await executor.execute(
        intent(intent_id="mn", symbol="BTCUSDT", side="BUY", position_size_usd=99.0)
    )
    assert result.error is not None
    assert "100" in result.error.message and "BTCUSDT" in result.error.message


@pytest.mark.parametrize("kind", ["unknown_after", "timeout_after", "drop_after", "drop_before"])
async def test_unknown_outcome_after_acceptance_leads_to_exactly_one_entry(
    executor: Executor, sim: Simulator, kind: str
) -> None:
    inject(sim, kind, method="POST", path="/fapi/v1/order")
    result = await executor.execute(
        intent(
            intent_id=f"unk-{kind}", symbol="SOLUSDT", side="BUY", position_size_usd=300.0, stop_loss_pct=3
        )
    )
    assert result.status is ResultStatus.FILLED, result.error
    entries = orders(sim, symbol="SOLUSDT", type_="MARKET")
    assert len(entries) == 1
    assert entries[0]["orderId"] == result.order_id
    assert result.protection is ProtectionState.PROTECTED


async def test_unavailable_before_acceptance_is_sent_again(executor: Executor, sim: Simulator) -> None:
    inject(sim, "unavailable", method="POST", path="/fapi/v1/order")
    result = await executor.execute(
        intent(intent_id="unav", symbol="XRPUSDT", side="SELL", position_size_usd=200)
    )
    assert result.status is ResultStatus.FILLED, result.error
    assert len(orders(sim, symbol="XRPUSDT")) == 1


async def test_unknown_outcome_on_a_stop_finds_it_instead_of_doubling(
    executor: Executor, sim: Simulator
) -> None:
    inject(sim, "unknown_after", method="POST", path="/fapi/v1/algoOrder")
    result = await executor.execute(
        intent(
            intent_id="unk-algo",
            symbol="LINKUSDT",
            side="BUY",
            position_size_usd=300,
            stop_loss_pct=2,
            take_profit_pct=2,
        )
    )
    assert result.protection is ProtectionState.PROTECTED, result.error
    assert len(algo_orders(sim, symbol="LINKUSDT")) == 2


async def test_stop_that_would_trigger_leads_to_emergency_close(executor: Executor, sim: Simulator) -> None:
    inject(sim, "would_trigger", method="POST", path="/fapi/v1/algoOrder", count=100)
    result = await executor.execute(
        intent(
            intent_id="em-1",
            symbol="BTCUSDT",
            side="BUY",
            position_size_usd=1000.0,
            stop_loss_pct=1,
            take_profit_pct=2,
        )
    )
    assert result.protection is ProtectionState.CLOSED_EMERGENCY
    assert result.status is ResultStatus.FAILED
    assert result.error is not None and result.error.code == "PROTECTION_FAILED"
    assert result.emergency_close is not None and result.emergency_close.executed_quantity == Decimal("0.010")
    assert position_amount(sim, "BTCUSDT") == 0
    assert algo_orders(sim, symbol="BTCUSDT", status="NEW") == []
    markets = orders(sim, symbol="BTCUSDT", type_="MARKET")
    assert len(markets) == 2 and markets[1]["reduceOnly"] in (True, "true")


async def test_keep_policy_reports_unprotected_loudly(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    ex = await create_executor(make_settings(protection_failure_policy="keep", protection_retries=0))
    inject(sim, "would_trigger", method="POST", path="/fapi/v1/algoOrder", count=100)
    try:
        result = await ex.execute(
            intent(intent_id="keep-1", symbol="ETHUSDT", side="BUY", position_size_usd=500, stop_loss_pct=1)
        )
    finally:
        await ex.close()
    assert result.status is ResultStatus.FILLED
    assert result.protection is ProtectionState.UNPROTECTED
    assert result.error is not None and result.error.code == "PROTECTION_FAILED"
    assert position_amount(sim, "ETHUSDT") > 0


async def test_redelivered_intent_places_nothing_new(executor: Executor, sim: Simulator) -> None:
    payload = {
        "intent_id": "redo-1",
        "symbol": "ADAUSDT",
        "side": "BUY",
        "position_size_usd": 200.0,
        "stop_loss_pct": 2,
        "take_profit_pct": 3,
    }
    first = await executor.execute(intent(**payload))
    before = sim.state()
    again = await executor.execute(intent(**payload), resume=True)
    after = sim.state()
    assert len(after["orders"]) == len(before["orders"]) == 1
    assert len(after["algoOrders"]) == len(before["algoOrders"]) == 2
    assert again.order_id == first.order_id and again.status is ResultStatus.FILLED
    assert again.protection is ProtectionState.PROTECTED
    assert again.stop_loss is not None and first.stop_loss is not None
    assert again.stop_loss.algo_id == first.stop_loss.algo_id


async def test_resume_after_a_crash_between_entry_and_protection(executor: Executor, sim: Simulator) -> None:
    # The entry reached the exchange, then the process died before placing SL/TP.
    key = "crash-1"
    await executor.gateway.place_market("DOGEUSDT", "BUY", Decimal("2000"), client_order_id(key, "entry"))
    result = await executor.execute(
        intent(
            intent_id=key, symbol="DOGEUSDT", side="BUY", quantity=2000, stop_loss_pct=2, take_profit_pct=2
        ),
        resume=True,
    )
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert len(orders(sim, symbol="DOGEUSDT")) == 1
    assert len(algo_orders(sim, symbol="DOGEUSDT", status="NEW")) == 2


async def test_close_flattens_and_cancels_protection(executor: Executor, sim: Simulator) -> None:
    opened = await executor.execute(
        intent(
            intent_id="c-open",
            symbol="AVAXUSDT",
            side="SELL",
            position_size_usd=400,
            stop_loss_pct=2,
            take_profit_pct=2,
        )
    )
    assert opened.protection is ProtectionState.PROTECTED
    sim.set_mark_price("AVAXUSDT", mark(sim, "AVAXUSDT") * Decimal("0.99"))  # a 1% gain for the short
    closed = await executor.execute(intent(intent_id="c-close", symbol="AVAXUSDT", side="CLOSE"))
    assert closed.status is ResultStatus.FILLED, closed.error
    assert closed.executed_quantity == opened.executed_quantity
    assert position_amount(sim, "AVAXUSDT") == 0
    assert algo_orders(sim, symbol="AVAXUSDT", status="NEW") == []
    assert closed.realized_pnl is not None and closed.realized_pnl > 0
    assert closed.commission is not None and closed.commission > 0


async def test_close_without_the_live_view_cancels_our_legs_only_once_it_filled(
    executor: Executor, sim: Simulator
) -> None:
    opened = await executor.execute(
        intent(
            intent_id="cr-open",
            symbol="AVAXUSDT",
            side="BUY",
            position_size_usd=400,
            stop_loss_pct=2,
            take_profit_pct=2,
        )
    )
    assert opened.protection is ProtectionState.PROTECTED
    assert opened.stop_loss is not None and opened.take_profit is not None
    ours = {opened.stop_loss.client_algo_id, opened.take_profit.client_algo_id}
    foreign = await executor.gateway.place_algo(
        "AVAXUSDT",
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        (mark(sim, "AVAXUSDT") * Decimal("0.8")).quantize(Decimal("0.001")),
        "manual-stop-2",
        quantity=Decimal("1"),
        working_type="MARK_PRICE",
        price_protect=False,
    )
    inject(
        sim, "error", method="POST", path="/fapi/v1/order", code=-2022, msg="ReduceOnly Order is rejected."
    )
    refused = await executor.execute(intent(intent_id="cr-close-1", symbol="AVAXUSDT", side="CLOSE"))
    assert refused.status is ResultStatus.REJECTED, refused.error
    assert position_amount(sim, "AVAXUSDT") == opened.executed_quantity
    armed = {a["clientAlgoId"] for a in algo_orders(sim, symbol="AVAXUSDT", status="NEW")}
    assert armed == ours | {foreign.client_algo_id}
    closed = await executor.execute(intent(intent_id="cr-close-2", symbol="AVAXUSDT", side="CLOSE"))
    assert closed.status is ResultStatus.FILLED, closed.error
    assert position_amount(sim, "AVAXUSDT") == 0
    assert [a["clientAlgoId"] for a in algo_orders(sim, symbol="AVAXUSDT", status="NEW")] == ["manual-stop-2"]


async def test_orphan_target_is_cancelled_before_a_new_position(executor: Executor, sim: Simulator) -> None:
    first = await executor.execute(
        intent(
            intent_id="o-1",
            symbol="LTCUSDT",
            side="BUY",
            position_size_usd=500,
            stop_loss_pct=2,
            take_profit_pct=2,
        )
    )
    assert first.stop_loss is not None and first.stop_loss.trigger_price is not None
    sim.set_mark_price("LTCUSDT", first.stop_loss.trigger_price - Decimal("0.5"))  # the stop fires
    assert position_amount(sim, "LTCUSDT") == 0
    orphan = algo_orders(sim, symbol="LTCUSDT", status="NEW")
    assert [a["orderType"] for a in orphan] == ["TAKE_PROFIT_MARKET"]  # Binance has no OCO

    second = await executor.execute(
        intent(
            intent_id="o-2",
            symbol="LTCUSDT",
            side="BUY",
            position_size_usd=500,
            stop_loss_pct=2,
            take_profit_pct=2,
        )
    )
    assert second.protection is ProtectionState.PROTECTED
    live = algo_orders(sim, symbol="LTCUSDT", status="NEW")
    assert {a["clientAlgoId"] for a in live} == {client_order_id("o-2", "sl"), client_order_id("o-2", "tp")}


async def test_leverage_and_margin_are_set_only_when_they_change(executor: Executor, sim: Simulator) -> None:
    before = request_count("/fapi/v1/leverage"), request_count("/fapi/v1/marginType")
    for n in range(3):
        result = await executor.execute(
            intent(intent_id=f"lev-{n}", symbol="DOTUSDT", side="BUY", position_size_usd=100, leverage=4)
        )
        assert result.status is ResultStatus.FILLED, result.error
    after = request_count("/fapi/v1/leverage"), request_count("/fapi/v1/marginType")
    assert after[0] - before[0] == 1 and after[1] - before[1] <= 1
    changed = await executor.execute(
        intent(intent_id="lev-x", symbol="DOTUSDT", side="BUY", position_size_usd=100, leverage=6)
    )
    assert changed.leverage == 6 and request_count("/fapi/v1/leverage") - after[0] == 1


async def test_insufficient_margin_is_rejected_with_the_binance_code(
    executor: Executor, sim: Simulator
) -> None:
    inject(sim, "insufficient_margin", method="POST", path="/fapi/v1/order")
    result = await executor.execute(
        intent(intent_id="m-1", symbol="BNBUSDT", side="BUY", position_size_usd=300)
    )
    assert result.status is ResultStatus.REJECTED
    assert (
        result.error is not None and result.error.code == "-2019" and result.error.source.value == "exchange"
    )


async def test_resumed_intent_with_an_existing_entry_is_protected_even_if_stale(
    executor: Executor, sim: Simulator
) -> None:
    # The entry filled, then the process died; by the redelivery the intent is past its TTL and
    # the mark has moved. Rejecting it as stale now would leave the filled position naked.
    key = "late-1"
    await executor.gateway.place_market("BNBUSDT", "BUY", Decimal("1"), client_order_id(key, "entry"))
    sim.set_mark_price("BNBUSDT", Decimal("700"))
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    result = await executor.execute(
        intent(
            intent_id=key,
            symbol="BNBUSDT",
            side="BUY",
            quantity=1,
            stop_loss=640,
            take_profit=720,
            timestamp=old,
        ),
        resume=True,
    )
    assert result.status is ResultStatus.FILLED, result.error
    assert result.protection is ProtectionState.PROTECTED
    assert len(orders(sim, symbol="BNBUSDT")) == 1
    assert len(algo_orders(sim, symbol="BNBUSDT", status="NEW")) == 2


async def test_stale_intent_not_yet_executed_is_still_rejected_on_resume(
    executor: Executor, sim: Simulator
) -> None:
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    result = await executor.execute(
        intent(intent_id="late-2", symbol="BNBUSDT", side="BUY", quantity=1, timestamp=old), resume=True
    )
    assert result.error is not None and result.error.code == "STALE_INTENT"
    assert orders(sim) == []


async def test_require_protection_rejects_an_open_without_a_stop(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    ex = await create_executor(make_settings(require_protection=True))
    try:
        naked = await ex.execute(
            intent(intent_id="req-1", symbol="BTCUSDT", side="BUY", position_size_usd=500)
        )
        reducing = await ex.execute(
            intent(intent_id="req-2", symbol="BTCUSDT", side="SELL", quantity="0.001", reduce_only=True)
        )
    finally:
        await ex.close()
    assert naked.status.value == "rejected" and naked.error is not None
    assert naked.error.code == "PROTECTION_REQUIRED" and "QUANTUM_REQUIRE_PROTECTION" in naked.error.message
    assert reducing.error is None or reducing.error.code != "PROTECTION_REQUIRED"
    assert not [o for o in orders(sim) if o["clientOrderId"] == naked.client_order_id]


def _sl_below(executor: Executor, sim: Simulator, symbol: str, pct: str) -> Decimal:
    rules = executor.gateway.rules.get(symbol)
    assert rules is not None
    return floor_to_step(mark(sim, symbol) * (1 - Decimal(pct) / 100), rules.tick_size)


async def _cancelled_stop_loss(executor: Executor, sim: Simulator, key: str) -> int:
    """The entry and a cancelled SL, as an attempt that died after them leaves them; the SL's algo id."""
    await executor.gateway.place_market("DOGEUSDT", "BUY", Decimal("2000"), client_order_id(key, "entry"))
    old = await executor.gateway.place_algo(
        "DOGEUSDT",
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        _sl_below(executor, sim, "DOGEUSDT", "2"),
        client_order_id(key, "sl"),
        quantity=Decimal("2000"),
        working_type="MARK_PRICE",
        price_protect=False,
    )
    assert await executor.gateway.cancel_algo(old.algo_id)
    return old.algo_id


async def test_resume_places_again_a_leg_found_cancelled(executor: Executor, sim: Simulator) -> None:
    # The earlier attempt placed the entry and the SL, and the SL was cancelled before it died
    # (its emergency close cancels the legs first, then sends the close). CANCELED protects nothing.
    key = "gone-sl"
    old_id = await _cancelled_stop_loss(executor, sim, key)
    result = await executor.execute(
        intent(
            intent_id=key, symbol="DOGEUSDT", side="BUY", quantity=2000, stop_loss_pct=2, take_profit_pct=2
        ),
        resume=True,
    )
    live = algo_orders(sim, symbol="DOGEUSDT", status="NEW")
    assert sorted(a["orderType"] for a in live) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    [sl] = [a for a in live if a["orderType"] == "STOP_MARKET"]
    # Binance keeps clientAlgoId unique among open orders only: the cancelled one's id is free again.
    assert sl["clientAlgoId"] == client_order_id(key, "sl") and sl["algoId"] != old_id
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None and result.stop_loss.state == "NEW"
    assert result.stop_loss.algo_id == sl["algoId"]
    assert len(orders(sim, symbol="DOGEUSDT")) == 1


async def test_resume_follows_the_emergency_close_the_earlier_attempt_sent(
    executor: Executor, sim: Simulator
) -> None:
    # The earlier attempt's emergency close cancelled the SL and sent the close, then died: the
    # resumed attempt reports that close, it does not protect a position that is gone.
    key = "gone-all"
    await _cancelled_stop_loss(executor, sim, key)
    flatten_id = client_order_id(key, "flatten")
    await executor.gateway.place_market("DOGEUSDT", "SELL", Decimal("2000"), flatten_id, reduce_only=True)
    result = await executor.execute(
        intent(
            intent_id=key, symbol="DOGEUSDT", side="BUY", quantity=2000, stop_loss_pct=2, take_profit_pct=2
        ),
        resume=True,
    )
    assert position_amount(sim, "DOGEUSDT") == 0
    assert algo_orders(sim, symbol="DOGEUSDT", status="NEW") == []
    assert len(orders(sim, symbol="DOGEUSDT")) == 2  # the entry and the one close, nothing more
    assert result.protection is ProtectionState.CLOSED_EMERGENCY and result.status is ResultStatus.FAILED
    assert result.emergency_close is not None and result.emergency_close.client_order_id == flatten_id
    assert result.emergency_close.executed_quantity == Decimal("2000")
    assert result.stop_loss is not None and result.stop_loss.state == "CANCELED"


@pytest.mark.parametrize("policy", ["close", "keep"])
async def test_a_failed_mark_read_in_the_re_round_goes_to_the_failure_policy(
    make_settings: Callable[..., Settings], sim: Simulator, policy: str
) -> None:
    # One leg is refused with -2021; re-rounding it needs the mark, whose read fails. The leg is
    # failed like any other (the policy decides), and its sibling is not cancelled half-placed.
    ex = await create_executor(make_settings(protection_failure_policy=policy))
    entry_price = mark(sim, "ETHUSDT")  # the entry is sized from it: no mark read before the legs
    sim.set_faults(
        {
            "faults": [
                {"kind": "would_trigger", "method": "POST", "path": "/fapi/v1/algoOrder", "count": 1},
                {"kind": "error", "method": "GET", "path": "/fapi/v1/premiumIndex", "count": 100},
            ]
        }
    )
    try:
        result = await ex.execute(
            intent(
                intent_id=f"no-mark-{policy}",
                symbol="ETHUSDT",
                side="BUY",
                quantity="0.1",
                entry_price=str(entry_price),
                stop_loss_pct=2,
                take_profit_pct=3,
            )
        )
    finally:
        sim.set_faults({"faults": []})
        await ex.close()
    live = algo_orders(sim, symbol="ETHUSDT", status="NEW")
    if policy == "close":
        assert result.protection is ProtectionState.CLOSED_EMERGENCY
        assert position_amount(sim, "ETHUSDT") == 0 and live == []
    else:
        assert result.protection is ProtectionState.PARTIAL and result.status is ResultStatus.FILLED
        assert position_amount(sim, "ETHUSDT") == Decimal("0.1")
    assert result.error is not None and result.error.code == "PROTECTION_FAILED"
    legs = [result.stop_loss, result.take_profit]
    assert all(leg is not None for leg in legs)
    if policy == "keep":
        [standing] = [leg for leg in legs if leg is not None and leg.state == "NEW"]
        assert [a["algoId"] for a in live] == [standing.algo_id]
