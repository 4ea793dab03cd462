"""Maintenance margin, Binance's liquidation-price formula, and forced liquidation at a mark move."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import pytest
from binance import AsyncClient

from binance_sim import Simulator
from binance_sim.engine import Engine
from binance_sim.ledger import Ledger
from binance_sim.margin import liquidation_price
from binance_sim.market import load_market
from binance_sim.model import AlgoOrder, Order, Trade
from binance_sim.notify import Notifier
from binance_sim.params import Params

from .conftest import FakeClock, Raw

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]


class RecordingNotifier(Notifier):
    """Records every event the engine announces, in order."""

    def __init__(self, ledger: Ledger) -> None:
        self.events: list[tuple[Any, ...]] = []
        super().__init__(ledger)

    def order_update(self, order: Order, trade: Trade | None = None) -> None:
        kind = order.auto_close or order.type
        self.events.append(("order", kind, order.status, None if trade is None else trade.price))

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append((event["e"], tuple(row["s"] for row in event["p"])))

    def account_update(
        self,
        reason: str,
        symbols: Iterable[str] = (),
        assets: Iterable[str] = ("USDT",),
        balance_change: Decimal = Decimal(0),
    ) -> None:
        self.events.append(("account", reason, tuple(symbols), tuple(assets), balance_change))

    def algo_update(self, algo: AlgoOrder) -> None:
        self.events.append(("algo", algo.order_type, algo.algo_status))


def _send(engine: Engine, **params: str) -> Any:
    return engine.new_order(Params(params))


def _isolated_eth_long(engine: Engine) -> None:
    """10 ETHUSDT long at 3105.42, isolated, 20x: isolated wallet 31054.20 / 20 = 1552.71."""
    engine.change_margin_type(Params({"symbol": "ETHUSDT", "marginType": "ISOLATED"}))
    _send(engine, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="10")


def _position(engine: Engine, symbol: str) -> dict[str, Any]:
    (row,) = engine.position_risk(Params({"symbol": symbol}), 3)
    return row


def test_isolated_liquidation_price_matches_binance_formula(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    _isolated_eth_long(engine)
    # Bracket 1 of ETHUSDT (max 100x): rate 0.5 / 100 = 0.005, cum 0.
    # LP = (WB + cum - side*size*EP) / (size*MMR - side*size)
    #    = (1552.71 + 0 - 31054.20) / (10 * 0.005 - 10) = -29501.49 / -9.95 = 2964.973869346...
    row = _position(engine, "ETHUSDT")
    assert row["liquidationPrice"] == "2964.97386935"
    assert row["maintMargin"] == "155.27100000"  # 31054.20 * 0.005
    assert row["isolatedWallet"] == "1552.71000000"


def test_cross_liquidation_price_counts_the_other_contracts(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    _send(engine, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="10")  # fee 15.5271
    _send(engine, symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.100")  # fee 4.761725
    engine.set_mark_price("ETHUSDT", Decimal("3000"))
    # WB = 10855.45 - 15.5271 - 4.761725 = 10835.161175; ETH: TMM1 = 30000 * 0.005 = 150,
    # UPNL1 = (3000 - 3105.42) * 10 = -1054.20. BTC short 0.1 at 95234.50, bracket 1 (0.004, cum 0):
    # LP = (10835.161175 - 150 - 1054.20 + 0 + 0.1 * 95234.50) / (0.1 * 0.004 + 0.1)
    #    = 19154.411175 / 0.1004 = 190780.98779880...
    assert _position(engine, "BTCUSDT")["liquidationPrice"] == "190780.98779880"
    info = engine.account_info(3)
    assert isinstance(info, dict)
    # 150 (ETH) + 0.1 * 95234.50 * 0.004 = 38.0938 (BTC)
    assert info["totalMaintMargin"] == "188.09380000"
    assert info["assets"][0]["maintMargin"] == "188.09380000"


def test_liquidation_price_uses_the_bracket_it_falls_in(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.change_margin_type(Params({"symbol": "BTCUSDT", "marginType": "ISOLATED"}))
    engine.change_leverage(Params({"symbol": "BTCUSDT", "leverage": "50"}))
    _send(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.530")
    # Notional 50474.285 is in bracket 2 (0.0081, cum 205) at the mark, but the liquidation price of
    # bracket 2 (93702.0038) puts the notional at 49662 < 50000: bracket 1 (0.004, cum 0) applies.
    # Isolated wallet 50474.285 / 50 = 1009.4857;
    # LP = (1009.4857 - 50474.285) / (0.53 * 0.004 - 0.53) = -49464.7993 / -0.52788 = 93704.6285...
    assert _position(engine, "BTCUSDT")["liquidationPrice"] == "93704.62851406"
    assert _position(engine, "BTCUSDT")["maintMargin"] == "203.84170850"  # 50474.285 * 0.0081 - 205


def test_hedge_mode_cross_positions_share_one_liquidation_price(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.change_position_mode(Params({"dualSidePosition": "true"}))
    _send(engine, symbol="BTCUSDT", side="BUY", positionSide="LONG", type="MARKET", quantity="0.050")
    _send(engine, symbol="BTCUSDT", side="SELL", positionSide="SHORT", type="MARKET", quantity="0.200")
    # WB = 10855.45 - 2.3808625 - 9.52345 = 10843.5456875; both in bracket 1 (0.004, cum 0):
    # LP = (WB + cumL + cumS - 0.05 * 95234.50 + 0.2 * 95234.50)
    #      / (0.05 * 0.004 + 0.2 * 0.004 - 0.05 + 0.2) = 25128.7206875 / 0.151 = 166415.36879139...
    rows = engine.position_risk(Params({"symbol": "BTCUSDT"}), 3)
    assert {(r["positionSide"], r["liquidationPrice"]) for r in rows} == {
        ("LONG", "166415.36879139"),
        ("SHORT", "166415.36879139"),
    }


def test_flat_or_safe_positions_show_zero(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    (flat,) = engine.position_risk(Params({"symbol": "BTCUSDT"}), 2)
    assert flat["liquidationPrice"] == "0"
    _send(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
    pos = engine.positions[("BTCUSDT", "BOTH")]
    # A 952 USDT long backed by a 10855 USDT cross wallet cannot lose enough to be liquidated.
    assert liquidation_price(engine, pos) == 0


def test_mark_at_liquidation_price_liquidates_and_cancels_orders_and_algo_orders() -> None:
    engine = Engine(load_market(), FakeClock(), notifier=RecordingNotifier)
    notes = engine.notify
    assert isinstance(notes, RecordingNotifier)
    _isolated_eth_long(engine)
    wallet = engine.account.wallet["USDT"]
    for order_type, trigger in (("STOP_MARKET", "2900"), ("TAKE_PROFIT_MARKET", "3300")):
        engine.new_algo_order(
            Params(
                {
                    "algoType": "CONDITIONAL",
                    "symbol": "ETHUSDT",
                    "side": "SELL",
                    "type": order_type,
                    "triggerPrice": trigger,
                    "closePosition": "true",
                    "workingType": "MARK_PRICE",
                }
            )
        )
    _send(engine, symbol="ETHUSDT", side="SELL", type="LIMIT", quantity="1", price="3200", timeInForce="GTC")
    notes.events.clear()

    engine.set_mark_price("ETHUSDT", Decimal("2964.98"))  # one tick above the liquidation price
    # Margin ratio 148.2498 / 148.31 (over 0.8): a margin call, and no liquidation yet.
    assert engine.positions[("ETHUSDT", "BOTH")].amount == 10
    assert notes.events == [("MARGIN_CALL", ("ETHUSDT",))]
    notes.events.clear()

    engine.set_mark_price("ETHUSDT", Decimal("2964.97"))
    assert engine.positions[("ETHUSDT", "BOTH")].amount == 0
    liquidation = [o for o in engine.orders.values() if o.auto_close == "LIQUIDATION"]
    assert len(liquidation) == 1
    body = engine.query_order(Params({"symbol": "ETHUSDT", "orderId": str(liquidation[0].order_id)}))
    assert body["clientOrderId"].startswith("autoclose-1763683200000")
    # Issued at the bankruptcy price 3105.42 - 1552.71 / 10 = 2950.149 (rounded up to the tick, against
    # the long), filled at the mark. REST shows it LIMIT/IOC, as forceOrders' example does.
    assert (body["type"], body["origType"], body["timeInForce"], body["status"]) == (
        "LIMIT",
        "LIMIT",
        "IOC",
        "FILLED",
    )
    assert (body["price"], body["avgPrice"], body["executedQty"], body["side"]) == (
        "2950.15",
        "2964.97",
        "10.000",
        "SELL",
    )
    assert [a.algo_status for a in engine.algo_orders.values()] == ["CANCELED", "CANCELED"]
    # The resting LIMIT expired with reason 5, "Order has expired when the account was liquidated".
    assert [(o.status, o.expire_reason) for o in engine.orders.values() if not o.auto_close] == [
        ("FILLED", 0),
        ("EXPIRED", 5),
    ]
    trade = engine.trades[-1]
    assert (trade.realized_pnl, trade.commission) == (Decimal("-1404.50000000"), Decimal("14.82485000"))
    # What margin is left (1552.71 - 1404.50 - 14.82485) is under 1.25% of 29649.70 (370.62): all of it
    # goes to the insurance fund, so the liquidation costs exactly the isolated margin.
    (clearance,) = engine.income.rows
    assert (clearance.income_type, clearance.income) == ("INSURANCE_CLEAR", Decimal("-133.38515000"))
    assert engine.account.wallet["USDT"] == wallet - Decimal("1552.71")
    assert notes.events == [
        ("order", "LIMIT", "EXPIRED", None),
        ("algo", "STOP_MARKET", "CANCELED"),
        ("algo", "TAKE_PROFIT_MARKET", "CANCELED"),
        ("order", "LIQUIDATION", "NEW", None),
        ("order", "LIQUIDATION", "FILLED", Decimal("2964.97")),
        ("account", "ORDER", ("ETHUSDT",), ("USDT",), 0),
        # bc: what the insurance fund took, the "balance change except PnL and commission".
        ("account", "INSURANCE_CLEAR", ("ETHUSDT",), ("USDT",), Decimal("-133.38515000")),
    ]


def test_cross_liquidation_takes_the_whole_margin_and_no_more(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.set_balance("USDT", Decimal(600))
    _send(engine, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.100")
    # WB = 600 - 4.761725; LP = (595.238275 - 9523.45) / (0.1 * 0.004 - 0.1) = 89640.67996988
    assert _position(engine, "BTCUSDT")["liquidationPrice"] == "89640.67996988"
    engine.set_mark_price("BTCUSDT", Decimal("89640.7"))
    assert engine.positions[("BTCUSDT", "BOTH")].amount == Decimal("0.100")
    engine.set_mark_price("BTCUSDT", Decimal("89640.6"))
    assert engine.positions[("BTCUSDT", "BOTH")].amount == 0
    # Realized (89640.6 - 95234.5) * 0.1 = -559.39, fee 4.48203, the remaining 31.366245 cleared.
    assert engine.trades[-1].realized_pnl == Decimal("-559.39000000")
    assert engine.income.rows[-1].income == Decimal("-31.36624500")
    assert engine.account.wallet["USDT"] == 0


def test_liquidation_can_be_switched_off(engine_factory: EngineFactory) -> None:
    engine = engine_factory(liquidation=False)
    _isolated_eth_long(engine)
    engine.set_mark_price("ETHUSDT", Decimal("2900"))
    assert engine.positions[("ETHUSDT", "BOTH")].amount == 10


async def test_python_binance_sees_the_liquidation(sim: Simulator, client: AsyncClient, raw: Raw) -> None:
    await client.futures_change_margin_type(symbol="ETHUSDT", marginType="ISOLATED")
    await client.futures_create_order(symbol="ETHUSDT", side="BUY", type="MARKET", quantity="10")
    stop = await client.futures_create_algo_order(
        symbol="ETHUSDT",
        side="SELL",
        type="STOP_MARKET",
        triggerPrice="2900",
        closePosition="true",
        clientAlgoId="sl-beyond-liq",
    )
    (position,) = await client.futures_position_information(symbol="ETHUSDT")
    assert position["liquidationPrice"] == "2964.97386935"
    account = await client.futures_account(version=3)
    assert account["totalMaintMargin"] == "155.27100000"

    status, _, _ = await raw.request(
        "POST", "/_sim/markPrice", body='{"symbol": "ETHUSDT", "price": "2960"}', api_key=None
    )
    assert status == 200

    assert await client.futures_position_information(symbol="ETHUSDT") == []
    orders = await client.futures_get_all_orders(symbol="ETHUSDT")
    assert [(o["type"], o["timeInForce"], o["status"], o["avgPrice"]) for o in orders][-1] == (
        "LIMIT",
        "IOC",
        "FILLED",
        "2960.00",
    )
    (forced,) = await client.futures_liquidation_orders(symbol="ETHUSDT")
    assert (forced["orderId"], forced["clientOrderId"]) == (
        orders[-1]["orderId"],
        orders[-1]["clientOrderId"],
    )
    algo = await client.futures_get_algo_order(algoId=stop["algoId"])
    assert algo["algoStatus"] == "CANCELED"
    income = await client.futures_income_history(symbol="ETHUSDT")
    assert [r["incomeType"] for r in income][-3:] == ["REALIZED_PNL", "COMMISSION", "INSURANCE_CLEAR"]
    account = await client.futures_account(version=3)
    assert account["totalMaintMargin"] == "0.00000000"
