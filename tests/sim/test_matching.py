"""LIMIT takers by book level (IOC, FOK, GTC), and self-trade prevention against our own resting orders.

Binance: a LIMIT order takes the levels at or better than its price; "IOC order could not be filled
completely, remaining quantity is canceled" (``er`` 2), FOK "orders with no fill" end EXPIRED, a GTC's
rest rests. STP (``selfTradePreventionMode``, default EXPIRE_MAKER on orders, NONE on algo orders):
status EXPIRED_IN_MATCH, ``er`` 1 (3 for an IOC taker) ("Event: Order Update" expiry reasons).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from binance_sim.book import BookConfig
from binance_sim.engine import Engine
from binance_sim.params import Params

from .rest_models import PlacedOrder, check
from .test_book import DEEP_1PCT
from .test_engine import algo, code_of

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]


def _limit(engine: Engine, side: str, qty: str, price: str, tif: str = "GTC", **extra: str) -> dict:
    body = engine.new_order(
        Params(
            {
                "symbol": "BTCUSDT",
                "side": side,
                "type": "LIMIT",
                "quantity": qty,
                "price": price,
                "timeInForce": tif,
                "newOrderRespType": "RESULT",
                **extra,
            }
        )
    )
    assert isinstance(body, dict)
    return check(PlacedOrder, body)  # type: ignore[no-any-return]


def _rich(engine_factory: EngineFactory, book: BookConfig = DEEP_1PCT) -> Engine:
    engine = engine_factory(book=book)
    engine.set_balance("USDT", Decimal(1_000_000))
    return engine


def test_ioc_takes_the_levels_within_its_price_and_expires_the_rest(engine_factory: EngineFactory) -> None:
    engine = _rich(engine_factory)
    # Levels: 1.050 @ 95234.50, 1.039 @ 96186.90; a BUY IOC at 96000 reaches the first only.
    result = _limit(engine, "BUY", "2.000", "96000", "IOC")
    assert (result["status"], result["executedQty"]) == ("EXPIRED", "1.050")
    order = engine.orders[result["orderId"]]
    assert order.expire_reason == 2
    assert [(t.price, t.qty) for t in engine.trades] == [(Decimal("95234.50"), Decimal("1.050"))]


def test_fok_expires_unfilled_unless_the_book_fills_it_whole(engine_factory: EngineFactory) -> None:
    engine = _rich(engine_factory)
    short = _limit(engine, "BUY", "2.000", "96000", "FOK")
    assert (short["status"], short["executedQty"]) == ("EXPIRED", "0.000") and not engine.trades
    whole = _limit(engine, "BUY", "2.000", "96200", "FOK")
    assert (whole["status"], whole["executedQty"]) == ("FILLED", "2.000")
    assert [t.qty for t in engine.trades] == [Decimal("1.050"), Decimal("0.950")]


def test_a_gtc_taker_rests_what_its_price_cannot_take(engine_factory: EngineFactory) -> None:
    engine = _rich(engine_factory)
    result = _limit(engine, "BUY", "2.000", "96000")
    assert (result["status"], result["executedQty"]) == ("PARTIALLY_FILLED", "1.050")
    assert result["orderId"] in engine.open_orders


def test_expire_maker_by_default_expires_our_resting_order_in_the_way(engine_factory: EngineFactory) -> None:
    # Spread 20 bps: best ask 95329.70; our SELL at 95300 rests inside the spread, at the top of the book.
    engine = _rich(engine_factory, BookConfig(spread_bps=Decimal(20)))
    maker = _limit(engine, "SELL", "0.010", "95300")
    assert maker["status"] == "NEW"
    taker = _limit(engine, "BUY", "0.010", "95400")
    assert taker["status"] == "FILLED" and taker["selfTradePreventionMode"] == "EXPIRE_MAKER"
    expired = engine.orders[maker["orderId"]]
    assert (expired.status, expired.expire_reason) == ("EXPIRED_IN_MATCH", 1)
    assert [t.order_id for t in engine.trades] == [taker["orderId"]]  # the taker met the book, not us


@pytest.mark.parametrize(
    ("mode", "tif", "maker_status", "taker_status", "taker_reason"),
    [
        ("EXPIRE_TAKER", "GTC", "NEW", "EXPIRED_IN_MATCH", 1),
        ("EXPIRE_TAKER", "IOC", "NEW", "EXPIRED_IN_MATCH", 3),
        ("EXPIRE_BOTH", "GTC", "EXPIRED_IN_MATCH", "EXPIRED_IN_MATCH", 1),
        ("NONE", "GTC", "FILLED", "FILLED", 0),
    ],
)
def test_each_stp_mode(
    engine_factory: EngineFactory,
    mode: str,
    tif: str,
    maker_status: str,
    taker_status: str,
    taker_reason: int,
) -> None:
    engine = _rich(engine_factory, BookConfig(spread_bps=Decimal(20)))
    maker = _limit(engine, "SELL", "0.010", "95300")
    taker = _limit(engine, "BUY", "0.010", "95400", tif, selfTradePreventionMode=mode)
    assert engine.orders[maker["orderId"]].status == maker_status
    assert (taker["status"], engine.orders[taker["orderId"]].expire_reason) == (taker_status, taker_reason)
    if mode == "NONE":  # a self-trade: both sides fill at the maker's price, the position nets to 0
        assert [(t.price, t.maker) for t in engine.trades] == [
            (Decimal("95300.00"), True),
            (Decimal("95300.00"), False),
        ]
        assert engine.positions[("BTCUSDT", "BOTH")].amount == 0


def test_stp_mode_is_validated_and_algo_orders_default_to_none(engine_factory: EngineFactory) -> None:
    engine = _rich(engine_factory)
    assert code_of(lambda: _limit(engine, "BUY", "0.010", "90000", selfTradePreventionMode="EXPIRE")) == -1130
    stop = algo(
        engine, side="SELL", type="STOP_MARKET", triggerPrice="90000", quantity="0.010", reduceOnly="true"
    )
    assert stop["selfTradePreventionMode"] == "NONE"


def test_with_a_book_depth_a_resting_limit_fills_a_level_per_mark_move(engine_factory: EngineFactory) -> None:
    # 1,000 USDT a level: at 95000 that is 0.010 BTC (rounded down to the step) per crossing move.
    engine = _rich(engine_factory, BookConfig(depth_notional=Decimal(1000)))
    resting = _limit(engine, "BUY", "0.025", "95000")
    for mark, executed, status in (
        ("94990", "0.010", "PARTIALLY_FILLED"),
        ("94980", "0.020", "PARTIALLY_FILLED"),
        ("94970", "0.025", "FILLED"),
    ):
        engine.set_mark_price("BTCUSDT", Decimal(mark))
        now = engine.query_order(Params({"symbol": "BTCUSDT", "orderId": str(resting["orderId"])}))
        assert (now["executedQty"], now["status"]) == (executed, status)
    assert [(t.qty, t.maker) for t in engine.trades] == [(Decimal("0.010"), True)] * 2 + [
        (Decimal("0.005"), True)
    ]


def test_a_reduce_only_limit_beyond_the_position_expires_its_rest(engine_factory: EngineFactory) -> None:
    engine = _rich(engine_factory)
    engine.new_order(Params({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}))
    resting = _limit(engine, "SELL", "0.030", "96000", reduceOnly="true")
    engine.set_mark_price("BTCUSDT", Decimal("96100"))
    order = engine.orders[resting["orderId"]]
    assert (order.executed_qty, order.status, order.expire_reason) == (Decimal("0.010"), "EXPIRED", 4)
