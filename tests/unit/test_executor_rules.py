"""The executor's decision tree against a scripted gateway (the Gateway Protocol): one test per rule.

No HTTP here: each fake call does what the test scripts (fill, refuse with a code, answer
nothing), so the rules about unknown outcomes, resume, the failure policy and structured
concurrency are checked exactly, in milliseconds. The same paths run against the simulator over
HTTP in tests/exec.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus, TradeIntent, parse_intent
from quantum_exec.core.errors import PermanentError, UnknownOutcomeError
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.rules import SymbolRules, parse_exchange_info
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.exchange.pacing import SEND_BY
from quantum_exec.exchange.wire import (
    AlgoOrder,
    AlgoStatus,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    Trade,
)
from quantum_exec.execution.executor import Executor
from quantum_exec.execution.run import Attempt
from support.waiting import wait_for

FIXTURE = Path(__file__).parents[2] / "services" / "binance_sim" / "fixtures" / "exchange_info.json"
RULES = parse_exchange_info(json.loads(FIXTURE.read_text()))
MARK = Decimal("95000")
KEY = "rule-1"
SL_ID, TP_ID = client_order_id(KEY, "sl"), client_order_id(KEY, "tp")


@dataclass
class Rules:
    loaded: bool = True

    def get(self, symbol: str) -> SymbolRules | None:
        return RULES.get(symbol)

    def age_s(self) -> float:
        return 0.0


Step = Callable[..., Any]


@dataclass
class ScriptedGateway:
    """A gateway whose order calls follow a script; lookups see what was 'placed'."""

    market_script: list[Step] = field(default_factory=list)
    # Per client algo id (the legs run concurrently): the steps of its successive calls.
    algo_script: dict[str, list[Step]] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    algos: dict[str, AlgoOrder] = field(default_factory=dict)
    market_calls: list[tuple[float, str, OrderSide, Decimal]] = field(default_factory=list)
    algo_calls: list[tuple[float, str, Decimal]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    get_order_error: Exception | None = None
    rules: Rules = field(default_factory=Rules)
    hedge_mode: bool = False
    base_url: str = "scripted://"
    reachable: bool = True
    mark: Decimal = MARK

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def mark_price(self, symbol: str) -> Decimal:
        return self.mark

    async def max_leverage(self, symbol: str) -> int | None:
        return None

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return []

    async def position_amount(self, symbol: str) -> Decimal:
        return Decimal(0)

    async def get_order(self, symbol: str, client_order_id: str) -> Order | None:
        if self.get_order_error is not None:
            raise self.get_order_error
        return self.orders.get(client_order_id)

    async def get_algo(self, client_algo_id: str) -> AlgoOrder | None:
        return self.algos.get(client_algo_id)

    async def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]:
        return []

    async def user_trades(self, symbol: str, order_id: int) -> list[Trade]:
        return []

    async def set_leverage(self, symbol: str, leverage: int) -> int:
        return leverage

    async def set_margin_type(self, symbol: str, margin_type: str) -> None: ...

    async def place_market(
        self,
        symbol: str,
        side: OrderSide,
        quantity: Decimal,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> Order:
        self.market_calls.append((time.monotonic(), client_order_id, side, quantity))
        step = self.market_script.pop(0) if self.market_script else fill
        return await step(self, symbol, side, quantity, client_order_id)  # type: ignore[no-any-return]

    async def place_algo(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        trigger_price: Decimal,
        client_algo_id: str,
        *,
        quantity: Decimal | None,
        working_type: str,
        price_protect: bool,
    ) -> AlgoOrder:
        self.algo_calls.append((time.monotonic(), client_algo_id, trigger_price))
        steps = self.algo_script.get(client_algo_id)
        step = steps.pop(0) if steps else arm
        return await step(self, symbol, side, order_type, trigger_price, client_algo_id, quantity)  # type: ignore[no-any-return]

    async def cancel_algo(self, algo_id: int) -> bool:
        self.cancelled.append(algo_id)
        return True

    async def place_limit(
        self,
        symbol: str,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        client_order_id: str,
        *,
        time_in_force: str,
        reduce_only: bool = False,
    ) -> Order:
        self.market_calls.append((time.monotonic(), client_order_id, side, quantity))
        order = replace(
            filled_order(client_order_id, side, quantity, OrderStatus.NEW),
            order_type=OrderType.LIMIT,
            price=price,
            avg_price=Decimal(0),
            cum_quote=Decimal(0),
        )
        self.orders[client_order_id] = order
        return order

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order | None:
        order = self.orders.get(client_order_id)
        if order is None or order.is_final:
            return None
        self.orders[client_order_id] = replace(order, status=OrderStatus.CANCELED)
        return self.orders[client_order_id]


def filled_order(
    client_id: str, side: OrderSide, quantity: Decimal, status: OrderStatus = OrderStatus.FILLED
) -> Order:
    return Order(
        order_id=abs(hash(client_id)) % 10**9,
        client_order_id=client_id,
        symbol="BTCUSDT",
        side=side,
        order_type=OrderType.MARKET,
        status=status,
        orig_qty=quantity,
        executed_qty=quantity if status is OrderStatus.FILLED else Decimal(0),
        avg_price=MARK,
        cum_quote=MARK * quantity,
        reduce_only=False,
        update_time_ms=0,
    )


async def fill(gw: ScriptedGateway, symbol: str, side: OrderSide, quantity: Decimal, client_id: str) -> Order:
    gw.orders[client_id] = filled_order(client_id, side, quantity)
    return gw.orders[client_id]


async def arm(
    gw: ScriptedGateway,
    symbol: str,
    side: OrderSide,
    order_type: OrderType,
    trigger: Decimal,
    cid: str,
    qty: Any,
) -> AlgoOrder:
    gw.algos[cid] = AlgoOrder(
        algo_id=len(gw.algos) + 1,
        client_algo_id=cid,
        symbol=symbol,
        side=side,
        order_type=order_type,
        status=AlgoStatus.NEW,
        trigger_price=trigger,
        quantity=qty or Decimal(0),
        close_position=qty is None,
        reduce_only=True,
        actual_order_id="",
    )
    return gw.algos[cid]


def refuse(code: int) -> Step:
    async def step(*_args: Any) -> Any:
        raise PermanentError(f"refused ({code})", code=code)

    return step


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "recv_window_ms": 200,
        "order_lookup_interval_s": 0.01,
        "order_lookup_attempts": 2,
        "protection_retries": 0,
    }
    values.update(overrides)
    return Settings(**values)


def open_long(**extra: Any) -> TradeIntent:
    return parse_intent(
        {
            "intent_id": KEY,
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "0.01",
            "stop_loss_pct": 1,
            "take_profit_pct": 2,
            **extra,
        }
    )


async def executor(gw: ScriptedGateway, **overrides: Any) -> Executor:
    ex = Executor(settings(**overrides), gw)
    await ex.start()
    return ex


async def test_absence_is_counted_from_the_real_send_not_from_before_pacing() -> None:
    """The gateway stamps sent_at after pacing; a quick -1007 then still waits out recvWindow from it."""
    stamped: list[float] = []

    async def paced_then_unknown(*_args: Any) -> Any:
        await asyncio.sleep(0.3)  # the pacer's wait, inside the gateway
        stamped.append(time.monotonic())
        raise UnknownOutcomeError("-1007 after pacing", code=-1007, sent_at=stamped[-1])

    gw = ScriptedGateway(market_script=[paced_then_unknown])
    ex = await executor(gw)
    result = await ex.execute(open_long())
    assert result.status is ResultStatus.FILLED
    [(_first, _, _, _), (resent_at, _, _, _)] = gw.market_calls
    # recvWindow 0.2 s + 1 s clock margin from the real send; from before the wait it would be 0.3 s less.
    assert resent_at - stamped[0] >= 0.2 + 1.0


async def test_an_entry_that_may_exist_is_never_reported_not_requested() -> None:
    async def reported_new(
        gw: ScriptedGateway, symbol: str, side: OrderSide, qty: Decimal, cid: str
    ) -> Order:
        gw.orders[cid] = filled_order(cid, side, qty, status=OrderStatus.NEW)
        return gw.orders[cid]

    gw = ScriptedGateway(market_script=[reported_new])
    ex = await executor(gw)
    gw.get_order_error = RuntimeError("lookup crashed")  # while polling the NEW entry
    result = await ex.execute(open_long())
    assert result.protection is ProtectionState.UNPROTECTED
    assert result.error is not None and result.error.code == "PROTECTION_FAILED"
    assert "may have opened a BTCUSDT BUY position of 0.01" in result.error.message


async def test_a_refused_entry_is_certainly_absent() -> None:
    gw = ScriptedGateway(market_script=[refuse(-2019)])
    ex = await executor(gw)
    result = await ex.execute(open_long())
    assert result.status is ResultStatus.REJECTED and result.protection is ProtectionState.NOT_REQUESTED
    assert result.error is not None and result.error.code == "-2019"


async def test_emergency_close_lets_a_lost_lease_propagate() -> None:
    async def lease_lost(*_args: Any) -> Any:
        raise OwnershipLost("lease lost before the close")

    gw = ScriptedGateway(
        market_script=[fill, lease_lost], algo_script={SL_ID: [refuse(-4045)], TP_ID: [refuse(-4045)]}
    )
    ex = await executor(gw)
    with pytest.raises(OwnershipLost):
        await ex.execute(open_long())


async def test_a_resumed_attempt_looks_the_emergency_close_up() -> None:
    entry_id, flatten_id = client_order_id(KEY, "entry"), client_order_id(KEY, "flatten")
    gw = ScriptedGateway(algo_script={SL_ID: [refuse(-4045)], TP_ID: [refuse(-4045)]})
    gw.orders[entry_id] = filled_order(entry_id, OrderSide.BUY, Decimal("0.01"))
    gw.orders[flatten_id] = filled_order(flatten_id, OrderSide.SELL, Decimal("0.01"))
    ex = await executor(gw)
    result = await ex.execute(open_long(), attempt=Attempt(resume=True, earlier_sent_by=time.monotonic() - 5))
    assert result.protection is ProtectionState.CLOSED_EMERGENCY
    assert gw.market_calls == []  # neither the entry nor the close was sent again
    assert result.emergency_close is not None and result.emergency_close.client_order_id == flatten_id


async def test_immediate_trigger_is_rerounded_once_against_the_mark() -> None:
    gw = ScriptedGateway(algo_script={SL_ID: [refuse(-2021), arm]})
    gw.mark = Decimal("93000")  # the fill was at 95000; the 1% stop (94050) is already crossed
    ex = await executor(gw)
    result = await ex.execute(open_long())
    sl_triggers = [trigger for _at, cid, trigger in gw.algo_calls if cid == SL_ID]
    tick = RULES["BTCUSDT"].tick_size
    assert sl_triggers[1] == Decimal("93000") - tick and sl_triggers[0] != sl_triggers[1]
    assert result.protection is ProtectionState.PROTECTED


async def test_immediate_trigger_twice_goes_to_the_failure_policy() -> None:
    gw = ScriptedGateway(algo_script={SL_ID: [refuse(-2021), refuse(-2021)]})
    ex = await executor(gw)
    result = await ex.execute(open_long())
    assert len([cid for _at, cid, _t in gw.algo_calls if cid == SL_ID]) == 2  # never a third, identical try
    assert result.protection is ProtectionState.CLOSED_EMERGENCY


async def test_a_failing_leg_cancels_its_sibling_and_nothing_runs_after_execute() -> None:
    sibling_cancelled = asyncio.Event()

    async def lease_lost(*_args: Any) -> Any:
        await asyncio.sleep(0.01)
        raise OwnershipLost("lease lost before the stop")

    async def slow_target(*_args: Any) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    gw = ScriptedGateway(algo_script={SL_ID: [lease_lost], TP_ID: [slow_target]})
    ex = await executor(gw)
    with pytest.raises(OwnershipLost):
        await ex.execute(open_long())
    assert sibling_cancelled.is_set()
    calls = len(gw.algo_calls)
    await asyncio.sleep(0)
    assert len(gw.algo_calls) == calls


async def test_repair_never_places_a_new_entry() -> None:
    gw = ScriptedGateway()
    ex = await executor(gw)
    result = await ex.execute(
        open_long(), attempt=Attempt(resume=True, earlier_sent_by=time.monotonic() - 5, repair=True)
    )
    assert gw.market_calls == [] and gw.algo_calls == []
    assert result.status is ResultStatus.FAILED and result.protection is ProtectionState.NOT_REQUESTED
    assert result.error is not None and result.error.code == "POISON_MESSAGE"
    assert "does not exist on the exchange: nothing was opened" in result.error.message


async def test_repair_protects_a_filled_entry_and_says_so() -> None:
    entry_id = client_order_id(KEY, "entry")
    gw = ScriptedGateway()
    gw.orders[entry_id] = filled_order(entry_id, OrderSide.BUY, Decimal("0.01"))
    ex = await executor(gw)
    result = await ex.execute(
        open_long(), attempt=Attempt(resume=True, earlier_sent_by=time.monotonic() - 5, repair=True)
    )
    assert gw.market_calls == [] and len(gw.algo_calls) == 2
    assert result.status is ResultStatus.FAILED and result.protection is ProtectionState.PROTECTED
    assert result.error is not None and result.error.code == "POISON_MESSAGE"
    assert f"{entry_id} filled 0.01 at 95000; protection protected" in result.error.message


async def test_an_unreadable_order_answer_is_an_unknown_outcome_stamped_with_its_send() -> None:
    """A 200 without orderId (or with a bad decimal) may still be a placed order: look it up."""
    from quantum_exec.exchange.gateway import BinanceGateway

    gateway = BinanceGateway(settings(rate_limit_pacing=False), "http://127.0.0.1:9")

    async def answer(*_args: Any, **_kwargs: Any) -> Any:
        return {"status": "FILLED", "executedQty": "not-a-number"}

    gateway._rest.send = answer  # type: ignore[method-assign]
    before = time.monotonic()
    try:
        with pytest.raises(UnknownOutcomeError) as caught:
            await gateway.place_market("BTCUSDT", OrderSide.BUY, Decimal("0.01"), "qxe-unreadable")
    finally:
        await gateway.close()
    assert caught.value.sent_at is not None and caught.value.sent_at >= before
    assert "unreadable answer from POST /fapi/v1/order" in caught.value.message


async def test_an_intent_without_timestamp_ages_from_its_stream_id() -> None:
    gw = ScriptedGateway()
    ex = await executor(gw)
    published_ms = int((time.time() - 600) * 1000)  # ten minutes ago, TTL 120 s
    result = await ex.execute(open_long(), stream_id=f"{published_ms}-0")
    assert result.status is ResultStatus.REJECTED and gw.market_calls == []
    assert result.error is not None and result.error.code == "STALE_INTENT"
    assert (
        "published (no timestamp)" in result.error.message
        and "QUANTUM_INTENT_TTL_S=120" in result.error.message
    )


async def test_a_timestamp_in_the_future_is_rejected_naming_the_setting() -> None:
    gw = ScriptedGateway()
    ex = await executor(gw, max_clock_skew_s=5)
    result = await ex.execute(open_long(timestamp=int((time.time() + 60) * 1000)))
    assert result.status is ResultStatus.REJECTED and gw.market_calls == []
    assert result.error is not None and result.error.code == "INVALID_FIELD"
    assert "in the future" in result.error.message and "QUANTUM_MAX_CLOCK_SKEW_S=5" in result.error.message
    ok = await ex.execute(open_long(intent_id="skew-ok", timestamp=int((time.time() + 2) * 1000)))
    assert ok.status is ResultStatus.FILLED  # within the allowed skew


async def test_a_limit_filling_in_pieces_is_protected_at_its_first_fill_once() -> None:
    gw = ScriptedGateway()
    ex = await executor(gw)
    intent = open_long(order_type="LIMIT", price="94000", expire_after_s=5)
    entry_id = client_order_id(KEY, "entry")

    async def fills_in_pieces() -> None:
        await wait_for(lambda: entry_id in gw.orders, 5, "the LIMIT placed")
        first = gw.orders[entry_id]
        gw.orders[entry_id] = replace(
            first,
            status=OrderStatus.PARTIALLY_FILLED,
            executed_qty=Decimal("0.004"),
            avg_price=Decimal("94000"),
        )
        # Protected at the first fill, while the rest still works.
        await wait_for(lambda: bool(gw.algo_calls), 5, "the legs at the first fill")
        gw.orders[entry_id] = replace(
            gw.orders[entry_id], status=OrderStatus.FILLED, executed_qty=Decimal("0.01")
        )

    filler = asyncio.create_task(fills_in_pieces())
    result = await ex.execute(intent)
    await filler
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert sorted(cid for _, cid, _ in gw.algo_calls) == sorted([SL_ID, TP_ID])  # once each
    assert all(gw.algos[cid].close_position for cid in (SL_ID, TP_ID))
    assert result.executed_quantity == Decimal("0.01")


async def test_a_partly_filled_limit_that_expires_keeps_its_filled_part_protected() -> None:
    gw = ScriptedGateway()
    ex = await executor(gw)
    intent = open_long(order_type="LIMIT", price="94000", expire_after_s="0.3")
    entry_id = client_order_id(KEY, "entry")

    async def one_piece() -> None:
        await wait_for(lambda: entry_id in gw.orders, 5, "the LIMIT placed")
        gw.orders[entry_id] = replace(
            gw.orders[entry_id],
            status=OrderStatus.PARTIALLY_FILLED,
            executed_qty=Decimal("0.003"),
            avg_price=Decimal("94000"),
        )

    filler = asyncio.create_task(one_piece())
    result = await ex.execute(intent)
    await filler
    assert gw.orders[entry_id].status is OrderStatus.CANCELED
    assert result.status is ResultStatus.PARTIAL and result.executed_quantity == Decimal("0.003")
    assert result.protection is ProtectionState.PROTECTED and len(gw.algo_calls) == 2


async def test_the_entry_is_shed_on_the_ttl_guards_clock_from_the_ttl_guards_origin() -> None:
    """The TTL guard ages an intent from its timestamp on the wall clock; the deadline pacing sheds
    its entry at is that same moment plus the TTL on the same clock, not a monotonic time derived
    from the stream id's time."""
    deadlines: list[float | None] = []

    async def capture(gw: ScriptedGateway, symbol: str, side: OrderSide, qty: Decimal, cid: str) -> Order:
        deadlines.append(SEND_BY.get())
        return await fill(gw, symbol, side, qty, cid)

    gw = ScriptedGateway(market_script=[capture])
    ex = await executor(gw, intent_ttl_s=30)
    created_ms = int((time.time() - 20) * 1000)
    published_ms = created_ms + 15_000  # it reached the stream 15 s after it was made
    result = await ex.execute(open_long(timestamp=created_ms), stream_id=f"{published_ms}-0")
    assert result.status is ResultStatus.FILLED
    assert deadlines == [pytest.approx(created_ms / 1000 + 30, abs=0.001)]
